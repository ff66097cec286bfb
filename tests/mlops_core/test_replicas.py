"""Replicas' rollout windows add up to the window of one server that saw every request."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_core.replicas import analyse_replicas, merge_stats
from mlops_core.rollout import RolloutConfig, Verdict, analyse
from mlops_core.serving.records import Seen, Traffic, js_divergence

CONFIG = RolloutConfig(min_requests=50, min_feedback=50, max_p99_ms=1_000)


def requests(n: int, seed: int = 0) -> list[tuple[Seen, tuple[int, ...] | None]]:
    """``n`` requests (a third to the challenger, a few failing), most with their feedback."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        champion = float(rng.beta(2, 5))
        challenger = float(np.clip(champion + rng.normal(0.0, 0.02), 0, 1))
        variant = "challenger" if i % 3 == 0 else "champion"
        error = variant == "challenger" and i % 3_000 == 0
        mine = challenger if variant == "challenger" else champion
        seen = Seen(
            at=1_000.0 + i,
            request_id=f"r{i}",
            variant=variant,
            version="2" if variant == "challenger" else "1",
            latency=float(rng.uniform(0.001, 0.05)),
            error=error,
            probabilities=() if error else (mine,),
            champion_probabilities=(champion,),
        )
        label = (int(rng.random() < champion),) if i % 4 else None
        out.append((seen, label))
    return out


def fill(traffic: Traffic, seen: list[tuple[Seen, tuple[int, ...] | None]]) -> Traffic:
    for s, label in seen:
        traffic.add(s)
        if label is not None:
            traffic.feedback(s.request_id, label)
    return traffic


def replicated(n: int) -> tuple[dict, list[dict]]:
    """One server's stats over ``n`` requests, and two replicas' that shared them (alternately)."""
    seen = requests(n)
    one = fill(Traffic(), seen).stats(0.0)
    a, b = fill(Traffic(), seen[0::2]), fill(Traffic(), seen[1::2])
    return one, [{**a.stats(0.0), "replica": "http://a"}, {**b.stats(0.0), "replica": "http://b"}]


def test_two_replicas_add_up_to_one_server_that_saw_everything() -> None:
    one, windows = replicated(4_500)
    merged = merge_stats(windows)
    for variant in ("champion", "challenger"):
        single, summed = one["variants"][variant], merged["variants"][variant]
        assert {k: v for k, v in summed.items() if k != "p99_latency_ms"} == {
            k: v for k, v in single.items() if k != "p99_latency_ms"
        }
        # Conservative: the worst replica's p99, never below the p99 over every request.
        replicas = [w["variants"][variant]["p99_latency_ms"] for w in windows]
        assert summed["p99_latency_ms"] == max(replicas) >= single["p99_latency_ms"]
    assert merged["histograms"] == one["histograms"]
    assert merged["paired_rows"] == one["paired_rows"] > 0
    assert merged["divergence"] == pytest.approx(one["divergence"])
    assert merged["disagreement"] == pytest.approx(one["disagreement"])
    assert merged["replicas"] == 2 and merged["missing"] == []
    assert [r["replica"] for r in merged["per_replica"]] == ["http://a", "http://b"]
    assert sum(r["challenger_requests"] for r in merged["per_replica"]) == 1_500
    # The analysis reads the merged window as it reads one server's (the p99 aside).
    judged, alone = (analyse(w, CONFIG, past_deadline=False) for w in (merged, one))
    assert judged.verdict is alone.verdict is Verdict.promote
    assert [c for c in judged.checks if c.name != "p99_latency"] == [
        c for c in alone.checks if c.name != "p99_latency"
    ]


def test_the_divergence_from_counts_is_the_servers_divergence() -> None:
    one, _ = replicated(300)
    rows = [s for s, _ in requests(300) if s.variant == "challenger" and not s.error]
    expected = js_divergence(
        [s.probabilities[0] for s in rows], [s.champion_probabilities[0] for s in rows]
    )
    assert one["divergence"] == pytest.approx(expected)


