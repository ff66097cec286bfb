"""Decision quality: how often the automatic verdicts are wrong, the way the product uses them.

Part 1 -- rollouts. Simulated traffic with known truth is fed, look by look (every 2 simulated
seconds, as the flow looks every second), to the same ``analyse`` the rollout flow calls, through
the default canary plan (5 -> 25 -> 50 -> 100%, 120 s per step) with the default limits (error
rate 1%, p99 100 ms, divergence 0.2, accuracy margin 2 points, alpha 5%). Challengers equal to,
better and worse than the champion, with errors, slower, and with feedback immediate, delayed past
the step, and absent. Each scenario is repeated; the table gives the share promoted and rolled
back and the challenger requests and seconds to the verdict.

Part 2 -- retrain and gate in a world where nothing changed: the gates' share of promotions.

Part 3 -- the cost-benefit over the demo stream: ``mlops demo`` runs in a temporary home, and
every decision run it recorded in MLflow is read back: which batches called for a retrain
(accuracy known to have fallen), which retrained and which were refused, with the policy's own
reasons and figures, and what each retrain then recovered. The recorded evidence of each is then
decided again under other costs and values (``decide`` is pure), to show where the rule says no.

Usage: ``python benchmarks/decision_quality.py [--repeats 200] [--rate 1000]
[--parts rollouts,noise,cost]`` (prints tables, writes ``benchmarks/results/decision_quality.json``;
a subset of parts replaces only those parts in it); ``--report`` prints them from the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS, print_table, write_results  # noqa: E402

from mlops_core.replicas import BINS, js_divergence_of_counts  # noqa: E402
from mlops_core.rollout import RolloutConfig, Verdict, analyse  # noqa: E402

LOOK_SECONDS = 2.0
CHAMPION_ACCURACY = 0.75
# Where the champion's predicted probabilities fall (10 bins); a challenger that answers
# differently on a share ``d`` of rows moves that share of its mass to the mirrored bins.
CHAMPION_BINS = np.array([0.18, 0.16, 0.13, 0.11, 0.09, 0.08, 0.08, 0.07, 0.05, 0.05])


@dataclass(frozen=True)
class Scenario:
    """One kind of challenger and how its labels arrive."""

    name: str
    accuracy_change: float = 0.0  # challenger minus champion, on the same rows
    error_rate: float = 0.0
    p99_ms: float = 40.0
    feedback_lag: float | None = 0.0  # seconds after the request; None: never
    feedback: str = "required"
    rate: float | None = None  # requests per second over both variants (default: --rate)
    acceptable: bool = True  # whether promoting it is right (for the targets)


SCENARIOS = (
    Scenario("equal"),
    Scenario("better +3 points", accuracy_change=0.03),
    Scenario("worse -2 points (the margin)", accuracy_change=-0.02),
    Scenario("worse -5 points", accuracy_change=-0.05, acceptable=False),
    Scenario("worse -10 points", accuracy_change=-0.10, acceptable=False),
    Scenario("errors 0.5%", error_rate=0.005),
    Scenario("errors 1% (the maximum)", error_rate=0.01, acceptable=False),
    Scenario("errors 3%", error_rate=0.03, acceptable=False),
    Scenario("errors 10%", error_rate=0.10, acceptable=False),
    Scenario("slower (p99 150 ms)", p99_ms=150.0, acceptable=False),
    Scenario("equal, feedback 5 min late", feedback_lag=300.0),
    Scenario("equal, feedback 5 min late, delayed", feedback_lag=300.0, feedback="delayed"),
    Scenario("equal, no feedback", feedback_lag=None),
    Scenario("equal, no feedback, optional", feedback_lag=None, feedback="optional"),
    Scenario(
        "worse -10, no feedback, optional",
        accuracy_change=-0.10,
        feedback_lag=None,
        feedback="optional",
        acceptable=False,
    ),
    Scenario("equal, low traffic (50 req/s)", rate=50.0),
)


def _pair_shares(change: float) -> tuple[float, float]:
    """Shares of rows only the challenger / only the champion gets right (6% differ, + |change|)."""
    differ = 0.06 + abs(change)
    return (differ + change) / 2, (differ - change) / 2


def _challenger_bins(change: float) -> np.ndarray:
    shift = 0.06 + abs(change)
    return (1 - shift) * CHAMPION_BINS + shift * CHAMPION_BINS[::-1]


class Window:
    """The server's ``/rollout/stats`` window of one step, filled look by look."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.s, self.rng = scenario, rng
        self.requests = self.errors = 0
        self.pending: list[tuple[float, np.ndarray]] = []  # (when labels arrive, paired counts)
        self.paired = np.zeros(3, dtype=int)  # only challenger right, only champion right, same
        self.feedback_rows = 0
        self.hist = {"challenger": np.zeros(BINS, int), "champion": np.zeros(BINS, int)}
        self.better, self.worse = _pair_shares(scenario.accuracy_change)
        self.q = _challenger_bins(scenario.accuracy_change)

    def serve(self, now: float, n: int) -> None:
        """``n`` challenger requests at ``now``: errors, histograms, and labels to come."""
        errors = int(self.rng.binomial(n, self.s.error_rate))
        ok = n - errors
        self.requests += n
        self.errors += errors
        self.hist["challenger"] += self.rng.multinomial(ok, self.q)
        self.hist["champion"] += self.rng.multinomial(ok, CHAMPION_BINS)
        if self.s.feedback_lag is not None and ok:
            pairs = self.rng.multinomial(
                ok, [self.better, self.worse, 1 - self.better - self.worse]
            )
            self.pending.append((now + self.s.feedback_lag, pairs))

    def labels_in(self, now: float) -> None:
        """Credit the feedback whose time has come."""
        while self.pending and self.pending[0][0] <= now:
            _, pairs = self.pending.pop(0)
            self.paired += pairs
            self.feedback_rows += int(pairs.sum())

    def stats(self) -> dict[str, Any]:
        """The window in the shape the model server reports it."""
        rows = self.feedback_rows
        better, worse = int(self.paired[0]), int(self.paired[1])
        champion_right = int(round(CHAMPION_ACCURACY * rows))
        paired_rows = self.requests - self.errors
        return {
            "variants": {
                "challenger": {
                    "requests": self.requests,
                    "errors": self.errors,
                    "p99_latency_ms": self.s.p99_ms if self.requests else None,
                    "feedback_rows": rows,
                    "feedback_correct": champion_right + better - worse,
                    "champion_feedback_correct": champion_right,
                    "only_challenger_right": better,
                    "only_champion_right": worse,
                },
                "champion": {"requests": 0, "errors": 0},
            },
            "paired_rows": paired_rows,
            "divergence": js_divergence_of_counts(
                list(self.hist["challenger"]), list(self.hist["champion"])
            ),
            "histograms": {k: [int(x) for x in v] for k, v in self.hist.items()},
        }


