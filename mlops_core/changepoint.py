"""Where a model's accuracy changed: one change point in a sequence of right/wrong answers (pure).

The champion's per-row correctness over its labelled history, oldest first, is a sequence of
Bernoulli draws. ``scan`` finds the single split that maximises the likelihood ratio of "two
accuracies, before and after row k" against "one accuracy throughout" (the Bernoulli version of
the CUSUM / Hinkley scan), and states:

* ``p_value`` -- a permutation test of "no change" (the maximised ratio over every split is
  compared with its value on shuffled sequences, so the search over k is paid for);
* ``low`` / ``high`` -- a 95% interval for the first row of the new regime, from a parametric
  bootstrap (sequences drawn with the two estimated accuracies, split where it was found, and
  scanned again);
* ``before`` / ``after`` -- the accuracy on either side.

A split closer than ``min_segment`` rows to either end is not considered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ChangePoint:
    """The first row of the new regime in the scanned sequence, with its uncertainty."""

    index: int
    low: int
    high: int
    before: float
    after: float
    p_value: float
    rows: int

    @property
    def is_drop(self) -> bool:
        """Accuracy after the change is below accuracy before it."""
        return self.after < self.before


def _xlogy(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = np.zeros_like(y)
    np.multiply(x, np.log(y, where=y > 0, out=np.zeros_like(y)), out=out, where=x > 0)
    return out


def _log_likelihoods(correct: npt.NDArray[np.float64], min_segment: int) -> npt.NDArray[np.float64]:
    """Rows: sequences; columns: the split after ``min_segment + j`` rows; value: the two-segment
    Bernoulli log-likelihood at its maximum."""
    n = correct.shape[-1]
    cumulative = np.cumsum(correct, axis=-1)
    k: npt.NDArray[np.float64] = np.arange(min_segment, n - min_segment + 1, dtype=np.float64)
    left: npt.NDArray[np.float64] = cumulative[..., min_segment - 1 : n - min_segment]
    right: npt.NDArray[np.float64] = cumulative[..., -1:] - left
    total = np.zeros_like(left)
    for hits, size in ((left, k), (right, n - k)):
        p = hits / size
        total += _xlogy(hits, p) + _xlogy(size - hits, 1 - p)
    return np.asarray(total, dtype=np.float64)


def scan(
    correct: npt.ArrayLike,
    *,
    min_segment: int = 50,
    permutations: int = 199,
    bootstrap: int = 200,
    seed: int = 0,
) -> ChangePoint | None:
    """The most likely single change in accuracy of ``correct`` (True/1: right); None when the
    sequence is shorter than two segments."""
    x = np.asarray(correct, dtype=np.float64)
    n = x.size
    if n < 2 * min_segment:
        return None
    rng = np.random.default_rng(seed)
    profile = _log_likelihoods(x, min_segment)
    best = int(np.argmax(profile))
    index = min_segment + best
    before, after = float(x[:index].mean()), float(x[index:].mean())
    # Permutation test: the maximised statistic on shuffled sequences (in chunks, to bound memory).
    observed = float(profile[best])
    exceed = 0
    for start in range(0, permutations, 50):
        shuffled = np.array([rng.permutation(x) for _ in range(min(50, permutations - start))])
        exceed += int(
            (_log_likelihoods(shuffled, min_segment).max(axis=1) >= observed - 1e-9).sum()
        )
    p_value = (1 + exceed) / (1 + permutations)
    # Parametric bootstrap of the location.
    located = []
    for start in range(0, bootstrap, 50):
        size = min(50, bootstrap - start)
        draws = np.concatenate(
            [rng.random((size, index)) < before, rng.random((size, n - index)) < after], axis=1
        ).astype(np.float64)
        located.append(min_segment + np.argmax(_log_likelihoods(draws, min_segment), axis=1))
    spread = np.concatenate(located)
    low, high = (int(v) for v in np.percentile(spread, [2.5, 97.5], method="nearest"))
    return ChangePoint(index, low, high, before, after, p_value, n)
