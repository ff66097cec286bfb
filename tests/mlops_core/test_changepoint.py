"""The change-point scan: where accuracy changed, how sure, and its level when nothing changed."""

from __future__ import annotations

import numpy as np

from mlops_core.changepoint import scan


def test_a_drop_is_found_where_it_happened_with_an_interval_that_covers_it() -> None:
    rng = np.random.default_rng(1)
    right = np.concatenate([rng.random(3_000) < 0.84, rng.random(1_400) < 0.56])
    point = scan(right)
    assert point is not None
    assert point.is_drop and point.p_value <= 0.01
    assert abs(point.index - 3_000) <= 60
    assert point.low <= 3_000 <= point.high and point.high - point.low < 300
    assert point.before > 0.8 and point.after < 0.6


def test_no_change_is_rarely_called_one() -> None:
    rng = np.random.default_rng(2)
    p_values = [
        scan(rng.random(600) < 0.75, permutations=99, bootstrap=10, seed=i).p_value  # type: ignore[union-attr]
        for i in range(60)
    ]
    # Level 5%: 60 looks at no change; 10 or more rejections would happen 0.3% of the time.
    assert sum(p <= 0.05 for p in p_values) < 10


def test_too_short_a_history_has_no_change_point() -> None:
    assert scan(np.ones(99, dtype=bool)) is None
    assert scan(np.ones(100, dtype=bool)) is not None