def one_rollout(
    scenario: Scenario, config: RolloutConfig, rate: float, rng: np.random.Generator
) -> dict[str, Any]:
    """Run the plan once: the outcome, the challenger requests served and the seconds taken."""
    clock, served = 0.0, 0
    for step, (_, weight) in enumerate(config.plan()):
        window = Window(scenario, rng)
        began = clock
        share = weight if weight > 0 else 1.0  # a shadow step computes every request
        while True:
            clock += LOOK_SECONDS
            window.serve(clock, int(rng.poisson(rate * share * LOOK_SECONDS)))
            window.labels_in(clock)
            verdict = analyse(
                window.stats(),
                config,
                past_deadline=clock - began > config.step_seconds,
                step=step,
                past_feedback_wait=clock - began > config.feedback_wait_seconds,
            )
            if verdict.verdict is not Verdict.hold:
                break
        served += window.requests
        if verdict.verdict is not Verdict.promote:
            return {"outcome": "rolled back", "requests": served, "seconds": clock}
    return {"outcome": "promoted", "requests": served, "seconds": clock}


def rollouts(repeats: int, rate: float, seed: int) -> list[dict[str, Any]]:
    """Every scenario ``repeats`` times: shares promoted / rolled back, requests and seconds."""
    rows = []
    for number, scenario in enumerate(SCENARIOS):
        config = RolloutConfig(feedback=scenario.feedback, feedback_wait_seconds=3600.0)
        rng = np.random.default_rng(seed + number)
        began = time.monotonic()
        runs = [one_rollout(scenario, config, scenario.rate or rate, rng) for _ in range(repeats)]
        promoted = sum(r["outcome"] == "promoted" for r in runs) / repeats
        rows.append(
            {
                "scenario": scenario.name,
                "acceptable": scenario.acceptable,
                "feedback": scenario.feedback,
                "rate": scenario.rate or rate,
                "promoted": promoted,
                "rolled_back": 1 - promoted,
                "median_requests": float(np.median([r["requests"] for r in runs])),
                "median_seconds": float(np.median([r["seconds"] for r in runs])),
            }
        )
        print(
            f"  {scenario.name}: promoted {promoted:.1%} ({time.monotonic() - began:.0f} s)",
            flush=True,
        )
    return rows


