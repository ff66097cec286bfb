"""Alias moves are serialised by a lock in the ledger's database, on SQLite and on a real
PostgreSQL: a person's rollback cannot land between the rollout's check and its promotion, and a
rollout that checks after a person's move stands down instead of overwriting it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from mlops_core.adapters.alias_lock import alias_lock
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings
from mlops_core.tags import CHALLENGER, CHAMPION, PREVIOUS
from tasks.rollout import end_rollout

BACKENDS = ["sqlite", "postgresql"]
HOLD = 1.5  # seconds the first mover keeps the lock between its check and its write


@pytest.fixture(params=BACKENDS)
def registry(
    request: pytest.FixtureRequest,
    settings: Settings,
    new_ledger_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> ModelRegistry:
    """Versions 1-3 of ``credit``: champion 2, previous 1, challenger 3 (a rollout's)."""
    monkeypatch.setenv("MLOPS_LEDGER_URL", new_ledger_url(request.param))
    current = Settings()
    current.home.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=current.tracking_uri, registry_uri=current.tracking_uri)
    client.create_registered_model("credit")
    for _ in range(3):  # versions without artifacts: only their aliases are moved here
        client.create_model_version("credit", source=str(current.home))
    registry = ModelRegistry(current, "credit")
    registry.promote("1")
    registry.promote("2")
    registry.set_challenger("3")
    assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1", CHALLENGER: "3"}
    return registry


def test_a_persons_rollback_waits_for_the_rollouts_promotion_and_is_not_lost(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rollout has checked that nobody moved the aliases and holds the lock; it stalls there.
    monkeypatch.setenv("MLOPS_FAILPOINTS", f"rollout-promoting=sleep:{HOLD}")
    ended: dict[str, object] = {}

    def rollout() -> None:
        ctx = SimpleNamespace(registry=registry)
        ended["write"] = end_rollout.fn(ctx, "3", promote=True, champion="2")
        ended["at"] = time.monotonic()

    thread = threading.Thread(target=rollout)
    thread.start()
    time.sleep(HOLD / 3)  # inside the rollout's window
    started = time.monotonic()
    after = registry.rollback()  # what `mlops rollback` runs
    finished = time.monotonic()
    thread.join(timeout=30)

    write = ended["write"]
    assert not write.moved and write.aliases[CHAMPION] == "3"  # type: ignore[attr-defined]
    assert started < ended["at"] <= finished, "the rollback waited for the promotion"  # type: ignore[operator]
    # The rollback was applied to what the promotion left (3 champion, 2 previous): swapped.
    assert after == {CHAMPION: "2", PREVIOUS: "3"}
    assert registry.aliases() == after, "the person's move is the last word"


def test_a_rollout_that_checks_after_a_persons_move_stands_down(
    registry: ModelRegistry,
) -> None:
    entered = threading.Event()

    def person() -> None:
        with registry.moves():  # `mlops rollback`: what it reads is what it moves
            entered.set()
            time.sleep(HOLD)
            registry.rollback()

    thread = threading.Thread(target=person)
    thread.start()
    assert entered.wait(10)
    write = end_rollout.fn(SimpleNamespace(registry=registry), "3", promote=True, champion="2")
    thread.join(timeout=30)
    assert write.moved, "the rollout saw the person's move"
    assert write.aliases == {CHAMPION: "1", PREVIOUS: "2", CHALLENGER: "3"}
    assert registry.aliases()[CHAMPION] == "1", "the rollout promoted nothing over it"


def test_the_lock_is_reentrant_in_a_thread_and_a_waiter_gives_up_with_a_clear_error(
    registry: ModelRegistry,
) -> None:
    url = registry.settings.ledger_database_url
    with registry.moves(), registry.moves():  # a move made inside a held lock
        registry.promote("3")
        if url.startswith("postgresql"):
            failed: list[BaseException] = []

            def other() -> None:
                try:
                    with alias_lock(url, "credit", wait_seconds=0.5):
                        pass
                except MlopsError as exc:
                    failed.append(exc)

            waiter = threading.Thread(target=other)
            waiter.start()
            waiter.join(timeout=10)
            (error,) = failed
            assert "held the lock for more than 0.5 s" in str(error)
            assert "nothing was moved" in (error.hint or "")
            with alias_lock(url, "another dataset", wait_seconds=0.5):
                pass  # one dataset's lock does not hold another's
    assert registry.aliases()[CHAMPION] == "3"
