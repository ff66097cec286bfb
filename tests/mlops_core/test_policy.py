"""The decision policy's table of cases: each default rule and each boundary."""

from datetime import timedelta

import pytest

from mlops_core.policy import Action, Evidence, PolicyConfig, decide, recovery_share

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
            {"champion_minus_previous": -0.04, "champion_minus_previous_ci_high": -0.015},
            Action.rollback,
            "previous champion",
        ),
        (
            # Shown worse, but by less than the minimum effect: near-equal models do not swap.
            {"champion_minus_previous": -0.012, "champion_minus_previous_ci_high": -0.005},
            Action.none,
            "no drift",
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
    # 10 points x 50% recovered (the prior, no history) x 10,000 predictions/day x 30 days x 0.05
    # = 750; cost: 200 fixed + 120 s x 2/h.
    assert decision.expected_benefit == pytest.approx(750.0)
    assert decision.retrain_cost == pytest.approx(200 + 120 / 3600 * 2.0)
    assert decision.to_dict()["action"] == "retrain"
    assert "recover 50% of the drop, from the prior" in decision.reasons[1]


def test_the_cost_benefit_says_no_when_this_datasets_retrains_have_not_recovered_drops() -> None:
    dip = {"observed_accuracy": 0.79, "observed_degraded": True}  # 6 points below 0.85
    # No history: 6 points x 50% x 15,000 = 450 > 200: retrain.
    assert decide(evidence(**dip)).action is Action.retrain
    # Three past retrains that recovered nothing (refused): (0.5 x 2 + 0) / 5 = 20%,
    # 6 points x 20% x 15,000 = 180 < 200.24: watch, and say why.
    refused = decide(evidence(**dip, past_recoveries=(0.0, 0.0, 0.0)))
    assert refused.action is Action.watch
    assert refused.expected_benefit == pytest.approx(180.0)
    why = refused.reasons[-1]
    assert "below the retrain cost" in why and "20% of the drop, from 3 past retrains" in why
    # Past retrains that recovered most of their drops: retrain.
    assert decide(evidence(**dip, past_recoveries=(0.9, 0.8, 1.0))).action is Action.retrain


def test_recovery_share_shrinks_history_to_the_prior() -> None:
    assert recovery_share((), CONFIG) == 0.5
    assert recovery_share((1.0, 1.0), CONFIG) == pytest.approx(0.75)
    assert recovery_share((0.0,) * 98, CONFIG) == pytest.approx(0.01)


CHANGE = {
    "observed_accuracy": 0.56,
    "observed_degraded": True,
    "change_p_value": 0.005,
    "change_at": "2026-04-06T00:05+00:00",
    "accuracy_before_change": 0.84,
    "accuracy_after_change": 0.56,
}


def test_a_new_concept_with_too_few_rows_waits_with_its_reason() -> None:
    thin = decide(evidence(**CHANGE, labelled_rows_since_change=600), CONFIG)
    assert thin.action is Action.watch
    said = " ".join(thin.reasons)
    assert "concept change at 2026-04-06T00:05+00:00" in said
    assert "600 labelled rows since, 1,000 needed" in said
    assert decide(evidence(**CHANGE, labelled_rows_since_change=1_000), CONFIG).action is (
        Action.retrain
    )
    # An insignificant change, or a rise, is no reason to wait.
    weak = {**CHANGE, "change_p_value": 0.2}
    assert decide(evidence(**weak, labelled_rows_since_change=600), CONFIG).action is (
        Action.retrain
    )
    rise = {**CHANGE, "accuracy_before_change": 0.5}
    assert decide(evidence(**rise, labelled_rows_since_change=600), CONFIG).action is (
        Action.retrain
    )


def test_a_concept_learnt_from_few_rows_is_refreshed_once_twice_as_many_exist() -> None:
    learnt = {
        "observed_accuracy": 0.85,
        "observed_degraded": False,
        "champion_concept_since": "2026-04-06T00:05",
        "champion_concept_rows": 1_400,
    }
    assert decide(evidence(**learnt, concept_rows_now=2_000), CONFIG).action is Action.none
    refresh = decide(evidence(**learnt, concept_rows_now=2_800), CONFIG)
    assert refresh.action is Action.retrain
    assert "learnt the concept that began at 2026-04-06T00:05 from 1,400" in refresh.reasons[0]
    assert "2,800 exist now" in refresh.reasons[0]
    # Enough learnt already: no refresh, however many rows exist.
    plenty = {**learnt, "champion_concept_rows": 8_000}
    assert decide(evidence(**plenty, concept_rows_now=20_000), CONFIG).action is Action.none
    # The cooldown still holds it back, with the reason.
    early = decide(
        evidence(**learnt, concept_rows_now=2_800, since_last_retrain=timedelta(hours=2)), CONFIG
    )
    assert early.action is Action.watch and "in cooldown" in early.reasons[1]
