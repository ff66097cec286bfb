"""Benchmark: Great Expectations validation of 10k, 100k and 1M-row batches of 20 columns.

Each size runs in a fresh process, so its peak RSS is its own. The time covers what
`mlops validate` does per file: read the file with polars, run the suite with GX, render Data Docs.
Targets on a 2-core machine: 1M rows in at most 15 s, peak RSS at most 3 GiB.

    .venv/bin/python benchmarks/validation.py [--sizes 10000 100000 1000000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlops_core.spec import DatasetSpec, FeatureType  # noqa: E402

NUMERIC = [f"x{i:02d}" for i in range(12)]
CATEGORICAL = [f"c{i}" for i in range(5)]
SPEC = DatasetSpec(
    name="bench",
    target="label",
    id="row_id",
    timestamp="event_time",
    features={
        **dict.fromkeys(NUMERIC, FeatureType.numeric),
        **dict.fromkeys(CATEGORICAL, FeatureType.categorical),
    },
)  # 12 numeric + 5 categorical + id + timestamp + label = 20 columns


def table(n: int, seed: int) -> pl.DataFrame:
    """``n`` rows of the 20-column table, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "row_id": np.arange(n, dtype=np.int64) + seed * 10_000_000,
        "event_time": (
            np.datetime64("2026-01-01", "ms")
            + rng.integers(0, 86_400_000 * 7, n).astype("timedelta64[ms]")
        ),
    }
    for i, name in enumerate(NUMERIC):
        columns[name] = rng.normal(i, 1 + i / 4, n)
    for i, name in enumerate(CATEGORICAL):
        levels = np.array([f"level_{k}" for k in range(4 + 3 * i)])
        columns[name] = levels[rng.integers(0, len(levels), n)]
    columns["label"] = rng.integers(0, 2, n)
    return pl.DataFrame(columns)


def measure(work: Path, batch: Path) -> dict[str, float]:
    """Run in a child process: validate one file like `mlops validate` does."""
    from mlops_core.adapters.gx_project import load_suite, validate_file
    from mlops_core.settings import Settings

    settings = Settings(home=work / "home", gx_dir=work / "gx")
    suite = load_suite(settings, SPEC.name)
    started = time.perf_counter()
    report = validate_file(batch, SPEC, suite, settings, data_docs=True)
    seconds = time.perf_counter() - started
    assert report.success, report.reasons()
    return {
        "rows": report.rows,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    """Validate each size in a fresh process; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "validation.json"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), Path(args.child[1]))))
        return

    from mlops_core.adapters.gx_project import save_suite
    from mlops_core.settings import Settings
    from mlops_core.validation import build_suite

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        work = Path(tmp)
        settings = Settings(home=work / "home", gx_dir=work / "gx")
        print("building the suite from a 100,000-row reference ...", flush=True)
        save_suite(build_suite(SPEC, table(100_000, seed=0), settings), settings)
        results = []
        for n in args.sizes:
            batch = work / f"batch-{n}.parquet"
            table(n, seed=n).write_parquet(batch)
            print(f"validating {n:,} rows in a fresh process ...", flush=True)
            env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
            command = [sys.executable, __file__, "--child", str(work), str(batch)]
            child = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            row = json.loads(child.stdout.strip().splitlines()[-1])
            row["rows_per_second"] = row["rows"] / row["seconds"]
            results.append(row)

    print()
    print(f"{'rows':>10}  {'seconds':>8}  {'rows/s':>10}  {'peak RSS MiB':>12}")
    for row in results:
        rate, rss = row["rows_per_second"], row["peak_rss_mib"]
        print(f"{row['rows']:>10,}  {row['seconds']:>8.2f}  {rate:>10,.0f}  {rss:>12,.0f}")
    payload = {
        "benchmark": "validation",
        "columns": 20,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "targets": {"1M_rows_seconds": 15, "peak_rss_mib": 3 * 1024},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
