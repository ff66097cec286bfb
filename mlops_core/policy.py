"""The decision policy: should the model change now? Explicit rules, readable reasons.

``decide`` is a pure function of the evidence; it returns a frozen ``Decision`` whose ``action`` a
flow branches on. The rules, in order (the first that applies wins):

1. A batch that failed validation is never acted on: ``none``.
2. The champion is worse than the previous champion on recent labelled data by more than
   ``rollback_min_effect`` (the 95% upper bound of the paired difference below minus that effect):
   ``rollback``. One-sided at 2.5% per batch looked at (not corrected for the batches looked at);
   the minimum effect means two near-equal models never swap back and forth on noise -- to roll
   back and then back again, each would have to be shown worse than the other by a point.
3. Accuracy fell by more than ``retrain_accuracy_drop`` below the reference -- observed on labels
   (``PerformanceReport.degraded``), or estimated without labels and *confidently* so (the whole
   estimate interval lies below the reference minus the threshold) -- then ``retrain``, unless the
   cooldown since the last retrain has not passed, too few labelled rows are available to train
   on, the accuracy fell at a change point (``mlops_core.change``) with fewer than
   ``min_rows_since_change`` labelled rows since it (a window of the new concept could not win
   yet: the next labels re-decide), or the expected benefit does not cover the retrain cost; in
   those cases ``watch``.
   3b. The champion learnt a new concept (its window began at a change point) from few rows,
   and ``concept_refresh_factor`` times as many labelled rows of that concept exist now (while
   the champion learnt from fewer than ``concept_refresh_until_rows``): ``retrain``, unless in
   cooldown or short of labelled rows (then ``watch``). The gates still decide: a refreshed model
   that is not better is refused. No cost-benefit applies here, as no loss has been measured.
4. Drift that does not hurt (estimated) performance: ``watch``.
5. Otherwise: ``none``.

The cooldown runs on data time (the batch's newest event time minus the last training's, both
clipped to the clock when they were recorded). When that interval is negative -- the last
training's data is newer than this batch's -- the timestamps are wrong (or the batch is very late):
every decision says so, and the cooldown falls back on the wall time since the last training
started. Neither skipped (a future-dated batch would skip it) nor frozen (a future-dated training
would block every retrain until its date).

Cost and benefit, in the currency of ``value_per_correct_prediction``:

* benefit = accuracy lost x the share of a drop a retrain recovers x predictions over the benefit
  horizon x value of a correct prediction. The share is this dataset's own record: the mean of
  past retrains' recovered shares (a promoted challenger's gain on its gate rows over the drop
  that called for it, capped to [0, 1]; a refused or failed retrain recovered 0), shrunk towards
  a prior (``recovery_prior_mean``, worth ``recovery_prior_weight`` retrains) -- 50% over two
  pseudo-retrains by default, so a dataset without history is neither trusted nor written off;
* cost = a fixed cost per retrain and rollout (``fixed_cost_per_retrain``: the review, the
  rollout's exposure, the people) + median duration of past training runs x compute per hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Action(StrEnum):
    """What the flow does next: nothing, keep watching, retrain, or roll back."""

    none = "none"
    watch = "watch"
    retrain = "retrain"
    rollback = "rollback"


class PolicyConfig(BaseModel):
    """The policy's thresholds; the settings object carries them (``MLOPS_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retrain_accuracy_drop: float = Field(default=0.05, gt=0, lt=1)
    cooldown: timedelta = Field(default=timedelta(hours=24))
    min_labelled_rows: int = Field(default=1_000, ge=0)
    min_rows_since_change: int = Field(default=1_000, ge=0)
    concept_refresh_factor: float = Field(default=2.0, gt=1)
    concept_refresh_until_rows: int = Field(default=8_000, ge=0)
    change_alpha: float = Field(default=0.05, gt=0, lt=1)
    predictions_per_day: float = Field(default=10_000, ge=0)
    benefit_horizon_days: float = Field(default=30, ge=0)
    value_per_correct_prediction: float = Field(default=0.05, ge=0)
    compute_cost_per_hour: float = Field(default=2.0, ge=0)
    fixed_cost_per_retrain: float = Field(default=200.0, ge=0)
    rollback_min_effect: float = Field(default=0.01, ge=0)
    recovery_prior_mean: float = Field(default=0.5, ge=0, le=1)
    recovery_prior_weight: float = Field(default=2.0, gt=0)


