"""The ledger's retry limit, on SQLite and on a real PostgreSQL: a batch that keeps failing goes to
``dead_letter`` with its last error, no sweep claims it, and a person retries or drops it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from mlops_core.adapters.landing import LandingZone, _create_tables
from mlops_core.batches import BatchState
from mlops_core.errors import LandingError
from mlops_core.settings import Settings

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def zone(
    request: pytest.FixtureRequest,
    new_ledger_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> LandingZone:
    monkeypatch.setenv("MLOPS_LEDGER_URL", new_ledger_url(request.param))
    monkeypatch.setenv("MLOPS_MAX_BATCH_ATTEMPTS", "3")
    return LandingZone(Settings())


def landed(zone: LandingZone, folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    shas = []
    for i in range(count):
        path = folder / f"week{i}.csv"
        pl.DataFrame({"a": [i, i + 1], "b": ["x", "y"]}).write_csv(path)
        shas.append(zone.submit(path, "credit").entry.sha256)
    return shas


def fail_until_dead(zone: LandingZone, sha: str, tries: int) -> list[BatchState]:
    """Claim and give back as failed ``tries`` times, as a run that always fails does."""
    states = []
    for attempt in range(1, tries + 1):
        claimed = zone.claim("credit", sha)
        assert claimed is not None and claimed.attempts == attempt
        given_back = zone.fail("credit", sha, f"KeyError: 'income' (try {attempt})")
        assert given_back is not None
        states.append(given_back.state)
    return states


def test_a_batch_that_always_fails_is_dead_lettered_and_retried_by_a_person(
    zone: LandingZone, tmp_path: Path
) -> None:
    poison, healthy = landed(zone, tmp_path / "in", 2)
    assert fail_until_dead(zone, poison, 3) == [
        BatchState.failed,
        BatchState.failed,
        BatchState.dead_letter,
    ]
    dead = zone.get("credit", poison)
    assert dead is not None and dead.state is BatchState.dead_letter and dead.attempts == 3
    assert dead.reason is not None and "gave up after 3 attempts" in dead.reason
    assert "KeyError: 'income' (try 3)" in dead.reason, "the last error is kept"
    assert Path(dead.location).exists(), "its file stays in landing/"
    assert [e.sha256 for e in zone.pending("credit", stale_after_seconds=0)] == [healthy]
    assert zone.claim("credit", poison) is None, "no sweep claims it"

    with pytest.raises(LandingError, match="is landed, not dead_letter"):
        zone.retry("credit", healthy)
    with pytest.raises(LandingError, match="not in the ledger|no batch"):
        zone.retry("credit", "0" * 64)

    back = zone.retry("credit", poison)
    assert back.state is BatchState.failed and back.attempts == 0
    assert back.reason is not None and "put back by a person after 3" in back.reason
    assert zone.get("credit", poison) == back
    assert [e.sha256 for e in zone.pending("credit", stale_after_seconds=0)] == [poison, healthy]
    again = zone.claim("credit", poison)
    assert again is not None and again.attempts == 1, "counted from 0 again"
    settled = zone.settle("credit", poison, BatchState.processed, {})
    assert settled.state is BatchState.processed


def test_a_dead_lettered_batch_dropped_by_a_person_is_quarantined_with_a_report(
    zone: LandingZone, tmp_path: Path
) -> None:
    (sha,) = landed(zone, tmp_path / "in", 1)
    with pytest.raises(LandingError, match="is landed, not dead_letter"):
        zone.drop("credit", sha, "give up")
    fail_until_dead(zone, sha, 3)
    landing_file = Path(zone.get("credit", sha).location)
    with pytest.raises(LandingError, match="say why"):
        zone.drop("credit", sha, "  ")

    dropped = zone.drop("credit", sha, "export bug upstream; resent as week20")
    assert dropped.state is BatchState.quarantined
    assert dropped.reason == (
        "dropped by a person after 3 failed attempts: export bug upstream; resent as week20"
    )
    assert not landing_file.exists() and Path(dropped.location).exists()
    assert Path(dropped.location).parent.name == "credit"
    assert Path(dropped.location).parent.parent.name == "quarantine"
    assert zone.get("credit", sha) == dropped
    report = zone.read_report(dropped)
    assert report["state"] == "quarantined" and report["stage"] == "drop"
    assert report["reason"] == dropped.reason
    assert report["detail"]["attempts"] == 3
    assert report["detail"]["reason"] == "export bug upstream; resent as week20"
    assert "KeyError: 'income' (try 3)" in report["detail"]["last_error"]
    with pytest.raises(LandingError, match="is quarantined, not dead_letter"):
        zone.drop("credit", sha, "twice")


def test_a_batch_whose_runs_keep_crashing_is_dead_lettered_when_its_claim_goes_stale(
    zone: LandingZone, tmp_path: Path
) -> None:
    (sha,) = landed(zone, tmp_path / "in", 1)
    for attempt in (1, 2):
        assert zone.claim("credit", sha) is not None
        freed = zone.release("credit", sha, stale_after_seconds=0)
        assert freed is not None and freed.state is BatchState.landed and freed.attempts == attempt
    assert zone.claim("credit", sha) is not None
    assert zone.release("credit", sha, stale_after_seconds=3600) is None, "a live claim is kept"
    dead = zone.release("credit", sha, stale_after_seconds=0)
    assert dead is not None and dead.state is BatchState.dead_letter and dead.attempts == 3
    assert dead.reason is not None and "stopped without settling it" in dead.reason
    assert zone.pending("credit", stale_after_seconds=0) == []


OLD_TABLE = """
CREATE TABLE batches (
    dataset TEXT NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL, location TEXT NOT NULL,
    original_name TEXT NOT NULL, file_format TEXT NOT NULL, size_bytes BIGINT NOT NULL,
    reason TEXT, submitted_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (dataset, sha256)
)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_ledger_made_before_attempts_were_counted_gains_the_column(
    backend: str,
    new_ledger_url: Callable[[str], str],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url = new_ledger_url(backend)
    old = sa.create_engine(url)
    with old.begin() as connection:  # as the previous version left it: no attempts, no labels
        connection.exec_driver_sql(OLD_TABLE)
        connection.exec_driver_sql(
            "INSERT INTO batches VALUES ('credit', 'abc', 'failed', '/x/abc.csv', 'old.csv', "
            "'csv', 10, 'MLflow unreachable', '2024-01-01T00:00:00+00:00', "
            "'2024-01-01T00:00:00+00:00')"
        )
    old.dispose()
    monkeypatch.setenv("MLOPS_LEDGER_URL", url)
    zone = LandingZone(Settings())
    (before,) = zone.entries("credit")
    assert before.state is BatchState.failed and before.attempts == 0
    claimed = zone.claim("credit", "abc")
    assert claimed is not None and claimed.attempts == 1
    assert LandingZone(Settings(), "labels").entries() == [], "the missing table is made"
    check = sa.create_engine(url)
    try:
        _create_tables(check)  # as another process opening the ledger next: nothing to add
        columns = [c["name"] for c in sa.inspect(check).get_columns("batches")]
    finally:
        check.dispose()
    assert columns.count("attempts") == 1
