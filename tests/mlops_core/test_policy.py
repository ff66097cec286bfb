"""The decision policy's table of cases: each default rule and each boundary."""

from datetime import timedelta

import pytest

from mlops_core.policy import Action, Evidence, PolicyConfig, decide

CONFIG = PolicyConfig()
READY = {
    "validation_passed": True,
    "reference_accuracy": 0.85,
    "labelled_rows": 5_000,
    "since_last_retrain": timedelta(days=3),
    "median_training_seconds": 120.0,
}


def evidence(**changes) -> Evidence:
    return Evidence(**{**READY, **changes})


@pytest.mark.parametrize(
    ("changes", "action", "phrase"),
    [
        ({}, Action.none, "no drift"),
        (
            {
                "drift": True,
                "drift_drivers": ("channel",),
                "estimated_accuracy": 0.849,
                "estimated_ci_high": 0.86,
            },
            Action.watch,
            "does not hurt",
        ),
        (
            {"observed_accuracy": 0.75, "observed_degraded": True},
            Action.retrain,
            "observed accuracy 75.0%",
        ),
        (
            {"estimated_accuracy": 0.76, "estimated_ci_high": 0.79},
            Action.retrain,
            "estimated accuracy 76.0%",
        ),
        (
            {"estimated_accuracy": 0.79, "estimated_ci_high": 0.81},
            Action.none,
            "no drift",
        ),  # not confident
        (
            {"observed_accuracy": 0.75, "observed_degraded": False},
            Action.none,
            "no drift",
        ),  # interval crosses 0
        (
            {
                "observed_accuracy": 0.75,
                "observed_degraded": True,
                "since_last_retrain": timedelta(hours=2),
            },
            Action.watch,
            "cooldown",
        ),
        (
            {"observed_accuracy": 0.75, "observed_degraded": True, "labelled_rows": 999},
            Action.watch,
            "labelled rows",
        ),
        (
            {
                "observed_accuracy": 0.75,
                "observed_degraded": True,
                "median_training_seconds": 3600 * 10_000.0,
            },
            Action.watch,
            "below the retrain cost",
        ),
        (
            {"champion_minus_previous": -0.04, "champion_minus_previous_ci_high": -0.01},
            Action.rollback,
            "previous champion",
        ),
        (
            {"champion_minus_previous": -0.04, "champion_minus_previous_ci_high": 0.01},
            Action.none,
            "no drift",
        ),
        (
            # Labels observed and accuracy held: a pessimistic label-free estimate does not decide.
            {
                "observed_accuracy": 0.84,
                "observed_degraded": False,
                "estimated_accuracy": 0.70,
                "estimated_ci_high": 0.74,
            },
            Action.none,
            "no drift",
        ),
    ],
)
def test_rules(changes: dict, action: Action, phrase: str) -> None:
    decision = decide(evidence(**changes), CONFIG)
    assert decision.action is action, decision.reasons
    assert any(phrase in reason for reason in decision.reasons), decision.reasons


def test_failed_validation_is_never_acted_on() -> None:
    decision = decide(
        evidence(validation_passed=False, observed_accuracy=0.5, observed_degraded=True, drift=True)
    )
    assert decision.action is Action.none and "failed validation" in decision.reasons[0]


def test_boundaries_of_the_estimate_threshold() -> None:
    # The whole interval must lie below reference - 5 points (0.80): at exactly 0.80 it does not.
    assert decide(evidence(estimated_accuracy=0.77, estimated_ci_high=0.80)).action is Action.none
    assert (
        decide(evidence(estimated_accuracy=0.77, estimated_ci_high=0.7999)).action is Action.retrain
    )


def test_boundaries_of_cooldown_and_labels() -> None:
    degraded = {"observed_accuracy": 0.7, "observed_degraded": True}
    assert (
        decide(evidence(**degraded, since_last_retrain=timedelta(hours=24))).action
        is Action.retrain
    )
    assert (
        decide(evidence(**degraded, since_last_retrain=timedelta(hours=23.9))).action
        is Action.watch
    )
    assert decide(evidence(**degraded, labelled_rows=1_000)).action is Action.retrain
    assert (
        decide(evidence(**degraded, since_last_retrain=None)).action is Action.retrain
    )  # never trained


def test_cost_benefit_figures_are_recorded() -> None:
    decision = decide(evidence(observed_accuracy=0.75, observed_degraded=True))
    # 10 points x 10,000 predictions/day x 30 days x 0.05 = 1,500; 120 s x 2/h = 0.0667
    assert decision.expected_benefit == pytest.approx(1_500.0)
    assert decision.retrain_cost == pytest.approx(120 / 3600 * 2.0)
    assert decision.to_dict()["action"] == "retrain"
