"""``mlops logs resubmit``: land the prediction and feedback rows the model server could not."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops_cli.options import JsonOpt, emit_json, err, out, reports_errors, settings

if TYPE_CHECKING:
    from mlops_core.serving.records import Resubmitted

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Say what would land and what would wait; change nothing.")
]


@reports_errors
def resubmit(dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Land the logged rows waiting in <home>/logs/dead-letter/; exit 1 while some still wait."""
    from mlops_core.serving import dead_letter
    from mlops_core.serving.records import resubmit as resubmit_file

    current = settings()
    folder = dead_letter.dead_letter_dir(current)
    results: list[Resubmitted] = []
    unreadable: dict[Path, str] = {}
    for path in dead_letter.files(current):
        try:
            results.append(resubmit_file(current, path, dry_run=dry_run))
        except OSError as exc:  # unreadable, or done/ not writable: say so, go on with the rest
            unreadable[path] = exc.strerror or str(exc)
    waiting = sum(r.waiting for r in results)
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "folder": str(folder),
                "files": [_as_json(r) for r in results],
                "unreadable": {str(path): problem for path, problem in unreadable.items()},
                "waiting": waiting,
            }
        )
    else:
        _print(folder, results, unreadable, dry_run=dry_run)
    if waiting or unreadable:
        raise typer.Exit(1)


def _as_json(result: Resubmitted) -> dict[str, object]:
    return {
        "file": str(result.file),
        "rows": result.rows,
        "landed": result.landed,
        "locations": list(result.locations),
        "waiting": result.kept,
        "done": str(result.done) if result.done else None,
    }


def _print(
    folder: Path, results: list[Resubmitted], unreadable: dict[Path, str], *, dry_run: bool
) -> None:
    if not results and not unreadable:
        out.print(f"nothing to resubmit: no dead-letter files in {folder}", highlight=False)
        return
    for r in results:
        line = f"{r.file.name}: {r.landed} of {r.rows} rows {'would land' if dry_run else 'landed'}"
        if r.locations:
            line += f" as {', '.join(r.locations)}"
        if r.done is not None:
            line += f"; {'their lines' if r.waiting else 'the file'} moved to {r.done}"
        out.print(line, highlight=False, soft_wrap=True)
        for reason, count in r.kept.items():
            rows = "1 row waits" if count == 1 else f"{count} rows wait"
            out.print(f"  {rows}: {reason}", highlight=False, soft_wrap=True)
    for path, problem in unreadable.items():
        err.print(f"mlops: {path}: could not be read or moved ({problem})", highlight=False)
    waiting = sum(r.waiting for r in results)
    if waiting:
        rows = "1 row waits" if waiting == 1 else f"{waiting} rows wait"
        out.print(
            f"{rows} in {folder}: fix what the reasons say, then run `mlops logs resubmit` again",
            highlight=False,
            soft_wrap=True,
        )
