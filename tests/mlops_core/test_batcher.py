"""The micro-batcher: one call for concurrent requests, and a close that strands nobody."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from mlops_core.serving.batcher import Batcher


class Slow:
    """A duck-typed model: the probability of class 1 is the row's ``x``; each call takes 50 ms."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        time.sleep(0.05)
        x = frame["x"].to_numpy(dtype=float)
        return np.column_stack([1 - x, x])


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    model = Slow()
    batcher = Batcher(model, wait_ms=20)
    results: dict[int, list[float]] = {}

    def ask(i: int) -> None:
        results[i] = list(batcher.scores(pd.DataFrame({"x": [i / 10, i / 20]})))

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
            answers.extend(batcher.scores(pd.DataFrame({"x": [x]}), timeout=5))
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
