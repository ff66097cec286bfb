"""How a batch's assessment and a labels file's join grow with the dataset's history.

    .venv/bin/python benchmarks/history.py [--sizes 25,100,200,400] [--rows 500]

Registers the credit dataset on a temporary MLOPS_HOME with a first champion, then grows its
history straight through the ledger (no flows): each step lands unlabelled batches of ``--rows``
applications and settles them as processed, each followed by a labels file holding that batch's
labels (as a model server's feedback log lands them). At each history size, in a new
``DatasetContext`` as a flow run opens one, it times the work that grows with history:

* ``assess`` of a new labelled batch (the batch flow's ``assess_batch``);
* ``rows_for_labels`` of a new labels file, then ``assess`` of the rows it labels (the labels
  flow's ``labelled_rows`` and ``assess_frame``).

Each is timed three times (median); the first call in a context is also reported, since a flow
run makes exactly one of each. Prints a table and writes ``benchmarks/results/history.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from common import (
    add_credit_dataset,
    bench_home,
    print_table,
    promote_first_champion,
    write_results,
)

CREDIT = "credit"


def grow(settings: Any, upto: int, have: int, rows: int, rng: np.random.Generator) -> None:
    """Land batches ``have``..``upto`` and their labels files, all settled as processed."""
    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.batches import BatchState

    batches, labels = LandingZone(settings), LandingZone(settings, kind="labels")
    folder = settings.home / "incoming"
    folder.mkdir(exist_ok=True)
    for i in range(have, upto):
        frame = generate_applications(rng, rows, week=1 + i // 50, id_prefix=f"H{i:05d}-")
        for zone, part, name in (
            (batches, frame.drop("default"), f"batch-{i:05d}.parquet"),
            (labels, frame.select("application_id", "default"), f"labels-{i:05d}.parquet"),
        ):
            path = folder / name
            part.write_parquet(path)
            receipt = zone.submit(path, CREDIT)
            zone.claim(CREDIT, receipt.entry.sha256)
            zone.settle(CREDIT, receipt.entry.sha256, BatchState.processed, {"benchmark": True})
            path.unlink()


def measure(settings: Any, rows: int, rng: np.random.Generator) -> dict[str, float]:
    """Seconds of each history-bound step, in a fresh context (first call, then median of 3)."""
    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.assessment import assess

    labelled_batch = generate_applications(rng, rows, week=40, id_prefix="NEW-")
    context = DatasetContext.open(settings, CREDIT)
    newest = context.batches.entries(CREDIT)[-1]
    frame = pl.read_parquet(context.batches.local_file(newest))
    labels_file = frame.select("application_id").with_columns(default=pl.lit(1, pl.Int64))

    def assess_batch() -> None:
        assess(context, labelled_batch, validation_passed=True, drift=None)

    def labels_join() -> None:
        joined = context.history.rows_for_labels(labels_file)
        assess(context, joined.frame, validation_passed=True, drift=None, exclude=joined.batches)

    out: dict[str, float] = {}
    for name, step in (
        ("assess a labelled batch", assess_batch),
        ("join a labels file", labels_join),
    ):
        times = []
        for _ in range(4):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        out[f"{name}: first"] = times[0]
        out[f"{name}: again"] = statistics.median(times[1:])
    return out


def main() -> None:
    """Grow the history step by step and time each step's history-bound work."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,100,200,400", help="history sizes (batches)")
    parser.add_argument("--rows", type=int, default=500, help="rows per batch")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    bench_home("history", prefect=False)
    from mlops_core.settings import Settings

    settings = Settings()
    rng = np.random.default_rng(0)
    add_credit_dataset(settings, rows=5_000)
    promote_first_champion(settings)
    results, have = [], 0
    for size in sizes:
        started = time.perf_counter()
        grow(settings, size, have, args.rows, rng)
        have = size
        print(
            f"history of {size} batches and {size} labels files ({time.perf_counter() - started:.0f} s to land)"
        )
        results.append({"batches": size, **measure(settings, args.rows, rng)})
    headers = ["history (batches + labels files)", *[k for k in results[0] if k != "batches"]]
    print_table(
        headers,
        [
            [f"{r['batches']} + {r['batches']}", *[f"{r[k]:.2f} s" for k in headers[1:]]]
            for r in results
        ],
    )
    path = write_results("history", {"rows_per_batch": args.rows, "results": results}, out=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
