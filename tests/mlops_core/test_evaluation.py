"""Gates: a better challenger passes, a deliberately worse one is refused, and why."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mlops_cli.scenarios import CREDIT_SPEC as SPEC
from mlops_cli.scenarios import PhaseKind, generate_applications
from mlops_core.evaluation import GateConfig, evaluate_challenger, mcnemar_better
from mlops_core.training import TrainingConfig, train_model


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    old = train_model(generate_applications(rng, 4_000), SPEC, TrainingConfig(max_iter=60))
    new = train_model(
        generate_applications(rng, 4_000, kind=PhaseKind.concept_drift),
        SPEC,
        TrainingConfig(max_iter=60),
    )
    recent = generate_applications(rng, 3_000, kind=PhaseKind.concept_drift)
    return old, new, recent


def test_challenger_trained_on_the_new_regime_passes_every_gate(world) -> None:
    old, new, recent = world
    report = evaluate_challenger(new.pipeline, old.pipeline, recent, SPEC, training_data_valid=True)
    assert report.passed, report.markdown()
    assert report.challenger_accuracy > report.champion_accuracy + 0.05
    names = [g.name for g in report.gates]
    assert names[:4] == ["primary", "auc", "log_loss", "calibration"]
    assert any(n.startswith("slice:loan_term=") for n in names)
    assert {"floor", "latency_p95_ms", "training_data_valid"} <= set(names)


def test_a_worse_challenger_is_refused_with_reasons(world) -> None:
    old, new, recent = world
    report = evaluate_challenger(old.pipeline, new.pipeline, recent, SPEC, training_data_valid=True)
    assert not report.passed
    assert "primary" in {g.name for g in report.failed}
    assert "FAIL" in report.markdown()


def test_invalid_training_data_and_floor_fail(world) -> None:
    old, new, recent = world
    report = evaluate_challenger(
        new.pipeline,
        old.pipeline,
        recent,
        SPEC,
        training_data_valid=False,
        config=GateConfig(accuracy_floor=0.99),
    )
    assert {g.name for g in report.failed} >= {"training_data_valid", "floor"}


def test_first_model_has_no_champion_to_beat(world) -> None:
    old, _, recent = world
    report = evaluate_challenger(
        old.pipeline,
        None,
        recent,
        SPEC,
        training_data_valid=True,
        config=GateConfig(accuracy_floor=0.0),
    )
    assert report.passed and report.champion_accuracy is None
    assert report.gates[0].observed == "no champion"


def test_mcnemar_uses_discordant_pairs_only() -> None:
    same = np.array([True, False, True, True])
    assert mcnemar_better(same, same) == 1.0
    challenger = np.array([True] * 30 + [False] * 2)
    champion = np.array([False] * 30 + [True] * 2)
    assert mcnemar_better(challenger, champion) < 1e-6
    assert mcnemar_better(champion, challenger) > 0.99


class _SlowModel:
    """A duck-typed classifier that really takes ``delay`` seconds per call (sleeping, not CPU)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def predict_proba(self, frame):
        time.sleep(self.delay)
        return self.inner.predict_proba(frame)


@pytest.fixture
def busy_machine():
    """Two busy-looping processes per core, for as long as the test runs."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    time.sleep(0.5)  # let the scheduler fill every core
    yield len(spinners)
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


def test_the_latency_gate_measures_the_model_not_the_load_on_the_machine(world, busy_machine):
    old, new, recent = world
    report = evaluate_challenger(new.pipeline, old.pipeline, recent, SPEC, training_data_valid=True)
    latency = next(g for g in report.gates if g.name == "latency_p95_ms")
    assert latency.passed, f"{busy_machine} spinners: {latency.observed}"
    assert "champion" in latency.observed  # both timed in the same run

    slow = _SlowModel(new.pipeline, delay=0.08)
    config = GateConfig(latency_samples=10)
    refused = evaluate_challenger(
        slow, old.pipeline, recent, SPEC, training_data_valid=True, config=config
    )
    gate = next(g for g in refused.gates if g.name == "latency_p95_ms")
    assert not gate.passed, gate.observed
    assert float(gate.observed.split(" ms")[0]) >= 80


def test_an_auc_that_cannot_be_computed_fails_the_gate_saying_why(world) -> None:
    old, new, recent = world
    one_class = recent.filter(recent["default"] == 0)
    report = evaluate_challenger(
        new.pipeline, old.pipeline, one_class, SPEC, training_data_valid=True
    )
    auc = next(g for g in report.gates if g.name == "auc")
    assert not auc.passed and "only one class" in auc.observed
    assert not report.passed


def test_slice_gates_refuse_a_significant_drop_and_not_noise() -> None:
    import polars as pl

    from mlops_core.evaluation import _slice_gates

    # Two slices; the champion right on 70% of each. The challenger differs only on slice "a".
    def flags(n: int, wrong: int, lost: int, gained: int):
        old = np.ones(n, bool)
        old[:wrong] = False
        new = old.copy()
        new[wrong : wrong + lost] = False  # rows only the champion gets right
        new[:gained] = True  # rows only the challenger gets right
        return new, old

    def judge(n: int, lost: int, gained: int):
        new_a, old_a = flags(n, int(0.3 * n), lost, gained)
        new_b, old_b = flags(n, int(0.3 * n), 0, 0)
        frame = pl.DataFrame({"term": ["a"] * n + ["b"] * n})
        gates = _slice_gates(
            frame,
            SPEC,
            np.concatenate([new_a, new_b]),
            np.concatenate([old_a, old_b]),
            GateConfig(slice_feature="term"),
        )
        return {g.name: g for g in gates}["slice:term=a"]

    # 1,000 rows, 10 points lost: beyond the tolerance and significant -> refused.
    assert not judge(1_000, lost=110, gained=10).passed
    # 100 rows, 5 points lost (7 rows against 2): beyond the 3-point tolerance but not
    # significant at 0.05 / 2 slices (McNemar p = 0.09) -> not refused on noise.
    noisy = judge(100, lost=7, gained=2)
    assert noisy.passed and "p worse = 0.0898" in noisy.observed, noisy.observed
    # A significant drop within the tolerance is not refused either.
    assert judge(1_000, lost=40, gained=15).passed


def test_the_primary_gate_tests_the_gain_against_the_margin_not_against_zero() -> None:
    from mlops_core.evaluation import better_by_margin

    rng = np.random.default_rng(3)

    def passes(gain: float, rows: int = 600, differ: float = 0.12, runs: int = 2_000) -> float:
        only_new, only_old = (differ + gain) / 2, (differ - gain) / 2
        passed = 0
        for _ in range(runs):
            kind = rng.choice(3, size=rows, p=[only_new, only_old, 1 - differ])
            new, old = kind != 1, kind != 0
            passed += better_by_margin(new, old, 0.005) <= 0.05
        return passed / runs

    # Exactly at the margin: passed at most about alpha (2,000 runs: 5% +- 1.5 points).
    assert passes(0.005) <= 0.065
    # Better than nothing, but by less than the margin: passed less often still.
    assert passes(0.002) <= 0.05
    # Better by 8 points: passed nearly always.
    assert passes(0.08, runs=200) >= 0.95
