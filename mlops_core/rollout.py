"""Progressive delivery: the plan of a rollout and the analysis that judges each step (pure).

Modes:

* ``canary`` -- the challenger answers a growing share of traffic (``MLOPS_ROLLOUT_STEPS``,
  default 5 -> 25 -> 50 -> 100%); each step is analysed before the next;
* ``blue-green`` -- a shadow step first (the challenger computes every request, its answers are
  logged, never returned), then all traffic at once; the old champion stays loaded as
  ``previous`` for an instant rollback;
* ``shadow`` -- the shadow step only: judged, never promoted.

The burden of proof is on the challenger. At each look ``analyse`` reads the step's window from
the model servers, and each check is ``passed`` only on positive evidence that the challenger is
acceptable, ``failed`` on evidence that it is not, and undecided otherwise:

* error rate: an anytime-valid test (:mod:`mlops_core.sequential`) that the rate is *below*
  ``max_error_rate`` passes it; one that it is above fails it;
* p99 latency: at most ``max_p99_ms`` over at least ``min_requests`` requests (a limit on what
  was observed, not a test);
* divergence of the challenger's predicted probabilities from the champion's on the same rows
  (Jensen-Shannon, 10 bins): passes when an upper bound (the 95th percentile of the divergence
  under a Dirichlet posterior of both histograms) is within ``max_divergence`` on at least
  ``min_requests`` paired rows; fails when the lower bound is above it; either way, feedback
  that shows the challenger right where they differ explains the divergence and passes it
  (concept drift: a better model must answer differently);
* accuracy on feedback, paired on the same rows: a non-inferiority test -- an anytime-valid test
  that the challenger's accuracy minus the champion's is above ``-accuracy_tolerance`` passes it;
  one that it is below fails it.

The verdict is ``promote`` only when every check passed (feedback too, unless
``feedback="optional"``), ``rollback`` when any failed, ``hold`` otherwise; past the step's
deadline ``hold`` becomes ``rollback`` -- or, with ``on_inconclusive=approve``, a request for a
person's approval. With ``feedback="delayed"`` (labels arrive days later) the first, small step
holds past its deadline until the feedback it needs has come (up to ``feedback_wait_seconds``).

Error rates, stated: the tests are e-processes, valid however often the window is looked at. A
challenger that is unacceptable on one tested check is promoted through a step with probability
at most ``alpha`` (each check must show acceptability at ``alpha``; promotion needs all of them).
An acceptable challenger is rolled back with probability at most ``alpha`` over the whole
rollout: each of the two tested checks, at each step, must reach ``2 * steps / alpha``. The
divergence bound is Bayesian and its level approximate; ``benchmarks/decision_quality.py``
measures the rates as the rollout uses them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlops_core.sequential import (
    e_value_mean_above,
    e_value_mean_below,
    p_value,
    rate_above,
    rate_below,
)


class Verdict(StrEnum):
    """A step's outcome: go on, wait for more evidence, roll back, or ask a person."""

    promote = "promote"
    hold = "hold"
    rollback = "rollback"
    approve = "approve"  # inconclusive: ask a person


class RolloutConfig(BaseModel):
    """The rollout's mode, steps and the limits each step is judged by (``MLOPS_ROLLOUT_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str = "canary"
    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    min_requests: int = Field(default=200, ge=1)
    step_seconds: float = Field(default=120.0, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float = Field(default=100.0, gt=0)
    max_divergence: float = Field(default=0.2, ge=0, le=1)
    accuracy_tolerance: float = Field(default=0.02, ge=0)
    min_feedback: int = Field(default=100, ge=1)
    on_inconclusive: str = "rollback"
    alpha: float = Field(default=0.05, gt=0, lt=1)
    feedback: str = "required"  # required | delayed | optional
    feedback_wait_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)

    @property
    def rollback_level(self) -> float:
        """The level each tested check must reach to fail a step: ``alpha`` split over the two
        tested checks and every step, so an acceptable challenger is rolled back at most
        ``alpha`` of the time over the whole rollout."""
        return self.alpha / (2 * len(self.plan()))

    def plan(self) -> list[tuple[str, float]]:
        """The steps as (mode, weight): what the registry's rollout tags will say, in order."""
        if self.mode == "canary":
            return [("canary", w) for w in self.steps]
        if self.mode == "blue-green":
            return [("blue-green", 0.0), ("blue-green", 1.0)]
        if self.mode == "shadow":
            return [("shadow", 0.0)]
        raise ValueError(f"rollout mode is canary, blue-green or shadow, not {self.mode!r}")