class Evidence(BaseModel):
    """What the policy saw, as plain numbers (recorded with every decision)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    validation_passed: bool
    drift: bool | None = None
    drift_p_value: float | None = None
    drift_drivers: tuple[str, ...] = ()
    reference_accuracy: float | None = None
    observed_accuracy: float | None = None
    observed_degraded: bool | None = None
    estimated_accuracy: float | None = None
    estimated_ci_high: float | None = None
    champion_minus_previous: float | None = None
    champion_minus_previous_ci_high: float | None = None
    labelled_rows: int = 0
    # What the cooldown measures: data time when both sides have it, else the wall time.
    since_last_retrain: timedelta | None = None
    # The data times behind it (ISO, clipped to the clock), and the wall time since the last
    # training started: the cooldown's fallback when the data times contradict each other.
    last_training_data_time: str | None = None
    batch_data_time: str | None = None
    since_last_retrain_clock: timedelta | None = None
    median_training_seconds: float | None = None
    # Shares of the drop that this dataset's past retrains recovered, newest first.
    past_recoveries: tuple[float, ...] = ()
    # Where the champion's accuracy changed in its labelled history (mlops_core.change).
    change_p_value: float | None = None
    change_at: str | None = None
    change_interval: tuple[str, str] | None = None
    accuracy_before_change: float | None = None
    accuracy_after_change: float | None = None
    labelled_rows_since_change: int | None = None
    # The concept the champion learnt (from a change point on), and how many rows of it exist now.
    champion_concept_since: str | None = None
    champion_concept_rows: int | None = None
    concept_rows_now: int | None = None


class Decision(BaseModel):
    """The action, the reasons a person reads, and the evidence and numbers behind them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    reasons: tuple[str, ...]
    evidence: Evidence
    expected_benefit: float | None = None
    retrain_cost: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready plain data."""
        return self.model_dump(mode="json")


# A rule decides, or passes (None) to the next one.
Rule = Callable[[Evidence, PolicyConfig], Decision | None]


def decide(evidence: Evidence, config: PolicyConfig | None = None) -> Decision:
    """The decision on ``evidence``: the first rule of the module docstring that applies."""
    config = config or PolicyConfig()
    # Rules 1 to 4 of the module docstring, in order: an earlier rule overrules a later one.
    rules: tuple[Rule, ...] = (
        _failed_validation_is_never_acted_on,
        _worse_champion_rolls_back,
        _lost_accuracy_retrains_unless_blocked,
        _thinly_learnt_concept_is_refreshed,
        _harmless_drift_is_watched,
    )
    for rule in rules:
        decision = rule(evidence, config)
        if decision is not None:
            return _with_bad_data_time(decision)
    return _with_bad_data_time(_nothing_to_do(evidence))


def _with_bad_data_time(decision: Decision) -> Decision:
    """The decision, with bad timestamps reported whatever the rule: a person must fix them."""
    conflict = data_time_conflict(decision.evidence)
    if conflict is None or not decision.evidence.validation_passed:
        return decision
    return decision.model_copy(update={"reasons": (*decision.reasons, conflict)})


def _failed_validation_is_never_acted_on(
    evidence: Evidence, config: PolicyConfig
) -> Decision | None:
    """Rule 1: ``none`` for a batch that failed validation."""
    if evidence.validation_passed:
        return None
    return Decision(
        action=Action.none,
        reasons=("the batch failed validation: it is quarantined and never used to retrain",),
        evidence=evidence,
    )


def _worse_champion_rolls_back(evidence: Evidence, config: PolicyConfig) -> Decision | None:
    """Rule 2: ``rollback`` when the champion's interval against the previous lies below zero."""
    if (
        evidence.champion_minus_previous is not None
        and evidence.champion_minus_previous_ci_high is not None
        and evidence.champion_minus_previous_ci_high < -config.rollback_min_effect
    ):
        return Decision(
            action=Action.rollback,
            reasons=(
                f"the champion is {-evidence.champion_minus_previous:.1%} less accurate than the "
                f"previous champion on recent labelled data (95% upper bound "
                f"{evidence.champion_minus_previous_ci_high:+.1%}, below -"
                f"{config.rollback_min_effect:.0%})",
            ),
            evidence=evidence,
        )
    return None


