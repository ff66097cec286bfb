"""The gated subflow's stages on a 100k-row training window: wall time per stage and peak memory.

    .venv/bin/python benchmarks/retrain.py [--rows 100000]

A temporary MLOPS_HOME holds the credit dataset (reference 20,000 rows) and ten processed,
labelled batches; the training window is set to their newest rows so it holds ``--rows`` rows.
Each stage is the same ``mlops_core.challenger`` call the subflow's task makes; the last line runs
the whole subflow (``retrain_evaluate_deploy``, a plain Prefect flow call) end to end.
Prints a table and writes ``benchmarks/results/retrain.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from common import (
    CREDIT,
    add_credit_dataset,
    bench_home,
    peak_rss_mib,
    print_table,
    promote_first_champion,
    write_results,
)

if TYPE_CHECKING:
    import numpy as np

    from mlops_core.challenger import Challenger, TrainingData
    from mlops_core.evaluation import GateReport
    from mlops_core.outcomes import RetrainOutcome
    from mlops_core.settings import Settings

Value = TypeVar("Value")


class Stages:
    """Each measured stage's wall time and the process's peak RSS after it, as rows and JSON."""

    def __init__(self) -> None:
        self.rows: list[list[object]] = []
        self.results: dict[str, dict[str, float]] = {}

    def measure(self, name: str, call: Callable[[], Value]) -> Value:
        """What ``call`` returned; its seconds and the peak RSS so far are recorded as ``name``."""
        started = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - started
        self.results[name] = {
            "seconds": round(seconds, 3),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
        self.rows.append([name, f"{seconds:.2f}", f"{peak_rss_mib():,.0f}"])
        return value


@dataclass(frozen=True)
class Measured:
    """What the measured stages produced: the window, the challenger, its gates, the subflow."""

    data: TrainingData
    challenger: Challenger
    report: GateReport
    outcome: RetrainOutcome


def land_processed_batches(
    settings: Settings, home: Path, rng: np.random.Generator, batches: int, rows: int
) -> None:
    """Land ``batches`` labelled batches of ``rows`` rows, each settled as processed."""
    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.batches import BatchState

    zone = LandingZone(settings)
    for week in range(1, batches + 1):
        path = home / f"batch-{week}.parquet"
        generate_applications(rng, rows, week=week).write_parquet(path)
        sha = zone.submit(path, CREDIT).entry.sha256
        zone.claim(CREDIT, sha)
        zone.settle(CREDIT, sha, BatchState.processed, {})


def measure_stages(settings: Settings, stages: Stages) -> Measured:
    """The window, the challenger, its gate report and the subflow's outcome, each stage timed."""
    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.challenger import gate_challenger, gather_training_data, train_challenger

    # Each stage opens its own context, as each call resolved the dataset before the context
    # existed: the stages go on measuring the same work.
    def context() -> DatasetContext:
        return DatasetContext.open(settings, CREDIT)

    data = stages.measure("gather window", lambda: gather_training_data(context()))
    challenger = stages.measure(
        "train + log + register",
        lambda: train_challenger(context(), data, batch_sha256="", parent_run_id=None),
    )
    report = stages.measure(
        "gates (GX on window + 9 gates)",
        lambda: gate_challenger(context(), challenger, data),
    )
    stages.measure(
        "promote (alias moves)",
        lambda: ModelRegistry(settings, CREDIT).promote(challenger.version),
    )
    stages.measure(
        "whole subflow, cold (starts Prefect)", lambda: retrain_evaluate_deploy(dataset=CREDIT)
    )
    outcome = stages.measure(
        "whole subflow, warm (Prefect flow call)", lambda: retrain_evaluate_deploy(dataset=CREDIT)
    )
    return Measured(data, challenger, report, outcome)


def main() -> None:
    """Set up the window, measure every stage; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="training window rows")
    args = parser.parse_args()
    home = bench_home("retrain")
    batches, batch_rows = 10, args.rows // 8  # a window of --rows rows after the gate holdout

    import numpy as np

    from mlops_core.settings import Settings

    rng = np.random.default_rng(0)
    settings = Settings(train_recent_rows=int(args.rows * 0.8), train_older_rows=args.rows // 5)
    os.environ["MLOPS_TRAIN_RECENT_ROWS"] = str(settings.train_recent_rows)
    os.environ["MLOPS_TRAIN_OLDER_ROWS"] = str(settings.train_older_rows)
    add_credit_dataset(settings, rows=20_000, rng=rng)
    land_processed_batches(settings, home, rng, batches, batch_rows)
    promote_first_champion(settings)  # a first champion to gate against (not measured)

    stages = Stages()
    measured = measure_stages(settings, stages)
    data, challenger = measured.data, measured.challenger
    print(
        f"\nwindow {data.window.height:,} rows, gate holdout {data.gate_holdout.height:,} rows, "
        f"fit {challenger.seconds:.2f} s, gates {'passed' if measured.report.passed else 'failed'}; "
        f"subflow outcome: {measured.outcome.status}"
    )
    print_table(["stage", "seconds", "peak RSS MiB"], stages.rows)
    path = write_results(
        "retrain",
        {
            "window_rows": data.window.height,
            "gate_holdout_rows": data.gate_holdout.height,
            "fit_seconds": round(challenger.seconds, 3),
            "stages": stages.results,
            "note": "peak RSS is the process maximum so far (monotonic); the cold subflow "
            "includes starting Prefect's temporary server; the booster stops early "
            "(scikit-learn's default above 10,000 rows)",
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
