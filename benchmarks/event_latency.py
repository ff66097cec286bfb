"""Event-to-decision latency: submit -> mlops.batch.arrived -> trigger -> process_batch -> decision.

    .venv/bin/python benchmarks/event_latency.py [--batches 20]

One run, same machine, same batches (2,000 rows each, a new seed per batch): the stack of
``mlops up`` is started twice on a temporary MLOPS_HOME -- first with the tuned path (the warm
runner: 0.25 s poll, flows executed in the warm serving process), then with Prefect's defaults
(``prefect.serve``: 10 s poll, each run in a freshly spawned interpreter). Each batch is landed
and announced exactly as ``mlops submit`` does, and the clock stops when the ledger shows the
batch settled (the decision run is recorded just before). Batches are submitted one at a time.
Prints a table and writes ``benchmarks/results/event_latency.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import (
    CREDIT,
    add_credit_dataset,
    bench_home,
    print_table,
    promote_first_champion,
    write_results,
)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated between the two nearest ranks."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def submit_and_wait(zone: Any, path: Path, timeout: float = 300) -> tuple[str, float, float]:
    """Land and announce ``path`` as ``mlops submit`` does, then wait until the ledger shows it
    settled: its sha256, and the wall-clock times it was submitted and seen settled."""
    from mlops_core.adapters.announce import announce
    from mlops_core.batches import BatchState

    submitted = time.time()
    receipt = zone.submit(path, CREDIT)
    announce(receipt.entry, "batch")
    sha = receipt.entry.sha256
    while time.time() < submitted + timeout:
        entry = zone.get(CREDIT, sha)
        if entry is not None and entry.state in (BatchState.processed, BatchState.quarantined):
            return sha, submitted, time.time()
        time.sleep(0.02)
    raise RuntimeError(f"{path.name} was not processed within {timeout:.0f} s")


def run_mode(default_runner: bool, batches: list[Path]) -> list[float]:
    """Seconds from submit to settled for each of ``batches``, through a freshly started stack."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mlops_cli.stack import Stack
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.settings import Settings

    settings = Settings()
    stack = Stack(settings, default_runner=default_runner, log=lambda text: print(f"  {text}"))
    state = stack.start()
    zone = LandingZone(settings)
    latencies = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: state.prefect_api_url}):
            for path in batches:
                _, submitted, settled = submit_and_wait(zone, path)
                latencies.append(settled - submitted)
                print(f"  {path.name}: {latencies[-1]:.2f} s")
    finally:
        stack.stop()
    return latencies


def unlabelled_batches(home: Path, tag: str, count: int) -> list[Path]:
    """``count`` files of 2,000 fresh, stable-week applications without labels, under ``home``."""
    import numpy as np

    from mlops_cli.scenarios import generate_applications

    paths = []
    for i in range(count):
        rng = np.random.default_rng(hash((tag, i)) % 2**32)
        path = home / f"{tag}-{i:02d}.parquet"
        generate_applications(rng, 2_000, week=1).drop("default").write_parquet(path)
        paths.append(path)
    return paths


def main() -> None:
    """Measure both paths on the same kind of batches; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    home = bench_home("latency", {"MLOPS_PREFECT_PORT": "0"})

    from mlops_core.settings import Settings

    settings = Settings()
    add_credit_dataset(settings)
    promote_first_champion(settings)

    results: dict[str, dict[str, Any]] = {}
    for mode, default_runner in (("tuned (warm runner)", False), ("Prefect defaults", True)):
        print(f"{mode}:")
        latencies = run_mode(
            default_runner, unlabelled_batches(home, mode.split()[0], args.batches)
        )
        results[mode] = {
            "p50_seconds": round(statistics.median(latencies), 2),
            "p95_seconds": round(percentile(latencies, 0.95), 2),
            "min_seconds": round(min(latencies), 2),
            "max_seconds": round(max(latencies), 2),
            "batches": len(latencies),
            "latencies": [round(x, 3) for x in latencies],
        }
    rows = [
        [mode, r["batches"], r["p50_seconds"], r["p95_seconds"], r["min_seconds"], r["max_seconds"]]
        for mode, r in results.items()
    ]
    print(f"\n{args.batches} batches of 2,000 rows, one at a time, {os.cpu_count()} cores")
    print_table(["path", "batches", "p50 s", "p95 s", "min s", "max s"], rows)
    tuned, default = results["tuned (warm runner)"], results["Prefect defaults"]
    ratio = tuned["p50_seconds"] / default["p50_seconds"]
    print(
        f"tuned p50 / default p50 = {ratio:.2f}; tuned p50 {tuned['p50_seconds']} s, "
        f"p95 {tuned['p95_seconds']} s (targets: p50 <= 3 s, p95 <= 5 s)"
    )
    path = write_results(
        "event_latency",
        {
            "what": "submit -> event -> trigger -> process_batch -> decision recorded, 2,000-row "
            "unlabelled batches, one at a time",
            "results": results,
            "tuned_over_default_p50": round(ratio, 3),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
