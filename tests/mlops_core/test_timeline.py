"""The timeline's rows and renderings (pure): records, the PNG, the self-contained HTML pages."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.drift_report import DriftReport, FeatureDrift, TestResult
from mlops_core.evaluation import Gate, GateReport
from mlops_core.outcomes import RetrainOutcome, RetrainStatus
from mlops_core.performance import PerformanceEstimate, PerformanceReport
from mlops_core.policy import Action, Decision, Evidence, PolicyConfig
from mlops_core.timeline import (
    LabelsResult,
    Plot,
    RetrainResult,
    Timeline,
    batch_html,
    batch_row,
    carry_champions,
    cost_benefit,
    format_p,
    labels_by_batch,
    labels_result,
    timeline_html,
    timeline_png,
)
from mlops_core.validation import ExpectationFailure, ValidationReport

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A tiny valid PNG, standing in for a drift plot.
DOT = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _entry(index: int, name: str, state: BatchState, reason: str | None = None) -> LedgerEntry:
    sha = f"{index:02d}" + "ab" * 31
    return LedgerEntry(
        dataset="credit",
        sha256=sha,
        state=state,
        location=f"/home/{state.value}/credit/{sha}.parquet",
        original_name=name,
        file_format="parquet",
        size_bytes=1_000,
        reason=reason,
        submitted_at=f"2026-03-0{index}T10:00:00.000000+00:00",
        updated_at=f"2026-03-0{index}T10:00:05.000000+00:00",
    )


def _validation(name: str, failures: tuple[ExpectationFailure, ...] = ()) -> dict[str, Any]:
    report = ValidationReport(
        dataset="credit",
        source=name,
        usable=True,
        success=not failures,
        rows=500,
        evaluated=12,
        failures=failures,
    )
    return report.to_dict()


def _drift(p_value: float, drifted: bool) -> dict[str, Any]:
    tests = (
        TestResult(name="mmd", statistic=0.02, p_value=p_value, adjusted_p_value=min(1, 4 * p_value),
                   is_drift=drifted, reference_rows=3000, current_rows=500),
        TestResult(name="classifier", statistic=0.6, p_value=0.3, adjusted_p_value=0.6,
                   is_drift=False, effect_size=0.56, effect_metric="AUC", reference_rows=3000,
                   current_rows=500),
    )  # fmt: skip
    features = (
        FeatureDrift(feature="credit_score", test="ks", statistic=0.4, p_value=1e-9,
                     adjusted_p_value=8e-9, effect_size=0.7, effect_metric="wasserstein/std",
                     is_drift=drifted),
        FeatureDrift(feature="purpose", test="chi2", statistic=2.0, p_value=0.2,
                     adjusted_p_value=1.0, effect_size=0.01, effect_metric="jensen-shannon",
                     is_drift=False),
    )  # fmt: skip
    report = DriftReport(
        is_drift=drifted,
        p_value=min(1, 4 * p_value),
        false_alarm_rate=0.05,
        tests=tests,
        features=features,
        drivers=("credit_score",) if drifted else (),
        reference_rows=3000,
        current_rows=500,
    )
    return json.loads(json.dumps(report.to_dict()))


def _assessment(champion: str, *, labelled: bool) -> dict[str, Any]:
    estimate = PerformanceEstimate(
        estimated_accuracy=0.78, ci_low=0.74, ci_high=0.81, confidence=0.95,
        reference_accuracy=0.84, rows=500,
    )  # fmt: skip
    performance = PerformanceReport(
        reference=0.84, current=0.70, difference=-0.14, ci_low=-0.19, ci_high=-0.09,
        confidence=0.95, threshold=0.05, degraded=True, reference_rows=600, current_rows=400,
        bootstraps=1000,
    )  # fmt: skip
    return {
        "champion_version": champion,
        "evidence": {},
        "performance": performance.model_dump(mode="json") if labelled else None,
        "estimate": estimate.model_dump(mode="json"),
        "notes": [],
    }


def _report(detail: dict[str, Any]) -> dict[str, Any]:
    # Through JSON, as the ledger stores it beside the file.
    return json.loads(json.dumps({"detail": detail}, default=str))


@pytest.fixture
def timeline() -> Timeline:
    """Three batches: a quiet one, a quarantined one (met no champion), a retrain that promoted."""
    quiet = batch_row(
        _entry(1, "week-01.csv", BatchState.processed),
        _report(
            {
                "validation": _validation("week-01.csv"),
                "drift": _drift(0.4, False),
                "assessment": _assessment("1", labelled=False),
                "decision": Decision(
                    action=Action.none,
                    reasons=("no drift and no loss of accuracy",),
                    evidence=Evidence(validation_passed=True, reference_accuracy=0.84),
                ).to_dict(),
                "decision_run_id": "run-quiet",
            }
        ),
    )
    failure = ExpectationFailure(
        column="income", kind="nulls", expectation="expect_column_values_to_not_be_null",
        observed="25.3% null", expected="at most 1.0% null",
    )  # fmt: skip
    broken = batch_row(
        _entry(2, "week-02 <bad> & broken.parquet", BatchState.quarantined, "income: nulls"),
        _report(
            {
                "validation": _validation("week-02", (failure,)),
                "drift": None,
                "assessment": {"champion_version": None, "evidence": {}, "notes": []},
                "decision": Decision(
                    action=Action.none,
                    reasons=("the batch failed validation: it is quarantined",),
                    evidence=Evidence(validation_passed=False),
                ).to_dict(),
                "decision_run_id": "run-broken",
            }
        ),
        run_tags={"mlops.decision": "none", "mlops.champion_version": ""},
    )
    evidence = Evidence(
        validation_passed=True, drift=True, drift_p_value=0.0002, reference_accuracy=0.84,
        observed_accuracy=0.70, observed_degraded=True, labelled_rows=5_000,
        since_last_retrain=timedelta(days=63), median_training_seconds=36.0,
    )  # fmt: skip
    decision = Decision(
        action=Action.retrain,
        reasons=("observed accuracy 70.0% is 14.0% below the reference 84.0%",),
        evidence=evidence,
        expected_benefit=1_050.0,
        retrain_cost=200.02,
    )
    gates = GateReport(
        gates=(Gate(name="primary", threshold="> champion", observed="0.83 vs 0.70", passed=True),),
        challenger_accuracy=0.83,
        champion_accuracy=0.70,
        rows=400,
    )
    outcome = RetrainOutcome(
        RetrainStatus.promoted, "all 1 gates passed; promoted directly", version="2",
        gates=gates, champion_before="1", champion_after="2",
    )  # fmt: skip
    retrained = batch_row(
        _entry(3, "week-03.parquet", BatchState.processed),
        _report(
            {
                "validation": _validation("week-03.parquet"),
                "drift": _drift(0.00005, True),
                "assessment": _assessment("1", labelled=True),
                "decision": decision.to_dict(),
                "decision_run_id": "run-retrain",
            }
        ),
        run_tags={"mlops.decision": "retrain", "mlops.retrain": "promoted"},
        retrain=json.loads(json.dumps(outcome.to_dict(), default=str)),
        plots=[Plot("effect sizes", DOT)],
    )
    return Timeline("credit", carry_champions([quiet, broken, retrained]), PolicyConfig())


def test_rows_read_the_ledger_report_and_the_retrain_outcome(timeline: Timeline) -> None:
    quiet, broken, retrained = timeline.rows
    assert [r.file_name for r in timeline.rows] == [
        "week-01.csv",
        "week-02 <bad> & broken.parquet",
        "week-03.parquet",
    ]
    assert broken.quarantined and broken.outcome == "quarantined" and broken.verdict == "failed"
    assert broken.champion_text() == "v1", "a quarantined batch shows the champion standing then"
    assert retrained.outcome == "promoted v2" and retrained.champion_text() == "v1 -> v2"
    assert retrained.retrain is not None and retrained.retrain.gates is not None
    observed = retrained.observed
    assert observed is not None and (observed.low, observed.high) == pytest.approx((0.65, 0.75))
    assert retrained.retrain_line(0.05) == pytest.approx(0.79)
    records = timeline.records()
    assert [r["drift p"] for r in records] == ["1.000", "-", "< 0.001"]
    assert records[2]["observed accuracy"] == "70.0% [65.0, 75.0]"
    assert records[0]["estimated accuracy"] == "78.0% [74.0, 81.0]"
    as_json = timeline.to_dict()["batches"]
    assert [b["state"] for b in as_json] == ["processed", "quarantined", "processed"]
    assert as_json[2]["retrain"] == "promoted" and as_json[2]["champion_after"] == "2"


def test_a_retrain_not_yet_recorded_is_pending_and_a_refusal_says_why() -> None:
    decision = Decision(
        action=Action.retrain, reasons=("x",), evidence=Evidence(validation_passed=True)
    )
    detail = _report({"decision": decision.to_dict()})
    entry = _entry(4, "w4.csv", BatchState.processed)
    assert batch_row(entry, detail).outcome == "retrain pending"
    refused = batch_row(
        entry,
        detail,
        run_tags={"mlops.retrain": "refused", "mlops.retrain_reason": "primary gate failed"},
    )
    assert refused.outcome == "retrain refused: primary gate failed"
    assert batch_row(entry, {"detail": {"validation": "test"}}).verdict == "processed"


def test_p_values_below_a_thousandth_are_shown_as_such() -> None:
    assert format_p(0.0) == "< 0.001" and format_p(0.00099) == "< 0.001"
    assert format_p(0.001) == "0.001" and format_p(0.0432) == "0.043" and format_p(None) == "-"


def test_cost_benefit_names_its_units(timeline: Timeline) -> None:
    decision = timeline.rows[2].decision
    assert decision is not None
    text = " ".join(cost_benefit(decision, PolicyConfig()))
    # 1,050 at 0.05 a correct prediction: 21,000 more correct predictions of 300,000 (30 days).
    assert "Expected benefit 1,050.00" in text and "21,000 more correct predictions" in text
    assert "30-day horizon" in text and "300,000 predictions" in text
    assert "currency of MLOPS_VALUE_PER_CORRECT_PREDICTION" in text
    assert "fixed 200.00" in text and "median training 36 s" in text
    assert "covers the cost" in text
    assert cost_benefit(timeline.rows[0].decision, PolicyConfig()) == []


def test_html_is_self_contained_escaped_and_has_a_section_per_batch(timeline: Timeline) -> None:
    page = timeline_html(timeline)
    # Nothing is fetched over a network: no http(s) source, link, stylesheet or CSS url().
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(|@import|<script|<link", page, re.I)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2  # the timeline plot and the retrained batch's drift plot
    assert all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    for row in timeline.rows:
        assert f'id="{row.anchor}"' in page and f'href="#{row.anchor}"' in page
    assert "week-02 &lt;bad&gt; &amp; broken.parquet" in page and "<bad>" not in page
    assert "Combined p &lt; 0.001" in page and "Combined p = 1 " in page
    assert "&lt; 0.001" in page and "Bonferroni-adjusted p" in page and "Holm-adjusted p" in page
    assert "25.3% null" in page and "expect_column_values_to_not_be_null" in page
    assert "primary" in page and "0.83 vs 0.70" in page  # the gate table
    assert "21,000 more correct predictions" in page


def test_one_batch_page_stands_alone(timeline: Timeline) -> None:
    page = batch_html(timeline, timeline.rows[1].sha256)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "week-02 &lt;bad&gt; &amp; broken.parquet" in page and "week-01.csv" not in page
    assert "Not tested: the batch failed validation" in page
    assert "Not assessed: the batch failed validation" in page
    with pytest.raises(KeyError):
        batch_html(timeline, "ff" * 32)


def test_the_plot_is_a_png(timeline: Timeline, tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    path.write_bytes(timeline_png(timeline))
    assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000
    empty = Timeline("credit", ())
    assert "No batch has landed yet" in timeline_html(empty)


def test_delayed_labels_give_the_batch_its_observed_accuracy_and_their_own_outcome() -> None:
    # Labels arrive one batch later (the demo's stream): the batch's row shows the accuracy they
    # observed, the labels' own decision and what its retrain did.
    batch = _entry(1, "week-14.parquet", BatchState.processed)
    labels_entry = _entry(2, "labels-14.parquet", BatchState.processed)
    evidence = Evidence(validation_passed=True, reference_accuracy=0.84, observed_accuracy=0.70)
    decision = Decision(action=Action.retrain, reasons=("observed 70.0%",), evidence=evidence)
    refused = RetrainOutcome(
        RetrainStatus.refused, "not shown better on 600 rows", version="3",
        champion_before="1", champion_after="1",
    )  # fmt: skip
    joined = labels_result(
        labels_entry,
        _report(
            {
                "labels": {"labels": 500, "matched_rows": 400, "batches": [batch.sha256]},
                "assessment": _assessment("1", labelled=True),
                "decision": decision.to_dict(),
                "decision_run_id": "run-labels",
            }
        ),
        run_tags={"mlops.decision": "retrain", "mlops.retrain": "refused"},
        retrain=json.loads(json.dumps(refused.to_dict(), default=str)),
    )
    assert joined is not None
    batches, labels = joined
    assert batches == (batch.sha256,) and labels.file_name == "labels-14.parquet"
    quiet = Decision(action=Action.none, reasons=("quiet",), evidence=evidence).to_dict()
    report = _report(
        {
            "validation": _validation("week-14.parquet"),
            "drift": _drift(0.4, False),
            "assessment": _assessment("1", labelled=False),
            "decision": quiet,
            "decision_run_id": "run-batch",
        }
    )
    before = batch_row(batch, report)
    after = batch_row(batch, report, labels=labels)
    assert before.observed is None and before.decisions == "none" and before.outcome == "none"
    observed = after.observed
    assert observed is not None and observed.value == pytest.approx(0.70)
    assert after.decisions == "none / labels: retrain"
    assert after.outcome == "none; labels: retrain refused: not shown better on 600 rows"
    timeline = Timeline("credit", (after,), PolicyConfig())
    assert timeline.records()[0]["observed accuracy"] == "70.0% [65.0, 75.0]"
    assert timeline.records()[0]["outcome"] == "none; labels: retrain refused", (
        "reasons: on its page"
    )
    page = batch_html(timeline, batch.sha256)
    assert "its delayed labels, labels-14.parquet" in page and "not shown better" in page
    no_labels = _report({"labels": {"labels": 5, "matched_rows": 0, "batches": []}})
    assert labels_result(labels_entry, no_labels) is None, "labels that joined nothing: no row"


def test_labels_that_join_several_batches_decide_once_on_the_newest() -> None:
    evidence = Evidence(validation_passed=True, reference_accuracy=0.84, observed_accuracy=0.70)
    decision = Decision(action=Action.retrain, reasons=("observed 70.0%",), evidence=evidence)
    promoted = RetrainResult(status="promoted", version="4", champion_after="4")
    pooled = LabelsResult(file_name="labels-03.csv", decision=decision, retrain=promoted, batches=2)
    older, newer, other = "a" * 64, "b" * 64, "c" * 64
    found = labels_by_batch([((newer, older), pooled)], [older, newer, other])
    assert set(found) == {older, newer}
    assert found[newer].retrain == promoted and found[newer].decision == decision
    assert found[older].retrain is None and found[older].decision is None
    assert found[older].file_name == "labels-03.csv" and found[older].batches == 2
    rows = [
        batch_row(_entry(i, f"week-0{i}.csv", BatchState.processed), None, labels=found.get(sha))
        for i, sha in ((1, older), (2, newer))
    ]
    rows = [replace(r, sha256=sha) for r, sha in zip(rows, (older, newer), strict=True)]
    timeline = Timeline("credit", tuple(rows), PolicyConfig())
    assert sum(len(r.retrains) for r in timeline.rows) == 1, "one retrain, counted once"
    assert "1 retrains (1 promoted)" in timeline_html(timeline)
    assert "joined 2 batches" in batch_html(timeline, older)
