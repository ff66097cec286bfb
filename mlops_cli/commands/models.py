"""The models of a dataset from the command line: train, promote, rollback, and serve them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mlops_cli.options import (
    DatasetOpt,
    JsonOpt,
    emit_json,
    out,
    reports_errors,
    required_dataset,
    settings,
)
from mlops_cli.render import print_retrain
from mlops_core.errors import MlopsError
from mlops_core.tags import CHALLENGER, CHAMPION, PREVIOUS

if TYPE_CHECKING:
    from mlops_core.outcomes import RetrainOutcome


GateOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--gate-only",
        help="Train a challenger and judge it at the gates against the champion, recorded in "
        "MLflow as usual, but move no alias and record no decision (a CI check).",
    ),
]


@reports_errors
def train(
    dataset: DatasetOpt = None, gate_only: GateOnlyOpt = False, as_json: JsonOpt = False
) -> None:
    """Train the first champion on the reference, or a challenger that must pass the gates.

    Runs the gated subflow here and prints the gate table (--json: the outcome, with "gates").

    Exit 0 promoted (--gate-only: every gate passed), 1 refused by a gate (or its rollout),
    2 an error: usage, unknown dataset, bad setting, or training or MLflow failed.
    """
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = required_dataset(dataset)
    DatasetCatalog(current).get(name)
    registry = ModelRegistry(current, name)
    before = registry.aliases()
    run_id: str | None = None
    if gate_only:
        # A check, not a decision: no decision run, so a CI job's verdicts never reach the
        # policy's record of retrains (its cooldown, its past recoveries).
        reason = (
            "requested by `mlops train --gate-only`: a challenger judged against "
            + (f"champion v{before[CHAMPION]}" if CHAMPION in before else "no champion")
            + "; no alias moves"
        )
    else:
        reason = (
            "requested by `mlops train`: first champion from the reference"
            if CHAMPION not in before
            else "requested by `mlops train`: a challenger through the gates"
        )
        run_id = record_manual(registry, "retrain", reason=reason, before=before)
    if not as_json:
        recorded = f" (decision run {run_id})" if run_id else ""
        out.print(f"{reason}{recorded}", highlight=False, soft_wrap=True)

    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy

    outcome = retrain_evaluate_deploy(dataset=name, decision_run_id=run_id, gate_only=gate_only)
    result = {**outcome.to_dict(), "dataset": name, "gate_only": gate_only}
    if as_json:
        emit_json(result)
    else:
        print_retrain(result)
    raise typer.Exit(train_exit_code(outcome, gate_only=gate_only))


def train_exit_code(outcome: RetrainOutcome, *, gate_only: bool) -> int:
    """0 promoted (gate-only: every gate passed), 1 refused by a gate or a rollout, 2 nothing
    judged because a stage failed (the champion stays, the reason says which stage)."""
    from mlops_core.outcomes import RetrainStatus

    if outcome.status is RetrainStatus.failed:
        return 2
    if gate_only:
        return 0 if outcome.gates is not None and outcome.gates.passed else 1
    return 0 if outcome.status is RetrainStatus.promoted else 1


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
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = required_dataset(dataset)
    registry = ModelRegistry(current, name)
    with registry.moves():  # what it read is what it moves: no rollout step in between
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
        registry, "promote", reason=f"v{target} promoted by hand", before=before, after=after
    )
    _report_move("promote", name, before, after, run_id, as_json)


@reports_errors
def rollback(dataset: DatasetOpt = None, as_json: JsonOpt = False) -> None:
    """Swap champion and previous by hand (one alias move); recorded as a decision."""
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = required_dataset(dataset)
    registry = ModelRegistry(current, name)
    with registry.moves():  # what it read is what it moves: no rollout step in between
        before = registry.aliases()
        after = registry.rollback()
    run_id = record_manual(
        registry,
        "rollback",
        reason=f"rolled back by hand from v{before.get(CHAMPION)} to v{after.get(CHAMPION)}",
        before=before,
        after=after,
    )
    _report_move("rollback", name, before, after, run_id, as_json)


@reports_errors
def serve(
    dataset: DatasetOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Worker processes behind the one address (default 1; 0: one per core)."
        ),
    ] = None,
) -> None:
    """The model server alone: follows the registry's champion (and challenger during a rollout)."""
    import os

    from mlops_core.serving.state import ServerState

    current = settings()
    bind, listen = host or current.serve_host, port or current.serve_port
    count = current.serve_workers if workers is None else workers
    count = count or os.cpu_count() or 1
    name = ServerState.for_dataset(current, dataset, follow=False, log_traffic=False).dataset
    many = f", {count} workers" if count > 1 else ""
    out.print(
        f"serving {name} on http://{bind}:{listen}{many} (docs at /docs, metrics at /metrics)",
        highlight=False,
    )
    from mlops_core.adapters.scrape_targets import announced

    # Announced to the Prometheus of `mlops up --prometheus` (file discovery) while it serves.
    with announced(current, "mlops-model-server", f"{bind}:{listen}"):
        if count > 1:
            from mlops_core.serving.workers import Supervisor

            try:
                code = Supervisor(count, bind, listen, name, log=lambda line: out.print(line)).run()
            except OSError as exc:
                raise MlopsError(
                    f"cannot listen on {bind}:{listen}: {exc.strerror or exc}",
                    hint="stop what uses that port, or choose another with --port",
                ) from exc
            if code:
                raise typer.Exit(code)
            return
        import signal
        import sys

        import uvicorn

        from mlops_core.serving import create_app

        # uvicorn shuts down gracefully on SIGTERM, then raises it again: leave through Python
        # then, so the announced scrape target is removed.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(create_app(current, name), host=bind, port=listen, log_level="warning")


def _report_move(
    action: str,
    name: str,
    before: dict[str, str],
    after: dict[str, str],
    run_id: str,
    as_json: bool,
) -> None:
    """Nothing returned: announces a manual alias move as a Prefect event and prints it."""
    _announce_move(action, name, before, after)
    if as_json:
        emit_json({"dataset": name, "before": before, "after": after, "decision_run_id": run_id})
        return
    out.print(
        f"{name}: champion v{before.get(CHAMPION)} -> v{after.get(CHAMPION)}, "
        f"previous v{after.get(PREVIOUS)} (recorded as decision run {run_id})",
        highlight=False,
    )


def _announce_move(action: str, name: str, before: dict[str, str], after: dict[str, str]) -> None:
    """Nothing returned: emits mlops.model.promoted or mlops.model.rolled_back, when it can."""
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
