"""What a person reads in the Prefect UI: p-values, corrections, units, links, run outcomes."""

from __future__ import annotations

from mlops_core.batches import BatchState
from mlops_core.evaluation import Gate, GateReport
from mlops_core.outcomes import BatchOutcome, RetrainOutcome, RetrainStatus
from mlops_core.policy import Action, Decision, Evidence, PolicyConfig
from mlops_core.reporting import (
    MlflowPlace,
    batch_markdown,
    batch_run_label,
    md_code,
    md_text,
    mlflow_artifact_url,
    p_phrase,
    p_text,
)

DRIFT = {
    "is_drift": True,
    "p_value": 0.0,
    "false_alarm_rate": 0.05,
    "drivers": ["credit_score"],
    "tests": [
        {
            "name": "mmd",
            "statistic": 0.12,
            "p_value": 0.0,
            "adjusted_p_value": 0.0,
            "is_drift": True,
        },
        {
            "name": "classifier",
            "statistic": 0.6,
            "p_value": 0.02,
            "adjusted_p_value": 0.04,
            "is_drift": True,
        },
    ],
    "features": [
        {
            "feature": "credit_score",
            "test": "ks",
            "statistic": 0.3,
            "p_value": 1e-9,
            "adjusted_p_value": 1.1e-8,
            "effect_size": 0.8,
            "effect_metric": "wasserstein/std",
            "missing_change": 0.0,
            "is_drift": True,
        }
    ],
}


def decision(action: Action = Action.retrain) -> Decision:
    return Decision(
        action=action,
        reasons=("estimated accuracy 70.0% is over 5% below the reference 84.0%",),
        evidence=Evidence(validation_passed=True, drift=True, drift_p_value=0.0),
        expected_benefit=2_100.0,
        retrain_cost=200.5,
    )


def refused() -> RetrainOutcome:
    gates = GateReport(
        gates=(
            Gate(name="beats champion", threshold=">= +1.0 pt", observed="-0.4 pt", passed=False),
        ),
        challenger_accuracy=0.80,
        champion_accuracy=0.804,
        rows=900,
    )
    return RetrainOutcome(
        RetrainStatus.refused,
        "refused: the challenger is not better -- gates failed: beats champion (-0.4 pt)",
        version="6",
        gates=gates,
        champion_before="5",
        champion_after="5",
    )


def test_p_values_below_the_floor_never_read_as_zero() -> None:
    assert p_text(0.0) == "< 0.001" and p_text(0.0004) == "< 0.001"
    assert p_text(0.001) == "0.001" and p_text(0.0234) == "0.0234"
    assert p_phrase(0.0) == "p < 0.001" and p_phrase(0.2) == "p = 0.2"


def test_the_artifact_names_each_correction_and_shows_no_zero_p_value() -> None:
    text = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        original_name="batch-19-week19.csv",
        validation={"verdict": "passed", "failures": []},
        drift=DRIFT,
        decision=decision().to_dict(),
    )
    assert "`batch-19-week19.csv`" in text.splitlines()[0]
    assert "combined p < 0.001" in text and "p = 0" not in text
    assert "Holm's correction over the 2 tests" in text
    assert "p-value (Holm)" in text and "| mmd | 0.12 | < 0.001 | < 0.001 | yes |" in text
    # Per-feature p-values are Bonferroni-adjusted (drift_features multiplies by the count).
    assert "p-value (Bonferroni over the features)" in text and "Holm over the features" not in text
    assert "| credit_score | ks | < 0.001 |" in text


def test_cost_and_benefit_carry_their_units() -> None:
    text = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        validation=None,
        drift=None,
        decision=decision().to_dict(),
        policy=PolicyConfig(),
    )
    # The same sentences as the timeline's batch page (reporting.cost_benefit), as bullets.
    assert "**Cost–benefit:**" in text and "currency of MLOPS_VALUE_PER_CORRECT_PREDICTION" in text
    assert "- Expected benefit 2,100.00" in text and "300,000 predictions at 10,000 a day" in text
    assert "- Retrain cost 200.50 in the same currency: fixed 200.00" in text
    assert "+ compute 0.5" in text and "- The benefit covers the cost." in text


def test_a_refused_retrain_is_said_with_its_reason_and_gates() -> None:
    text = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        validation=None,
        drift=None,
        decision=decision().to_dict(),
        retrain=refused(),
    )
    assert "**Retrain:** **refused** by the gates (challenger v6)" in text
    assert "the challenger is not better" in text
    assert "| beats champion | >= +1.0 pt | -0.4 pt | FAIL |" in text
    assert "champion before v5, after v5" in text
    unacted = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        validation=None,
        drift=None,
        decision=decision().to_dict(),
    )
    assert "not carried out by this run" in unacted


