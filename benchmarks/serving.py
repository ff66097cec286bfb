"""The model server under load: against the HTTP floor and `mlflow models serve`, with wrk; swaps
under load; the split's accuracy.

    .venv/bin/python benchmarks/serving.py [--seconds 10] [--connections 16]
        [--swap-seconds 15] [--clients 8]

Same machine, same model (credit, trained on 10,000 rows). wrk (Debian's package: a C load
generator, two threads, so the loader takes little CPU) keeps ``--connections`` connections busy
for ``--seconds`` each, one record per request, on:

1. the floor: ``floor_app.py``, a bare FastAPI app under uvicorn that parses the record with
   pydantic and answers a constant (what any Python server pays before its own work), as one
   process and as ``--workers`` processes (uvicorn's own ``--workers``);
2. ``mlops serve`` with a canary split active (v2 at 25%) and the prediction log on, as one
   process and with ``--workers`` (default: one per core); and with 1,000 records a request,
   against the champion's ``predict_proba`` on 1,000 records in process;
3. ``mlflow models serve --env-manager local`` of v1 (FastAPI under uvicorn, ``/invocations``).

Then, with ``--clients`` Python threads, 10 promote/rollback cycles (alias moves +
``/admin/refresh``) during ``--swap-seconds`` of load: failed requests; and 10,000 requests with
distinct routing keys at weight 0.25: the challenger's share; 200 keys sent 5 times each: keys
that ever changed variant.

Targets: ours (``--workers``) at least 50% of the one-process floor's requests per second and a
p99 at most twice its (the issue's floor); the floor with as many processes is reported too;
1,000-record requests within 2x of the in-process rows per second.
Prints tables and writes ``benchmarks/results/serving.json``.
"""

from __future__ import annotations