class Check(BaseModel):
    """One check of a step: what was required, what was observed, whether it passed."""

    model_config = ConfigDict(frozen=True)

    name: str
    threshold: str
    observed: str
    passed: bool | None  # None: not enough data yet


class RolloutVerdict(BaseModel):
    """A step's verdict with every check behind it."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    requests: int

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready plain data."""
        return self.model_dump(mode="json")


def analyse(
    stats: dict[str, Any],
    config: RolloutConfig,
    *,
    past_deadline: bool,
    step: int = 0,
    past_feedback_wait: bool = False,
) -> RolloutVerdict:
    """Judge one step from the server's ``/rollout/stats`` window (see the module docstring)."""
    challenger = stats["variants"]["challenger"]
    requests = int(challenger["requests"])
    feedback = _feedback_accuracy_check(challenger, config)
    checks = (
        _error_rate_check(challenger, config),
        _p99_latency_check(challenger, config),
        feedback,
        _divergence_check(stats, challenger, config, feedback=feedback),
    )
    needs_feedback = config.feedback == "required" or (config.feedback == "delayed" and step == 0)
    verdict, reasons = _verdict(
        checks,
        config,
        requests=requests,
        needs_feedback=needs_feedback,
        past_deadline=past_deadline,
        wait_for_feedback=config.feedback == "delayed" and step == 0 and not past_feedback_wait,
    )
    return RolloutVerdict(verdict=verdict, checks=checks, reasons=reasons, requests=requests)


def _error_rate_check(challenger: dict[str, Any], config: RolloutConfig) -> Check:
    """Passed on evidence that the error rate is below the maximum, failed on evidence above."""
    requests = int(challenger["requests"])
    errors = int(challenger["errors"])
    rate = errors / requests if requests else 0.0
    below = rate_below(errors, requests, config.max_error_rate) if requests else 1.0
    above = rate_above(errors, requests, config.max_error_rate) if requests else 1.0
    passed = _decided(below, above, config)
    return Check(
        name="error_rate",
        threshold=f"< {config.max_error_rate:.1%} shown (anytime-valid, alpha {config.alpha})",
        observed=f"{errors}/{requests} = {rate:.2%} (p below {p_value(below):.3g}, "
        f"p above {p_value(above):.3g})",
        passed=passed,
    )


def _decided(acceptable: float, unacceptable: float, config: RolloutConfig) -> bool | None:
    """A tested check's state from its two e-values: failed, passed, or undecided."""
    if unacceptable >= 1 / config.rollback_level:
        return False
    if acceptable >= 1 / config.alpha:
        return True
    return None


def _p99_latency_check(challenger: dict[str, Any], config: RolloutConfig) -> Check:
    """The challenger's p99 latency against the maximum, once the window has enough requests."""
    p99 = challenger.get("p99_latency_ms")
    enough = int(challenger["requests"]) >= config.min_requests
    return Check(
        name="p99_latency",
        threshold=f"<= {config.max_p99_ms:g} ms over >= {config.min_requests} requests",
        observed="-" if p99 is None else f"{p99:.1f} ms",
        passed=None if p99 is None or not enough else p99 <= config.max_p99_ms,
    )


def _feedback_accuracy_check(challenger: dict[str, Any], config: RolloutConfig) -> Check:
    """Non-inferiority on feedback, paired with the champion on the same rows."""
    rows = int(challenger.get("feedback_rows") or 0)
    threshold = (
        f"not worse than the champion by {config.accuracy_tolerance:.0%} on the same rows, "
        f"shown (anytime-valid, alpha {config.alpha}; >= {config.min_feedback} rows)"
    )
    if rows < config.min_feedback:
        return Check(
            name="feedback_accuracy",
            threshold=threshold,
            observed=f"{rows} labelled rows",
            passed=None,
        )
    right = int(challenger["feedback_correct"])
    champion_right = int(challenger["champion_feedback_correct"] or 0)
    better = int(challenger.get("only_challenger_right") or 0)
    worse = int(challenger.get("only_champion_right") or 0)
    # Per row: +1 where only the challenger is right, -1 where only the champion is, else 0.
    counts = {1.0: better, -1.0: worse, 0.0: rows - better - worse}
    margin = -config.accuracy_tolerance
    acceptable = e_value_mean_above(counts, margin, lo=-1.0)
    unacceptable = e_value_mean_below(counts, margin, hi=1.0)
    return Check(
        name="feedback_accuracy",
        threshold=threshold,
        observed=f"{right / rows:.1%} vs {champion_right / rows:.1%} on {rows:,} labelled rows "
        f"(+{better}/-{worse}; p not worse {p_value(acceptable):.3g}, "
        f"p worse {p_value(unacceptable):.3g})",
        passed=_decided(acceptable, unacceptable, config),
    )


