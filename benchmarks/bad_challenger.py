"""Deliberately bad challengers under live load: how long until the rollout rolls them back, how
many requests they answered first, and how many user requests failed.

    .venv/bin/python benchmarks/bad_challenger.py

A champion (credit, 1,500 rows) serves through a real uvicorn server in this process; 1 client
thread sends single-record requests with their true label as feedback. The rollout flow (canary
5% -> 25% -> 50% -> 100%, 100 challenger requests and 100 feedback rows per step) is run for:
a challenger that raises on every third call (a duck-typed wrapper around a real model), and a
challenger trained on flipped labels. Prints a table and writes
``benchmarks/results/bad_challenger.json``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from common import print_table, write_results

HOME = Path(tempfile.mkdtemp(prefix="mlops-bench-bad-"))
os.environ.update(
    MLOPS_HOME=str(HOME),
    MLOPS_GX_DIR=str(HOME / "great_expectations"),
    PREFECT_HOME=str(HOME / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
    MLFLOW_LOGGING_LEVEL="WARNING",
    MLOPS_ROLLOUT_STEPS="5,25,50,100",
    MLOPS_ROLLOUT_MIN_REQUESTS="100",
    MLOPS_ROLLOUT_MIN_FEEDBACK="100",
    MLOPS_ROLLOUT_STEP_SECONDS="120",
    MLOPS_ROLLOUT_MAX_P99_MS="1000",
    MLOPS_SERVE_POLL_SECONDS="0.3",
)


class Raising:
    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        self.model, self.calls = model, 0

    def predict_proba(self, frame):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("challenger blew up")
        return self.model.predict_proba(frame)


def main() -> None:
    import httpx
    import mlflow
    import numpy as np
    import uvicorn

    from flows.rollout import rollout
    from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.serving import create_app
    from mlops_core.settings import Settings
    from mlops_core.training import train_model

    settings = Settings()
    reference = HOME / "reference.parquet"
    generate_applications(np.random.default_rng(0), 10_000).write_parquet(reference)
    DatasetCatalog(settings).add(CREDIT_SPEC, reference)
    registry = ModelRegistry(settings, "credit")

    def register(frame) -> str:  # type: ignore[no-untyped-def]
        pipeline = train_model(frame, CREDIT_SPEC).pipeline
        return registry.log_model(pipeline, CREDIT_SPEC, frame).version

    champion = register(generate_applications(np.random.default_rng(1), 1_500))
    registry.promote(champion)
    raising = register(generate_applications(np.random.default_rng(2), 2_000))
    flipped_frame = generate_applications(np.random.default_rng(3), 3_000)
    flipped = register(flipped_frame.with_columns((1 - flipped_frame["default"]).alias("default")))
    mlflow.set_registry_uri(settings.tracking_uri)

    def loader(version: str):  # type: ignore[no-untyped-def]
        model = mlflow.sklearn.load_model(f"models:/credit/{version}")
        return Raising(model) if version == raising else model

    traffic = generate_applications(np.random.default_rng(4), 5_000)
    labels = traffic["default"].to_list()
    rows = traffic.drop("default", "application_id", "applied_at").to_dicts()

    results = {}
    for name, version in (("raises on every 3rd call", raising), ("flipped labels", flipped)):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        app = create_app(Settings(), "credit", loader=loader, log_traffic=False)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        stop = threading.Event()
        status: Counter[int] = Counter()
        answered_by: Counter[str] = Counter()

        def users() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:  # noqa: B023
                i = 0
                while not stop.is_set():  # noqa: B023
                    k = i % len(rows)
                    answer = client.post(
                        "/predict", json={"record": rows[k], "routing_key": f"user-{i}"}
                    )
                    status[answer.status_code] += 1  # noqa: B023
                    if answer.status_code == 200:
                        body = answer.json()
                        answered_by[body["variant"]] += 1  # noqa: B023
                        client.post(
                            "/feedback",
                            json={"request_id": body["request_id"], "label": labels[k]},
                        )
                    i += 1

        load = threading.Thread(target=users, daemon=True)
        load.start()
        started = time.perf_counter()
        outcome = rollout(dataset="credit", version=version, server_url=url)
        seconds = time.perf_counter() - started
        stop.set()
        load.join()
        server.should_exit = True
        thread.join(timeout=10)
        last = outcome["steps"][-1]
        results[name] = {
            "status": outcome["status"],
            "rolled_back_at_step": last["step"],
            "weight_at_rollback": last["weight"],
            "reason": last["reasons"][0],
            "answered_by_challenger": answered_by["challenger"],
            "user_requests": sum(status.values()),
            "failed_user_requests": sum(v for k, v in status.items() if k != 200),
            "seconds_to_verdict": round(seconds, 1),
        }
        assert registry.aliases().get("champion") == champion

    print_table(
        [
            "bad challenger",
            "outcome",
            "step",
            "weight",
            "answered by it",
            "user requests",
            "failed",
            "seconds",
        ],
        [
            [
                n,
                r["status"],
                r["rolled_back_at_step"],
                r["weight_at_rollback"],
                r["answered_by_challenger"],
                r["user_requests"],
                r["failed_user_requests"],
                r["seconds_to_verdict"],
            ]
            for n, r in results.items()
        ],
    )
    for name, r in results.items():
        print(f"{name}: {r['reason']}")
    print(f"wrote {write_results('bad_challenger', {'results': results})}")


if __name__ == "__main__":
    main()
