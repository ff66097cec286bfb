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

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common import CREDIT, add_credit_dataset, bench_home, print_table, write_results

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

    from mlops_core.adapters.registry import ModelRegistry


class Raising:
    """A model that raises on every third call: the challenger that blows up under load."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, 0

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        """The wrapped model's probabilities, except every third call, which raises."""
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("challenger blew up")
        return self.model.predict_proba(frame)


class Users:
    """One client sending single records as fast as answered, each answer's true label as feedback."""

    def __init__(self, url: str, rows: list[dict[str, Any]], labels: list[int]) -> None:
        import httpx

        from mlops_cli.loops import BackgroundLoop

        self.rows, self.labels = rows, labels
        self.status: Counter[int] = Counter()
        self.answered_by: Counter[str] = Counter()
        self.sent = 0
        self.client = httpx.Client(base_url=url, timeout=10)
        self.loop = BackgroundLoop("bench-users", self.send_one, 0.0, within=lambda: self.client)

    def send_one(self) -> None:
        """One record to ``/predict``; when answered, its label to ``/feedback``."""
        i = self.sent
        self.sent += 1
        k = i % len(self.rows)
        answer = self.client.post(
            "/predict", json={"record": self.rows[k], "routing_key": f"user-{i}"}
        )
        self.status[answer.status_code] += 1
        if answer.status_code == 200:
            body = answer.json()
            self.answered_by[body["variant"]] += 1
            self.client.post(
                "/feedback", json={"request_id": body["request_id"], "label": self.labels[k]}
            )


@dataclass(frozen=True)
class Versions:
    """The registered versions: the champion and the two bad challengers."""

    champion: str
    raising: str
    flipped: str


def register_versions(registry: ModelRegistry) -> Versions:
    """The champion (promoted) and both bad challengers, trained and registered."""
    import numpy as np

    from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
    from mlops_core.training import train_model

    def register(frame: pl.DataFrame) -> str:
        pipeline = train_model(frame, CREDIT_SPEC).pipeline
        return str(registry.log_model(pipeline, CREDIT_SPEC, frame).version)

    champion = register(generate_applications(np.random.default_rng(1), 1_500))
    registry.promote(champion)
    raising = register(generate_applications(np.random.default_rng(2), 2_000))
    flipped_frame = generate_applications(np.random.default_rng(3), 3_000)
    flipped = register(flipped_frame.with_columns((1 - flipped_frame["default"]).alias("default")))
    return Versions(champion, raising, flipped)


def roll_out_under_load(
    version: str, loader: Callable[[str], Any], rows: list[dict[str, Any]], labels: list[int]
) -> dict[str, Any]:
    """How the rollout of ``version`` ended, with a model server in this process under load."""
    from flows.rollout import rollout
    from mlops_cli.demo_live import ServerThread
    from mlops_cli.stack import free_port
    from mlops_core.serving import create_app
    from mlops_core.settings import Settings

    app = create_app(Settings(), CREDIT, loader=loader, log_traffic=False)
    server = ServerThread(app, free_port(), log_level="error")
    server.start()
    users = Users(server.url, rows, labels)
    users.loop.start()
    started = time.perf_counter()
    outcome = rollout(dataset=CREDIT, version=version, server_url=server.url)
    seconds = time.perf_counter() - started
    users.loop.stop()
    server.stop()
    last = outcome.steps[-1]
    return {
        "status": outcome.status.value,
        "rolled_back_at_step": last.step,
        "weight_at_rollback": last.weight,
        "reason": last.reasons[0],
        "answered_by_challenger": users.answered_by["challenger"],
        "user_requests": sum(users.status.values()),
        "failed_user_requests": sum(v for k, v in users.status.items() if k != 200),
        "seconds_to_verdict": round(seconds, 1),
    }


def main() -> None:
    """Roll out each bad challenger under load; print the table, write the JSON."""
    bench_home(
        "bad",
        {
            "MLOPS_ROLLOUT_STEPS": "5,25,50,100",
            "MLOPS_ROLLOUT_MIN_REQUESTS": "100",
            "MLOPS_ROLLOUT_MIN_FEEDBACK": "100",
            "MLOPS_ROLLOUT_STEP_SECONDS": "120",
            "MLOPS_ROLLOUT_MAX_P99_MS": "1000",
            "MLOPS_SERVE_POLL_SECONDS": "0.3",
        },
    )
    import mlflow
    import numpy as np

    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.settings import Settings

    settings = Settings()
    add_credit_dataset(settings)
    registry = ModelRegistry(settings, CREDIT)
    versions = register_versions(registry)
    mlflow.set_registry_uri(settings.tracking_uri)

    def loader(version: str) -> Any:
        model = mlflow.sklearn.load_model(f"models:/{CREDIT}/{version}")
        return Raising(model) if version == versions.raising else model

    traffic = generate_applications(np.random.default_rng(4), 5_000)
    labels = traffic["default"].to_list()
    rows = traffic.drop("default", "application_id", "applied_at").to_dicts()

    results = {}
    for name, version in (
        ("raises on every 3rd call", versions.raising),
        ("flipped labels", versions.flipped),
    ):
        results[name] = roll_out_under_load(version, loader, rows, labels)
        assert registry.aliases().get("champion") == versions.champion
    print_table(
        ["bad challenger", "outcome", "step", "weight", "answered by it", "user requests", "failed", "seconds"],
        [
            [n, r["status"], r["rolled_back_at_step"], r["weight_at_rollback"], r["answered_by_challenger"], r["user_requests"], r["failed_user_requests"], r["seconds_to_verdict"]]
            for n, r in results.items()
        ],
    )  # fmt: skip
    for name, r in results.items():
        print(f"{name}: {r['reason']}")
    print(f"wrote {write_results('bad_challenger', {'results': results})}")


if __name__ == "__main__":
    main()
