"""Shared by the benchmarks: a 20-column synthetic table, fresh-process measurement, output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlops_core.spec import DatasetSpec, FeatureType  # noqa: E402

NUMERIC = [f"x{i:02d}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
LEVELS = ["a", "b", "c", "d"]
LEVEL_SHARES = [0.4, 0.3, 0.2, 0.1]
SPEC20 = DatasetSpec(
    name="bench20",
    features={
        **dict.fromkeys(NUMERIC, FeatureType.numeric),
        **dict.fromkeys(CATEGORICAL, FeatureType.categorical),
    },
)  # 16 numeric + 4 categorical = 20 features


def table20(n: int, rng: np.random.Generator, **change: Any) -> pl.DataFrame:
    """``n`` rows of the 20-feature table; ``change`` applies one scenario's drift."""
    values = rng.normal(size=(n, len(NUMERIC)))
    if "correlation" in change:  # x00 and x01 correlated, marginals still standard normal
        rho = change["correlation"]
        values[:, 1] = rho * values[:, 0] + np.sqrt(1 - rho**2) * values[:, 1]
    if "mean_shift" in change:
        column, delta = change["mean_shift"]
        values[:, column] += delta
    if "scale" in change:
        column, factor = change["scale"]
        values[:, column] *= factor
    columns: dict[str, Any] = {name: values[:, i] for i, name in enumerate(NUMERIC)}
    for i, name in enumerate(CATEGORICAL):
        shares = change["shares"] if (i == 0 and "shares" in change) else LEVEL_SHARES
        columns[name] = np.array(LEVELS)[rng.choice(len(LEVELS), size=n, p=shares)]
    return pl.DataFrame(columns)


def in_fresh_process(script: Path, *args: str) -> dict[str, Any]:
    """Run ``script --child args`` in a new interpreter; it prints one JSON line last."""
    command = [sys.executable, str(script), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=dict(os.environ))
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