def _accuracy(model: Any, frame: Any) -> float:
    from mlops_cli.scenarios import CREDIT_SPEC
    from mlops_core.performance import predictions

    truth = frame[str(CREDIT_SPEC.target)].to_numpy()
    return float((predictions(model, frame, CREDIT_SPEC)[0].astype(truth.dtype) == truth).mean())


def noise_retrains(repeats: int, seed: int) -> list[dict[str, Any]]:
    """Nothing changes, but any dip of the champion's accuracy below its reference triggers a
    retrain; a challenger is trained and gated, its holdout taken the old way (a random 30% of
    the batch that triggered) or the new way (the batch's gate rows, which did not decide)."""
    import polars as pl

    from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
    from mlops_core.evaluation import GateConfig, evaluate_challenger
    from mlops_core.holdout import decision_rows, gate_rows
    from mlops_core.training import TrainingConfig, train_model

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config = TrainingConfig(max_iter=60)
    gates = GateConfig(latency_samples=20)
    rng = np.random.default_rng(seed)
    reference = generate_applications(rng, 4_000)
    champion = train_model(reference.head(3_000), CREDIT_SPEC, config).pipeline
    reference_accuracy = _accuracy(champion, reference.tail(1_000))
    # The truth: accuracy on 40,000 fresh rows of the same (unchanged) world.
    truth = generate_applications(np.random.default_rng(seed + 99), 40_000, week=2)
    champion_truth = _accuracy(champion, truth)
    # way -> [retrains, promoted, promoted but not truly better by the gates' margin]
    tallies = {
        "random 30% of the triggering batch": [0, 0, 0],
        "gate rows (disjoint)": [0, 0, 0],
    }
    began = time.monotonic()
    triggered = 0
    while triggered < repeats:
        batch = generate_applications(rng, 2_000, week=2)
        for way in tallies:
            if way.startswith("random"):
                deciding = batch
                held = pl.Series(rng.random(batch.height) < 0.3)
            else:
                deciding = decision_rows(batch, CREDIT_SPEC, 0.3)
                held = gate_rows(batch, CREDIT_SPEC, 0.3)
            if _accuracy(champion, deciding) >= reference_accuracy:
                continue  # no dip: no retrain
            window = pl.concat([reference, batch.filter(~held)], how="vertical_relaxed")
            challenger = train_model(window, CREDIT_SPEC, config).pipeline
            report = evaluate_challenger(
                challenger,
                champion,
                batch.filter(held),
                CREDIT_SPEC,
                training_data_valid=True,
                config=gates,
            )
            tallies[way][0] += 1
            if report.passed:
                tallies[way][1] += 1
                gain = _accuracy(challenger, truth) - champion_truth
                tallies[way][2] += int(gain < gates.margin)
        triggered = min(t[0] for t in tallies.values())
        print(f"  {triggered}/{repeats} retrains ({time.monotonic() - began:.0f} s)", flush=True)
    return [
        {
            "holdout": way,
            "retrains": n,
            "promoted": k,
            "share_promoted": k / n if n else None,
            "wrongly_promoted": wrong,
            "share_wrongly_promoted": wrong / n if n else None,
        }
        for way, (n, k, wrong) in tallies.items()
    ]


# Other costs and values the recorded evidence is decided again under (part 3).
COST_VARIANTS: tuple[tuple[str, dict[str, float]], ...] = (
    ("defaults (value 0.05, 10,000/day, 30 days, fixed cost 200)", {}),
    ("fixed cost 1,000", {"fixed_cost_per_retrain": 1_000.0}),
    ("1,000 predictions/day", {"predictions_per_day": 1_000.0}),
    ("value 0.01 per correct prediction", {"value_per_correct_prediction": 0.01}),
    ("no fixed cost (compute only)", {"fixed_cost_per_retrain": 0.0}),
)


