"""Claims on decisions' retrains, on SQLite and on a real PostgreSQL: one first claim, a live
holder never taken over, a stopped one taken over by exactly one of two sweeps, a limit on
attempts, beats from a thread while the work runs, and a requested retrain that its subflow
claims, or that reconcile takes once nobody claimed it within the stale time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from mlops_core.adapters.retrain_claims import DONE, REQUESTED, RUNNING, RetrainClaims
from mlops_core.settings import Settings

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def claims(
    request: pytest.FixtureRequest,
    new_ledger_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> RetrainClaims:
    monkeypatch.setenv("MLOPS_LEDGER_URL", new_ledger_url(request.param))
    return RetrainClaims(Settings())


def two_sweeps_at_once(claims: RetrainClaims, run_id: str) -> list[int | None]:
    """What two sweeps taking ``run_id``'s retrain over at the same instant each got."""
    won: list[int | None] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        barrier.wait()
        won.append(
            claims.take_over("credit", run_id, "sha", stale_after_seconds=0.5, max_attempts=3)
        )

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return won


def test_a_stopped_holders_claim_is_taken_over_once_and_a_live_ones_never(
    claims: RetrainClaims,
) -> None:
    assert (
        claims.take_over("credit", "run-a", "sha", stale_after_seconds=0, max_attempts=3) is None
    ), "a retrain nobody claimed is not resumed (its flow may have been told not to act)"
    assert claims.start("credit", "run-a", "sha")
    assert not claims.start("credit", "run-a", "sha"), "one first claim"
    live = claims.take_over("credit", "run-a", "sha", stale_after_seconds=60, max_attempts=3)
    assert live is None, "a holder that beat within the stale time keeps its claim"

    # Two sweeps at the same moment, the holder stopped beating a while ago: exactly one of
    # them takes it (the other read the old beat and lost the conditional update, or read the
    # winner's fresh one).
    time.sleep(0.6)
    won = two_sweeps_at_once(claims, "run-a")
    assert sorted(won, key=lambda x: x or 0) == [None, 2], won
    assert claims.get("credit", "run-a").attempts == 2  # type: ignore[union-attr]

    assert claims.take_over("credit", "run-a", "sha", stale_after_seconds=0, max_attempts=3) == 3
    stuck = claims.take_over("credit", "run-a", "sha", stale_after_seconds=0, max_attempts=3)
    assert stuck is None, "after max attempts it is left to a person"
    assert [c.decision_run_id for c in claims.running("credit")] == ["run-a"]

    claims.finish("credit", "run-a")
    assert claims.get("credit", "run-a").state == DONE  # type: ignore[union-attr]
    assert claims.running("credit") == []
    assert claims.take_over("credit", "run-a", "sha", stale_after_seconds=0, max_attempts=9) is None


def test_a_held_claim_beats_from_its_own_thread(claims: RetrainClaims) -> None:
    assert claims.start("credit", "run-b", "sha")
    first = claims.get("credit", "run-b").beat_at  # type: ignore[union-attr]
    with claims.held("credit", "run-b", beat_seconds=0.2):
        time.sleep(0.9)  # a long training: no stage change, still alive
        during = claims.get("credit", "run-b")
    assert during is not None and during.state == RUNNING and during.beat_at > first + 0.3
    assert claims.take_over("credit", "run-b", "sha", stale_after_seconds=5, max_attempts=3) is None


def test_a_requested_retrain_is_claimed_by_its_subflow_or_taken_once_it_is_stale(
    claims: RetrainClaims,
) -> None:
    # The batch flow requests; its subflow then claims it, exactly once.
    assert claims.request("credit", "run-c", "sha")
    assert not claims.request("credit", "run-c", "sha"), "a batch run again requests nothing"
    requested = claims.get("credit", "run-c")
    assert requested is not None and requested.state == REQUESTED and requested.attempts == 0
    assert [c.decision_run_id for c in claims.running("credit")] == ["run-c"]
    fresh = claims.take_over("credit", "run-c", "sha", stale_after_seconds=60, max_attempts=3)
    assert fresh is None, "a request younger than the stale time is left to its subflow"
    assert claims.start("credit", "run-c", "sha")
    assert not claims.start("credit", "run-c", "sha"), "one claim of a requested retrain"
    started = claims.get("credit", "run-c")
    assert started is not None and started.state == RUNNING and started.attempts == 1

    # The batch's run died after requesting, before its subflow claimed: reconcile takes it,
    # one of two sweeps, and the late subflow (had it started after all) stands down.
    assert claims.request("credit", "run-d", "sha")
    time.sleep(0.6)
    won = two_sweeps_at_once(claims, "run-d")
    assert sorted(won, key=lambda x: x or 0) == [None, 1], won
    taken = claims.get("credit", "run-d")
    assert taken is not None and taken.state == RUNNING and taken.attempts == 1
    assert not claims.start("credit", "run-d", "sha"), "taken over: the late subflow stands down"
    claims.finish("credit", "run-d")
    assert claims.take_over("credit", "run-d", "sha", stale_after_seconds=0, max_attempts=3) is None
