"""Throughput of the cluster stack, where a batch's time goes, and a capacity model.

    python benchmarks/cluster.py [--batches 12] [--workers 1,2]

For each worker count: the cluster stack on this machine (``mlops_cli.cluster.Cluster``: PostgreSQL,
Redis, moto's S3, the MLflow server, two Prefect APIs + services, a process work pool), the credit
dataset with a first champion, then ``--batches`` unlabelled 1,000-row batches submitted at once
(half announced to each API). Measured: wall time until the ledger says every batch is processed
(batches per minute), and per flow run, from Prefect's own records: event -> run created,
created -> running (the worker's poll and the process start), the run itself, and inside it
the time in validation, drift, performance, the MLflow writes and the ledger. The capacity model
at the end extrapolates those figures to 1,000 datasets with hourly batches. Writes
``benchmarks/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_home, print_table, write_results  # noqa: E402

DATASET = "credit"
# Where the time inside a run goes: task name prefixes by part.
PARTS = {
    "validation": ("validate_batch",),
    "drift": ("detect_batch_drift", "plot_batch_drift"),
    "performance": ("assess_batch", "decide_batch"),
    "mlflow writes": ("record_batch_decision", "publish_report"),
    "ledger": ("claim_batch", "settle_batch", "ledger_entry"),
    "open dataset": ("open_dataset",),
}


def _parse(stamp: str | None) -> float | None:
    return None if not stamp else datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_records(api: str) -> list[dict[str, Any]]:
    """Every process-batch flow run with its task runs' durations, from the Prefect API."""
    import httpx

    with httpx.Client(base_url=api, timeout=30) as client:
        runs = client.post(
            "/flow_runs/filter",
            json={"flows": {"name": {"any_": ["process-batch"]}}, "limit": 200},
        ).json()
        records = []
        for run in runs:
            tasks = client.post(
                "/task_runs/filter",
                json={"flow_runs": {"id": {"any_": [run["id"]]}}, "limit": 200},
            ).json()
            by_part: dict[str, float] = defaultdict(float)
            for task in tasks:
                for part, prefixes in PARTS.items():
                    if task["name"].startswith(prefixes):
                        by_part[part] += float(task.get("total_run_time") or 0)
            records.append(
                {
                    "created": _parse(run["created"]),
                    "start": _parse(run.get("start_time")),
                    "end": _parse(run.get("end_time")),
                    "run_seconds": float(run.get("total_run_time") or 0),
                    "state": run.get("state_type"),
                    "parts": dict(by_part),
                    "tasks": len(tasks),
                }
            )
    return records


