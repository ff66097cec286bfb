"""The model server under load: throughput and latency against `mlflow models serve`, swaps under
load, and the split's accuracy.

    .venv/bin/python benchmarks/serving.py [--seconds 15] [--clients 8]

Same machine, same model (credit, trained on 10,000 rows), same load generator (``--clients``
threads, one single-record request at a time each, for ``--seconds``):

1. ``mlops serve`` with a canary split active (v2 at 25%) against ``mlflow models serve
   --env-manager local`` of v1 (FastAPI under uvicorn, ``/invocations``);
2. 10 promote/rollback cycles (alias moves + ``/admin/refresh``) under the same load: failed
   requests;
3. 10,000 requests with distinct routing keys at weight 0.25: the challenger's share; and 200 keys
   sent 5 times each: keys that ever changed variant.

Prints tables and writes ``benchmarks/results/serving.json``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import CREDIT, ROOT, add_credit_dataset, bench_home, print_table, write_results

if TYPE_CHECKING:
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.settings import Settings

ADMIN = {"Authorization": "Bearer bench-token"}
Body = Callable[[int, int], dict[str, Any]]


def start(command: list[str], url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The started server process (its own group), once ``url`` answers 200 (at most 120 s)."""
    import httpx

    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{command[0]} did not become ready at {url}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group: SIGTERM, then SIGKILL after 15 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def load(
    url: str, body_for: Body, seconds: float, clients: int, during: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Requests, failures, throughput and latency of ``clients`` threads posting for ``seconds``."""
    import httpx

    latencies: list[float] = []
    status: Counter[int | str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    code: int | str = client.post(url, json=body_for(n, i)).status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    status[code] += 1
                    latencies.append(elapsed)
                i += 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    for thread in threads:
        thread.join()
    import numpy as np

    ok = status.get(200, 0)
    return {
        "requests": sum(status.values()),
        "failed": sum(v for k, v in status.items() if k != 200),
        "status": {str(k): v for k, v in status.items()},
        "throughput_rps": round(ok / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
    }


@dataclass(frozen=True)
class Models:
    """The registry, v1 (champion) and v2 (challenger at 25%), and the records the clients send."""

    registry: ModelRegistry
    v1: str
    v2: str
    records: list[dict[str, Any]]


def register_models(settings: Settings) -> Models:
    """Both versions trained on the credit reference and registered, v2 in a 25% canary."""
    from mlops_cli.scenarios import CREDIT_SPEC
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.serving.follower import ROLLOUT_MODE, ROLLOUT_VERSION, ROLLOUT_WEIGHT
    from mlops_core.training import train_model

    frame = add_credit_dataset(settings)
    registry = ModelRegistry(settings, CREDIT)
    v1 = registry.log_model(train_model(frame, CREDIT_SPEC).pipeline, CREDIT_SPEC, frame).version
    v2 = registry.log_model(
        train_model(frame.sample(8_000, seed=1), CREDIT_SPEC).pipeline, CREDIT_SPEC, frame
    ).version
    registry.promote(v1)
    registry.set_challenger(v2)
    registry.set_tags({ROLLOUT_VERSION: v2, ROLLOUT_WEIGHT: "0.25", ROLLOUT_MODE: "canary"})
    records = frame.drop("default", "application_id", "applied_at").head(1_000).to_dicts()
    return Models(registry, v1, v2, records)


def measure_split(models: Models, url: str) -> dict[str, Any]:
    """The challenger's share over 10,000 routing keys, and how many of 200 keys changed variant."""
    import httpx

    models.registry.promote(models.v1)
    models.registry.set_challenger(models.v2)
    httpx.post(f"{url}/admin/refresh", headers=ADMIN)
    variants: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(10_000):
            body = {"record": models.records[i % 1000], "routing_key": f"split-{i}"}
            variants[client.post("/predict", json=body).json()["variant"]] += 1
        moved = 0
        for k in range(200):
            seen = {
                client.post(
                    "/predict", json={"record": models.records[k], "routing_key": f"sticky-{k}"}
                ).json()["variant"]
                for _ in range(5)
            }
            moved += len(seen) > 1
    return {
        "requests": 10_000,
        "weight": 0.25,
        "challenger_share": variants["challenger"] / 10_000,
        "keys_checked": 200,
        "keys_that_changed_variant": moved,
    }


def measure_ours(
    models: Models, env: dict[str, str], seconds: float, clients: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``mlops serve`` under load, then under promote/rollback cycles; then the split's accuracy."""
    import httpx

    from mlops_cli.stack import free_port

    records, registry = models.records, models.registry
    port = free_port()
    ours = f"http://127.0.0.1:{port}"

    def body(n: int, i: int) -> dict[str, Any]:
        return {"record": records[(n * 997 + i) % 1000], "routing_key": f"u{n}-{i}"}

    def cycles() -> None:
        for _ in range(10):
            registry.promote(models.v2)
            httpx.post(f"{ours}/admin/refresh", headers=ADMIN, timeout=30)
            time.sleep(seconds / 25)
            registry.rollback()
            registry.set_challenger(models.v2)
            httpx.post(f"{ours}/admin/refresh", headers=ADMIN, timeout=30)
            time.sleep(seconds / 25)

    results: dict[str, dict[str, Any]] = {}
    bin_dir = Path(sys.executable).parent
    server = start([str(bin_dir / "mlops"), "serve", "--port", str(port)], f"{ours}/ready", env)
    try:
        results["mlops serve (canary 25% active)"] = load(f"{ours}/predict", body, seconds, clients)
        results["mlops serve, 10 promote/rollback cycles"] = load(
            f"{ours}/predict", body, seconds, clients, during=cycles
        )
        # Split accuracy over real HTTP.
        split = measure_split(models, ours)
    finally:
        stop(server)
    return results, split


def measure_theirs(
    models: Models, env: dict[str, str], seconds: float, clients: int
) -> dict[str, Any]:
    """``mlflow models serve`` of v1 under the same load."""
    from mlops_cli.stack import free_port

    records = models.records
    mport = free_port()
    theirs = f"http://127.0.0.1:{mport}"
    bin_dir = Path(sys.executable).parent
    mlflow_server = start(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{CREDIT}/{models.v1}", "--env-manager", "local", "-p", str(mport), "-h", "127.0.0.1"],
        f"{theirs}/ping",
        env,
    )  # fmt: skip
    try:
        return load(
            f"{theirs}/invocations",
            lambda n, i: {"dataframe_records": [records[(n * 997 + i) % 1000]]},
            seconds,
            clients,
        )
    finally:
        stop(mlflow_server)


def main() -> None:
    """Measure both servers, the swaps and the split; print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    bench_home(
        "serving",
        {"MLOPS_ADMIN_TOKEN": "bench-token", "MLOPS_SERVE_POLL_SECONDS": "0.5"},
        prefect=False,
    )

    from mlops_core.settings import Settings

    settings = Settings()
    models = register_models(settings)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow execs uvicorn
    }
    results, split = measure_ours(models, env, args.seconds, args.clients)
    results["mlflow models serve (v1)"] = measure_theirs(models, env, args.seconds, args.clients)

    rows = [
        [name, r["requests"], r["failed"], r["throughput_rps"], r["p50_ms"], r["p99_ms"]]
        for name, r in results.items()
    ]
    print_table(["server", "requests", "failed", "req/s", "p50 ms", "p99 ms"], rows)
    ratio = (
        results["mlops serve (canary 25% active)"]["throughput_rps"]
        / results["mlflow models serve (v1)"]["throughput_rps"]
    )
    print(f"\nthroughput ratio mlops/mlflow: {ratio:.2f} (target >= 2)")
    print(
        f"split: challenger share {split['challenger_share']:.3f} at weight 0.25 over 10,000 "
        f"requests; {split['keys_that_changed_variant']} of 200 keys changed variant"
    )
    path = write_results(
        "serving",
        {
            "seconds": args.seconds,
            "clients": args.clients,
            "results": results,
            "throughput_ratio": round(ratio, 2),
            "split": split,
            "root": str(ROOT),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