def test_links_come_from_the_mlflow_ui_of_now_and_plots_are_served_over_http() -> None:
    place = MlflowPlace(
        tracking_uri="sqlite:////tmp/mlflow.db",
        ui="http://127.0.0.1:5123/",
        experiment_id="3",
        run_id="r1",
    )
    text = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        validation=None,
        drift=DRIFT,
        decision=None,
        mlflow=place,
        plots=["drift/effect_sizes.png"],
    )
    assert "(http://127.0.0.1:5123/#/experiments/3/runs/r1?workflowType=machine_learning)" in text
    assert (
        "![effect sizes](http://127.0.0.1:5123/get-artifact?path=drift/effect_sizes.png&run_uuid=r1)"
        in text
    )
    assert "file://" not in text
    assert mlflow_artifact_url(None, "r1", "drift/x.png") is None
    batch_page = "runs/r1/artifacts/report/batch.html?workflowType=machine_learning)"
    timeline_page = "runs/r1/artifacts/report/timeline.html?workflowType=machine_learning)"
    assert batch_page in text and timeline_page in text
    labels = batch_markdown(
        dataset="credit",
        sha256="cd" * 32,
        validation=None,
        drift=None,
        decision=None,
        mlflow=place,
        title="Labels",
    )
    assert timeline_page in labels and "batch.html" not in labels, "a labels file has no page"


def test_a_hostile_file_name_adds_no_link_image_or_heading() -> None:
    hostile = "x`](http://evil.example) ![t](http://tracker.example/p.png)\n# Decision: promoted"
    validation = {
        "verdict": "failed",
        "failures": [
            {
                "column": "purpose`",
                "kind": "unseen category",
                "observed": "e.g. '[click](http://evil.example)'",
                "expected": "one of car",
            }
        ],
    }
    text = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        original_name=hostile,
        validation=validation,
        drift=None,
        decision=None,
    )
    lines = text.splitlines()
    assert lines[0].startswith("# Batch ``") and "\n" not in lines[0]
    assert not any(line.startswith("# Decision") for line in lines)
    assert "[click](" not in text and "\\[click\\]\\(http" in text
    assert md_code("a`b") == "``a`b``" and md_text("[x](y)") == "\\[x\\]\\(y\\)"


def test_without_an_mlflow_ui_the_run_and_tracking_uri_are_named_not_linked() -> None:
    place = MlflowPlace(tracking_uri="sqlite:////tmp/mlflow.db", experiment_id="3", run_id="r1")
    text = batch_markdown(
        dataset="credit",
        sha256="ab" * 32,
        validation=None,
        drift=DRIFT,
        decision=None,
        mlflow=place,
        plots=["drift/effect_sizes.png"],
    )
    assert "decision run `r1` in `sqlite:////tmp/mlflow.db`" in text
    assert "`drift/effect_sizes.png`" in text
    assert "](" not in text and "file://" not in text


def outcome(**changes: object) -> BatchOutcome:
    values: dict = {
        "dataset": "credit",
        "sha256": "ab" * 32,
        "state": BatchState.processed,
        "location": "/x",
        "reason": None,
        "validation": None,
        "decision": decision(Action.none),
    }
    return BatchOutcome(**{**values, **changes})


def test_each_outcome_gets_its_own_state_name_and_tags() -> None:
    quiet = batch_run_label(outcome())
    assert quiet.state_name == "Completed" and quiet.tags == ()
    bad = batch_run_label(
        outcome(state=BatchState.quarantined, reason="income: 40% nulls", decision=None)
    )
    assert bad.state_name == "Quarantined" and bad.message == "income: 40% nulls"
    assert bad.tags == ("quarantined",)
    refused_run = batch_run_label(outcome(decision=decision(), retrain=refused()))
    assert refused_run.state_name == "Retrain refused"
    assert "retrain-refused" in refused_run.tags and "retrain" in refused_run.tags
    promoted = RetrainOutcome(RetrainStatus.promoted, "all gates passed", version="7")
    assert batch_run_label(outcome(decision=decision(), retrain=promoted)).state_name == "Promoted"
    rollback = batch_run_label(outcome(decision=decision(Action.rollback)))
    assert rollback.state_name == "Rolled back" and "rolled-back" in rollback.tags
