"""The retry limit through the real flows (Prefect's test harness): a batch that fails on every
run (or whose runs keep dying) is dead-lettered after MLOPS_MAX_BATCH_ATTEMPTS sweeps, announced
once, then left alone."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from flows.reconcile import reconcile
from mlops_cli.scenarios import Stream
from mlops_core import events
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.gx_project import suite_path
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def stored_events(name: str, sha256: str, timeout: float = 30) -> list[dict]:
    """The ``name`` events about ``sha256`` that the Prefect server stored (as in
    test_process_batch.py)."""
    from prefect.settings import PREFECT_API_URL

    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(
            f"{PREFECT_API_URL.value()}/events/filter",
            json={"filter": {"event": {"name": [name]}}, "limit": 50},
            timeout=10,
        )
        answer.raise_for_status()
        found = [e for e in answer.json()["events"] if e["payload"].get("sha256") == sha256]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_batch_failing_on_every_run_is_dead_lettered_after_three_sweeps_and_announced(
    settings: Settings, registered: RegisteredDataset, stream: Stream
) -> None:
    zone = LandingZone(settings)
    entry = zone.submit(stream.batches[0].path, "credit").entry
    # The dataset's expectation suite is gone: every run of the batch fails as it validates.
    suite_path(settings, "credit").unlink()
    sweeps = [reconcile(dataset="credit") for _ in range(3)]  # MLOPS_MAX_BATCH_ATTEMPTS: 3
    assert [[item["state"] for item in sweep] for sweep in sweeps] == [
        ["failed"],
        ["failed"],
        ["dead_letter"],
    ]
    assert "no expectation suite for dataset 'credit'" in sweeps[2][0]["error"]
    assert reconcile(dataset="credit") == [], "no sweep claims a dead-lettered batch"
    dead = zone.get("credit", entry.sha256)
    assert dead.state is BatchState.dead_letter and dead.attempts == 3
    assert Path(dead.location).exists(), "its file waits in landing/"

    [event] = stored_events(events.BATCH_DEAD_LETTERED, entry.sha256)
    assert event["payload"]["attempts"] == 3 and event["payload"]["kind"] == "batch"
    assert event["resource"]["prefect.resource.id"] == "mlops.dataset.credit"
    [alert] = stored_events(events.ALERT, entry.sha256)
    assert alert["payload"]["what"] == (
        f"batch {entry.original_name} dead-lettered after 3 attempts"
    )
    assert "no expectation suite" in alert["payload"]["reason"]


def test_a_claim_that_went_stale_on_its_last_attempt_is_dead_lettered_by_the_sweep(
    settings: Settings,
    registered: RegisteredDataset,
    stream: Stream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_MAX_BATCH_ATTEMPTS", "1")
    monkeypatch.setenv("MLOPS_RECONCILE_STALE_SECONDS", "0")
    zone = LandingZone(Settings())
    sha = zone.submit(stream.batches[1].path, "credit").entry.sha256
    zone.claim("credit", sha)  # a run claimed it, then its worker was killed
    [item] = reconcile(dataset="credit")
    assert item["state"] == "dead_letter" and "stopped without settling it" in item["error"]
    assert zone.get("credit", sha).state is BatchState.dead_letter
    assert stored_events(events.BATCH_DEAD_LETTERED, sha)
