"""Live helpers shared by the rollout and fault tests: a real uvicorn model server in a thread,
users sending applications with their true labels as feedback, models registered by version."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter

import httpx
import numpy as np
import uvicorn

from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import BatchState
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.settings import Settings
from mlops_core.training import TrainingConfig, train_model


def first_champion(settings: Settings, dataset: str = "credit") -> str:
    """Train a first model on the reference, the way `mlops train` does, and promote it."""
    ctx = DatasetContext.open(settings, dataset)
    version = train_challenger(ctx, gather_training_data(ctx, first_model=True)).version
    ctx.registry.promote(version)
    return version


def land_processed(settings: Settings, tmp_path, frame, name: str) -> str:
    """A labelled batch put through the landing zone's own claim and settle, as the flow does."""
    path = tmp_path / name
    frame.write_parquet(path)
    zone = LandingZone(settings)
    sha = zone.submit(path, "credit").entry.sha256
    zone.claim("credit", sha)
    zone.settle("credit", sha, BatchState.processed, {"validation": "test"})
    return sha


def register(settings: Settings, frame, *, max_iter: int = 100) -> str:
    trained = train_model(frame, CREDIT_SPEC, TrainingConfig(max_iter=max_iter))
    return ModelRegistry(settings, "credit").log_model(trained.pipeline, CREDIT_SPEC, frame).version


class Server:
    def __init__(self, app) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the model server did not become ready")

    def __exit__(self, *_) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Load:
    """Users sending one application each, then its true label as feedback."""

    def __init__(self, url: str, seed: int = 0) -> None:
        self.url, self.stop = url, threading.Event()
        frame = generate_applications(np.random.default_rng(seed), 4_000)
        self.labels = frame["default"].to_list()
        self.rows = frame.drop("default", "application_id", "applied_at").to_dicts()
        self.status = Counter()
        self.variants = Counter()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                k = i % len(self.rows)
                i += 1
                try:  # a transport error (a timeout) is a failed request, counted by its name
                    answer = client.post(
                        "/predict", json={"record": self.rows[k], "routing_key": f"user-{i}"}
                    )
                except httpx.HTTPError as exc:
                    self.status[type(exc).__name__] += 1
                    continue
                self.status[answer.status_code] += 1
                if answer.status_code == 200:
                    body = answer.json()
                    self.variants[body["variant"]] += 1
                    with contextlib.suppress(httpx.HTTPError):  # feedback is best effort
                        client.post(
                            "/feedback",
                            json={"request_id": body["request_id"], "label": self.labels[k]},
                        )

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def alerts_about(sha256: str, timeout: float = 30) -> list[dict]:
    """``mlops.alert`` events the Prefect server stored for this batch."""
    from prefect.settings import PREFECT_API_URL

    url = f"{PREFECT_API_URL.value()}/events/filter"
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(
            url, json={"filter": {"event": {"name": ["mlops.alert"]}}, "limit": 50}, timeout=10
        )
        answer.raise_for_status()
        found = [e for e in answer.json()["events"] if e["payload"].get("sha256") == sha256]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
