"""The gated subflow's stages on a 100k-row training window: wall time per stage and peak memory.

    .venv/bin/python benchmarks/retrain.py [--rows 100000]

A temporary MLOPS_HOME holds the credit dataset (reference 20,000 rows) and ten processed,
labelled batches; the training window is set to their newest rows so it holds ``--rows`` rows.
Each stage is the same ``mlops_core.lifecycle`` call the subflow's task makes; the last line runs
the whole subflow (``retrain_evaluate_deploy``, a plain Prefect flow call) end to end.
Prints a table and writes ``benchmarks/results/retrain.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import peak_rss_mib, print_table, write_results

HOME = Path(tempfile.mkdtemp(prefix="mlops-bench-retrain-"))
os.environ.update(
    MLOPS_HOME=str(HOME),
    MLOPS_GX_DIR=str(HOME / "great_expectations"),
    PREFECT_HOME=str(HOME / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
    GX_ANALYTICS_ENABLED="false",
    MLFLOW_LOGGING_LEVEL="WARNING",
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="training window rows")
    args = parser.parse_args()
    batches, batch_rows = 10, args.rows // 8  # a window of --rows rows after the gate holdout

    import numpy as np

    from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.batches import BatchState
    from mlops_core.lifecycle import gate_challenger, gather_training_data, train_challenger
    from mlops_core.settings import Settings

    rng = np.random.default_rng(0)
    reference = HOME / "reference.parquet"
    generate_applications(rng, 20_000).write_parquet(reference)
    settings = Settings(train_recent_rows=int(args.rows * 0.8), train_older_rows=args.rows // 5)
    os.environ["MLOPS_TRAIN_RECENT_ROWS"] = str(settings.train_recent_rows)
    os.environ["MLOPS_TRAIN_OLDER_ROWS"] = str(settings.train_older_rows)
    DatasetCatalog(settings).add(CREDIT_SPEC, reference)
    zone = LandingZone(settings)
    for week in range(1, batches + 1):
        path = HOME / f"batch-{week}.parquet"
        generate_applications(rng, batch_rows, week=week).write_parquet(path)
        sha = zone.submit(path, "credit").entry.sha256
        zone.claim("credit", sha)
        zone.settle("credit", sha, BatchState.processed, {})

    # A first champion to gate against (not measured).
    first = gather_training_data(settings, "credit", first_model=True)
    champion = train_challenger(settings, "credit", first)
    ModelRegistry(settings, "credit").promote(champion.version)

    rows: list[list[object]] = []
    results: dict[str, dict[str, float]] = {}

    def stage(name: str, call):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - started
        results[name] = {"seconds": round(seconds, 3), "peak_rss_mib": round(peak_rss_mib(), 1)}
        rows.append([name, f"{seconds:.2f}", f"{peak_rss_mib():,.0f}"])
        return value

    data = stage("gather window", lambda: gather_training_data(settings, "credit"))
    challenger = stage("train + log + register", lambda: train_challenger(settings, "credit", data))
    report = stage(
        "gates (GX on window + 9 gates)",
        lambda: gate_challenger(settings, "credit", challenger, data),
    )
    stage(
        "promote (alias moves)",
        lambda: ModelRegistry(settings, "credit").promote(challenger.version),
    )

    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy

    stage("whole subflow, cold (starts Prefect)", lambda: retrain_evaluate_deploy(dataset="credit"))
    outcome = stage(
        "whole subflow, warm (Prefect flow call)", lambda: retrain_evaluate_deploy(dataset="credit")
    )
    print(
        f"\nwindow {data.window.height:,} rows, gate holdout {data.gate_holdout.height:,} rows, "
        f"fit {challenger.seconds:.2f} s, gates {'passed' if report.passed else 'failed'}; "
        f"subflow outcome: {outcome.status}"
    )
    print_table(["stage", "seconds", "peak RSS MiB"], rows)
    path = write_results(
        "retrain",
        {
            "window_rows": data.window.height,
            "gate_holdout_rows": data.gate_holdout.height,
            "fit_seconds": round(challenger.seconds, 3),
            "stages": results,
            "note": "peak RSS is the process maximum so far (monotonic); the cold subflow "
            "includes starting Prefect's temporary server; the booster stops early "
            "(scikit-learn's default above 10,000 rows)",
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
