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

out = Console()
err = Console(stderr=True)
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
    from mlops_core.catalog import DatasetCatalog
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
    from mlops_core.catalog import DatasetCatalog

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
    from mlops_core.catalog import DatasetCatalog
    from mlops_core.landing import LandingZone
    from mlops_core.spec import check_dataset_name

    current = settings()
    if dataset is not None:
        check_dataset_name(dataset)
    registered = DatasetCatalog(current).resolve(dataset, spec, reference)
    receipt = LandingZone(current).submit(file, registered.name)
    if as_json:
        emit_json({"duplicate": receipt.duplicate, **_entry_dict(receipt.entry)})
    else:
        out.print(receipt.describe(), highlight=False, soft_wrap=True)


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
    from mlops_core.catalog import DatasetCatalog
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
        from mlops_core.data import read_table

        data_spec = DatasetSpec.from_yaml(spec)
        try:
            reference_table = read_table(reference, max_bytes=current.max_batch_bytes)
        except MlopsError as exc:
            raise SpecError(f"reference {exc}") from None
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
    from mlops_core.catalog import DatasetCatalog
    from mlops_core.landing import LandingZone
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
    raise typer.Exit(0 if outcome.state.value == "processed" else 1)


def _entry_dict(entry: Any) -> dict[str, Any]:
    return {
        "dataset": entry.dataset,
        "sha256": entry.sha256,
        "state": entry.state.value,
        "location": str(entry.location),
        "original_name": entry.original_name,
        "reason": entry.reason,
    }


# --------------------------------------------------------------------------- demo


@app.command()
@reports_errors
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the scenario stream.")] = 7,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch.")] = 2_000,
    reference_rows: Annotated[int, typer.Option(help="Rows of the reference table.")] = 10_000,
) -> None:
    """Run the loop on the built-in credit-risk stream: register, submit, validate, settle every batch."""
    from mlops_cli.demo import run_demo

    run_demo(
        settings(), seed=seed, batch_rows=batch_rows, reference_rows=reference_rows, console=out
    )


if __name__ == "__main__":  # pragma: no cover
    app()