def test_empty_windows_merge_to_an_empty_window() -> None:
    for windows in ([], [Traffic().stats(0.0)], [Traffic().stats(0.0), Traffic().stats(0.0)]):
        merged = merge_stats(windows)
        challenger = merged["variants"]["challenger"]
        assert challenger["requests"] == challenger["errors"] == challenger["feedback_rows"] == 0
        assert challenger["p99_latency_ms"] is None
        assert merged["variants"]["champion"]["champion_feedback_correct"] is None
        assert merged["paired_rows"] == 0
        assert merged["divergence"] is None and merged["disagreement"] is None
        assert merged["histograms"]["challenger"] == [0] * 10
        assert merged["replicas"] == len(windows)
        assert analyse(merged, CONFIG, past_deadline=False).verdict is Verdict.hold


def test_a_replica_with_no_traffic_adds_nothing() -> None:
    one, windows = replicated(600)
    merged = merge_stats([windows[0], windows[1], {**Traffic().stats(0.0), "replica": "http://c"}])
    assert merged["variants"]["challenger"] == merge_stats(windows)["variants"]["challenger"]
    assert merged["divergence"] == pytest.approx(one["divergence"])
    assert merged["replicas"] == 3


def test_an_unreachable_replica_is_named_and_holds_a_promotion() -> None:
    one, windows = replicated(9_000)
    assert analyse(one, CONFIG, past_deadline=False).verdict is Verdict.promote
    down = {"replica": "http://b", "unreachable": "ConnectError: connection refused"}
    merged = merge_stats([windows[0], down])
    assert merged["replicas"] == 2 and merged["missing"] == ["http://b"]
    assert merged["per_replica"][1] == down
    assert (
        merged["variants"]["challenger"]["requests"]
        == windows[0]["variants"]["challenger"]["requests"]
    )
    # The reachable replica alone would promote; with one missing the step holds, naming it.
    assert analyse(merged, CONFIG, past_deadline=False).verdict is Verdict.promote
    held = analyse_replicas(merged, CONFIG, past_deadline=False)
    assert held.verdict is Verdict.hold
    assert "http://b" in held.reasons[0] and "connection refused" in held.reasons[0]
    # Past the deadline the inconclusive action applies.
    late = analyse_replicas(merged, CONFIG, past_deadline=True)
    assert late.verdict is Verdict.rollback and "http://b" in late.reasons[0]
    approve = CONFIG.model_copy(update={"on_inconclusive": "approve"})
    assert analyse_replicas(merged, approve, past_deadline=True).verdict is Verdict.approve
    # Every replica read: the verdict is the analysis' own.
    assert analyse_replicas(merge_stats(windows), CONFIG, past_deadline=False).verdict is (
        Verdict.promote
    )


def test_a_failure_seen_on_part_of_the_evidence_still_rolls_back() -> None:
    failing = Traffic()
    for i in range(100):
        failing.add(Seen(1.0 + i, f"f{i}", "challenger", "2", 0.01, i % 2 == 0, (0.5,), (0.5,)))
    down = {"replica": "http://b", "unreachable": "ReadTimeout: timed out"}
    verdict = analyse_replicas(
        merge_stats([{**failing.stats(0.0), "replica": "http://a"}, down]),
        CONFIG,
        past_deadline=False,
    )
    assert verdict.verdict is Verdict.rollback
    assert "error_rate failed" in verdict.reasons[0] and "http://b" in verdict.reasons[-1]


def test_all_replicas_unreachable_holds() -> None:
    downs = [{"replica": f"http://{n}", "unreachable": "ConnectError"} for n in "ab"]
    merged = merge_stats(downs)
    assert merged["variants"]["challenger"]["requests"] == 0
    assert merged["missing"] == ["http://a", "http://b"]
    verdict = analyse_replicas(merged, CONFIG, past_deadline=False)
    assert verdict.verdict is Verdict.hold
    assert "http://a" in verdict.reasons[-1] and "http://b" in verdict.reasons[-1]
