"""Shared by the benchmarks: a temporary home and the credit dataset in it, a 20-column synthetic
table, fresh-process measurement, output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlops_core.spec import DatasetSpec, FeatureType  # noqa: E402

if TYPE_CHECKING:
    from mlops_core.settings import Settings

CREDIT = "credit"
# Telemetry off (nothing outside the machine is reached) and library chatter down to warnings.
QUIET_ENVIRONMENT = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
QUIET_PREFECT_ENVIRONMENT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
}

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


def draw_features(
    n: int,
    rng: np.random.Generator,
    numeric: list[str],
    categorical: list[str],
    change: dict[str, Any],
) -> dict[str, Any]:
    """``n`` rows of standard normal numerics and 4-level categoricals, one scenario's drift applied.

    ``change`` may hold ``correlation`` (x00 and x01 correlated, marginals still standard normal),
    ``mean_shift`` and ``scale`` (``(column, amount)``), ``shares`` (the first categorical's).
    """
    values = rng.normal(size=(n, len(numeric)))
    if "correlation" in change:
        rho = change["correlation"]
        values[:, 1] = rho * values[:, 0] + np.sqrt(1 - rho**2) * values[:, 1]
    if "mean_shift" in change:
        column, delta = change["mean_shift"]
        values[:, column] += delta
    if "scale" in change:
        column, factor = change["scale"]
        values[:, column] *= factor
    columns: dict[str, Any] = {name: values[:, i] for i, name in enumerate(numeric)}
    for i, name in enumerate(categorical):
        shares = change["shares"] if (i == 0 and "shares" in change) else LEVEL_SHARES
        columns[name] = np.array(LEVELS)[rng.choice(len(LEVELS), size=n, p=shares)]
    return columns


def table20(n: int, rng: np.random.Generator, **change: Any) -> pl.DataFrame:
    """``n`` rows of the 20-feature table; ``change`` applies one scenario's drift."""
    return pl.DataFrame(draw_features(n, rng, NUMERIC, CATEGORICAL, change))


def bench_home(
    name: str, environment: dict[str, str] | None = None, *, prefect: bool = True
) -> Path:
    """A fresh temporary ``MLOPS_HOME`` for benchmark ``name``, in force in this process's environment.

    Telemetry and chatter are off; with ``prefect`` Prefect keeps its own home there too (a
    benchmark never touches the user's Prefect state). ``environment`` adds the benchmark's own
    settings (``{"MLOPS_ROLLOUT_STEPS": "10,50,100"}``, ...).
    """
    home = Path(tempfile.mkdtemp(prefix=f"mlops-bench-{name}-"))
    os.environ.update(
        MLOPS_HOME=str(home), MLOPS_GX_DIR=str(home / "great_expectations"), **QUIET_ENVIRONMENT
    )
    if prefect:
        os.environ.update(PREFECT_HOME=str(home / "prefect"), **QUIET_PREFECT_ENVIRONMENT)
    os.environ.update(environment or {})
    return home


def add_credit_dataset(
    settings: Settings, *, rows: int = 10_000, rng: np.random.Generator | None = None
) -> pl.DataFrame:
    """The credit reference, registered: ``rows`` applications (seed 0 unless ``rng``) as a frame.

    It is written to ``<home>/reference.parquet`` and registered as the ``credit`` dataset
    (spec, reference, expectation suite).
    """
    from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
    from mlops_core.adapters.catalog import DatasetCatalog

    frame = generate_applications(rng if rng is not None else np.random.default_rng(0), rows)
    reference = settings.home / "reference.parquet"
    frame.write_parquet(reference)
    DatasetCatalog(settings).add(CREDIT_SPEC, reference)
    return frame


def promote_first_champion(settings: Settings) -> str:
    """The version of a first champion, trained on the reference and promoted without the gates."""
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.challenger import gather_training_data, train_challenger

    context = DatasetContext.open(settings, CREDIT)
    first = gather_training_data(context, first_model=True)
    champion = train_challenger(context, first, batch_sha256="", parent_run_id=None)
    context.registry.promote(champion.version)
    return str(champion.version)


def in_fresh_process(script: Path, *args: str) -> dict[str, Any]:
    """Run ``script --child args`` in a new interpreter; it prints one JSON line last."""
    command = [sys.executable, str(script), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=dict(os.environ))
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Where ``payload`` was written as JSON, with the benchmark's name and the machine."""
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
    """Print ``rows`` under ``headers``, every column right-aligned to its widest cell."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