import argparse
import math
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


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"non_2xx\\":%%d,\\"socket_errors\\":%%d," ..
    "\\"p50_us\\":%%d,\\"p90_us\\":%%d,\\"p99_us\\":%%d,\\"max_us\\":%%d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_load(url: str, body: dict[str, Any], seconds: float, connections: int) -> dict[str, Any]:
    """``wrk`` (C, two threads) posting ``body`` over ``connections`` for ``seconds``."""
    import json
    import shutil
    import tempfile

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % json.dumps(body))
    try:
        done = subprocess.run(
            [wrk, "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s", "-s", script.name, url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        Path(script.name).unlink()
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    duration = raw["duration_us"] / 1e6
    failed = raw["non_2xx"] + raw["socket_errors"]
    return {
        "requests": raw["requests"],
        "failed": failed,
        "throughput_rps": round((raw["requests"] - failed) / duration, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "connections": connections,
        "seconds": seconds,
    }


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
    from mlops_core.training import train_model

    frame = add_credit_dataset(settings)
    registry = ModelRegistry(settings, CREDIT)
    v1 = registry.log_model(train_model(frame, CREDIT_SPEC).pipeline, CREDIT_SPEC, frame).version
    v2 = registry.log_model(
        train_model(frame.sample(8_000, seed=1), CREDIT_SPEC).pipeline, CREDIT_SPEC, frame
    ).version
    records = frame.drop("default", "application_id", "applied_at").head(1_000).to_dicts()
    models = Models(registry, v1, v2, records)
    canary(models)
    return models


def canary(models: Models) -> None:
    """v1 the champion, v2 the challenger in a 25% canary."""
    from mlops_core.serving.follower import ROLLOUT_MODE, ROLLOUT_VERSION, ROLLOUT_WEIGHT

    models.registry.promote(models.v1)
    models.registry.set_challenger(models.v2)
    models.registry.set_tags(
        {ROLLOUT_VERSION: models.v2, ROLLOUT_WEIGHT: "0.25", ROLLOUT_MODE: "canary"}
    )


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
    models: Models, env: dict[str, str], seconds: float, clients: int, workers: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``mlops serve --workers`` under promote/rollback cycles; then the split's accuracy."""
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
    server = start(
        [str(bin_dir / "mlops"), "serve", "--port", str(port), "--workers", str(workers)],
        f"{ours}/ready",
        env,
    )
    try:
        wait_for_workers(ours, workers)
        results[f"mlops serve ({workers} workers), 10 promote/rollback cycles"] = load(
            f"{ours}/predict", body, seconds, clients, during=cycles
        )
        # Split accuracy over real HTTP.
        split = measure_split(models, ours)
    finally:
        stop(server)
    return results, split


def in_process_rows_per_second(models: Models) -> float:
    """The champion's own ``predict_proba`` on 1,000-record frames, in this process (best of 5)."""
    from mlops_cli.scenarios import CREDIT_SPEC
    from mlops_core.serving.compiled import model_frame

    model = models.registry.load_version(models.v1)
    frame = model_frame(models.records, CREDIT_SPEC)
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        model.predict_proba(frame)
        best = min(best, time.perf_counter() - started)
    return len(models.records) / best


FLOOR = "floor: FastAPI + pydantic, constant answer"
OURS = "mlops serve, canary 25%, prediction log on"
THOUSAND = "mlops serve, 1,000 records a request"


def measure_wrk(
    models: Models, env: dict[str, str], seconds: float, connections: int, workers: int
) -> dict[str, dict[str, Any]]:
    """With wrk: the floor, ``mlops serve`` (one record; 1,000 records) and ``mlflow models serve``;
    the floor and ours once as one process and once with ``workers`` processes."""
    from mlops_cli.stack import free_port

    record = models.records[0]
    bin_dir = Path(sys.executable).parent
    results: dict[str, dict[str, Any]] = {}
    floors = {
        f"{FLOOR}, 1 process(es)": ["--workers", "1"],
        f"{FLOOR}, {workers} process(es), uvicorn --workers": ["--workers", str(workers)],
        f"{FLOOR}, {workers} process(es)": None,  # bound as mlops serve --workers binds
    }
    for name, flags in floors.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = (
            [str(bin_dir / "uvicorn"), "--app-dir", str(ROOT / "benchmarks"), "floor_app:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *flags]
            if flags is not None
            else [sys.executable, str(ROOT / "benchmarks" / "floor_app.py"), str(port), str(workers)]
        )  # fmt: skip
        floor = start(command, f"{url}/ready", {**env, "PYTHONPATH": str(ROOT)})
        try:
            results[name] = wrk_load(f"{url}/predict", {"record": record}, seconds, connections)
        finally:
            stop(floor)
    canary(models)
    for count in (1, workers):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(
            [str(bin_dir / "mlops"), "serve", "--port", str(port), "--workers", str(count)],
            f"{url}/ready",
            env,
        )
        try:
            if count > 1:  # every worker loaded and answering, not only the first
                wait_for_workers(url, count)
            results[f"{OURS}, {count} worker(s)"] = wrk_load(
                f"{url}/predict", {"record": record}, seconds, connections
            )
            thousand = wrk_load(f"{url}/predict", {"records": models.records}, seconds, connections)
            thousand["rows_per_second"] = round(thousand["throughput_rps"] * len(models.records))
            results[f"{THOUSAND}, {count} worker(s)"] = thousand
        finally:
            stop(server)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    theirs = start(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{CREDIT}/{models.v1}", "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
        f"{url}/ping",
        env,
    )  # fmt: skip
    try:
        results["mlflow models serve (v1)"] = wrk_load(
            f"{url}/invocations", {"dataframe_records": [record]}, seconds, connections
        )
    finally:
        stop(theirs)
    return results


def wait_for_workers(url: str, count: int) -> None:
    """Return once ``count`` distinct workers have answered ``/ready`` (at most 120 s)."""
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen) < count and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                seen.add(int(httpx.get(f"{url}/health", timeout=1).json()["worker"]))
        except httpx.HTTPError:
            time.sleep(0.3)
    if len(seen) < count:
        raise RuntimeError(f"only workers {sorted(seen)} of {count} became ready at {url}")


def prepare(name: str) -> tuple[Models, dict[str, str]]:
    """A fresh home for benchmark ``name`` with both versions registered in a 25% canary, and
    the environment its servers start with."""
    bench_home(
        name,
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
    return models, env


def main() -> None:
    """Measure the floor, ours and MLflow's with wrk, then swaps under load and the split."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--swap-seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8, help="threads during the swaps")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="server processes (one per core)"
    )
    args = parser.parse_args()
    models, env = prepare("serving")
    results = measure_wrk(models, env, args.seconds, args.connections, args.workers)
    in_process = in_process_rows_per_second(models)
    swaps, split = measure_ours(models, env, args.swap_seconds, args.clients, args.workers)

    print(
        f"\nwrk, {args.connections} connections, {args.seconds:.0f} s each, {os.cpu_count()} cores"
    )
    print_table(
        ["server", "requests", "failed", "req/s", "p50 ms", "p90 ms", "p99 ms"],
        [
            [name, r["requests"], r["failed"], r["throughput_rps"], r["p50_ms"], r["p90_ms"], r["p99_ms"]]
            for name, r in results.items()
        ],
    )  # fmt: skip
    n = args.workers
    floor = results[f"{FLOOR}, 1 process(es)"]
    floor_n = results[f"{FLOOR}, {n} process(es)"]
    ours = results[f"{OURS}, {n} worker(s)"]
    ours_1 = results[f"{OURS}, 1 worker(s)"]
    theirs = results["mlflow models serve (v1)"]
    thousand = results[f"{THOUSAND}, {n} worker(s)"]
    ratios = {
        "workers": n,
        "ours_over_floor_rps": round(ours["throughput_rps"] / floor["throughput_rps"], 3),
        "ours_over_floor_p99": round(ours["p99_ms"] / floor["p99_ms"], 3),
        "ours_over_floor_same_workers_rps": round(
            ours["throughput_rps"] / floor_n["throughput_rps"], 3
        ),
        "ours_over_floor_same_workers_p99": round(ours["p99_ms"] / floor_n["p99_ms"], 3),
        "one_worker_over_floor_rps": round(ours_1["throughput_rps"] / floor["throughput_rps"], 3),
        "ours_over_mlflow_rps": round(ours["throughput_rps"] / theirs["throughput_rps"], 2),
        "rows_per_second_1000": thousand["rows_per_second"],
        "in_process_rows_per_second": round(in_process),
        "in_process_over_served_rows": round(in_process / thousand["rows_per_second"], 2),
    }
    print(
        f"\nours ({n} workers) / floor (1 process): {ratios['ours_over_floor_rps']:.2f} of its "
        f"req/s (target >= 0.5), p99 {ratios['ours_over_floor_p99']:.2f}x its p99 (target <= 2)"
    )
    print(
        f"ours ({n} workers) / floor ({n} processes): "
        f"{ratios['ours_over_floor_same_workers_rps']:.2f} of its req/s, "
        f"p99 {ratios['ours_over_floor_same_workers_p99']:.2f}x"
    )
    print(
        f"1,000-record requests: {thousand['rows_per_second']:,} rows/s served; the model's "
        f"predict_proba in process: {in_process:,.0f} rows/s "
        f"({ratios['in_process_over_served_rows']:.2f}x; target <= 2)"
    )
    print(f"ours / mlflow models serve: {ratios['ours_over_mlflow_rps']:.2f}x the req/s")
    print(
        f"\n{args.clients} client threads, {args.swap_seconds:.0f} s, 10 promote/rollback cycles:"
    )
    print_table(
        ["server", "requests", "failed", "req/s", "p50 ms", "p99 ms"],
        [[name, r["requests"], r["failed"], r["throughput_rps"], r["p50_ms"], r["p99_ms"]] for name, r in swaps.items()],
    )  # fmt: skip
    print(
        f"split: challenger share {split['challenger_share']:.3f} at weight 0.25 over 10,000 "
        f"requests; {split['keys_that_changed_variant']} of 200 keys changed variant"
    )
    path = write_results(
        "serving",
        {
            "cores": os.cpu_count(),
            "wrk": {"seconds": args.seconds, "connections": args.connections, "results": results},
            "ratios": ratios,
            "swaps": {"seconds": args.swap_seconds, "clients": args.clients, "results": swaps},
            "split": split,
            "root": str(ROOT),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