def _lost_accuracy_retrains_unless_blocked(
    evidence: Evidence, config: PolicyConfig
) -> Decision | None:
    """Rule 3: ``retrain`` when accuracy is known to have fallen; ``watch`` if a blocker stands."""
    harm = _harm(evidence, config.retrain_accuracy_drop)
    if harm is None:
        return None
    reason, lost = harm
    share = recovery_share(evidence.past_recoveries, config)
    benefit = _expected_benefit(lost * share, config)
    cost = _retrain_cost(evidence, config)
    blockers = _retrain_blockers(evidence, config, benefit, cost, share)
    if blockers:
        return Decision(
            action=Action.watch,
            reasons=(reason, *(f"not retraining: {b}" for b in blockers)),
            evidence=evidence,
            expected_benefit=benefit,
            retrain_cost=cost,
        )
    worth = (
        f"expected benefit {_money(benefit)} ({_recovery(evidence, share)}) covers the retrain "
        f"cost {_money(cost)}"
    )
    return Decision(
        action=Action.retrain,
        reasons=(reason, worth),
        evidence=evidence,
        expected_benefit=benefit,
        retrain_cost=cost,
    )


def _thinly_learnt_concept_is_refreshed(
    evidence: Evidence, config: PolicyConfig
) -> Decision | None:
    """Rule 3b: ``retrain`` a champion that learnt a new concept from few rows, once
    ``concept_refresh_factor`` times as many exist (up to ``concept_refresh_until_rows``)."""
    learnt, now = evidence.champion_concept_rows, evidence.concept_rows_now
    if (
        learnt is None
        or now is None
        or learnt >= config.concept_refresh_until_rows
        or now < config.concept_refresh_factor * max(learnt, 1)
    ):
        return None
    reason = (
        f"the champion learnt the concept that began at {evidence.champion_concept_since} from "
        f"{learnt:,} labelled rows; {now:,} exist now: a model trained on them may be better "
        "(the gates decide)"
    )
    blockers = [
        b
        for b in _retrain_blockers(evidence, config, benefit=1.0, cost=0.0, share=1.0)
        if not b.startswith("expected benefit")
    ]
    if blockers:
        return Decision(
            action=Action.watch,
            reasons=(reason, *(f"not retraining: {b}" for b in blockers)),
            evidence=evidence,
        )
    return Decision(action=Action.retrain, reasons=(reason,), evidence=evidence)


def _harmless_drift_is_watched(evidence: Evidence, config: PolicyConfig) -> Decision | None:
    """Rule 4: ``watch`` drift that does not hurt (estimated) performance."""
    if not evidence.drift:
        return None
    drivers = ", ".join(evidence.drift_drivers[:4]) or "the joint distribution"
    estimate = (
        f"; estimated accuracy {evidence.estimated_accuracy:.1%} holds"
        if evidence.estimated_accuracy is not None
        else ""
    )
    return Decision(
        action=Action.watch,
        reasons=(f"drift in {drivers} that does not hurt performance{estimate}",),
        evidence=evidence,
    )


def _nothing_to_do(evidence: Evidence) -> Decision:
    """Rule 5: ``none`` when nothing above applies."""
    return Decision(
        action=Action.none,
        reasons=("no drift and no loss of accuracy",),
        evidence=evidence,
    )


def _harm(evidence: Evidence, drop: float) -> tuple[str, float] | None:
    """Why accuracy is known to have fallen, and by how much; None when it has not."""
    reference = evidence.reference_accuracy
    if (
        evidence.observed_degraded
        and evidence.observed_accuracy is not None
        and reference is not None
    ):
        lost = reference - evidence.observed_accuracy
        return (
            f"observed accuracy {evidence.observed_accuracy:.1%} is {lost:.1%} below the reference "
            f"{reference:.1%} (threshold {drop:.0%}, interval excludes zero)",
            lost,
        )
    # Once labels were observed they decide; the label-free estimate speaks only without them.
    if (
        evidence.observed_accuracy is None
        and evidence.estimated_accuracy is not None
        and evidence.estimated_ci_high is not None
        and reference is not None
        and evidence.estimated_ci_high < reference - drop
    ):
        lost = reference - evidence.estimated_accuracy
        return (
            f"estimated accuracy {evidence.estimated_accuracy:.1%} (at most "
            f"{evidence.estimated_ci_high:.1%}) is over {drop:.0%} below the reference {reference:.1%}",
            lost,
        )
    return None


def _expected_benefit(lost: float, config: PolicyConfig) -> float:
    """Accuracy to recover x predictions over the benefit horizon x value of a correct one."""
    benefit = lost * config.predictions_per_day * config.benefit_horizon_days
    benefit *= config.value_per_correct_prediction
    return benefit


