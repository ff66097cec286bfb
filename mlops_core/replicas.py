"""Several model-server replicas, one rollout: their ``/rollout/stats`` windows added up (pure).

Each replica follows the registry on its own and sees only the share of traffic its load balancer
sends it; the rollout judges the challenger on the evidence of all of them.

* Counts (requests, errors, feedback, the paired McNemar counts, paired rows) add up exactly.
* The divergence cannot be added: each replica also reports the 10-bin histograms it is computed
  from, the histograms are added and the divergence recomputed (``js_divergence_of_counts``, the
  one function the server uses too), so the merged divergence is the one a single server that saw
  every request would report.
* The p99 latency cannot be recovered from per-replica percentiles; the merged p99 is the worst
  replica's -- conservative: at most 1% of each replica's requests are slower than its own p99,
  so at most 1% of all of them are slower than the largest.

A replica that could not be read is the window ``{"replica": url, "unreachable": why}``: it adds
nothing to the counts, and ``analyse_replicas`` never promotes while one is missing (no promotion
on partial evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops_core.rollout import RolloutConfig, RolloutVerdict, Verdict, analyse

BINS = 10
VARIANTS = ("champion", "challenger")
COUNTS = ("requests", "errors", "feedback_rows", "feedback_correct")
# Counted on the challenger's rows only (None on the champion's).
PAIRED_COUNTS = ("champion_feedback_correct", "only_challenger_right", "only_champion_right")


def histogram(probabilities: Sequence[float], bins: int = BINS) -> list[int]:
    """The counts of ``probabilities`` in ``bins`` equal bins over [0, 1]."""
    return [int(n) for n in np.histogram(probabilities, np.linspace(0, 1, bins + 1))[0]]


def js_divergence_of_counts(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms' counts; None when either
    is empty. Half a count is added to every bin, so an empty bin does not make it infinite."""
    if not sum(a) or not sum(b):
        return None
    p = np.asarray(a, dtype=float) + 0.5
    q = np.asarray(b, dtype=float) + 0.5
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def merge_stats(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``/rollout/stats`` window (the shape ``analyse`` reads) adding up every replica's, with
    ``replicas`` (how many were asked), ``missing`` (the replicas that could not be read) and
    ``per_replica`` (what each reported, in brief)."""
    read = [w for w in windows if "unreachable" not in w]
    paired = sum(int(w.get("paired_rows") or 0) for w in read)
    # Each replica's share of disagreeing rows, back to a count (it is k / paired_rows exactly).
    disagreeing = sum(
        round(float(w.get("disagreement") or 0.0) * int(w.get("paired_rows") or 0)) for w in read
    )
    histograms = {
        variant: _added([w.get("histograms", {}).get(variant) for w in read])
        for variant in VARIANTS
    }
    # A replica that paired rows without saying their histograms (an older server) leaves the
    # divergence unknown rather than computed on part of the rows.
    complete = all("histograms" in w or not w.get("paired_rows") for w in read)
    divergence = (
        js_divergence_of_counts(histograms["challenger"], histograms["champion"])
        if complete
        else None
    )
    return {
        "since": min((float(w["since"]) for w in read if "since" in w), default=None),
        "variants": {
            variant: _merged_variant([w["variants"][variant] for w in read], variant)
            for variant in VARIANTS
        },
        "paired_rows": paired,
        "divergence": divergence,
        "disagreement": disagreeing / paired if paired else None,
        "histograms": histograms,
        "replicas": len(windows),
        "missing": [_name(w) for w in windows if "unreachable" in w],
        "per_replica": [_brief(w) for w in windows],
    }


def analyse_replicas(
    merged: dict[str, Any],
    config: RolloutConfig,
    *,
    past_deadline: bool,
    step: int = 0,
    past_feedback_wait: bool = False,
) -> RolloutVerdict:
    """Judge a merged window like ``analyse``, except that a missing replica stops a promotion: the
    step holds, and past the deadline the inconclusive action applies; the reasons name it."""
    verdict = analyse(
        merged,
        config,
        past_deadline=past_deadline,
        step=step,
        past_feedback_wait=past_feedback_wait,
    )
    missing = [b for b in merged.get("per_replica", []) if "unreachable" in b]
    if not missing:
        return verdict
    note = "no evidence from " + "; ".join(f"{b['replica']} ({b['unreachable']})" for b in missing)
    if verdict.verdict is not Verdict.promote:
        # A rollback on part of the evidence stands: the missing replicas cannot clear a failure.
        return verdict.model_copy(update={"reasons": (*verdict.reasons, note)})
    if not past_deadline:
        return verdict.model_copy(
            update={"verdict": Verdict.hold, "reasons": (f"holding, {note}",)}
        )
    action = Verdict.approve if config.on_inconclusive == "approve" else Verdict.rollback
    return verdict.model_copy(
        update={"verdict": action, "reasons": (f"inconclusive at the deadline: {note}",)}
    )


def _added(histograms: list[list[int] | None]) -> list[int]:
    """The bin-wise sum of the histograms given (all zeros when there is none)."""
    total = [0] * BINS
    for counts in histograms:
        if counts is None:
            continue
        if len(counts) != BINS:
            raise ValueError(f"a replica reported a {len(counts)}-bin histogram, not {BINS} bins")
        total = [t + int(n) for t, n in zip(total, counts, strict=True)]
    return total


def _merged_variant(variants: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """One variant's counts summed over the replicas, its p99 the worst replica's."""
    merged: dict[str, Any] = {key: sum(int(v.get(key) or 0) for v in variants) for key in COUNTS}
    p99s = [float(v["p99_latency_ms"]) for v in variants if v.get("p99_latency_ms") is not None]
    merged["p99_latency_ms"] = max(p99s, default=None)
    for key in PAIRED_COUNTS:
        merged[key] = (
            sum(int(v.get(key) or 0) for v in variants) if variant == "challenger" else None
        )
    return merged


def _name(window: dict[str, Any]) -> str:
    """The replica a window came from (its URL), or ``?`` when the caller did not say."""
    return str(window.get("replica", "?"))


def _brief(window: dict[str, Any]) -> dict[str, Any]:
    """What one replica reported, in brief: what it serves and its challenger's evidence."""
    if "unreachable" in window:
        return {"replica": _name(window), "unreachable": str(window["unreachable"])}
    routing = window.get("routing") or {}
    challenger = window["variants"]["challenger"]
    return {
        "replica": _name(window),
        "champion": routing.get("champion"),
        "challenger": routing.get("challenger"),
        "weight": routing.get("weight"),
        "champion_requests": int(window["variants"]["champion"]["requests"]),
        "challenger_requests": int(challenger["requests"]),
        "challenger_errors": int(challenger["errors"]),
        "p99_latency_ms": challenger.get("p99_latency_ms"),
        "feedback_rows": int(challenger.get("feedback_rows") or 0),
        "paired_rows": int(window.get("paired_rows") or 0),
        "divergence": window.get("divergence"),
    }