def divergence_bounds(
    challenger: list[int], champion: list[int], *, level: float, draws: int = 400
) -> tuple[float, float]:
    """The ``level`` and ``1 - level`` quantiles of the Jensen-Shannon divergence (base 2) under
    independent Dirichlet(counts + 1/2) posteriors of the two histograms (seeded: the same counts
    give the same bounds)."""
    rng = np.random.default_rng(sum(challenger) * 1_000_003 + sum(champion))
    p = rng.dirichlet(np.asarray(challenger, dtype=float) + 0.5, draws)
    q = rng.dirichlet(np.asarray(champion, dtype=float) + 0.5, draws)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        js = 0.5 * np.nansum(p * np.log2(p / m), axis=1) + 0.5 * np.nansum(
            q * np.log2(q / m), axis=1
        )
    low, high = np.quantile(js, [level, 1 - level])
    return float(low), float(high)


def _divergence_check(
    stats: dict[str, Any], challenger: dict[str, Any], config: RolloutConfig, *, feedback: Check
) -> Check:
    """How far the challenger's predictions diverge from the champion's on the same rows."""
    # Predictions that differ from the champion's are a warning sign -- unless the labels say the
    # challenger is right where it differs (concept drift: the new model must answer differently).
    feedback_vouches = feedback.passed is True and (
        int(challenger.get("only_challenger_right") or 0)
        >= int(challenger.get("only_champion_right") or 0)
    )
    divergence = stats.get("divergence")
    paired = int(stats.get("paired_rows") or 0)
    histograms = stats.get("histograms") or {}
    within: bool | None = None
    bounds = ""
    if divergence is not None and paired >= config.min_requests and histograms:
        low, high = divergence_bounds(
            list(histograms["challenger"]), list(histograms["champion"]), level=config.alpha
        )
        bounds = f", {1 - 2 * config.alpha:.0%} interval {low:.3f}-{high:.3f}"
        within = (
            True
            if high <= config.max_divergence
            else (False if low > config.max_divergence else None)
        )
    # Divergent, with the feedback that could explain it still short: wait for it (the step's
    # deadline turns a wait into the inconclusive action), rather than racing the labels.
    awaiting_feedback = within is False and feedback.passed is None
    explained = within is not True and divergence is not None and feedback_vouches
    if within is True or explained:
        passed: bool | None = True
    elif within is False:
        passed = None if awaiting_feedback else False
    else:
        passed = None  # the bound straddles the limit: more rows, or the feedback, will tell
    if divergence is None:
        observed = "-"
    else:
        observed = f"{divergence:.3f} on {paired:,} rows{bounds}"
        if explained:
            observed += " (explained by feedback)"
        elif awaiting_feedback:
            observed += " (waiting for the feedback that could explain it)"
    return Check(
        name="prediction_divergence",
        threshold=f"Jensen-Shannon upper bound <= {config.max_divergence:g} on >= "
        f"{config.min_requests} rows paired with the champion, unless feedback shows the "
        "challenger right where they differ",
        observed=observed,
        passed=passed,
    )


def _verdict(
    checks: tuple[Check, ...],
    config: RolloutConfig,
    *,
    requests: int,
    needs_feedback: bool,
    past_deadline: bool,
    wait_for_feedback: bool,
) -> tuple[Verdict, tuple[str, ...]]:
    """The step's verdict and its reasons: any failure rolls back; positive evidence on every
    check needed promotes; otherwise hold, and at the deadline the inconclusive action."""
    failed_checks = [c for c in checks if c.passed is False]
    if failed_checks:
        return Verdict.rollback, tuple(
            f"{c.name} failed: {c.observed} (want {c.threshold})" for c in failed_checks
        )
    needed = [c for c in checks if needs_feedback or c.name != "feedback_accuracy"]
    missing = [c for c in needed if c.passed is not True]
    if not missing:
        return Verdict.promote, (
            f"every check shown acceptable on {requests:,} challenger requests",
        )
    short = "; ".join(f"{c.name}: {c.observed}" for c in missing)
    if past_deadline and wait_for_feedback and [c.name for c in missing] == ["feedback_accuracy"]:
        return Verdict.hold, (f"holding the canary for delayed feedback: {short}",)
    if past_deadline:
        verdict = Verdict.approve if config.on_inconclusive == "approve" else Verdict.rollback
        return verdict, (f"inconclusive at the deadline, not shown acceptable: {short}",)
    return Verdict.hold, (f"collecting evidence: {short}",)
