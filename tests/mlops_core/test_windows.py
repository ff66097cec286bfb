"""Candidate training windows over the same labelled rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications
from mlops_core.training import TrainingConfig
from mlops_core.windows import DEFAULT_WINDOW, candidate_windows


def test_candidates_start_at_the_change_keep_the_newest_and_weight_by_recency() -> None:
    rng = np.random.default_rng(0)
    old = [generate_applications(rng, 1_500, week=w) for w in (1, 2, 3)]
    new = generate_applications(rng, 1_200, week=4, kind=PhaseKind.concept_drift)
    since = new["applied_at"].min()
    config = TrainingConfig(recent_rows=1_000, older_rows=800)
    windows = {
        w.name: w
        for w in candidate_windows(
            [*old, new], CREDIT_SPEC, config, since=since.replace(tzinfo=UTC)
        )
    }
    assert list(windows)[0] == DEFAULT_WINDOW
    assert windows[DEFAULT_WINDOW].frame.height == 1_800
    after = windows["since change"].frame
    assert after.height == new.height and set(after["application_id"]) == set(new["application_id"])
    assert windows["newest"].frame.height == 1_000
    assert (
        windows["newest"].frame["application_id"].to_list()
        == new.tail(1_000)["application_id"].to_list()
    )
    weighted = windows["recency-weighted"]
    assert weighted.weights is not None and weighted.frame.height == 4_000
    assert weighted.weights[-1] == 1.0 and weighted.weights[-1_001] == 0.5
    assert np.all(np.diff(weighted.weights) > 0)


def test_without_a_change_there_is_no_since_change_window() -> None:
    rng = np.random.default_rng(1)
    frames = [generate_applications(rng, 800, week=w) for w in (1, 2)]
    names = [w.name for w in candidate_windows(frames, CREDIT_SPEC, TrainingConfig())]
    assert names == [DEFAULT_WINDOW, "newest", "recency-weighted"]
    late = datetime(2100, 1, 1, tzinfo=UTC)  # nothing after it: too few rows for a window
    names = [w.name for w in candidate_windows(frames, CREDIT_SPEC, TrainingConfig(), since=late)]
    assert "since change" not in names
