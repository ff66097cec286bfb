"""Progressive delivery: the plan of a rollout and the analysis that judges each step (pure).

Modes:

* ``canary`` -- the challenger answers a growing share of traffic (``MLOPS_ROLLOUT_STEPS``,
  default 5 -> 25 -> 50 -> 100%); each step is analysed before the next;
* ``blue-green`` -- a shadow step first (the challenger computes every request, its answers are
  logged, never returned), then all traffic at once; the old champion stays loaded as
  ``previous`` for an instant rollback;
* ``shadow`` -- the shadow step only: judged, never promoted.

At each step ``analyse`` reads the window's statistics from the model server and checks:

* error rate of the challenger against ``max_error_rate`` -- with an exact one-sided binomial
  test once the window has enough requests (failing when the rate is significantly above);
* p99 latency against ``max_p99_ms``;
* divergence of the challenger's predicted probabilities from the champion's on the same rows
  (Jensen-Shannon, 10 bins) against ``max_divergence``;
* accuracy on the feedback received, paired on the same rows (the champion's prediction is
  computed beside the challenger's): failing when the challenger is worse by more than
  ``accuracy_tolerance`` and an exact one-sided McNemar test on the discordant rows says worse
  at level ``alpha``.

The verdict is ``promote`` (every check passed on enough requests), ``rollback`` (any check
failed), or ``hold`` (not enough evidence yet). Past the step's deadline, ``hold`` becomes
``rollback`` -- or, with ``on_inconclusive=approve``, a request for a person's approval.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import binomtest


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
    alpha: float = 0.05

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


def analyse(stats: dict[str, Any], config: RolloutConfig, *, past_deadline: bool) -> RolloutVerdict:
    """Judge one step from the server's ``/rollout/stats`` window (see the module docstring)."""
    challenger = stats["variants"]["challenger"]
    requests = int(challenger["requests"])
    enough = requests >= config.min_requests
    feedback = _feedback_accuracy_check(challenger, config)
    checks = (
        _error_rate_check(challenger, config, enough=enough),
        _p99_latency_check(challenger, config, enough=enough),
        feedback,
        _divergence_check(stats, challenger, config, feedback=feedback),
    )
    verdict, reasons = _verdict(checks, config, requests=requests, past_deadline=past_deadline)
    return RolloutVerdict(verdict=verdict, checks=checks, reasons=reasons, requests=requests)


def _error_rate_check(challenger: dict[str, Any], config: RolloutConfig, *, enough: bool) -> Check:
    """The challenger's error rate, failing when a binomial test puts it above the maximum."""
    requests = int(challenger["requests"])
    errors = int(challenger["errors"])
    error_rate = errors / requests if requests else 0.0
    passed: bool | None
    if requests:
        p_value = binomtest(errors, requests, config.max_error_rate, alternative="greater").pvalue
        significantly_high = p_value <= config.alpha and error_rate > config.max_error_rate
        passed = False if significantly_high else (True if enough else None)
        # Many errors fail at once, even before the window is full.
        if errors and error_rate > 10 * config.max_error_rate and errors >= 3:
            passed = False
    else:
        p_value, passed = 1.0, None
    return Check(
        name="error_rate",
        threshold=f"<= {config.max_error_rate:.1%} (binomial test, alpha {config.alpha})",
        observed=f"{errors}/{requests} = {error_rate:.2%} (p = {p_value:.3g})",
        passed=passed,
    )


def _p99_latency_check(challenger: dict[str, Any], config: RolloutConfig, *, enough: bool) -> Check:
    """The challenger's p99 latency against the maximum, once the window has enough requests."""
    p99 = challenger.get("p99_latency_ms")
    return Check(
        name="p99_latency",
        threshold=f"<= {config.max_p99_ms:g} ms",
        observed="-" if p99 is None else f"{p99:.1f} ms",
        passed=None if p99 is None or not enough else p99 <= config.max_p99_ms,
    )


def _feedback_accuracy_check(challenger: dict[str, Any], config: RolloutConfig) -> Check:
    """Accuracy on feedback against the champion's on the same rows; undecided with too few rows."""
    rows = int(challenger.get("feedback_rows") or 0)
    if rows < config.min_feedback:
        return Check(
            name="feedback_accuracy",
            threshold=f"needs {config.min_feedback} labelled rows",
            observed=f"{rows} labelled rows",
            passed=None,
        )
    right = int(challenger["feedback_correct"])
    champion_right = int(challenger["champion_feedback_correct"] or 0)
    new, old = right / rows, champion_right / rows
    # Paired on the same rows: an exact one-sided McNemar test on the discordant rows.
    b = int(challenger.get("only_challenger_right") or 0)
    c = int(challenger.get("only_champion_right") or 0)
    p_worse = binomtest(c, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    failed = new < old - config.accuracy_tolerance and p_worse <= config.alpha
    return Check(
        name="feedback_accuracy",
        threshold=f"no drop over {config.accuracy_tolerance:.0%} vs the champion on the same rows",
        observed=f"{new:.1%} vs {old:.1%} on {rows:,} labelled rows (McNemar p = {p_worse:.3g})",
        passed=not failed,
    )


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
    within = (
        None
        if divergence is None or paired < config.min_requests
        else (divergence <= config.max_divergence)
    )
    # Divergent, with the feedback that could explain it still short: wait for it (the step's
    # deadline turns a wait into the inconclusive action), rather than racing the labels.
    awaiting_feedback = within is False and feedback.passed is None
    passed = within if within is not False else (None if awaiting_feedback else feedback_vouches)
    if divergence is None:
        observed = "-"
    else:
        observed = f"{divergence:.3f} on {paired:,} rows"
        if within is False and feedback_vouches:
            observed += " (explained by feedback)"
        elif awaiting_feedback:
            observed += " (waiting for the feedback that could explain it)"
    return Check(
        name="prediction_divergence",
        threshold=f"Jensen-Shannon <= {config.max_divergence:g} on the same rows as the "
        "champion, unless feedback shows the challenger right where they differ",
        observed=observed,
        passed=passed,
    )


def _verdict(
    checks: tuple[Check, ...], config: RolloutConfig, *, requests: int, past_deadline: bool
) -> tuple[Verdict, tuple[str, ...]]:
    """The step's verdict and its reasons: any failure rolls back; enough clean requests promote."""
    failed_checks = [c for c in checks if c.passed is False]
    if failed_checks:
        return Verdict.rollback, tuple(
            f"{c.name} failed: {c.observed} (want {c.threshold})" for c in failed_checks
        )
    # Every check decided (feedback may still be missing), on enough requests.
    decided = all(c.passed is True for c in checks if c.name != "feedback_accuracy")
    if requests >= config.min_requests and decided:
        return Verdict.promote, (f"all checks passed on {requests:,} challenger requests",)
    if past_deadline:
        verdict = Verdict.approve if config.on_inconclusive == "approve" else Verdict.rollback
        return verdict, (
            f"inconclusive at the deadline: {requests:,} challenger requests, "
            f"{config.min_requests:,} needed",
        )
    return Verdict.hold, (f"collecting: {requests:,} of {config.min_requests:,} requests",)
