"""Anytime-valid tests: the level holds when the evidence is looked at after every observation."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_core.sequential import e_value_mean_above, e_value_mean_below, rate_above, rate_below


def ever_crosses(draws: np.ndarray, test, threshold: float) -> float:
    """Share of sequences whose e-value reaches ``threshold`` at any look (one per observation)."""
    crossed = 0
    for sequence in draws:
        successes = np.cumsum(sequence)
        for n in range(1, len(sequence) + 1, 1):
            if test(int(successes[n - 1]), n) >= threshold:
                crossed += 1
                break
    return crossed / len(draws)


@pytest.mark.parametrize("bound", [0.01, 0.2])
def test_a_rate_exactly_at_the_bound_is_called_either_side_at_most_alpha_of_the_time(
    bound: float,
) -> None:
    rng = np.random.default_rng(7)
    draws = rng.random((300, 400)) < bound
    above = ever_crosses(draws, lambda s, n: rate_above(s, n, bound), 20)
    below = ever_crosses(draws, lambda s, n: rate_below(s, n, bound), 20)
    # 300 sequences: the binomial 99.9% upper limit of a 5% rate is about 9.6%.
    assert above <= 0.096 and below <= 0.096, (above, below)


def test_clear_effects_are_found_and_the_sides_agree() -> None:
    rng = np.random.default_rng(8)
    errors = rng.random(1_000) < 0.05
    assert rate_above(int(errors.sum()), 1_000, 0.01) > 1e6
    assert rate_below(int(errors.sum()), 1_000, 0.01) < 1
    assert rate_below(0, 1_000, 0.01) > 100
    assert rate_above(0, 1_000, 0.01) < 1


def test_paired_differences_non_inferiority() -> None:
    # +1 where only the challenger is right, -1 where only the champion is.
    same = {1.0: 0, -1.0: 0, 0.0: 600}
    assert e_value_mean_above(same, -0.02, lo=-1.0) >= 20  # identical answers: not worse by 2%
    worse = {1.0: 10, -1.0: 70, 0.0: 320}
    assert e_value_mean_below(worse, -0.02, hi=1.0) >= 1_000
    assert e_value_mean_above(worse, -0.02, lo=-1.0) < 1
    with pytest.raises(ValueError, match="must lie above"):
        e_value_mean_above(same, -1.0, lo=-1.0)