def _blocker(reasons: str) -> str:
    """The kind of blocker a ``watch`` decision's reasons name, or the action taken."""
    kinds = []
    if "expected benefit" in reasons and "below the retrain cost" in reasons:
        kinds.append("cost > benefit")
    if "in cooldown" in reasons:
        kinds.append("cooldown")
    if "labelled rows since the last training" in reasons:
        kinds.append("too few labels")
    return " + ".join(kinds)


def demo_cost_benefit(seed: int, home: Path | None = None) -> dict[str, Any]:
    """Run ``mlops demo`` in a temporary home (or read the one a run left in ``home``); every
    decision that weighed a retrain, read back."""
    from mlflow import MlflowClient

    from mlops_core.adapters.landing import LandingZone
    from mlops_core.policy import Evidence, decide
    from mlops_core.settings import Settings
    from mlops_core.tags import (
        BATCH_SHA256,
        CONTEXT,
        DECISION,
        DECISION_KEY,
        REASONS,
        RETRAIN,
        RETRAIN_REASON,
        RUN_TYPE,
    )

    if home is None:
        home = Path(tempfile.mkdtemp(prefix="mlops-bench-demo-"))
        env = {**os.environ, "MLOPS_HOME": str(home)}
        env.pop("MLOPS_TRACKING_URI", None)
        mlops = Path(sys.executable).parent / "mlops"
        print(f"  running `mlops demo --seed {seed}` in {home} (a few minutes)", flush=True)
        began = time.monotonic()
        done = subprocess.run(
            [str(mlops), "demo", "--seed", str(seed)], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"mlops demo failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        (home / "demo-output.txt").write_text(done.stdout, encoding="utf-8")
        print(
            f"  demo finished in {time.monotonic() - began:.0f} s (its output: "
            f"{home / 'demo-output.txt'})",
            flush=True,
        )

    settings = Settings(home=home / "demo", gx_dir=home / "demo" / "great_expectations")
    names = {
        e.sha256: e.original_name
        for kind in ("batch", "labels")
        for e in LandingZone(settings, kind).entries()
    }
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name("credit")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{RUN_TYPE}` = 'decision'",
        order_by=["attributes.start_time ASC"],
        max_results=1_000,
    )
    weighed: list[dict[str, Any]] = []
    evidences: list[Evidence] = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        if "expected_benefit" not in metrics:
            continue  # accuracy was not known to have fallen: no retrain to weigh
        path = client.download_artifacts(run.info.run_id, "assessment.json", tempfile.mkdtemp())
        evidence = Evidence.model_validate(json.loads(Path(path).read_text())["evidence"])
        evidences.append(evidence)
        kind = tags.get(DECISION_KEY, "batch:").split(":")[0]
        if CONTEXT in tags:
            kind = "drift review"
        sha = tags.get(BATCH_SHA256, "")
        seen = evidence.observed_accuracy
        weighed.append(
            {
                "file": names.get(sha, sha[:12]),
                "kind": kind,
                "accuracy": seen if seen is not None else evidence.estimated_accuracy,
                "measured": "observed" if seen is not None else "estimated",
                "reference": evidence.reference_accuracy,
                "past_retrains": len(evidence.past_recoveries),
                "expected_benefit": metrics["expected_benefit"],
                "retrain_cost": metrics["retrain_cost"],
                "action": tags.get(DECISION, ""),
                "blocked_by": _blocker(tags.get(REASONS, "")),
                "retrain_outcome": tags.get(RETRAIN, ""),
                "retrain_reason": tags.get(RETRAIN_REASON, ""),
                "recovered": metrics.get("retrain_accuracy_gain"),
                "reasons": tags.get(REASONS, ""),
            }
        )
    base = settings.policy_config()
    variants = []
    for name, change in COST_VARIANTS:
        config = base.model_copy(update=change)
        actions = [decide(e, config) for e in evidences]
        variants.append(
            {
                "variant": name,
                "weighed": len(actions),
                "retrain": sum(d.action.value == "retrain" for d in actions),
                "refused_on_cost": sum(
                    any("below the retrain cost" in r for r in d.reasons) for d in actions
                ),
            }
        )
    return {"seed": seed, "decisions": len(runs), "weighed": weighed, "variants": variants}


def show(payload: dict[str, Any]) -> None:
    """Print the tables of ``payload``."""
    print(
        f"\nRollouts: default limits and canary plan, {payload['repeats']} runs per scenario, "
        f"a look every {LOOK_SECONDS:g} s"
    )
    print_table(
        ["scenario", "feedback", "req/s", "promoted", "rolled back", "requests", "seconds"],
        [
            [
                r["scenario"],
                r["feedback"],
                f"{r['rate']:g}",
                f"{r['promoted']:.1%}",
                f"{r['rolled_back']:.1%}",
                f"{r['median_requests']:,.0f}",
                f"{r['median_seconds']:,.0f}",
            ]
            for r in payload["rollouts"]
        ],
    )

    if payload.get("noise_retrains"):
        print(
            "\nRetrain and gate where nothing changed (every dip below the reference retrains);"
            "\n'wrongly': promoted, yet not better than the champion by the gates' margin (0.5"
            " points) on 40,000 fresh rows:"
        )
        print_table(
            ["gate holdout", "retrains", "promoted", "share", "wrongly", "share wrongly"],
            [
                [
                    r["holdout"],
                    r["retrains"],
                    r["promoted"],
                    f"{r['share_promoted']:.1%}",
                    r["wrongly_promoted"],
                    f"{r['share_wrongly_promoted']:.1%}",
                ]
                for r in payload["noise_retrains"]
            ],
        )

    cost = payload.get("demo_cost_benefit")
    if cost:
        print(
            f"\nCost-benefit over the demo stream (seed {cost['seed']}, {cost['decisions']} "
            f"decisions; the {len(cost['weighed'])} where accuracy was known to have fallen):"
        )
        print_table(
            [
                "file",
                "on",
                "accuracy",
                "reference",
                "past",
                "benefit",
                "cost",
                "decision",
                "blocked by",
                "retrain",
                "recovered",
            ],
            [
                [
                    w["file"],
                    w["kind"],
                    f"{w['accuracy']:.1%} {w['measured'][:3]}."
                    if w["accuracy"] is not None
                    else "",
                    f"{w['reference']:.1%}" if w["reference"] is not None else "",
                    w["past_retrains"],
                    f"{w['expected_benefit']:,.0f}",
                    f"{w['retrain_cost']:,.0f}",
                    w["action"],
                    w["blocked_by"],
                    w["retrain_outcome"],
                    f"{w['recovered']:+.1%}" if w["recovered"] is not None else "",
                ]
                for w in cost["weighed"]
            ],
        )
        print("\nThe same recorded evidence, decided again under other costs and values:")
        print_table(
            ["setting", "weighed", "retrain", "refused on cost"],
            [
                [v["variant"], v["weighed"], v["retrain"], v["refused_on_cost"]]
                for v in cost["variants"]
            ],
        )


def main() -> None:
    """Run the simulations, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrains", type=int, default=60, help="noise-triggered retrains")
    parser.add_argument("--demo-seed", type=int, default=7, help="seed of the demo stream")
    parser.add_argument(
        "--parts",
        default="rollouts,noise,cost",
        help="comma-separated: rollouts, noise, cost (others are kept from the JSON)",
    )
    parser.add_argument(
        "--demo-home", type=Path, help="read the decisions of a demo already run in this MLOPS_HOME"
    )
    parser.add_argument("--report", action="store_true", help="print the tables from the JSON")
    args = parser.parse_args()
    stored = RESULTS / "decision_quality.json"
    if args.report:
        show(json.loads(stored.read_text()))
        return
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"rollouts", "noise", "cost"}
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: use rollouts, noise, cost")
    payload: dict[str, Any] = json.loads(stored.read_text()) if stored.exists() else {}
    if "rollouts" in parts:
        payload.update(
            repeats=args.repeats,
            rate=args.rate,
            rollouts=rollouts(args.repeats, args.rate, args.seed),
        )
    if "noise" in parts:
        payload["noise_retrains"] = (
            noise_retrains(args.retrains, args.seed) if args.retrains else []
        )
    if "cost" in parts:
        payload["demo_cost_benefit"] = demo_cost_benefit(args.demo_seed, args.demo_home)
    show(payload)
    print(f"\nwrote {write_results('decision_quality', payload)}")


if __name__ == "__main__":
    main()
