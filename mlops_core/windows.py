"""Candidate training windows for a challenger (pure).

After a concept change most of a fixed "newest rows plus a sample of older rows" window follows
the old concept, and a model trained on it learns a blur of both. So a retrain considers a few
windows over the same labelled rows, oldest first, and keeps the one that scores best on
validation rows that no window contains and the gates never see (``mlops_core.challenger``):

* ``recent+older`` -- the newest ``recent_rows`` and a seeded sample of ``older_rows`` older ones
  (the default, and the tie-breaker: it wins unless another window scores higher);
* ``since change`` -- every row since the change point in the champion's accuracy
  (``mlops_core.change``), when the change is a significant drop and the spec names a timestamp;
* ``newest`` -- the newest ``recent_rows`` alone;
* ``recency-weighted`` -- the newest ``4 x recent_rows`` rows, each weighted by half for every
  ``recent_rows`` rows that came after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from mlops_core.data import event_times
from mlops_core.spec import DatasetSpec
from mlops_core.training import TrainingConfig, training_window

MIN_WINDOW_ROWS = 200
DEFAULT_WINDOW = "recent+older"


@dataclass(frozen=True)
class Window:
    """One candidate: its rows (oldest first), how many of the last come from the newest batch,
    and its sample weights (None: all equal)."""

    name: str
    frame: pl.DataFrame
    newest_rows: int
    weights: npt.NDArray[np.float64] | None = field(default=None, compare=False)


def _newest(frames: list[pl.DataFrame], window: pl.DataFrame) -> int:
    return min(frames[-1].height, window.height)


def _since(
    frames: list[pl.DataFrame], spec: DatasetSpec, since: datetime, config: TrainingConfig
) -> pl.DataFrame | None:
    """Every row at or after ``since`` (the newest ``4 x recent_rows`` of them at most)."""
    kept = []
    for frame in frames:
        times = event_times(frame, spec)
        if times is None:
            return None
        kept.append(frame.filter((times >= since).fill_null(False)))
    wide = config.model_copy(update={"recent_rows": 4 * config.recent_rows, "older_rows": 0})
    if not any(k.height for k in kept):
        return None
    return training_window([k for k in kept if k.height] or kept, spec, wide)


def candidate_windows(
    frames: list[pl.DataFrame],
    spec: DatasetSpec,
    config: TrainingConfig,
    *,
    since: datetime | None = None,
) -> list[Window]:
    """The candidate windows over ``frames`` (oldest first; the last is the newest batch's
    training rows), the default first; windows under ``MIN_WINDOW_ROWS`` rows are left out."""
    default = training_window(frames, spec, config)
    windows = [Window(DEFAULT_WINDOW, default, min(frames[-1].height, config.recent_rows))]
    if since is not None:
        recent = _since(frames, spec, since, config)
        if recent is not None and recent.height >= MIN_WINDOW_ROWS:
            windows.append(Window("since change", recent, _newest(frames, recent)))
    newest = training_window(frames, spec, config.model_copy(update={"older_rows": 0}))
    windows.append(Window("newest", newest, _newest(frames, newest)))
    wide = training_window(
        frames,
        spec,
        config.model_copy(update={"recent_rows": 4 * config.recent_rows, "older_rows": 0}),
    )
    age = np.arange(wide.height - 1, -1, -1, dtype=np.float64)
    weights = 0.5 ** (age / config.recent_rows)
    windows.append(Window("recency-weighted", wide, _newest(frames, wide), weights))
    return [w for w in windows if w.frame.height >= MIN_WINDOW_ROWS or w.name == DEFAULT_WINDOW]
