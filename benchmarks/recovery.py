"""Retraining that recovers: labelled streams with known truth, today's window against the choice
among candidate windows, in the same run.

    .venv/bin/python benchmarks/recovery.py [--seeds 3] [--streams sudden,gradual,...]

Each stream is the credit data set: a 6,000-row reference, then weekly labelled batches of 2,000
rows. Streams: a sudden concept change (same inputs, a different relation to default) after 3
batches; a gradual one (the new concept's share of rows 20, 40, 60, 80, 100%); a recurring one
(the new concept for 3 batches, then the old one back); a covariate shift with the same concept;
no change. Every batch goes through the product's own calls, the way the batch flow makes them,
in a temporary MLOPS_HOME (a real landing zone, MLflow on SQLite): ``assess`` (observed accuracy
on the batch's decision rows, the change point), ``decide`` (the policy at its defaults), and on
``retrain`` ``gather_training_data`` -> ``train_challenger`` -> ``gate_challenger``, promoting a
challenger that passes (no model server: no canary); on ``rollback`` the registry's rollback
(the previous champion back). Each run is made twice, with
``MLOPS_WINDOW_SELECTION`` false (today's window: the newest 2,000 rows plus 2,000 older) and true.

The truth: each batch's served model is scored on 10,000 fresh rows of that batch's own world, and
so is an *oracle*, the same model class trained on 20,000 rows of that world. Reported per stream
and way: labelled batches after the change until the served model is within 3 points of the
oracle, the accuracy lost over the stream (the sum over batches after the change of oracle minus
served, in points x batches), and the retrains proposed, refused and promoted. Prints a table and
writes ``benchmarks/results/recovery.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import CREDIT, add_credit_dataset, bench_home, print_table, write_results

BATCH_ROWS = 2_000
STABLE_BATCHES = 3
WITHIN = 0.03


@dataclass(frozen=True)
class World:
    """Where a batch's rows come from: the share of new-concept rows, and whether inputs moved."""

    concept_share: float = 0.0
    shifted: bool = False


STREAMS: dict[str, list[World]] = {
    "sudden": [World()] * STABLE_BATCHES + [World(1.0)] * 5,
    "gradual": [World()] * STABLE_BATCHES + [World(s) for s in (0.2, 0.4, 0.6, 0.8, 1.0)],
    "recurring": [World()] * STABLE_BATCHES + [World(1.0)] * 3 + [World()] * 3,
    "covariate shift": [World()] * STABLE_BATCHES + [World(shifted=True)] * 5,
    "no change": [World()] * (STABLE_BATCHES + 5),
}


def draw(world: World, rng: np.random.Generator, n: int, week: int, prefix: str = "A") -> Any:
    """``n`` labelled applications of ``world``."""
    import polars as pl

    from mlops_cli.scenarios import PhaseKind, generate_applications

    new = int(round(world.concept_share * n))
    parts = []
    if n - new:
        kind = PhaseKind.sudden_shift if world.shifted else PhaseKind.stable
        parts.append(generate_applications(rng, n - new, week=week, kind=kind, id_prefix=prefix))
    if new:
        parts.append(
            generate_applications(
                rng, new, week=week, kind=PhaseKind.concept_drift, id_prefix=f"{prefix}c"
            )
        )
    frame = pl.concat(parts, how="vertical_relaxed")
    return frame.sort("applied_at")


