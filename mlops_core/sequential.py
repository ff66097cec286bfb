"""Anytime-valid tests on counts: e-processes that may be looked at as often as one likes (pure).

A rollout step's analysis runs every second on a window that grows. A fixed-sample test re-run at
each look rejects a true null far more often than its level says (a challenger exactly at the
error-rate maximum was rolled back 14% of the time at a nominal 5%). These tests do not have that
problem: each is a nonnegative supermartingale under its null, so by Ville's inequality the chance
that it *ever* reaches ``1 / alpha`` -- at any look, however many -- is at most ``alpha``.

The construction is testing by betting (Waudby-Smith and Ramdas, 2023; Shafer and Vovk). For
observations ``x`` in ``[lo, hi]`` and the null "the mean is at most ``m``", the wealth after ``n``
observations betting a fixed fraction ``lam`` is ``prod(1 + lam * (x_i - m))``, whose expectation is
at most 1 under the null for every ``lam`` in ``[0, 1 / (m - lo))``. Averaging the wealth over a
fixed grid of fractions (a mixture, weights fixed in advance) keeps that property and adapts to
the effect's size. The wealth depends only on how many observations took each value, so the
model server's counters are enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Bets as fractions of the largest allowed one: a near-full bet (a clean run proves its case fast),
# then halving, so small effects are caught too. Fixed in advance, equal weights.
_GRID = (0.99, 0.9, 0.75, *(0.5**k for k in range(1, 10)))


def e_value_mean_above(counts: Mapping[float, int], bound: float, lo: float) -> float:
    """Evidence that the mean of the counted values is *above* ``bound``.

    ``counts`` maps each observed value (at least ``lo``) to how often it was seen. The null is
    "the mean is at most ``bound``"; under it the returned e-value reaches ``1 / alpha`` with
    probability at most ``alpha``, at any number of looks.
    """
    if bound <= lo:
        raise ValueError(f"the bound {bound} must lie above the values' floor {lo}")
    largest = 1.0 / (bound - lo)
    total = 0.0
    for share in _GRID:
        lam = share * largest
        log_wealth = 0.0
        for value, count in counts.items():
            if count:
                log_wealth += count * math.log1p(lam * (value - bound))
        total += math.exp(min(log_wealth, 700.0))
    return total / len(_GRID)


def e_value_mean_below(counts: Mapping[float, int], bound: float, hi: float) -> float:
    """Evidence that the mean of the counted values is *below* ``bound`` (values at most ``hi``).

    The mirror of :func:`e_value_mean_above`: the null is "the mean is at least ``bound``".
    """
    return e_value_mean_above({-v: c for v, c in counts.items()}, -bound, -hi)


def rate_below(successes: int, trials: int, bound: float) -> float:
    """E-value that a Bernoulli rate is below ``bound`` (null: at least ``bound``)."""
    return e_value_mean_below({1.0: successes, 0.0: trials - successes}, bound, hi=1.0)


def rate_above(successes: int, trials: int, bound: float) -> float:
    """E-value that a Bernoulli rate is above ``bound`` (null: at most ``bound``)."""
    return e_value_mean_above({1.0: successes, 0.0: trials - successes}, bound, lo=0.0)


def p_value(e_value: float) -> float:
    """The anytime-valid p-value of an e-value, ``min(1, 1 / e)``."""
    return 1.0 if e_value <= 1.0 else 1.0 / e_value
