"""The ``mlops`` command line. Heavy libraries (Prefect, GX, alibi-detect) load inside commands."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlops_core.errors import MlopsError
from mlops_core.settings import Settings, prefect_environment

app = typer.Typer(
    name="mlops",
    help="Event-driven MLOps: validate batches, detect drift, retrain, and roll out models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dataset_app = typer.Typer(help="Register and list datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")

# Piped output (CI logs, `make demo | tee`) gets a wide page rather than rich's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
F = TypeVar("F", bound=Callable[..., Any])

DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", "-d", help="A registered dataset's name.")
]
SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="A dataset spec YAML file, instead of --dataset.")
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option("--reference", help="The reference table (parquet or CSV) for --spec."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def settings() -> Settings:
    """Settings for this invocation; also points an embedded Prefect at our home."""
    try:
        current = Settings()
    except Exception as exc:  # pydantic reports which MLOPS_* variable is wrong
        raise MlopsError(f"invalid MLOPS_* setting: {' '.join(str(exc).split())}") from None
    for key, value in prefect_environment(current).items():
        os.environ.setdefault(key, value)
    if "PREFECT_API_URL" not in os.environ:
        from mlops_core.adapters.stack_state import running_api_url

        url = running_api_url(current)  # a running `mlops up`: flows and events go to it
        if url:
            os.environ["PREFECT_API_URL"] = url
    return current


def reports_errors(command: F) -> F:
    """Turn user mistakes (``MlopsError``) into one line on stderr and an exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MlopsError as exc:
            err.print(f"[red]mlops:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- datasets


@dataset_app.command("add")
@reports_errors
def dataset_add(
    spec: Annotated[Path, typer.Argument(help="The dataset spec YAML file.")],
    reference: Annotated[Path, typer.Option("--reference", help="The reference table.")],
    as_json: JsonOpt = False,
) -> None:
    """Register a dataset: store its spec and reference, and build its expectation suite."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.spec import DatasetSpec

    current = settings()
    registered = DatasetCatalog(current).add(DatasetSpec.from_yaml(spec), reference)
    result = {
        "dataset": registered.name,
        "spec": str(registered.spec_path),
        "reference": str(registered.reference_path),
        "expectation_suite": str(registered.suite_path),
    }
    if as_json:
        emit_json(result)
        return
    out.print(f"registered dataset [bold]{registered.name}[/bold]", highlight=False)
    out.print(f"  spec       {registered.spec_path}", highlight=False)
    out.print(f"  reference  {registered.reference_path}", highlight=False)
    out.print(
        f"  suite      {registered.suite_path}  (Great Expectations JSON, edit by hand)",
        highlight=False,
    )


@dataset_app.command("list")
@reports_errors
def dataset_list(as_json: JsonOpt = False) -> None:
    """List the registered datasets."""
    from mlops_core.adapters.catalog import DatasetCatalog

    names = DatasetCatalog(settings()).names()
    if as_json:
        emit_json(names)
    elif names:
        out.print("\n".join(names), highlight=False)
    else:
        out.print("no datasets registered yet (see `mlops dataset add --help`)")


# --------------------------------------------------------------------------- batches


@app.command()
@reports_errors
def submit(
    file: Annotated[Path, typer.Argument(help="The batch file (parquet or CSV).")],
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    reference: ReferenceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land a batch in the landing zone under its sha256 (a duplicate is recognised, not landed twice)."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.spec import check_dataset_name

    current = settings()
    if dataset is not None:
        check_dataset_name(dataset)
    registered = DatasetCatalog(current).resolve(dataset, spec, reference)
    receipt = LandingZone(current).submit(file, registered.name)
    announced = _announce(current, receipt, "batch")
    if as_json:
        emit_json(
            {"duplicate": receipt.duplicate, "announced": announced, **_entry_dict(receipt.entry)}
        )
    else:
        out.print(receipt.describe(), highlight=False, soft_wrap=True)
        _say_announced(announced, "batch", receipt.duplicate)


def _announce(current: Settings, receipt: Any, kind: str) -> str | None:
    """Emit the arrival event when a Prefect server listens; the API URL used, or None."""
    if receipt.duplicate:
        return None
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    from mlops_core.adapters.announce import announce

    announce(receipt.entry, kind)
    return url


def _say_announced(url: str | None, kind: str, duplicate: bool) -> None:
    if duplicate:
        return
    event = "mlops.batch.arrived" if kind == "batch" else "mlops.labels.arrived"
    if url:
        out.print(f"announced {event} to {url}", highlight=False)
    else:
        out.print(
            "no Prefect server is listening (no `mlops up`, PREFECT_API_URL unset): the file "
            "waits in the landing zone; `mlops reconcile` or the next `mlops up` processes it",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
@reports_errors
def labels(
    file: Annotated[Path, typer.Argument(help="Labels: a table with the id and label columns.")],
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land delayed labels (id + label per row) and emit mlops.labels.arrived."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.labels import label_columns

    current = settings()
    name = _dataset_name(dataset)
    label_columns(DatasetCatalog(current).get(name).spec)  # a spec without id/target: refuse now
    receipt = LandingZone(current, "labels").submit(file, name)
    announced = _announce(current, receipt, "labels")
    if as_json:
        emit_json(
            {"duplicate": receipt.duplicate, "announced": announced, **_entry_dict(receipt.entry)}
        )
    else:
        out.print(receipt.describe(), highlight=False, soft_wrap=True)
        _say_announced(announced, "labels", receipt.duplicate)


@app.command()
@reports_errors
def reconcile(
    dataset: Annotated[
        str | None, typer.Option(help="The dataset to sweep (default: every dataset).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Process, exactly once, landed batches and labels that nothing processed (or that crashed)."""
    from mlops_core.adapters.catalog import DatasetCatalog

    current = settings()
    if dataset is not None:
        _dataset_name(dataset)
        DatasetCatalog(current).get(dataset)

    from flows.reconcile import reconcile as reconcile_flow

    done = reconcile_flow(dataset=dataset or "all")
    failed = [item for item in done if item.get("error")]
    if as_json:
        emit_json(done)
    else:
        if not done:
            out.print("nothing to reconcile: every landed file is settled or being processed")
        for item in done:
            note = " (already settled by another run)" if item["already_settled"] else ""
            if item.get("error"):
                note = f" ({item['error']})"
            out.print(
                f"{item['dataset']} {item['kind']} {item['sha256'][:12]}: {item['state']}"
                f"{', decision ' + item['decision'] if item['decision'] else ''}{note}",
                highlight=False,
                soft_wrap=True,
            )
    if failed:
        raise typer.Exit(1)


@app.command()
@reports_errors
def up(
    mlflow_ui: Annotated[
        bool, typer.Option("--mlflow-ui", help="Also start the MLflow UI on the same store.")
    ] = False,
    default_runner: Annotated[
        bool,
        typer.Option("--default-runner", help="Serve with prefect.serve's defaults (slower)."),
    ] = False,
) -> None:
    """Start the stack: Prefect server, served deployments + automations, watcher (Ctrl-C stops)."""
    import signal
    import threading

    from mlops_cli.stack import Stack
    from mlops_core.adapters.stack_state import healthy, read_state

    current = settings()
    running = read_state(current)
    if running is not None and healthy(running.prefect_api_url):
        raise MlopsError(
            f"a stack is already running for {current.home} (Prefect UI {running.prefect_ui_url}, "
            f"started by process {running.owner_pid})",
            hint="use it, or stop it with Ctrl-C in its terminal",
        )
    stack = Stack(
        current,
        mlflow_ui=mlflow_ui,
        default_runner=default_runner,
        log=lambda text: out.print(text, highlight=False, soft_wrap=True),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        state = stack.start()
        out.print("[bold green]ready[/bold green]", highlight=False)
        out.print(f"Prefect UI:  {state.prefect_ui_url}", highlight=False)
        out.print(f"Prefect API: {state.prefect_api_url}", highlight=False)
        if state.mlflow_ui_url:
            out.print(f"MLflow UI:   {state.mlflow_ui_url}", highlight=False)
        out.print(f"inbox:       {current.inbox}/<dataset>/  (labels: .../<dataset>/labels/)")
        out.print("stop with Ctrl-C", highlight=False)
        while not stopping.wait(0.5):
            for child in stack.dead():
                raise MlopsError(
                    f"{child.name} stopped unexpectedly (exit code {child.process.returncode})",
                    hint=f"see its log: {child.log}; the rest of the stack is stopped too",
                )
    except KeyboardInterrupt:
        pass
    finally:
        out.print("stopping...", highlight=False)
        stack.stop()
        out.print("stopped: no process left behind", highlight=False)


@app.command()
@reports_errors
def validate(
    file: Annotated[Path, typer.Argument(help="The batch file (parquet or CSV).")],
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    reference: ReferenceOpt = None,
    as_json: JsonOpt = False,
    docs: Annotated[bool, typer.Option("--docs/--no-docs", help="Build Data Docs.")] = True,
) -> None:
    """Validate a file with the dataset's expectation suite. Exit 0 passed, 1 failed, 2 unusable."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.errors import SpecError
    from mlops_core.spec import DatasetSpec, check_dataset_name
    from mlops_core.validation import build_suite, load_suite, validate_file

    current = settings()
    if dataset is not None:
        check_dataset_name(dataset)
        registered = DatasetCatalog(current).get(dataset)
        data_spec, suite = registered.spec, load_suite(current, dataset)
    elif spec is not None and reference is not None:
        # An ad-hoc check: learn the suite from the reference in memory, register nothing.
        data_spec = DatasetSpec.from_yaml(spec)
        reference_table = DatasetCatalog(current).read_reference(reference)
        suite = build_suite(data_spec, reference_table, current)
    else:
        raise SpecError("give --dataset NAME, or --spec FILE with --reference FILE")
    report = validate_file(file, data_spec, suite, current, data_docs=docs)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_validation(report)
    raise typer.Exit(report.exit_code)


def print_validation(report: Any) -> None:
    colour = {"passed": "green", "failed": "red", "unusable": "red"}[report.verdict]
    if report.usable:
        line = f"[{colour}]{report.verdict}[/{colour}] {report.source}: {report.rows:,} rows, "
        line += f"{report.evaluated} expectations, {len(report.failures)} failed"
    else:
        line = f"[{colour}]{report.verdict}[/{colour}]: {report.error}"
    out.print(line, highlight=False, soft_wrap=True)
    if report.failures:
        table = Table("column", "problem", "observed", "expected", show_lines=False)
        for failure in report.failures:
            table.add_row(
                failure.column or "(table)", failure.kind, failure.observed, failure.expected
            )
        out.print(table)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if report.data_docs:
        out.print(f"Data Docs: {report.data_docs}", highlight=False, soft_wrap=True)


@app.command()
@reports_errors
def process(
    file: Annotated[Path, typer.Argument(help="The batch file (parquet or CSV).")],
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    reference: ReferenceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land a batch and run the batch flow on it right here (a plain Prefect flow call, no server)."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.spec import check_dataset_name

    current = settings()
    if dataset is not None:
        check_dataset_name(dataset)
    registered = DatasetCatalog(current).resolve(dataset, spec, reference)
    receipt = LandingZone(current).submit(file, registered.name)
    if not as_json:
        out.print(receipt.describe(), highlight=False, soft_wrap=True)

    from flows.process_batch import process_batch

    outcome = process_batch(dataset=registered.name, sha256=receipt.entry.sha256)
    if as_json:
        emit_json({"duplicate": receipt.duplicate, **outcome.__dict__})
    else:
        where = f"{outcome.state.value}: {outcome.location}"
        out.print(
            where + (f" ({outcome.reason})" if outcome.reason else ""),
            highlight=False,
            soft_wrap=True,
        )
        if outcome.drift is not None:
            out.print(f"drift: {_drift_line(outcome.drift)}", highlight=False, soft_wrap=True)
        if outcome.decision is not None:
            out.print(
                f"decision: [bold]{outcome.decision['action']}[/bold] -- "
                + "; ".join(outcome.decision["reasons"])
                + f"  (MLflow run {outcome.decision_run_id})",
                highlight=False,
                soft_wrap=True,
            )
        if outcome.retrain is not None:
            print_retrain(outcome.retrain)
    raise typer.Exit(0 if outcome.state.value == "processed" else 1)


def _drift_line(drift: dict[str, Any]) -> str:
    verdict = "yes" if drift["is_drift"] else "no"
    drivers = ", ".join(drift["drivers"][:4])
    return f"{verdict} (combined p={drift['p_value']:.3g})" + (
        f", drivers: {drivers}" if drivers else ""
    )


def print_retrain(outcome: dict[str, Any]) -> None:
    colour = {"promoted": "green", "refused": "yellow"}.get(outcome["status"], "red")
    version = f" v{outcome['version']}" if outcome.get("version") else ""
    out.print(
        f"retrain: [{colour}]{outcome['status']}[/{colour}]{version} -- {outcome['reason']}",
        highlight=False,
        soft_wrap=True,
    )
    gates = (outcome.get("gates") or {}).get("gates") or []
    if gates:
        table = Table(title="gates", title_justify="left")
        for column in ("gate", "threshold", "observed", "result"):
            table.add_column(column)
        for gate in gates:
            table.add_row(
                gate["name"],
                gate["threshold"],
                gate["observed"],
                "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]",
            )
        out.print(table)
    before, after = outcome.get("champion_before"), outcome.get("champion_after")
    out.print(
        f"champion: {'v' + before if before else 'none'} -> {'v' + after if after else 'none'}",
        highlight=False,
    )


# --------------------------------------------------------------------------- models


@app.command()
@reports_errors
def train(dataset: DatasetOpt = None, as_json: JsonOpt = False) -> None:
    """Train the first champion on the reference, or a challenger that must pass the gates.

    Runs the gated subflow ``retrain_evaluate_deploy`` right here (a plain Prefect flow call).
    Exit 0 when the new model became champion, 1 when a gate refused it or training failed.
    """
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = _dataset_name(dataset)
    DatasetCatalog(current).get(name)
    before = ModelRegistry(current, name).aliases()
    reason = (
        "requested by `mlops train`: first champion from the reference"
        if "champion" not in before
        else "requested by `mlops train`: a challenger through the gates"
    )
    run_id = record_manual(current, name, "retrain", reason=reason, before=before)
    if not as_json:
        out.print(f"{reason} (decision run {run_id})", highlight=False, soft_wrap=True)

    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy

    outcome = retrain_evaluate_deploy(dataset=name, decision_run_id=run_id)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        print_retrain(outcome.to_dict())
    raise typer.Exit(0 if outcome.status == "promoted" else 1)


@app.command()
@reports_errors
def promote(
    dataset: DatasetOpt = None,
    version: Annotated[
        str | None, typer.Option(help="The version to promote (default: the challenger).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a version champion by hand (the old champion becomes previous); recorded as a decision."""
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.registry import CHALLENGER, ModelRegistry

    current = settings()
    name = _dataset_name(dataset)
    registry = ModelRegistry(current, name)
    before = registry.aliases()
    target = version or before.get(CHALLENGER)
    if target is None:
        raise MlopsError(
            f"dataset {name!r} has no challenger to promote",
            hint="name one with --version, or train one with `mlops train`",
        )
    if not target.isdigit() or not registry.has_version(target):
        raise MlopsError(f"dataset {name!r} has no model version {target!r}")
    after = registry.promote(target)
    run_id = record_manual(
        current, name, "promote", reason=f"v{target} promoted by hand", before=before, after=after
    )
    _report_move("promote", name, before, after, run_id, as_json)


@app.command()
@reports_errors
def rollback(dataset: DatasetOpt = None, as_json: JsonOpt = False) -> None:
    """Swap champion and previous by hand (one alias move); recorded as a decision."""
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = _dataset_name(dataset)
    registry = ModelRegistry(current, name)
    before = registry.aliases()
    after = registry.rollback()
    run_id = record_manual(
        current,
        name,
        "rollback",
        reason=f"rolled back by hand from v{before.get('champion')} to v{after.get('champion')}",
        before=before,
        after=after,
    )
    _report_move("rollback", name, before, after, run_id, as_json)


def _report_move(
    action: str,
    name: str,
    before: dict[str, str],
    after: dict[str, str],
    run_id: str,
    as_json: bool,
) -> None:
    from mlops_core import events
    from mlops_core.events import dataset_resource

    try:
        from prefect.events import emit_event

        event = events.MODEL_PROMOTED if action == "promote" else events.MODEL_ROLLED_BACK
        emit_event(
            event=event,
            resource=dataset_resource(name),
            payload={"before": before, "after": after, "manual": True},
        )
    except Exception:  # noqa: BLE001 -- no Prefect server: the MLflow record is the audit trail
        pass
    if as_json:
        emit_json({"dataset": name, "before": before, "after": after, "decision_run_id": run_id})
        return
    out.print(
        f"{name}: champion v{before.get('champion')} -> v{after.get('champion')}, "
        f"previous v{after.get('previous')} (recorded as decision run {run_id})",
        highlight=False,
    )


def _dataset_name(dataset: str | None) -> str:
    from mlops_core.spec import check_dataset_name

    if dataset is None:
        raise MlopsError("say which dataset with --dataset NAME", hint="see `mlops dataset list`")
    return check_dataset_name(dataset)


def _entry_dict(entry: Any) -> dict[str, Any]:
    return {
        "dataset": entry.dataset,
        "sha256": entry.sha256,
        "state": entry.state.value,
        "location": str(entry.location),
        "original_name": entry.original_name,
        "reason": entry.reason,
    }


# --------------------------------------------------------------------------- status


@app.command()
@reports_errors
def status(
    dataset: DatasetOpt = None,
    limit: Annotated[int, typer.Option(help="How many recent decisions to show.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Champion, challenger and previous model versions, rollout tags, and the latest decisions."""
    from mlops_core.adapters.audit import recent_decisions
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.batches import FINAL_STATES
    from mlops_core.spec import check_dataset_name

    current = settings()
    names = [check_dataset_name(dataset)] if dataset else DatasetCatalog(current).names()
    if dataset:
        DatasetCatalog(current).get(dataset)  # an unknown dataset is an error, not an empty status
    result = []
    for name in names:
        registry = ModelRegistry(current, name)
        aliases = registry.aliases()
        tags = registry.tags() if aliases else {}
        decisions = recent_decisions(current, name, limit)
        metrics = {}
        for role in aliases:
            found = registry.version_of(role)
            if found is not None:
                values = registry.run_metrics(found.run_id)
                metrics[role] = {
                    k: values[k] for k in ("holdout_accuracy", "training_seconds") if k in values
                }
        result.append(
            {
                "dataset": name,
                "models": aliases,
                "metrics": metrics,
                "rollout": {k: v for k, v in tags.items() if k.startswith("mlops.rollout")},
                "decisions": [d.__dict__ for d in decisions],
                "unfinished": [
                    {"kind": kind, **_entry_dict(entry)}
                    for kind in ("batch", "labels")
                    for entry in LandingZone(current, kind).entries(name)
                    if entry.state not in FINAL_STATES
                ],
            }
        )
    if as_json:
        emit_json(result)
        return
    if not result:
        out.print("no datasets registered yet (see `mlops dataset add --help`)")
    for entry in result:
        models = entry["models"]
        roles = ", ".join(
            f"{role} v{models[role]}"
            + (
                f" (accuracy {entry['metrics'][role]['holdout_accuracy']:.1%})"
                if "holdout_accuracy" in entry["metrics"].get(role, {})
                else ""
            )
            for role in ("champion", "challenger", "previous")
            if role in models
        )
        out.print(
            f"[bold]{entry['dataset']}[/bold]: {roles or 'no model yet (mlops train)'}",
            highlight=False,
        )
        for key, value in entry["rollout"].items():
            out.print(f"  {key} = {value}", highlight=False)
        for decision in entry["decisions"]:
            batch = decision["batch_sha256"][:12] or "-"
            out.print(
                f"  {decision['action']:<8} batch {batch}  {decision['reasons']}",
                highlight=False,
                soft_wrap=True,
            )
        for item in entry["unfinished"]:
            out.print(
                f"  {item['state']:<8} {item['kind']} {item['sha256'][:12]} ({item['original_name']})"
                + (f": {item['reason']}" if item["reason"] else ""),
                highlight=False,
                soft_wrap=True,
            )


# --------------------------------------------------------------------------- drift


@app.command()
@reports_errors
def drift(
    reference: Annotated[Path, typer.Argument(help="The reference table (parquet or CSV).")],
    current: Annotated[Path, typer.Argument(help="The batch to test (parquet or CSV).")],
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    as_json: JsonOpt = False,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when drift is found.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write PNG plots into this folder.")
    ] = None,
    false_alarm_rate: Annotated[
        float, typer.Option("--false-alarm-rate", min=0.0001, max=0.5, help="Family-wise rate.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the samples and permutations.")] = 0,
) -> None:
    """Test CURRENT against REFERENCE for drift: MMD, classifier and per-feature tests, one verdict.

    Exit 0 whether or not drift is found (1 with --fail-on-drift and drift), 2 for unusable input.
    """
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.data import read_table
    from mlops_core.errors import SpecError
    from mlops_core.spec import DatasetSpec, check_dataset_name

    current_settings = settings()
    if (dataset is None) == (spec is None):
        raise SpecError("give exactly one of --dataset NAME or --spec FILE")
    if dataset is not None:
        data_spec = DatasetCatalog(current_settings).get(check_dataset_name(dataset)).spec
    else:
        assert spec is not None
        data_spec = DatasetSpec.from_yaml(spec)
    limit = current_settings.max_batch_bytes
    reference_table = read_table(reference, max_bytes=limit)
    current_table = read_table(current, max_bytes=limit)

    from mlops_core.drift import DriftConfig, detect_drift

    config = DriftConfig(false_alarm_rate=false_alarm_rate, seed=seed)
    with err.status("testing for drift (MMD, classifier, per-feature) ..."):
        report = detect_drift(reference_table, current_table, data_spec, config)
    plots: list[Path] = []
    if plot is not None:
        from mlops_core.plots import plot_drift

        plots = plot_drift(report, reference_table, current_table, data_spec, plot, config=config)
    if as_json:
        emit_json({**report.to_dict(), "plots": [str(p) for p in plots]})
    else:
        print_drift(report)
        for path in plots:
            out.print(f"plot: {path}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if fail_on_drift and report.is_drift else 0)


def print_drift(report: Any) -> None:
    colour = "red" if report.is_drift else "green"
    verdict = "drift" if report.is_drift else "no drift"
    out.print(
        f"[{colour}]{verdict}[/{colour}]: combined p = {report.p_value:.3g} at a family-wise "
        f"false-alarm rate of {report.false_alarm_rate:g} (Holm over {len(report.tests)} tests); "
        f"reference {report.reference_rows:,} rows, batch {report.current_rows:,} rows",
        highlight=False,
        soft_wrap=True,
    )
    tests = Table("test", "p", "Holm p", "effect", "rows ref/batch", "drift")
    for test in report.tests:
        effect = (
            f"{test.effect_size:.3g} {test.effect_metric}" if test.effect_size is not None else ""
        )
        tests.add_row(
            test.name,
            f"{test.p_value:.3g}",
            f"{test.adjusted_p_value:.3g}",
            effect,
            f"{test.reference_rows:,}/{test.current_rows:,}",
            "yes" if test.is_drift else "no",
        )
    out.print(tests)
    if report.features:
        features = Table("feature", "test", "Bonferroni p", "effect", "metric", "drift")
        ranked = sorted(report.features, key=lambda f: -f.effect_size)
        for feature in ranked[:10]:
            features.add_row(
                feature.feature,
                feature.test,
                f"{feature.adjusted_p_value:.3g}",
                f"{feature.effect_size:.3f}",
                feature.effect_metric,
                "yes" if feature.is_drift else "no",
            )
        out.print(features)


# --------------------------------------------------------------------------- demo


@app.command()
@reports_errors
def serve(
    dataset: DatasetOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """The model server alone: follows the registry's champion (and challenger during a rollout)."""
    import uvicorn

    from mlops_core.serving import create_app

    current = settings()
    application = create_app(current, dataset)
    bind, listen = host or current.serve_host, port or current.serve_port
    out.print(
        f"serving {application.title.split(': ')[-1]} on http://{bind}:{listen} "
        f"(docs at /docs, metrics at /metrics)",
        highlight=False,
    )
    uvicorn.run(application, host=bind, port=listen, log_level="warning")


@app.command()
@reports_errors
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the scenario stream.")] = 7,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch.")] = 2_000,
    reference_rows: Annotated[int, typer.Option(help="Rows of the reference table.")] = 10_000,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the stack up to explore (Ctrl-C stops).")
    ] = False,
    rows_json: Annotated[
        Path | None, typer.Option("--rows-json", help="Also write the per-batch rows as JSON.")
    ] = None,
) -> None:
    """The whole loop, live, through real Prefect events, on the built-in credit-risk stream."""
    from mlops_cli.demo import run_demo

    rows = run_demo(
        settings(),
        seed=seed,
        batch_rows=batch_rows,
        reference_rows=reference_rows,
        console=out,
        keep_running=keep_running,
    )
    if rows_json is not None:
        rows_json.write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    app()
