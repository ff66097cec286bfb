"""Fault 4: the model server is SIGKILLed during a canary.

`mlops serve` runs as a real process following a canary of v2 at 30%. It is killed; while it is
down the rollout moves on in the registry (60%). The restarted server must serve exactly what
the registry says -- champion, challenger, weight -- with no state carried over from before the
crash, and the keys that saw the challenger at 30% still see it at 60% (sticky, monotone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from stackproc import wait

from mlops_cli.scenarios import generate_applications
from mlops_cli.stack import free_port
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.serving.follower import (
    ROLLOUT_MODE,
    ROLLOUT_STEP,
    ROLLOUT_VERSION,
    ROLLOUT_WEIGHT,
)
from mlops_core.settings import Settings

pytestmark = pytest.mark.slow

KEYS = [f"user-{i}" for i in range(300)]


def serve(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "mlops"), "serve", "--port", str(port)],
        env={**os.environ, "MLOPS_SERVE_POLL_SECONDS": "0.5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def variants(url: str, record: dict) -> dict[str, tuple[str, str]]:
    """Which variant and model version answered each key."""
    seen = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for key in KEYS:
            answer = client.post("/predict", json={"record": record, "routing_key": key})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            seen[key] = (body["variant"], body["model_version"])
    return seen


def set_canary(registry: ModelRegistry, version: str, weight: float, step: int) -> None:
    registry.set_challenger(version)
    registry.set_tags(
        {
            ROLLOUT_VERSION: version,
            ROLLOUT_WEIGHT: f"{weight:g}",
            ROLLOUT_STEP: str(step),
            ROLLOUT_MODE: "canary",
        }
    )


def test_a_restarted_server_serves_exactly_the_registry_state(
    settings: Settings, registered: RegisteredDataset
) -> None:
    from live import register

    registry = ModelRegistry(settings, "credit")
    v1 = register(settings, generate_applications(np.random.default_rng(1), 1_500), max_iter=40)
    registry.promote(v1)
    v2 = register(settings, generate_applications(np.random.default_rng(2), 1_500), max_iter=80)
    set_canary(registry, v2, 0.3, 0)
    record = (
        generate_applications(np.random.default_rng(0), 1)
        .drop("default", "application_id", "applied_at")
        .to_dicts()[0]
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = serve(port)
    try:
        wait(lambda: ready(url), 90, "mlops serve to be ready")
        routing = httpx.get(f"{url}/routing").json()
        assert (routing["champion"], routing["challenger"], routing["weight"]) == (v1, v2, 0.3)
        before = variants(url, record)

        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert not ready(url)
        set_canary(registry, v2, 0.6, 1)  # the rollout moved on while the server was down

        process = serve(port)
        wait(lambda: ready(url), 90, "the restarted mlops serve to be ready")
        routing = httpx.get(f"{url}/routing").json()
        assert routing["champion"] == v1 and routing["challenger"] == v2, routing
        assert routing["weight"] == 0.6 and routing["mode"] == "canary", routing
        after = variants(url, record)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)

    for seen, weight in ((before, 0.3), (after, 0.6)):
        served = {(variant, version) for variant, version in seen.values()}
        assert served == {("champion", v1), ("challenger", v2)}, served
        share = sum(variant == "challenger" for variant, _ in seen.values()) / len(KEYS)
        assert abs(share - weight) < 0.1, (weight, share)
    # Sticky and monotone across the crash: a challenger key at 30% is a challenger key at 60%.
    moved_back = [k for k in KEYS if before[k][0] == "challenger" and after[k][0] != "challenger"]
    assert moved_back == []
