"""The micro-batcher: one call for concurrent requests, and a close that strands nobody."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mlops_core.serving.batcher import Batcher


class Slow:
    """A duck-typed scorer: the probability of class 1 is the record's ``x``; each call takes 50 ms."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rows: list[dict[str, float]]) -> np.ndarray:
        self.calls += 1
        time.sleep(0.05)
        return np.array([row["x"] for row in rows], dtype=float)


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    model = Slow()
    batcher = Batcher(model, wait_ms=20)
    results: dict[int, list[float]] = {}

    def ask(i: int) -> None:
        results[i] = list(batcher.scores([{"x": i / 10}, {"x": i / 20}]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: [i / 10, i / 20] for i in range(8)}
    assert model.calls < 8


def test_requests_around_a_close_are_all_answered() -> None:
    """The swap race: a request that still holds a model being swapped out is never stranded."""
    model = Slow()
    batcher = Batcher(model, wait_ms=1)
    answers: list[float] = []
    errors: list[BaseException] = []

    def ask(x: float) -> None:
        try:
            answers.extend(batcher.scores([{"x": x}], timeout=5))
        except BaseException as exc:  # noqa: BLE001 -- collected for the assertion
            errors.append(exc)

    before = [threading.Thread(target=ask, args=(0.1 * i,)) for i in range(5)]
    for thread in before:
        thread.start()
    batcher.close()
    batcher.close()  # twice is harmless
    after = [threading.Thread(target=ask, args=(0.9,)) for _ in range(3)]
    for thread in after:
        thread.start()
    for thread in before + after:
        thread.join(timeout=10)
    assert errors == []
    assert sorted(answers) == sorted([0.1 * i for i in range(5)] + [0.9] * 3)


def test_a_scorer_that_returns_the_wrong_number_of_scores_fails_its_requests() -> None:
    batcher = Batcher(lambda rows: np.zeros(len(rows) + 1), wait_ms=1)
    with pytest.raises(ValueError, match=r"\(2,\) scores for 1 rows"):
        batcher.scores([{"x": 0.5}], timeout=5)
    batcher.close()
