"""The soak's accounting: batches settled or lost, decision runs, targets, tables, JSON and plot.

Everything here reads what the window left behind (the ledger, MLflow's decision runs, what the
load counted) once the load has stopped; ``plot_memory`` redraws the RSS plot from the JSON.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, print_table
from soak_load import DATASET, Batches, Sampler, Users

from mlops_core.batches import FINAL_STATES, BatchState

# The rollouts, in order: which challenger, at what share of the window, and how each must end.
PLAN = (("good", 0.15), ("bad (flipped labels)", 0.45), ("good", 0.75))
EXPECTED = {"good": "promoted", "bad (flipped labels)": "rolled back"}
Target = tuple[Any, str, bool]  # (value, target, passed)


@dataclass(frozen=True)
class Window:
    """What the foreground measured over the soak window."""

    duration: float
    warmed: float  # seconds into the window when the RSS baseline was taken
    rss_start: int
    rss_end: int
    latencies: list[float]  # /predict round trips at the window's end, sorted
    rollouts: list[dict[str, Any]]

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of /predict latency, in ms (0 without requests)."""
        latencies = self.latencies
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0
        )

    @property
    def growth(self) -> float:
        """The server's RSS growth from after warm-up to the end, as a fraction."""
        return (self.rss_end - self.rss_start) / self.rss_start


@dataclass(frozen=True)
class Ledger:
    """Where every submitted batch ended, and what MLflow's decision runs say about them."""

    lost: list[str]
    states: Counter[str]
    settle_seconds: list[float]
    duplicated: list[str]
    unrecognised: list[dict[str, Any]]
    no_decision: list[str]
    actions: Counter[str]
    policy_moves: list[dict[str, Any]]
    server_logged: Counter[str]


def decision_runs(settings: Any) -> list[Any]:
    """Every decision run of the dataset's experiment (paged through MLflow's search)."""
    from mlflow.tracking import MlflowClient

    from mlops_core.adapters.registry import ModelRegistry

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = ModelRegistry(settings, DATASET).experiment_id()
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string="tags.`mlops.run_type` = 'decision'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def wait_to_settle(
    settings: Any, batches: Batches, grace: float, alive: Callable[[], None]
) -> list[str]:
    """The sha256s of submitted batches still not settled after ``grace`` seconds: the lost ones."""
    from mlops_cli.loops import poll_until
    from mlops_core.adapters.landing import LandingZone

    zone = LandingZone(settings)

    def unsettled() -> list[str]:
        out = []
        for sha in batches.unique:
            entry = zone.get(DATASET, sha)
            if entry is None or entry.state not in FINAL_STATES:
                out.append(sha)
        return out

    poll_until(lambda: not unsettled(), grace, every=1, check=alive)
    return unsettled()


def read_ledger(settings: Any, batches: Batches, lost: list[str]) -> Ledger:
    """The ledger's and MLflow's account of the submitted batches."""
    from mlops_core.adapters.landing import LandingZone

    zone = LandingZone(settings)
    states = Counter(
        (zone.get(DATASET, sha).state.value if zone.get(DATASET, sha) else "missing")
        for sha in batches.unique
    )
    settle_seconds = [
        (datetime.fromisoformat(e.updated_at).timestamp() - batches.unique[sha]["submitted"])
        for sha in batches.unique
        if (e := zone.get(DATASET, sha)) is not None
        and e.state in FINAL_STATES
        and batches.unique[sha]["state_at_submit"] != "quarantined at submit"
    ]
    runs = decision_runs(settings)
    per_sha: Counter[str] = Counter(
        r.data.tags.get("mlops.batch_sha256", "")
        for r in runs
        if r.data.tags.get("mlops.batch_sha256") and "mlops.context" not in r.data.tags
    )
    flowed = [
        sha
        for sha, what in batches.unique.items()
        if what["state_at_submit"] != "quarantined at submit"
    ]
    policy_moves = [
        {"run": r.info.run_name, "decision": r.data.tags.get("mlops.decision")}
        for r in runs
        if r.data.tags.get("mlops.decision") in ("retrain", "rollback")
        and r.data.tags.get("mlops.manual") != "true"
    ]
    server_logged = [
        e
        for kind in ("batch", "labels")
        for e in LandingZone(settings, kind).entries(DATASET)
        if e.original_name.startswith("served-")
    ]
    return Ledger(
        lost=lost,
        states=states,
        settle_seconds=settle_seconds,
        duplicated=sorted(sha for sha, k in per_sha.items() if k > 1),
        unrecognised=[r for r in batches.resubmitted if not r["recognised"]],
        no_decision=[sha for sha in flowed if sha not in lost and per_sha.get(sha, 0) == 0],
        actions=Counter(r.data.tags.get("mlops.decision", "?") for r in runs),
        policy_moves=policy_moves,
        server_logged=Counter(e.state.value for e in server_logged),
    )


