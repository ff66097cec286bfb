"""Retention decisions (``mlops_core.retention``): only old settled files go, lineage and open
rollouts are kept with their reason, labels stay while a batch they may label stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.retention import plan_retention

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)


def entry(sha: str, days_ago: float, state: BatchState = BatchState.processed) -> LedgerEntry:
    when = (NOW - timedelta(days=days_ago)).isoformat(timespec="microseconds")
    return LedgerEntry(
        "credit", sha, state, f"/p/{sha}.csv", f"{sha}.csv", "csv", 100, None, when, when
    )


def test_old_settled_files_go_and_protected_or_unsettled_or_recent_ones_stay() -> None:
    batches = [
        entry("a" * 64, 200),
        entry("b" * 64, 150, BatchState.quarantined),
        entry("c" * 64, 120),
        entry("d" * 64, 300, BatchState.dead_letter),
        entry("e" * 64, 10),
    ]
    plan = plan_retention(
        batches, [], cutoff=CUTOFF, protected={"c" * 36: "training data of model v3"}
    )
    assert [e.sha256[0] for _, e in plan.delete] == ["a", "b"], "oldest first"
    assert [(k.entry.sha256[0], k.reason) for k in plan.kept] == [
        ("c", "training data of model v3")
    ]
    assert plan.bytes == 200


def test_labels_stay_while_a_batch_they_may_label_is_kept() -> None:
    kept_batch = entry("c" * 64, 120)
    before, after = entry("1" * 64, 130), entry("2" * 64, 110)
    plan = plan_retention(
        [kept_batch], [before, after], cutoff=CUTOFF, protected={"c" * 12: "training data of v1"}
    )
    assert [(kind, e.sha256[0]) for kind, e in plan.delete] == [("labels", "1")]
    assert [(k.kind, k.entry.sha256[0]) for k in plan.kept] == [("batch", "c"), ("labels", "2")]
    alone = plan_retention([], [before, after], cutoff=CUTOFF, protected={})
    assert len(alone.delete) == 2, "with no batch kept, old labels go"
