"""Event times the cooldown can trust: a far-future timestamp neither freezes retraining nor skips
the cooldown, and a negative data-time interval is reported as bad data, never as "in cooldown".

Pure: ``cooldown_fields`` (the assessment's data clocks) into ``decide`` (the policy), and the
suite's timestamp range as learnt and bound to ingestion time. Batches run against that range with
Great Expectations in ``test_validation.py`` (and through the batch flow in
``tests/flows/test_process_batch.py``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mlops_core.assessment import cooldown_fields
from mlops_core.errors import SpecError
from mlops_core.policy import Action, Evidence, PolicyConfig, decide
from mlops_core.ports import TrainingRecord
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec
from mlops_core.validation import TIMESTAMP_KIND, bind_ingestion_time, build_suite

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FAR_FUTURE = datetime(2096, 1, 1, tzinfo=UTC)  # the finding: "last retrain -613200.0 h ago"
CONFIG = PolicyConfig(cooldown=timedelta(hours=24))
# Accuracy fell and a retrain is worth it: only the cooldown can stand in its way.
DEGRADED = {
    "validation_passed": True,
    "reference_accuracy": 0.85,
    "observed_accuracy": 0.75,
    "observed_degraded": True,
    "labelled_rows": 5_000,
    "median_training_seconds": 120.0,
}


def decision_after(last: TrainingRecord, batch_time: datetime | None) -> tuple[Action, str]:
    evidence = Evidence(**DEGRADED, **cooldown_fields(last, batch_time, NOW))
    decision = decide(evidence, CONFIG)
    return decision.action, " | ".join(decision.reasons)


def negative_hours(text: str) -> list[str]:
    return re.findall(r"-\d[\d,.]* h", text)


def test_the_unclipped_interval_of_the_finding_is_bad_data_not_cooldown() -> None:
    # The evidence as it was recorded before clipping: a data clock 613,200 h in the future.
    for clock, action in ((timedelta(days=3), Action.retrain), (timedelta(hours=2), Action.watch)):
        evidence = Evidence(
            **DEGRADED,
            since_last_retrain=timedelta(hours=-613_200),
            since_last_retrain_clock=clock,
        )
        decision = decide(evidence, CONFIG)
        reasons = " | ".join(decision.reasons)
        assert decision.action is action, reasons
        assert "in cooldown" not in reasons and not negative_hours(reasons)
        assert "bad data" in reasons and "timestamps look wrong" in reasons
    # Without a wall time to fall back on, it waits and says why instead of retraining.
    blind = Evidence(**DEGRADED, since_last_retrain=timedelta(hours=-1))
    decision = decide(blind, CONFIG)
    assert decision.action is Action.watch
    assert "until the timestamps are fixed" in " ".join(decision.reasons)


def test_a_far_future_training_data_time_does_not_freeze_retraining() -> None:
    # A champion trained 30 h ago on a window with a year-2096 row (its DATA_UNTIL tag); the
    # stream is live. Clipped to its start, the data clock says 30 h: the cooldown has passed.
    last = TrainingRecord(started_at=NOW - timedelta(hours=30), data_until=FAR_FUTURE)
    action, reasons = decision_after(last, NOW - timedelta(minutes=5))
    assert action is Action.retrain, reasons
    assert "in cooldown" not in reasons and "bad data" not in reasons
    # Trained 2 h ago: still in cooldown, by a positive figure.
    last = TrainingRecord(started_at=NOW - timedelta(hours=2), data_until=FAR_FUTURE)
    action, reasons = decision_after(last, NOW - timedelta(minutes=5))
    assert action is Action.watch and "in cooldown: last retrain 1.9 h ago" in reasons
    assert not negative_hours(reasons)


def test_a_replayed_stream_behind_a_far_future_training_is_reported_and_timed_by_the_clock() -> (
    None
):
    # Replayed data from May; the last training's DATA_UNTIL is in 2096 (clipped to its start in
    # November): the data times contradict each other.
    batch = datetime(2026, 5, 4, tzinfo=UTC)
    last = TrainingRecord(started_at=NOW - timedelta(days=3), data_until=FAR_FUTURE)
    fields = cooldown_fields(last, batch, NOW)
    assert fields["since_last_retrain"] < timedelta(0)
    assert fields["last_training_data_time"] == (NOW - timedelta(days=3)).isoformat(
        timespec="minutes"
    )
    action, reasons = decision_after(last, batch)
    assert action is Action.retrain, "3 days by the clock: the cooldown has passed"
    assert "bad data" in reasons and "2026-05-04T00:00" in reasons
    assert "in cooldown" not in reasons and not negative_hours(reasons)
    # Trained 2 h ago by the clock: it waits, and says it is the clock that decided.
    last = TrainingRecord(started_at=NOW - timedelta(hours=2), data_until=FAR_FUTURE)
    action, reasons = decision_after(last, batch)
    assert action is Action.watch and "2.0 h ago by the clock" in reasons
    assert "in cooldown" not in reasons and not negative_hours(reasons)


def test_a_far_future_batch_does_not_skip_the_cooldown() -> None:
    # Trained 2 h ago on data up to then; this batch carries one row dated 2096.
    last = TrainingRecord(started_at=NOW - timedelta(hours=2), data_until=NOW - timedelta(hours=2))
    fields = cooldown_fields(last, FAR_FUTURE, NOW)
    assert fields["since_last_retrain"] == timedelta(hours=2)
    assert fields["batch_data_time"] == NOW.isoformat(timespec="minutes")
    action, reasons = decision_after(last, FAR_FUTURE)
    assert action is Action.watch and "in cooldown: last retrain 2.0 h ago" in reasons


def test_data_time_is_kept_when_it_is_plausible() -> None:
    # A replay: both data times in the past, a week apart; the clock says 1 h. Data time decides.
    last = TrainingRecord(
        started_at=NOW - timedelta(hours=1), data_until=datetime(2026, 3, 1, tzinfo=UTC)
    )
    fields = cooldown_fields(last, datetime(2026, 3, 8, tzinfo=UTC), NOW)
    assert fields["since_last_retrain"] == timedelta(days=7)
    action, reasons = decision_after(last, datetime(2026, 3, 8, tzinfo=UTC))
    assert action is Action.retrain and "bad data" not in reasons
    # Without timestamps, wall time.
    assert cooldown_fields(last, None, NOW)["since_last_retrain"] == timedelta(hours=1)


SPEC = DatasetSpec(name="toy", timestamp="at", features={"x": "numeric"})


def reference(*times: datetime) -> pl.DataFrame:
    return pl.DataFrame({"x": [float(i) for i in range(len(times))], "at": list(times)})


def test_the_suite_learns_a_lower_bound_and_leaves_the_upper_to_ingestion_time(
    settings: Settings,
) -> None:
    suite = build_suite(
        SPEC, reference(datetime(2026, 1, 5), datetime(2026, 2, 1)), settings
    ).to_json_dict()
    (stored,) = [
        e for e in suite["expectations"] if (e.get("meta") or {}).get("kind") == TIMESTAMP_KIND
    ]
    assert stored["kwargs"]["column"] == "at" and "max_value" not in stored["kwargs"]
    earliest = datetime.fromisoformat(str(stored["kwargs"]["min_value"]))
    assert earliest == datetime(2026, 1, 5, tzinfo=UTC) - timedelta(days=3650)
    bound = bind_ingestion_time(dict(suite), NOW, settings)
    (closed,) = [
        e
        for e in bound["expectations"]
        if e["kwargs"].get("column") == "at" and "max_value" in e["kwargs"]
    ]
    assert datetime.fromisoformat(closed["kwargs"]["max_value"]) == NOW + timedelta(hours=24)
    assert "max_value" not in stored["kwargs"], "the stored suite is left as it was"


def test_a_reference_with_future_event_times_is_refused(settings: Settings) -> None:
    with pytest.raises(SpecError, match=r"column 'at' holds 1 event time\(s\) after now"):
        build_suite(SPEC, reference(datetime(2026, 1, 5), datetime(2100, 1, 1)), settings)