def targets(window: Window, users: Users, ledger: Ledger) -> dict[str, Target]:
    """Each target's (value, target, passed)."""
    failed = sum(users.failed.values())
    rollouts = window.rollouts
    return {
        "failed requests": (failed, "0", failed == 0),
        "lost batches": (len(ledger.lost), "0", not ledger.lost),
        "duplicated batches": (
            len(ledger.duplicated) + len(ledger.unrecognised),
            "0",
            not ledger.duplicated and not ledger.unrecognised,
        ),
        "server RSS growth": (f"{window.growth:+.1%}", "< 10%", window.growth < 0.10),
        "rollouts as planned": (
            ", ".join(f"v{r['version']} {r['outcome']}" for r in rollouts),
            "promoted, rolled back, promoted",
            rollouts_as_planned(rollouts),
        ),
    }


def rollouts_as_planned(rollouts: list[dict[str, Any]]) -> bool:
    """Whether every planned rollout ran and ended as expected."""
    return len(rollouts) == len(PLAN) and all(r["outcome"] == r["expected"] for r in rollouts)


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def settle_summary(settle_seconds: list[float]) -> str:
    """Submit-to-settled p50 / max, in seconds (``-`` when nothing settled)."""
    if not settle_seconds:
        return "-"
    return f"{sorted(settle_seconds)[len(settle_seconds) // 2]:.1f} / {max(settle_seconds):.1f} s"


def measures_table(
    window: Window, users: Users, batches: Batches, ledger: Ledger, met: dict[str, Target]
) -> None:
    """Print the measures with their targets, PASS or FAIL."""
    resubmitted = len(batches.resubmitted)
    print_table(
        ["measure", "value", "target", "result"],
        [
            ["duration (soak window)", f"{window.duration:.0f} s", "", ""],
            ["requests served (predict + feedback)", f"{users.predictions + users.feedback:,}", "", ""],
            ["  predictions / feedback", f"{users.predictions:,} / {users.feedback:,}", "", ""],
            ["  answered by challenger", f"{users.variants['challenger']:,}", "", ""],
            ["  /predict p50 / p99 / max", f"{window.quantile(0.5):.0f} / {window.quantile(0.99):.0f} / {window.quantile(1.0):.0f} ms", "", ""],
            ["failed requests", met["failed requests"][0], "0", _verdict(met["failed requests"][2])],
            ["batches submitted (unique)", len(batches.unique), "", ""],
            ["duplicates resubmitted (recognised)", f"{resubmitted} ({resubmitted - len(ledger.unrecognised)})", "", ""],
            ["batches processed", ledger.states.get(BatchState.processed.value, 0), "", ""],
            ["batches quarantined", ledger.states.get(BatchState.quarantined.value, 0), "", ""],
            ["lost batches", len(ledger.lost), "0", _verdict(met["lost batches"][2])],
            ["duplicated batches", met["duplicated batches"][0], "0", _verdict(met["duplicated batches"][2])],
            ["submit -> settled p50 / max", settle_summary(ledger.settle_seconds), "", ""],
            ["server RSS after warm-up", f"{window.rss_start / 2**20:.1f} MiB", "", ""],
            ["server RSS at end", f"{window.rss_end / 2**20:.1f} MiB", "", ""],
            ["server RSS growth", f"{window.growth:+.1%}", "< 10%", _verdict(met["server RSS growth"][2])],
            ["rollouts as planned", f"{sum(r['outcome'] == r['expected'] for r in window.rollouts)} of {len(PLAN)}", "3 of 3", _verdict(rollouts_as_planned(window.rollouts))],
        ],
    )  # fmt: skip


def print_report(
    window: Window, users: Users, batches: Batches, ledger: Ledger, met: dict[str, Target]
) -> None:
    """Print the measures, the rollouts, and what went wrong if anything did."""
    print()
    measures_table(window, users, batches, ledger, met)
    print()
    print_table(
        ["rollout", "version", "challenger", "outcome", "steps", "at s", "seconds", "champion"],
        [
            [n + 1, f"v{r['version']}", r["challenger"], r["outcome"], r["steps"], r["at_second"], r["seconds"], f"v{r['champion_after']}"]
            for n, r in enumerate(window.rollouts)
        ],
    )  # fmt: skip
    for r in window.rollouts:
        print(f"v{r['version']}: {r['reason']}")
    print(
        f"decision runs: {dict(ledger.actions)}; policy retrains/rollbacks during the soak: "
        f"{len(ledger.policy_moves)}; server-logged micro-batches landed: "
        f"{ledger.server_logged}"
    )
    if users.failed:
        print(f"failed requests (seconds into the soak, what): {users.failures[:20]}")
    if users.slow:
        print(f"/predict over 1 s (seconds into the soak, seconds): {users.slow[:20]}")
    if batches.errors:
        print(f"batch thread errors: {batches.errors[:10]}")
    if ledger.lost:
        print(f"lost: {[batches.unique[s]['name'] for s in ledger.lost]}")
    if ledger.duplicated or ledger.unrecognised:
        print(
            f"duplicated: {ledger.duplicated[:10]}; resubmissions not recognised: {ledger.unrecognised[:10]}"
        )
    if ledger.no_decision:
        print(f"settled without a decision run: {len(ledger.no_decision)}")