def mlflow_run_count(tracking_uri: str) -> int:
    """How many runs the dataset's experiment holds (the champion's training run included)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(DATASET)
    return len(client.search_runs([experiment.experiment_id], max_results=5000))


def one_setting(workers: int, batches: int) -> dict[str, Any]:
    """Start the cluster with ``workers`` workers, push ``batches`` through it, and measure."""
    from common import add_credit_dataset, promote_first_champion
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mlops_cli.cluster import BUCKET, Cluster
    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.announce import announce
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.batches import BatchState
    from mlops_core.settings import Settings

    home = bench_home(f"cluster-{workers}", prefect=False)
    settings = Settings(home=home, gx_dir=home / "gx")
    began = time.monotonic()
    cluster = Cluster(settings, workers=workers, log=lambda text: print(text, flush=True))
    cluster.start()
    startup = time.monotonic() - began
    try:
        assert cluster.postgres is not None and cluster.store is not None
        os.environ.update(cluster.store.environment())  # boto3 reads the store's keys from here
        client = settings.model_copy(
            update={
                "ledger_url": cluster.postgres.url("ledger"),
                "mlflow_tracking_uri": cluster.mlflow_url,
                "store_url": f"s3://{BUCKET}/store",
                "s3_endpoint_url": cluster.store.endpoint,
            }
        )
        add_credit_dataset(client, rows=6_000)
        promote_first_champion(client)
        files = []
        for i in range(batches):
            path = home / f"batch-{i:02d}.parquet"
            generate_applications(np.random.default_rng(700 + i), 1_000, week=3).drop(
                "default"
            ).write_parquet(path)
            files.append(path)
        barrier = threading.Barrier(len(files))
        sent_at: dict[str, float] = {}

        def send(item: tuple[int, Path]) -> str:
            index, path = item
            barrier.wait()
            entry = LandingZone(client).submit(path, DATASET).entry
            with temporary_settings(updates={PREFECT_API_URL: cluster.api_urls[index % 2]}):
                announce(entry)
            sent_at[entry.sha256] = time.time()
            return entry.sha256

        started = time.monotonic()
        with ThreadPoolExecutor(len(files)) as pool:
            shas = list(pool.map(send, enumerate(files)))
        zone = LandingZone(client)
        while True:
            done = sum(
                (e := zone.get(DATASET, s)) is not None and e.state is BatchState.processed
                for s in shas
            )
            print(f"  {workers} worker(s): {done}/{len(shas)} processed", flush=True)
            if done == len(shas) or time.monotonic() - started > 1800:
                break
            time.sleep(5)
        wall = time.monotonic() - started
        records = [r for r in run_records(cluster.api_urls[0]) if r["state"] == "COMPLETED"]
        mlflow_runs = mlflow_run_count(client.tracking_uri)
    finally:
        cluster.stop()
        if cluster.postgres is not None and cluster.postgres.folder.parent.name.startswith(
            "mlops-postgres-"
        ):  # PostgreSQL's data went to /tmp (a private home, as root): it was ours alone
            import shutil

            shutil.rmtree(cluster.postgres.folder.parent, ignore_errors=True)
    first_event = min(sent_at.values())
    to_created = [r["created"] - first_event for r in records if r["created"]]
    to_running = [r["start"] - r["created"] for r in records if r["start"] and r["created"]]
    parts = {part: statistics.mean(r["parts"].get(part, 0.0) for r in records) for part in PARTS}
    return {
        "workers": workers,
        "batches": batches,
        "processed": done,
        "startup_seconds": round(startup, 1),
        "wall_seconds": round(wall, 1),
        "batches_per_minute": round(60 * done / wall, 2),
        "event_to_run_created_s": round(statistics.median(to_created), 2) if to_created else None,
        "created_to_running_s": round(statistics.median(to_running), 2) if to_running else None,
        "run_seconds_mean": round(statistics.mean(r["run_seconds"] for r in records), 2)
        if records
        else None,
        "parts_seconds_mean": {k: round(v, 2) for k, v in parts.items()},
        "task_runs_per_batch": round(statistics.mean(r["tasks"] for r in records), 1)
        if records
        else None,
        "mlflow_runs_per_batch": round((mlflow_runs - 1) / max(done, 1), 2),
        "ledger_transactions_per_batch": 4,  # submit, claim, settle, and the flow's read of its row
    }


def capacity(results: list[dict[str, Any]], cores: int = 2) -> dict[str, Any]:
    """1,000 datasets with hourly batches, from the measured figures (each stated, none guessed).

    The batches' cost is taken as core-seconds: the best throughput measured here, with every
    part of the stack on ``cores`` cores, so the figure is an upper bound on a worker's share."""
    best = max(results, key=lambda r: r["batches_per_minute"])
    core_seconds = 60 * cores / best["batches_per_minute"]
    demand = 1_000 / 60
    busy_cores = demand * core_seconds / 60
    return {
        "demand_batches_per_minute": round(demand, 1),
        "best_batches_per_minute_here": best["batches_per_minute"],
        "core_seconds_per_batch": round(core_seconds, 1),
        "worker_cores_busy": round(busy_cores, 1),
        "worker_cores_to_provision_at_70pct": int(np.ceil(busy_cores / 0.7)),
        "flow_runs_per_minute": round(demand, 1),
        "prefect_task_runs_per_minute": round(demand * (best["task_runs_per_batch"] or 0)),
        "mlflow_runs_per_minute": round(demand * best["mlflow_runs_per_batch"], 1),
        "ledger_transactions_per_minute": round(demand * best["ledger_transactions_per_batch"]),
        "saturates_first": "worker CPU: every flow run is a process forked from the worker's warm "
        "fork server, which reads the champion from MLflow and fits the drift detector before testing",
    }


def main() -> None:
    """Run each worker count, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--report", action="store_true", help="print the table and model from the last JSON only"
    )
    args = parser.parse_args()
    if args.report:
        import json

        from common import RESULTS

        results = json.loads((RESULTS / "cluster.json").read_text())["settings"]
    else:
        results = [one_setting(int(w), args.batches) for w in args.workers.split(",")]
    print_table(
        [
            "workers",
            "batches",
            "wall s",
            "batches/min",
            "event->created s",
            "created->running s",
            "run s",
            *PARTS,
        ],
        [
            [
                r["workers"],
                r["processed"],
                r["wall_seconds"],
                r["batches_per_minute"],
                r["event_to_run_created_s"],
                r["created_to_running_s"],
                r["run_seconds_mean"],
                *(r["parts_seconds_mean"][p] for p in PARTS),
            ]
            for r in results
        ],
    )
    model = capacity(results)
    for key, value in model.items():
        print(f"{key}: {value}")
    print(write_results("cluster", {"settings": results, "capacity": model}))


if __name__ == "__main__":
    main()
