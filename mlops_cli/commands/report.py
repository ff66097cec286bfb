"""A dataset's timeline from the command line: a table, JSON, or a self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops_cli.options import (
    DatasetOpt,
    JsonOpt,
    emit_json,
    err,
    out,
    reports_errors,
    required_dataset,
    settings,
)
from mlops_core.errors import MlopsError


@reports_errors
def report(
    dataset: DatasetOpt = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the self-contained HTML report (plots inline, a page per batch).",
            dir_okay=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The timeline of a dataset, batch by batch: validation, drift, accuracy, decision, outcome.

    Example: mlops report --dataset credit --html credit-timeline.html
    """
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.adapters.timeline_source import load_timeline

    current = settings()
    name = required_dataset(dataset)
    ctx = DatasetContext.open(current, name)  # an unknown dataset: UnknownDatasetError
    with err.status(f"reading the timeline of {name} ..."):
        timeline = load_timeline(ctx, plots=html is not None)
    if not timeline.rows:
        raise MlopsError(
            f"dataset {name!r} has no batches yet",
            hint=f"land one with `mlops submit FILE --dataset {name}`",
        )
    if html is not None:
        from mlops_core.timeline import timeline_html

        try:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(timeline_html(timeline), encoding="utf-8")
        except OSError as exc:
            raise MlopsError(
                f"cannot write {html}: {exc.strerror or exc}",
                hint="choose a file in a folder you can write to",
            ) from None
    if as_json:
        emit_json({**timeline.to_dict(), "html": str(html) if html else None})
        return
    _print_timeline(timeline.dataset, timeline.records())
    if html is not None:
        out.print(f"HTML report: {html}", highlight=False, soft_wrap=True)


def _print_timeline(dataset: str, records: list[dict[str, str]]) -> None:
    """Nothing returned: prints the timeline as a table, quarantined and promoted rows coloured."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{dataset}: {len(records)} batches, oldest first")
    for column in records[0]:
        # The file's name is how a person knows the batch: never cut, other columns wrap.
        table.add_column(column, no_wrap=column == "file")
    for record in records:
        style = None
        if record["validation"] != "passed":
            style = "red"
        elif record["outcome"].startswith("promoted"):
            style = "green"
        elif record["outcome"].startswith("retrain"):
            style = "yellow"
        # File names are the user's: cells are plain text, never read as rich markup.
        table.add_row(*(Text(value) for value in record.values()), style=style)
    out.print(table)