def soak_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The soak's settings as run: its options and the policy and rollout environment."""
    return {
        "minutes": args.minutes,
        "batch_seconds": args.batch_seconds,
        "batch_rows": args.batch_rows,
        "clients": args.clients,
        "rate_per_client": args.rate,
        "warmup_seconds": args.warmup,
        "grace_seconds": args.grace,
        "rollout": {k: os.environ[k] for k in os.environ if k.startswith("MLOPS_ROLLOUT_")},
        "min_labelled_rows": os.environ["MLOPS_MIN_LABELLED_ROWS"],
        "gate_latency_budget_ms": os.environ["MLOPS_GATE_LATENCY_BUDGET_MS"],
    }


def results_json(
    args: argparse.Namespace,
    window: Window,
    load: tuple[Users, Batches, Sampler],
    ledger: Ledger,
    met: dict[str, Target],
) -> dict[str, Any]:
    """The soak's results as JSON (``benchmarks/results/soak.json``, less the stack and home)."""
    users, batches, sampler = load
    settle = ledger.settle_seconds
    return {
        "settings": soak_settings(args),
        "duration_seconds": round(window.duration, 1),
        "requests": {
            "predictions": users.predictions,
            "feedback": users.feedback,
            "served": users.predictions + users.feedback,
            "failed": sum(users.failed.values()),
            "failed_by_kind": dict(users.failed),
            "failures": users.failures,
            "predict_ms": {
                q: round(window.quantile(v), 1)
                for q, v in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
            },
            "predict_over_1s": users.slow,
            "variants": dict(users.variants),
        },
        "batches": {
            "submitted_unique": len(batches.unique),
            "resubmitted": len(batches.resubmitted),
            "resubmissions_recognised": len(batches.resubmitted) - len(ledger.unrecognised),
            "states": dict(ledger.states),
            "lost": [batches.unique[s]["name"] for s in ledger.lost],
            "duplicated_sha256": ledger.duplicated,
            "settled_without_decision_run": len(ledger.no_decision),
            "settle_seconds_p50": round(sorted(settle)[len(settle) // 2], 2) if settle else None,
            "settle_seconds_max": round(max(settle), 2) if settle else None,
            "errors": batches.errors,
        },
        "decision_runs": dict(ledger.actions),
        "policy_retrains_or_rollbacks": ledger.policy_moves,
        "server_logged": dict(ledger.server_logged),
        "rollouts": window.rollouts,
        "server_rss_mib": {
            "warmup_seconds": round(window.warmed, 1),
            "after_warmup": round(window.rss_start / 2**20, 1),
            "end": round(window.rss_end / 2**20, 1),
            "growth": round(window.growth, 4),
            "samples": [(round(t, 1), round(b / 2**20, 1)) for t, b in sampler.samples],
        },
        "targets": {k: {"value": v[0], "target": v[1], "passed": v[2]} for k, v in met.items()},
    }


def plot_memory(results: dict[str, Any]) -> Path:
    """The server's RSS over the soak, with the rollouts marked: ``results/soak_memory.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = results["server_rss_mib"]
    seconds, mib = zip(*memory["samples"], strict=True)
    figure, axis = plt.subplots(figsize=(9, 3.6))
    axis.plot(seconds, mib, color="#1f77b4", lw=1.4, label="mlops serve RSS")
    axis.axvline(memory["warmup_seconds"], color="grey", ls=":", lw=1)
    axis.axhline(memory["after_warmup"] * 1.1, color="#d62728", ls="--", lw=1, label="+10% target")
    for rollout in results["rollouts"]:
        colour = "#2ca02c" if rollout["outcome"] == "promoted" else "#d62728"
        start = rollout["at_second"]
        axis.axvspan(start, start + rollout["seconds"], color=colour, alpha=0.2)
        axis.annotate(
            f"v{rollout['version']} {rollout['outcome']}",
            (start, min(mib)),
            fontsize=8,
            rotation=90,
            va="bottom",
        )
    axis.set_xlabel("seconds into the soak window")
    axis.set_ylabel("MiB")
    axis.set_title(
        f"Soak: {results['requests']['served']:,} requests, "
        f"{results['requests']['failed']} failed; RSS {memory['after_warmup']:.0f} -> "
        f"{memory['end']:.0f} MiB ({memory['growth']:+.1%})"
    )
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path = ROOT / "benchmarks" / "results" / "soak_memory.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
