"""``mlops dataset add`` and ``mlops dataset list``: what the other commands are told to use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops_cli.options import JsonOpt, emit_json, out, reports_errors, settings


@reports_errors
def add(
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


@reports_errors
def list_names(as_json: JsonOpt = False) -> None:
    """List the registered datasets."""
    from mlops_core.adapters.catalog import DatasetCatalog

    names = DatasetCatalog(settings()).names()
    if as_json:
        emit_json(names)
    elif names:
        out.print("\n".join(names), highlight=False)
    else:
        out.print("no datasets registered yet (see `mlops dataset add --help`)")