class Truth:
    """Fresh rows and an oracle per world, made once and shared by every run."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cache: dict[World, tuple[Any, float]] = {}

    def of(self, world: World) -> tuple[Any, float]:
        """(10,000 fresh rows, the oracle's accuracy on them)."""
        if world not in self._cache:
            from mlops_cli.scenarios import CREDIT_SPEC
            from mlops_core.training import TrainingConfig, train_model

            rng = np.random.default_rng([self.seed, int(world.concept_share * 100), world.shifted])
            test = draw(world, rng, 10_000, week=60, prefix="T")
            oracle = train_model(draw(world, rng, 20_000, week=61, prefix="O"), CREDIT_SPEC)
            self._cache[world] = (test, accuracy(oracle.pipeline, test))
            del TrainingConfig
        return self._cache[world]


def accuracy(model: Any, frame: Any) -> float:
    """Share of right answers of ``model`` on ``frame``."""
    from mlops_cli.scenarios import CREDIT_SPEC
    from mlops_core.performance import predictions

    truth = frame[str(CREDIT_SPEC.target)].to_numpy()
    return float((predictions(model, frame, CREDIT_SPEC)[0].astype(truth.dtype) == truth).mean())


def one_stream(name: str, seed: int, selection: bool, truth: Truth) -> dict[str, Any]:
    """Run one stream through the product's calls; per-batch truth and the retrain tally."""
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.assessment import assess
    from mlops_core.batches import BatchState
    from mlops_core.challenger import gate_challenger, gather_training_data, train_challenger
    from mlops_core.policy import decide
    from mlops_core.settings import Settings

    home = bench_home(
        "recovery", {"MLOPS_WINDOW_SELECTION": "true" if selection else "false"}, prefect=False
    )
    settings = Settings()
    rng = np.random.default_rng(seed)
    add_credit_dataset(settings, rows=6_000, rng=rng)
    context = DatasetContext.open(settings, CREDIT)
    first = train_challenger(context, gather_training_data(context, first_model=True))
    context.registry.promote(first.version)
    zone = LandingZone(settings)
    batches = []
    proposed = refused = promoted = rollbacks = 0
    for week, world in enumerate(STREAMS[name], start=1):
        frame = draw(world, rng, BATCH_ROWS, week=week)
        path = home / f"batch-{week:02d}.parquet"
        frame.write_parquet(path)
        sha = zone.submit(path, CREDIT).entry.sha256
        zone.claim(CREDIT, sha)
        context = DatasetContext.open(Settings(), CREDIT)
        assessment = assess(context, frame, validation_passed=True, drift=None)
        decision = decide(assessment.evidence, context.settings.policy_config())
        zone.settle(CREDIT, sha, BatchState.processed, {"validation": "benchmark"})
        outcome = ""
        if decision.action.value == "retrain":
            proposed += 1
            data = gather_training_data(context)
            challenger = train_challenger(context, data, batch_sha256=sha)
            report = gate_challenger(context, challenger, data)
            if report.passed:
                context.registry.promote(challenger.version)
                promoted += 1
                outcome = f"promoted ({challenger.window_name})"
            else:
                refused += 1
                outcome = f"refused ({challenger.window_name})"
        elif decision.action.value == "rollback":
            aliases = context.registry.rollback()  # what the flow's roll_back task does
            rollbacks += 1
            outcome = f"rolled back to v{aliases.get('champion')}"
        elif decision.action.value == "watch" and "concept change" in " ".join(decision.reasons):
            outcome = "waits for rows since the change"
        champion = context.champion()
        assert champion is not None
        test, oracle = truth.of(world)
        batches.append(
            {
                "week": week,
                "concept_share": world.concept_share,
                "shifted": world.shifted,
                "decision": decision.action.value,
                "outcome": outcome,
                "change_at": assessment.evidence.change_at,
                "served": accuracy(champion.model, test),
                "oracle": oracle,
            }
        )
    return {
        "stream": name,
        "seed": seed,
        "selection": selection,
        "batches": batches,
        "proposed": proposed,
        "refused": refused,
        "promoted": promoted,
        "rollbacks": rollbacks,
    }


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Batches after the change until within 3 points of the oracle; accuracy lost after it."""
    after = run["batches"][STABLE_BATCHES:]
    within = next((i + 1 for i, b in enumerate(after) if b["oracle"] - b["served"] <= WITHIN), None)
    lost = sum(max(b["oracle"] - b["served"], 0.0) for b in after)
    return {"batches_to_within_3": within, "lost_point_batches": 100 * lost}


def main() -> None:
    """Run every stream, both ways, for each seed; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--streams", default=",".join(STREAMS))
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLOPS_TRAIN_MAX_ITER", "200")
    names = [n.strip() for n in args.streams.split(",") if n.strip()]
    runs = []
    began = time.monotonic()
    for seed in range(args.seeds):
        truth = Truth(seed)
        for name in names:
            for selection in (False, True):
                run = one_stream(name, seed, selection, truth)
                run.update(summarise(run))
                runs.append(run)
                print(
                    f"  seed {seed} {name:>16} {'choice' if selection else 'today'}: "
                    f"within 3 pts after {run['batches_to_within_3']} batch(es), lost "
                    f"{run['lost_point_batches']:.1f} pt-batches, retrains {run['proposed']} "
                    f"(promoted {run['promoted']}) [{time.monotonic() - began:.0f} s]",
                    flush=True,
                )
    rows = []
    for name in names:
        for selection in (False, True):
            mine = [r for r in runs if r["stream"] == name and r["selection"] == selection]
            reached = [r["batches_to_within_3"] for r in mine]
            rows.append(
                [
                    name,
                    "candidates, chosen on validation rows" if selection else "today's window",
                    " ".join("-" if v is None else str(v) for v in reached),
                    f"{np.mean([r['lost_point_batches'] for r in mine]):.1f}",
                    sum(r["proposed"] for r in mine),
                    sum(r["refused"] for r in mine),
                    sum(r["promoted"] for r in mine),
                    sum(r["rollbacks"] for r in mine),
                ]
            )
    header = [
        "stream",
        "window",
        "batches to within 3 pts (per seed)",
        "lost (pt x batch)",
        "retrains",
        "refused",
        "promoted",
        "rollbacks",
    ]
    print()
    print_table(header, rows)
    print(f"\nwrote {write_results('recovery', {'seeds': args.seeds, 'runs': runs})}")


if __name__ == "__main__":
    main()
