"""``mlops retry`` and ``mlops drop``: a person's way out for a dead-lettered batch, and how
``mlops status`` shows one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_cli.scenarios import Stream
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState, failure_reason
from mlops_core.settings import Settings

runner = CliRunner()


def mlops(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def dead(settings: Settings, registered: RegisteredDataset, stream: Stream) -> str:
    """A batch of credit that failed on all of its MLOPS_MAX_BATCH_ATTEMPTS (2 here) claims."""
    zone = LandingZone(Settings(max_batch_attempts=2))
    sha = zone.submit(stream.batches[0].path, "credit").entry.sha256
    for _ in range(2):
        zone.claim("credit", sha)
        zone.fail("credit", sha, failure_reason(KeyError("income")))
    assert zone.get("credit", sha).state is BatchState.dead_letter
    return sha


def test_status_lists_a_dead_lettered_batch_with_its_attempts_and_reason(dead: str) -> None:
    text = mlops("status", "--dataset", "credit")
    assert text.exit_code == 0, text.output
    assert f"dead_letter batch {dead[:12]}" in text.output
    assert "2 attempts" in text.output and "KeyError: 'income'" in text.output
    assert f"mlops retry {dead[:12]}" in text.output


def test_retry_puts_a_dead_lettered_batch_back_for_the_next_sweep(
    settings: Settings, dead: str
) -> None:
    refused = mlops("retry", "0123456789ab", "--dataset", "credit")
    assert refused.exit_code == 2
    assert "no batch or labels file whose sha256 starts with 0123456789ab" in refused.output
    assert mlops("retry", "xyz").exit_code == 2, "not a sha256"
    assert "not registered" in mlops("retry", dead[:12], "--dataset", "fraud").output

    result = mlops("retry", dead[:12])  # found in every dataset without --dataset
    assert result.exit_code == 0, result.output
    assert "back to failed after 2 attempts" in result.output
    assert "mlops reconcile" in result.output, "no stack runs: says what will process it"
    entry = LandingZone(settings).get("credit", dead)
    assert entry.state is BatchState.failed and entry.attempts == 0
    assert [e.sha256 for e in LandingZone(settings).pending("credit", stale_after_seconds=0)] == [
        dead
    ]

    again = mlops("retry", dead, "--dataset", "credit", "--json")
    assert again.exit_code == 2 and "is failed, not dead_letter" in again.output


def test_drop_quarantines_a_dead_lettered_batch_with_the_persons_reason(
    settings: Settings, dead: str
) -> None:
    assert mlops("drop", dead[:12]).exit_code == 2, "--reason is required"
    result = mlops(
        "drop", dead[:12], "--dataset", "credit", "--reason", "resent as week20", "--json"
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["state"] == "quarantined" and shown["attempts"] == 2
    assert shown["reason"] == "dropped by a person after 2 failed attempts: resent as week20"
    entry = LandingZone(settings).get("credit", dead)
    assert entry.state is BatchState.quarantined and Path(entry.location).exists()
    report = LandingZone(settings).read_report(entry)
    assert report["stage"] == "drop" and report["detail"]["reason"] == "resent as week20"
    twice = mlops("drop", dead[:12], "--reason", "again")
    assert twice.exit_code == 2 and "is quarantined, not dead_letter" in twice.output
