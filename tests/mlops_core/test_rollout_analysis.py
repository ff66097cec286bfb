"""The rollout analysis (pure) and the routing function: every verdict, weights, stickiness."""

from __future__ import annotations

import pytest

from mlops_core.rollout import RolloutConfig, Verdict, analyse
from mlops_core.routing import CHALLENGER, Mode, Split, bucket, route

CONFIG = RolloutConfig(min_requests=100, min_feedback=100)


def stats(
    requests=200,
    errors=0,
    p99=5.0,
    divergence=0.01,
    feedback=200,
    right=170,
    champion_right=170,
    only_new=0,
    only_old=0,
) -> dict:
    return {
        "variants": {
            "challenger": {
                "requests": requests,
                "errors": errors,
                "p99_latency_ms": p99,
                "feedback_rows": feedback,
                "feedback_correct": right,
                "champion_feedback_correct": champion_right,
                "only_challenger_right": only_new,
                "only_champion_right": only_old,
            },
            "champion": {"requests": 1000, "errors": 0},
        },
        "divergence": divergence,
        "paired_rows": requests - errors,
    }


def test_a_clean_window_promotes() -> None:
    verdict = analyse(stats(), CONFIG, past_deadline=False)
    assert verdict.verdict is Verdict.promote and all(c.passed for c in verdict.checks)


def test_too_few_requests_holds_then_rolls_back_or_asks_at_the_deadline() -> None:
    assert analyse(stats(requests=40), CONFIG, past_deadline=False).verdict is Verdict.hold
    assert analyse(stats(requests=40), CONFIG, past_deadline=True).verdict is Verdict.rollback
    ask = CONFIG.model_copy(update={"on_inconclusive": "approve"})
    assert analyse(stats(requests=40), ask, past_deadline=True).verdict is Verdict.approve


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"errors": 12}, "error_rate"),
        ({"p99": 500.0}, "p99_latency"),
        ({"right": 120, "only_old": 60, "only_new": 10}, "feedback_accuracy"),
        ({"divergence": 0.5, "right": 168, "only_old": 4, "only_new": 2}, "prediction_divergence"),
    ],
)
def test_each_failing_check_rolls_back(change: dict, check: str) -> None:
    verdict = analyse(stats(**change), CONFIG, past_deadline=False)
    assert verdict.verdict is Verdict.rollback
    assert [c.name for c in verdict.checks if c.passed is False] == [check]


def test_divergence_explained_by_better_feedback_passes() -> None:
    verdict = analyse(
        stats(divergence=0.5, right=190, champion_right=150, only_new=45, only_old=5),
        CONFIG,
        past_deadline=False,
    )
    assert verdict.verdict is Verdict.promote
    assert "explained by feedback" in next(
        c.observed for c in verdict.checks if c.name == "prediction_divergence"
    )


def test_divergence_waits_for_the_feedback_that_could_explain_it() -> None:
    """Paired rows count as requests arrive, feedback a moment later: a divergent challenger
    whose feedback is one row short holds, then is judged when the labels are in."""
    early = analyse(
        stats(divergence=0.5, feedback=99, right=95, champion_right=75, only_new=22, only_old=2),
        CONFIG,
        past_deadline=False,
    )
    assert early.verdict is Verdict.hold
    assert "waiting for the feedback" in next(
        c.observed for c in early.checks if c.name == "prediction_divergence"
    )
    late = analyse(
        stats(divergence=0.5, feedback=99, right=95, champion_right=75, only_new=22, only_old=2),
        CONFIG,
        past_deadline=True,
    )
    assert late.verdict is Verdict.rollback


def test_plans() -> None:
    assert RolloutConfig().plan() == [("canary", w) for w in (0.05, 0.25, 0.5, 1.0)]
    assert RolloutConfig(mode="blue-green").plan() == [("blue-green", 0.0), ("blue-green", 1.0)]
    assert RolloutConfig(mode="shadow").plan() == [("shadow", 0.0)]
    with pytest.raises(ValueError, match="canary, blue-green or shadow"):
        RolloutConfig(mode="yolo").plan()


@pytest.mark.parametrize("weight", [0.05, 0.25, 0.5])
def test_weights_are_honoured_within_two_points(weight: float) -> None:
    split = Split(mode=Mode.canary, weight=weight)
    share = sum(route(f"key-{i}", split) == CHALLENGER for i in range(10_000)) / 10_000
    assert abs(share - weight) < 0.02


def test_keys_are_sticky_and_only_gain_the_challenger_as_weights_grow() -> None:
    keys = [f"user-{i}" for i in range(2_000)]
    for key in keys[:50]:
        assert len({route(key, Split(mode=Mode.canary, weight=0.3)) for _ in range(5)}) == 1
    small = {k for k in keys if route(k, Split(mode=Mode.canary, weight=0.1)) == CHALLENGER}
    large = {k for k in keys if route(k, Split(mode=Mode.canary, weight=0.5)) == CHALLENGER}
    assert small <= large
    assert all(0 <= bucket(k) < 1 for k in keys)
    assert route("anyone", Split(mode=Mode.canary, weight=1.0), has_challenger=False) == "champion"
    with pytest.raises(ValueError):
        Split(weight=1.5)