def recovery_share(past: tuple[float, ...], config: PolicyConfig) -> float:
    """The share of a drop a retrain is expected to recover: past shares shrunk to the prior."""
    weight = config.recovery_prior_weight
    return (config.recovery_prior_mean * weight + sum(past)) / (weight + len(past))


def _recovery(evidence: Evidence, share: float) -> str:
    past = len(evidence.past_recoveries)
    basis = f"{past} past retrain{'s' if past != 1 else ''} and the prior" if past else "the prior"
    return f"a retrain expected to recover {share:.0%} of the drop, from {basis}"


def _retrain_cost(evidence: Evidence, config: PolicyConfig) -> float:
    """The fixed cost of a retrain and its rollout + median past training time x compute/hour."""
    compute = (evidence.median_training_seconds or 0.0) / 3600 * config.compute_cost_per_hour
    return config.fixed_cost_per_retrain + compute


def data_time_conflict(evidence: Evidence) -> str | None:
    """Why the data-time interval since the last training cannot be trusted (it is negative);
    None when it can."""
    since = evidence.since_last_retrain
    if since is None or since >= timedelta(0):
        return None
    last = evidence.last_training_data_time or "?"
    batch = evidence.batch_data_time or "?"
    return (
        f"bad data: the data time of the last training ({last}) is {_hours(-since)} after this "
        f"batch's ({batch}): its timestamps look wrong (a default date, a time zone, a unit), or "
        "the batch is very late; fix the timestamp column at the source. The cooldown is "
        "measured on the clock instead"
    )


def _cooldown_blocker(evidence: Evidence, config: PolicyConfig) -> str | None:
    """Why the cooldown blocks a retrain; None when it has passed (or there was no training)."""
    since = evidence.since_last_retrain
    if since is None:
        return None
    if since >= timedelta(0):
        if since >= config.cooldown:
            return None
        return f"in cooldown: last retrain {_hours(since)} ago, cooldown {_hours(config.cooldown)}"
    # The data times contradict each other (see data_time_conflict): the wall time decides.
    clock = evidence.since_last_retrain_clock
    if clock is None:
        return (
            "the time since the last training is unknown (its data time is after this batch's "
            "and no wall time was recorded): blocked until the timestamps are fixed"
        )
    if clock >= config.cooldown:
        return None
    return (
        f"the last training started {_hours(clock)} ago by the clock, within the cooldown of "
        f"{_hours(config.cooldown)} (its data time is unusable)"
    )


def _retrain_blockers(
    evidence: Evidence, config: PolicyConfig, benefit: float, cost: float, share: float
) -> list[str]:
    """Why a retrain that accuracy calls for must wait: cooldown, too few labels, not worth it."""
    blockers = []
    cooldown = _cooldown_blocker(evidence, config)
    if cooldown:
        blockers.append(cooldown)
    if evidence.labelled_rows < config.min_labelled_rows:
        blockers.append(
            f"only {evidence.labelled_rows:,} labelled rows since the last training "
            f"(need {config.min_labelled_rows:,})"
        )
    thin = _too_few_rows_since_change(evidence, config)
    if thin:
        blockers.append(thin)
    if benefit < cost:
        blockers.append(
            f"expected benefit {_money(benefit)} ({_recovery(evidence, share)}) is below the "
            f"retrain cost {_money(cost)} (fixed {_money(config.fixed_cost_per_retrain)})"
        )
    return blockers


def _too_few_rows_since_change(evidence: Evidence, config: PolicyConfig) -> str | None:
    """Accuracy fell at a change point and too few labelled rows of the new regime exist yet."""
    before, after = evidence.accuracy_before_change, evidence.accuracy_after_change
    since = evidence.labelled_rows_since_change
    if (
        evidence.change_p_value is None
        or evidence.change_p_value > config.change_alpha
        or before is None
        or after is None
        or after >= before
        or since is None
        or since >= config.min_rows_since_change
    ):
        return None
    return (
        f"concept change at {evidence.change_at} (accuracy {before:.1%} -> {after:.1%}, "
        f"p = {evidence.change_p_value:.3f}); {since:,} labelled rows since, "
        f"{config.min_rows_since_change:,} needed to train and gate on the new concept "
        "(the next labels decide again)"
    )


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def _money(amount: float) -> str:
    """Two decimals, or two significant digits for amounts under a cent (a fast retrain)."""
    return f"{amount:,.2f}" if amount == 0 or abs(amount) >= 0.01 else f"{amount:.2g}"
