"""How often one batch run resolves its dataset, and which project modules it enters.

    .venv/bin/python benchmarks/dataset_walk.py

One ``process_batch`` run on a 500-row batch, with a champion in place (so the batch is assessed),
under Prefect's test harness. Counted while it runs: spec lookups in the catalog, registry handles
(each holds one MLflow client), MLflow clients built (ours and MLflow's own), landing-zone handles;
and the project modules (``flows``, ``tasks``, ``mlops_core``) whose code runs, in first-entered
order. The counts are taken by wrapping the constructors in this process only: nothing is
replaced, every call goes through. Prints a table and writes ``benchmarks/results/dataset_walk.json``.
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np
from common import add_credit_dataset, bench_home, print_table, write_results

COUNTED = {
    "spec lookups (DatasetCatalog.get)": ("mlops_core.adapters.catalog", "DatasetCatalog", "get"),
    "registry handles (ModelRegistry)": (
        "mlops_core.adapters.registry",
        "ModelRegistry",
        "__init__",
    ),
    "MLflow clients built": ("mlflow.tracking", "MlflowClient", "__init__"),
    "landing-zone handles (LandingZone)": (
        "mlops_core.adapters.landing",
        "LandingZone",
        "__init__",
    ),
}


def count_calls(counts: collections.Counter[str]) -> None:
    """Count every call of the ``COUNTED`` methods into ``counts`` (each call still runs)."""
    import importlib

    for label, (module, cls_name, method) in COUNTED.items():
        cls = getattr(importlib.import_module(module), cls_name)
        original: Callable[..., Any] = getattr(cls, method)

        def counted(*args: Any, _original: Any = original, _label: str = label, **kw: Any) -> Any:
            counts[_label] += 1
            return _original(*args, **kw)

        setattr(cls, method, counted)


def entered_modules(run: Callable[[], Any]) -> tuple[Any, list[str]]:
    """``run()``'s result, and the project modules whose code ran, in first-entered order."""
    seen: dict[str, None] = {}

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        name = str(frame.f_globals.get("__name__", ""))
        if event == "call" and name.split(".")[0] in ("flows", "tasks", "mlops_core"):
            seen.setdefault(name, None)

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        result = run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return result, list(seen)


def main() -> None:
    """Run one batch through ``process_batch`` and report what it resolved and entered."""
    home = bench_home("dataset-walk", {"MLOPS_GATE_LATENCY_BUDGET_MS": "100000"})
    from prefect.testing.utilities import prefect_test_harness

    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.settings import Settings

    settings = Settings()
    add_credit_dataset(settings, rows=3_000)
    batch = home / "batch.parquet"
    generate_applications(np.random.default_rng(1), 500, week=1).write_parquet(batch)
    counts: collections.Counter[str] = collections.Counter()
    with prefect_test_harness(server_startup_timeout=120):
        from flows.process_batch import process_batch
        from flows.retrain_evaluate_deploy import retrain_evaluate_deploy

        retrain_evaluate_deploy(dataset="credit")  # a champion, so the batch is assessed
        sha256 = LandingZone(settings).submit(batch, "credit").entry.sha256
        count_calls(counts)
        outcome, modules = entered_modules(lambda: process_batch(dataset="credit", sha256=sha256))
    rows = [[label, counts[label]] for label in COUNTED]
    rows.append(["project modules entered", len(modules)])
    print_table(["per process_batch run", "count"], rows)
    path = write_results(
        "dataset_walk",
        {"counts": {r[0]: r[1] for r in rows}, "modules": modules, "state": str(outcome.state)},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
