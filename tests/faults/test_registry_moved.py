"""Fault 6: a person moves the registry by hand in the middle of a rollout.

A canary of v3 runs through a real uvicorn model server under load (champion v2, previous v1).
While the first step is being judged, someone runs `mlops rollback` in another process. The
rollout flow must notice, stop, take its own challenger out of traffic, and leave the champion
and previous aliases exactly as the person set them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from live import Load, Server, register

from flows.rollout import rollout
from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.audit import recent_decisions
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.serving import create_app
from mlops_core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def test_a_rollback_by_hand_stops_the_rollout_which_does_not_undo_it(
    settings: Settings,
    registered: RegisteredDataset,
    fast_rollout: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The step can never be judged on its own: only the person's move can end it early.
    monkeypatch.setenv("MLOPS_ROLLOUT_MIN_REQUESTS", "100000")
    monkeypatch.setenv("MLOPS_ROLLOUT_STEP_SECONDS", "120")
    registry = ModelRegistry(settings, "credit")
    v1 = register(settings, generate_applications(np.random.default_rng(1), 1_500), max_iter=40)
    registry.promote(v1)
    v2 = register(settings, generate_applications(np.random.default_rng(2), 1_500), max_iter=60)
    registry.promote(v2)
    v3 = register(settings, generate_applications(np.random.default_rng(3), 3_000))
    human: dict[str, object] = {}

    with Server(create_app(Settings(), log_traffic=False)) as server, Load(server.url) as load:

        def person() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the canary is live
                if httpx.get(f"{server.url}/routing", timeout=5).json().get("challenger") == v3:
                    break
                time.sleep(0.2)
            human["answer"] = subprocess.run(
                [str(Path(sys.executable).parent / "mlops"), "rollback", "--dataset", "credit"],
                env={**os.environ},
                capture_output=True,
                text=True,
                timeout=120,
            )
            human["at"] = time.monotonic()

        thread = threading.Thread(target=person)
        thread.start()
        result = rollout(dataset="credit", version=v3, server_url=server.url)
        stopped_at = time.monotonic()
        thread.join(timeout=120)
        # The server follows the registry: all traffic back on the person's champion.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            routing = httpx.get(f"{server.url}/routing", timeout=5).json()
            if routing.get("champion") == v1 and not routing.get("challenger"):
                break
            time.sleep(0.3)

    answer = human["answer"]
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert result.status == "interrupted", result
    assert stopped_at - human["at"] < 15  # noticed within a few seconds
    assert result.steps == ()  # no step was judged, none promoted
    # The person's move stands: v1 champion, v2 previous; the canary's challenger is gone.
    assert registry.aliases() == {"champion": v1, "previous": v2}
    assert registry.tags()["mlops.rollout.mode"] == "idle"
    assert routing["champion"] == v1 and not routing.get("challenger"), routing
    assert [d.action for d in recent_decisions(ModelRegistry(settings, "credit"), 1)] == [
        "rollback"
    ]
    assert set(load.status) == {200}, f"user-facing failures: {load.status}"
