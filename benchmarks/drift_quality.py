"""Benchmark: false-alarm and detection rates of the drift verdict, on scenarios with known truth.

Every figure runs the production detector: ``DriftConfig()`` with its defaults (1,000
permutations, level alpha = 0.05, ...), only ``seed`` varied per trial. Three parts (``--parts``):

``scenarios`` -- the main table. Tables of 20 features (16 standard normal, 4 categorical with
shares 0.4/0.3/0.2/0.1) or 100 (80 + 20), with a label ``y`` from a logistic model of a few
features (``drift_scenarios.py`` has the generator). Per trial a fresh reference and a fresh batch
of n rows each (the false-alarm guarantee is over such pairs). Scenarios, on the batch: no drift;
a 0.3 sd mean shift in 1 of 20 features; a correlation change between two features (0 -> 0.5 and
0 -> 0.8) with unchanged marginals; other category shares in one categorical (0.4/0.3/0.2/0.1 ->
0.25/0.3/0.2/0.25); a variance change (sd 1 -> 1.5 in one feature); a harmless 0.5 sd shift in a
feature the label ignores (it is drift: whether it hurts is the performance check's question);
missing values only (one feature from 0% to 15% missing, present values unchanged); concept drift
(inputs unchanged, the label's relation to them changed); and 100 features, no drift and a 0.3 sd
mean shift in one of them. Per test in ``report.tests`` (each alone at alpha) and for the combined
Holm verdict, the alarm rate. Also the labelled accuracy check: a logistic-regression pipeline is
trained once per size and shape on 5,000 separate reference-distribution rows, and
``evaluate_performance(model, batch, reference, spec).degraded`` (the trial's reference is the
labelled holdout) is counted: it must fire on concept drift and stay quiet elsewhere (every input
change here leaves the label's relation, hence the accuracy, alone). Beside ours, on exactly the
same pairs (``anchors.py``, their own virtual environment): Evidently's ``DataDriftPreset`` as
shipped (per-column test, drift when at least half the columns drift) and NannyML's univariate,
data-reconstruction and domain-classifier calculators (10 chunks a side, drift when any chunk
alerts). The domain classifier costs about 12 s a pair at n = 1,000 with 20 features and 50 s
with 100, so it runs on the first ``--anchor-trials`` pairs of each scenario only
(``--anchor-methods`` chooses the methods); every anchor column carries its trial count, and ours
is reported on the same subsets. The ``before`` column is the previous run's combined rate
(``benchmarks/results/drift_quality.json``, 500 permutations) where the scenario existed: the
20-feature pairs draw the very same features from the same seeds as before.

``pooled`` -- why ours does not use alibi-detect's classifier p-value as is. On the same no-drift
pairs (and on the correlation change 0 -> 0.5 for power), alibi-detect's own ``ClassifierDrift``
(sklearn backend, 2 folds, out-of-fold probabilities pooled into one Kolmogorov-Smirnov test) with
the very classifier and features ours uses, against our per-fold test's ``p_value``; and the
combined verdict with alibi-detect's p-value put in place of ours.

``reference`` -- what a single fixed reference does to the false-alarm rate. For each of
``--references`` references of ``--reference-rows`` rows, a detector is fitted once (production:
``DriftConfig()``, seed 0) and run on ``--reference-batches`` fresh no-drift batches. Per
reference, its false-alarm rate; over references, min / median / max, a chi-squared test of
whether they differ more than binomial noise would make them, and the 95th percentile of the
maximum that noise alone would give; beside them, the rate over fresh (reference, batch) pairs.

Targets: combined false-alarm rate at most 0.05 at alpha 0.05 (up to two Monte-Carlo standard
errors); detection at least 0.90 at n = 1,000 for the mean shift, the correlation change 0 -> 0.5
and the category change; no scenario worse than before (by more than two standard errors of the
difference); the accuracy check firing at least 0.90 on concept drift at n = 1,000 and at most
0.05 (+ 2 standard errors) everywhere else. Every rate comes with its trial count and standard
error sqrt(p (1 - p) / trials).

Run time of the defaults on 2 shared cores with ``--threads 1``: about 3 hours, of which the
anchors take about 2.4 (the domain classifier 1.2, Evidently on 100 columns 0.8); ours about 25
minutes for the scenarios, 6 for ``pooled``, 5 for ``reference`` (``--no-anchors``: about 40
minutes in all). A line per scenario shows its seconds as it finishes.

    .venv/bin/python benchmarks/drift_quality.py [--parts scenarios pooled reference]
        [--sizes 200 1000 5000] [--null-trials 300] [--trials 50] [--anchor-trials 20]
        [--no-anchors] [--threads 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, print_table, write_results  # noqa: E402
from drift_scenarios import (  # noqa: E402
    COEFFICIENTS,
    CONCEPT_COEFFICIENTS,
    NARROW,
    SCENARIOS,
    Scenario,
    Shape,
    draw_pair,
    make_table,
    train_model,
)

ALPHA = 0.05  # DriftConfig()'s false_alarm_rate; checked at start
PARTS = ("scenarios", "pooled", "reference")
TARGET_SCENARIOS = ("mean_shift_0.3sd", "correlation_0_to_0.5", "category_shares")
TARGET_DETECTION = 0.9
TARGET_SIZE = 1_000
TRAIN_ROWS = 5_000
ANCHOR_METHODS = (
    "evidently_preset",
    "nannyml_univariate",
    "nannyml_reconstruction",
    "nannyml_domain_classifier",
)
CAPPED = "nannyml_domain_classifier"  # the slow one: only on --anchor-trials pairs per scenario
ANCHOR_BLOCK = 100  # pairs per worker call: amortises its start, bounds the data written
SHORT = {
    "evidently_preset": "evidently",
    "nannyml_univariate": "nml univariate",
    "nannyml_reconstruction": "nml reconstr.",
    "nannyml_domain_classifier": "nml domain clf",
}


# --------------------------------------------------------------------------- rates


def rate(alarms: Sequence[bool]) -> dict[str, Any]:
    """The share of ``alarms`` that are true, with its trial count and binomial standard error."""
    trials = len(alarms)
    if trials == 0:
        return {"rate": None, "trials": 0, "se": None}
    p = sum(bool(a) for a in alarms) / trials
    return {"rate": p, "trials": trials, "se": math.sqrt(p * (1 - p) / trials)}


def cell(value: dict[str, Any] | None, *, trials: bool = False) -> str:
    """``0.980±0.020`` (`` (50)`` added with ``trials``); ``-``: absent; ``n/a``: unavailable."""
    if not value:
        return "-"
    if "unavailable" in value:
        return "n/a"
    if value.get("rate") is None:
        return "-"
    text = f"{value['rate']:.3f}±{value['se']:.3f}"
    return f"{text} ({value['trials']})" if trials else text


def seed_of(key: str) -> int:
    """A seed from a text key: the same key gives the same data in every run."""
    return zlib.crc32(key.encode())


def limit_threads(threads: int | None) -> None:
    """At most ``threads`` threads for torch, OpenMP (scikit-learn's trees) and BLAS."""
    if not threads:
        return
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime that threadpoolctl limits
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


# --------------------------------------------------------------------------- previous figures


def load_before(path: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """The previous run's combined rate per (n, scenario), read before anything is written."""
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    permutations = payload.get("permutations")
    if "scenarios" in payload:  # a run of this version
        rows = payload["scenarios"].get("rows", [])
        permutations = payload.get("drift_config", {}).get("permutations", permutations)
        found = {}
        for row in rows:
            combined = row["combined"]
            found[(row["n"], row["scenario"])] = {**combined, "permutations": permutations}
        return found
    found = {}
    for row in payload.get("rows", []):  # the earlier version: flat rows
        if row["scenario"] == "label_only_concept":  # it changed nothing: not this scenario
            continue
        p, trials = row["combined"], row["trials"]
        found[(row["n"], row["scenario"])] = {
            "rate": p,
            "trials": trials,
            "se": math.sqrt(p * (1 - p) / trials),
            "permutations": permutations,
        }
    return found


# --------------------------------------------------------------------------- anchors


def anchor_verdicts(
    pairs: Sequence[tuple[pl.DataFrame, pl.DataFrame]],
    shape: Shape,
    methods: Sequence[str],
    capped_trials: int,
) -> tuple[dict[str, list[Any]], dict[str, str], dict[str, Any]]:
    """Per method, its verdict on each pair it ran on (the capped one on the first pairs only).

    Also per method the message when it could not run, and a few details from the first pair.
    The first ``capped_trials`` pairs go to the worker with every method, the rest in blocks of
    ``ANCHOR_BLOCK`` without the capped one.
    """
    import anchors

    verdicts: dict[str, list[Any]] = {m: [] for m in methods}
    failed: dict[str, str] = {}
    details: dict[str, Any] = {}
    cheap = [m for m in methods if m != CAPPED]
    capped = min(len(pairs), capped_trials) if CAPPED in methods else 0
    runs = [(0, capped, list(methods))] if capped else []
    if cheap:
        runs += [
            (start, min(start + ANCHOR_BLOCK, len(pairs)), cheap)
            for start in range(capped, len(pairs), ANCHOR_BLOCK)
        ]
    for start, end, run_methods in runs:
        wanted = [m for m in run_methods if m not in failed]
        if not wanted:
            continue
        try:
            found = anchors.drift_verdicts(
                pairs[start:end],
                shape.numeric_names,
                shape.categorical_names,
                ALPHA,
                methods=wanted,
            )
        except anchors.AnchorError as error:
            print(f"  anchors failed ({', '.join(wanted)}): {error}", file=sys.stderr)
            failed.update(dict.fromkeys(wanted, str(error)))
            continue
        for row in found:
            for method in wanted:
                message = anchors.unavailable(row.get(method))
                if message:
                    failed[method] = message
                elif row.get(method) is not None:
                    verdicts[method].append(bool(row[method]))
        if found and not details:  # what the libraries chose, from the first pair
            first = found[0]
            if "evidently_methods" in first:  # per column: how many columns got each test
                chosen = list(first["evidently_methods"].values())
                details["evidently_methods"] = {m: chosen.count(m) for m in sorted(set(chosen))}
            for key in ("nannyml_univariate_methods", "nannyml_chunks"):
                if key in first:
                    details[key] = first[key]
    return verdicts, failed, details


# --------------------------------------------------------------------------- scenarios part


def run_scenario(
    n: int,
    scenario: Scenario,
    trials: int,
    model: Any,
    *,
    anchor_methods: Sequence[str],
    anchor_trials: int,
) -> dict[str, Any]:
    """One row: every test's alarm rate, the combined verdict's, the accuracy check's, anchors'."""
    from mlops_core.drift import DriftConfig, detect_drift
    from mlops_core.performance import evaluate_performance

    spec = scenario.shape.spec
    per_test: dict[str, list[bool]] = {}
    combined: list[bool] = []
    degraded: list[bool] = []
    pairs: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    started = time.perf_counter()
    for trial in range(trials):
        reference, current = draw_pair(n, seed_of(f"{n}/{scenario.name}/{trial}"), scenario)
        config = DriftConfig(seed=trial)
        report = detect_drift(reference, current, spec, config)
        for test in report.tests:
            per_test.setdefault(test.name, []).append(test.p_value <= config.false_alarm_rate)
        combined.append(report.is_drift)
        degraded.append(evaluate_performance(model, current, reference, spec).degraded)
        if anchor_methods:
            pairs.append((reference, current))
    seconds = time.perf_counter() - started
    row: dict[str, Any] = {
        "n": n,
        "scenario": scenario.name,
        "description": scenario.description,
        "features": scenario.shape.features,
        "kind": scenario.kind,
        "trials": trials,
        "seconds": seconds,
        "seconds_per_trial": seconds / max(trials, 1),
        "combined": rate(combined),
        "tests": {name: rate(alarms) for name, alarms in per_test.items()},
        "performance_degraded": rate(degraded),
    }
    if anchor_methods:
        started = time.perf_counter()
        verdicts, failed, details = anchor_verdicts(
            pairs, scenario.shape, anchor_methods, anchor_trials
        )
        anchored: dict[str, Any] = {}
        for method in anchor_methods:
            if method in failed:
                anchored[method] = {"unavailable": failed[method]}
                continue
            found = verdicts[method]
            # ours on exactly the pairs this anchor saw (the first len(found) of the trials)
            anchored[method] = {**rate(found), "combined_same_pairs": rate(combined[: len(found)])}
        row["anchors"] = anchored
        row["anchor_details"] = details
        row["anchor_seconds"] = time.perf_counter() - started
        row["anchor_pairs"] = {m: len(v) for m, v in verdicts.items()}
    return row


def run_scenarios(
    sizes: Sequence[int],
    names: Sequence[str],
    null_trials: int,
    trials: int,
    *,
    anchor_methods: Sequence[str],
    anchor_trials: int,
    before: dict[tuple[int, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every scenario at every size: one row each, printed as it finishes."""
    from mlops_core.drift import quiet

    rows = []
    for n in sizes:
        models: dict[str, Any] = {}
        for name in names:
            scenario = SCENARIOS[name]
            shape = scenario.shape
            if shape.name not in models:
                with quiet():
                    models[shape.name] = train_model(
                        shape, TRAIN_ROWS, seed_of(f"{n}/model/{shape.name}")
                    )
            count = null_trials if scenario.null else trials
            row = run_scenario(
                n,
                scenario,
                count,
                models[shape.name],
                anchor_methods=anchor_methods,
                anchor_trials=anchor_trials,
            )
            row["before"] = before.get((n, name))
            rows.append(row)
            tests = " ".join(f"{k}={v['rate']:.3f}" for k, v in row["tests"].items())
            anchored = " ".join(
                f"{SHORT[m].replace(' ', '_')}={cell(v, trials=True)}"
                for m, v in row.get("anchors", {}).items()
            )
            anchor_time = f" + anchors {row['anchor_seconds']:.0f} s" if "anchors" in row else ""
            print(
                f"n={n:>5} {name:<25} trials={count:<4} combined={row['combined']['rate']:.3f} "
                f"{tests} degraded={row['performance_degraded']['rate']:.3f} {anchored} "
                f"({row['seconds']:.0f} s, {row['seconds_per_trial']:.2f} s/trial{anchor_time})",
                flush=True,
            )
    return rows


def print_scenarios(rows: list[dict[str, Any]]) -> None:
    """The alarm-rate table, then the anchors' table on the same pairs."""
    tests = list(dict.fromkeys(name for r in rows for name in r["tests"]))
    print("\nAlarm rates ± standard error (false_alarm: inputs unchanged; detection: changed)")
    print_table(
        ["n", "scenario", "kind", "trials", "combined", "before", *tests, "accuracy degraded"],
        [
            [
                r["n"],
                r["scenario"],
                r["kind"],
                r["trials"],
                cell(r["combined"]),
                cell(r["before"], trials=True),
                *(cell(r["tests"].get(t)) for t in tests),
                cell(r["performance_degraded"]),
            ]
            for r in rows
        ],
    )
    anchored = [r for r in rows if "anchors" in r]
    if not anchored:
        return
    methods = list(dict.fromkeys(m for r in anchored for m in r["anchors"]))
    print("\nAnchors on the same pairs: alarm rate ± se (trials); ours on the domain clf's pairs")
    print_table(
        ["n", "scenario", "kind", "combined (ours)", *(SHORT[m] for m in methods), "ours, same"],
        [
            [
                r["n"],
                r["scenario"],
                r["kind"],
                cell(r["combined"], trials=True),
                *(cell(r["anchors"].get(m), trials=True) for m in methods),
                cell(r["anchors"].get(CAPPED, {}).get("combined_same_pairs"), trials=True),
            ]
            for r in anchored
        ],
    )


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target, with the figure it is checked on and whether it is met."""
    checks = []
    for r in rows:
        p, trials = r["combined"]["rate"], r["trials"]
        if r["kind"] == "false_alarm" and trials:
            limit = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / trials)
            checks.append(
                {
                    "target": f"false alarms <= {ALPHA} (+2 MC se: {limit:.3f})",
                    "n": r["n"],
                    "scenario": r["scenario"],
                    "value": p,
                    "met": p <= limit,
                }
            )
        if r["n"] == TARGET_SIZE and r["scenario"] in TARGET_SCENARIOS:
            checks.append(
                {
                    "target": f"detection >= {TARGET_DETECTION}",
                    "n": r["n"],
                    "scenario": r["scenario"],
                    "value": p,
                    "met": p >= TARGET_DETECTION,
                }
            )
        degraded = r["performance_degraded"]["rate"]
        if r["n"] == TARGET_SIZE and SCENARIOS[r["scenario"]].concept:
            checks.append(
                {
                    "target": f"accuracy check fires >= {TARGET_DETECTION}",
                    "n": r["n"],
                    "scenario": r["scenario"],
                    "value": degraded,
                    "met": degraded >= TARGET_DETECTION,
                }
            )
        elif not SCENARIOS[r["scenario"]].concept and trials:  # accuracy unchanged by design
            limit = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / trials)
            checks.append(
                {
                    "target": f"accuracy check quiet: <= {ALPHA} (+2 MC se: {limit:.3f})",
                    "n": r["n"],
                    "scenario": r["scenario"],
                    "value": degraded,
                    "met": degraded <= limit,
                }
            )
        before = r.get("before")
        if before and before.get("rate") is not None:
            margin = 2 * math.hypot(r["combined"]["se"], before["se"])
            worse = (
                p < before["rate"] - margin
                if r["kind"] == "detection"
                else p > before["rate"] + margin
            )
            checks.append(
                {
                    "target": "not worse than before (2 se of the difference)",
                    "n": r["n"],
                    "scenario": r["scenario"],
                    "value": p,
                    "before": before["rate"],
                    "met": not worse,
                }
            )
    return checks


def print_targets(checks: list[dict[str, Any]]) -> None:
    """The target checks as a table."""
    print("\nTargets (the combined verdict; the accuracy check where it says so)")
    print_table(
        ["target", "n", "scenario", "value", "before", "met"],
        [
            [
                c["target"],
                c["n"],
                c["scenario"],
                f"{c['value']:.3f}",
                f"{c['before']:.3f}" if "before" in c else "",
                "yes" if c["met"] else "NO",
            ]
            for c in checks
        ],
    )


# --------------------------------------------------------------------------- pooled part


def alibi_pooled_p_value(
    reference: pl.DataFrame, current: pl.DataFrame, shape: Shape, config: Any
) -> float:
    """alibi-detect's own ClassifierDrift p-value (pooled out-of-fold KS), with our classifier.

    The same features (``DriftPreprocessor.classifier_features``), the same row samples and the
    same histogram gradient boosting settings as ``mlops_core.drift``'s classifier test.
    """
    from alibi_detect.cd import ClassifierDrift
    from sklearn.ensemble import HistGradientBoostingClassifier

    from mlops_core.drift_features import DriftPreprocessor, sample_rows

    spec = shape.spec
    preprocessor = DriftPreprocessor(
        spec, max_kernel_dims=config.max_kernel_dims, seed=config.seed
    ).fit(reference)
    x_ref = preprocessor.classifier_features(
        sample_rows(reference, config.classifier_max_rows, config.seed + 1)
    )
    x_cur = preprocessor.classifier_features(
        sample_rows(current, config.classifier_max_rows, config.seed + 3)
    )
    model = HistGradientBoostingClassifier(
        max_iter=config.classifier_iterations,
        learning_rate=0.1,
        max_leaf_nodes=15,
        categorical_features=preprocessor.categorical_mask,
        early_stopping=False,
        random_state=config.seed,
    )
    detector = ClassifierDrift(
        x_ref,
        model,
        backend="sklearn",
        p_val=config.false_alarm_rate,
        preds_type="probs",
        binarize_preds=False,
        n_folds=config.classifier_folds,
        train_size=None,
        seed=config.seed,
    )
    return float(detector.predict(x_cur)["data"]["p_val"])


def run_pooled(
    sizes: Sequence[int], names: Sequence[str], null_trials: int, trials: int
) -> list[dict[str, Any]]:
    """Per size and scenario: our classifier test, alibi-detect's pooled one, both combined."""
    from mlops_core.drift import DriftConfig, detect_drift, holm, quiet

    rows = []
    for n in sizes:
        for name in names:
            scenario = SCENARIOS[name]
            count = null_trials if scenario.null else trials
            ours, pooled, combined, combined_pooled = [], [], [], []
            started = time.perf_counter()
            for trial in range(count):  # the same pairs as the scenarios part
                reference, current = draw_pair(n, seed_of(f"{n}/{name}/{trial}"), scenario)
                config = DriftConfig(seed=trial)
                report = detect_drift(reference, current, scenario.shape.spec, config)
                with quiet():
                    pooled_p = alibi_pooled_p_value(reference, current, scenario.shape, config)
                alpha = config.false_alarm_rate
                ours.append(report.test("classifier").p_value <= alpha)
                pooled.append(pooled_p <= alpha)
                combined.append(report.is_drift)
                raw = [pooled_p if t.name == "classifier" else t.p_value for t in report.tests]
                combined_pooled.append(min(holm(raw)) <= alpha)
            seconds = time.perf_counter() - started
            row: dict[str, Any] = {
                "n": n,
                "scenario": name,
                "kind": scenario.kind,
                "trials": count,
                "seconds": seconds,
                "classifier_ours": rate(ours),
                "classifier_alibi_pooled": rate(pooled),
                "combined_ours": rate(combined),
                "combined_with_alibi_pooled": rate(combined_pooled),
            }
            rows.append(row)
            print(
                f"pooled n={n:>5} {name:<22} trials={count:<4} "
                f"ours={row['classifier_ours']['rate']:.3f} "
                f"alibi_pooled={row['classifier_alibi_pooled']['rate']:.3f} "
                f"({seconds:.0f} s, {seconds / max(count, 1):.2f} s/trial)",
                flush=True,
            )
    return rows


def print_pooled(rows: list[dict[str, Any]]) -> None:
    """The pooled-classifier table."""
    print("\nClassifier test: ours (per fold, Bonferroni) vs alibi-detect's pooled KS, same pairs")
    print_table(
        [
            "n",
            "scenario",
            "kind",
            "trials",
            "classifier ours",
            "classifier alibi pooled",
            "combined ours",
            "combined w/ pooled",
        ],
        [
            [
                r["n"],
                r["scenario"],
                r["kind"],
                r["trials"],
                cell(r["classifier_ours"]),
                cell(r["classifier_alibi_pooled"]),
                cell(r["combined_ours"]),
                cell(r["combined_with_alibi_pooled"]),
            ]
            for r in rows
        ],
    )


# --------------------------------------------------------------------------- reference part


def _spread(alarms: dict[int, list[bool]], fresh_rate: float | None) -> dict[str, Any]:
    """Min / median / max of the per-reference rates, and whether they exceed binomial noise."""
    from scipy.stats import chi2

    counts = np.array([sum(a) for a in alarms.values()], dtype=float)
    batches = len(next(iter(alarms.values())))
    rates = counts / batches
    pooled = float(counts.sum() / (batches * len(counts)))
    spread: dict[str, Any] = {
        "rate_all_pairs": rate([a for v in alarms.values() for a in v]),
        "per_reference": rates.tolist(),
        "min": float(rates.min()),
        "median": float(np.median(rates)),
        "max": float(rates.max()),
        "references_at_or_above_0.10": int((rates >= 0.10).sum()),
        "references_at_or_above_0.24": int((rates >= 0.24).sum()),
    }
    if 0 < pooled < 1 and len(counts) > 1:
        expected = batches * pooled
        statistic = float(((counts - expected) ** 2).sum() / (expected * (1 - pooled)))
        spread["dispersion_chi2"] = statistic
        spread["dispersion_p_value"] = float(chi2.sf(statistic, len(counts) - 1))
        rng = np.random.default_rng(0)
        maxima = rng.binomial(batches, pooled, size=(20_000, len(counts))).max(axis=1) / batches
        spread["noise_only_max_q95"] = float(np.quantile(maxima, 0.95))
    spread["fresh_pairs_rate"] = fresh_rate
    return spread


def run_reference(
    rows: int, batch_rows: int, references: int, batches: int, fresh_trials: int
) -> dict[str, Any]:
    """Fixed references each against many fresh no-drift batches; and fresh pairs for contrast."""
    from mlops_core.drift import DriftConfig, DriftDetector, detect_drift

    shape = NARROW
    spec = shape.spec
    combined: dict[int, list[bool]] = {}
    per_test: dict[str, dict[int, list[bool]]] = {}
    started = time.perf_counter()
    for r in range(references):
        rng = np.random.default_rng(seed_of(f"reference/{rows}/{r}"))
        reference = make_table(rows, rng, np.random.default_rng([r, 1]), shape)  # aux: labels
        config = DriftConfig()  # production: one detector per reference, seed 0
        detector = DriftDetector(spec, config).fit(reference)
        combined[r] = []
        for b in range(batches):
            seed = seed_of(f"reference/{rows}/{r}/{b}")
            batch = make_table(
                batch_rows,
                np.random.default_rng(seed),
                np.random.default_rng([seed, 1]),
                shape,
            )
            report = detector.detect(batch)
            combined[r].append(report.is_drift)
            for test in report.tests:
                per_test.setdefault(test.name, {}).setdefault(r, []).append(
                    test.p_value <= config.false_alarm_rate
                )
        print(
            f"reference {r + 1}/{references}: {sum(combined[r])}/{batches} false alarms "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    fixed_seconds = time.perf_counter() - started
    fresh: list[bool] = []
    fresh_tests: dict[str, list[bool]] = {}
    started = time.perf_counter()
    for trial in range(fresh_trials):
        rng = np.random.default_rng(seed_of(f"reference-fresh/{rows}/{batch_rows}/{trial}"))
        aux = np.random.default_rng([trial, 2])
        reference = make_table(rows, rng, aux, shape)
        batch = make_table(batch_rows, rng, aux, shape)
        config = DriftConfig(seed=trial)
        report = detect_drift(reference, batch, spec, config)
        fresh.append(report.is_drift)
        for test in report.tests:
            fresh_tests.setdefault(test.name, []).append(test.p_value <= config.false_alarm_rate)
    fresh_seconds = time.perf_counter() - started
    print(
        f"reference: {references} x {batches} fixed-reference trials in {fixed_seconds:.0f} s, "
        f"{fresh_trials} fresh pairs in {fresh_seconds:.0f} s",
        flush=True,
    )
    fresh_rate = rate(fresh)
    return {
        "reference_rows": rows,
        "batch_rows": batch_rows,
        "references": references,
        "batches_per_reference": batches,
        "fresh_trials": fresh_trials,
        "seconds_fixed": fixed_seconds,
        "seconds_fresh": fresh_seconds,
        "combined": _spread(combined, fresh_rate["rate"]),
        "fresh_combined": fresh_rate,
        "tests": {
            name: _spread(alarms, rate(fresh_tests.get(name, []))["rate"])
            for name, alarms in per_test.items()
        },
        "fresh_tests": {name: rate(alarms) for name, alarms in fresh_tests.items()},
    }


def print_reference(result: dict[str, Any]) -> None:
    """Per verdict, the spread of the per-reference false-alarm rate."""
    print(
        f"\nOne fixed reference of {result['reference_rows']} rows against "
        f"{result['batches_per_reference']} fresh no-drift batches of {result['batch_rows']} rows, "
        f"{result['references']} references; fresh pairs: {result['fresh_trials']} trials"
    )
    entries = [("combined", result["combined"], result["fresh_combined"])]
    entries += [
        (name, spread, result["fresh_tests"].get(name)) for name, spread in result["tests"].items()
    ]
    print_table(
        [
            "verdict",
            "all fixed-ref pairs",
            "min",
            "median",
            "max",
            "noise-only max q95",
            "dispersion p",
            "fresh pairs",
        ],
        [
            [
                name,
                cell(spread["rate_all_pairs"]),
                f"{spread['min']:.3f}",
                f"{spread['median']:.3f}",
                f"{spread['max']:.3f}",
                f"{spread['noise_only_max_q95']:.3f}" if "noise_only_max_q95" in spread else "-",
                f"{spread['dispersion_p_value']:.3g}" if "dispersion_p_value" in spread else "-",
                cell(fresh, trials=True),
            ]
            for name, spread, fresh in entries
        ],
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    """Run the chosen parts; print their tables; write one JSON with all of them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000], help="n per side (also 200, 5000)"
    )
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--null-trials", type=int, default=300, help="per no-drift scenario")
    parser.add_argument("--trials", type=int, default=50, help="per other scenario")
    parser.add_argument("--no-anchors", action="store_true", help="skip Evidently and NannyML")
    parser.add_argument(
        "--anchor-methods", nargs="+", choices=ANCHOR_METHODS, default=list(ANCHOR_METHODS)
    )
    parser.add_argument(
        "--anchor-trials",
        type=int,
        default=20,
        help=f"pairs per scenario for {CAPPED} (n = 1,000: 12 s a pair, 50 s with 100 features)",
    )
    parser.add_argument("--pooled-sizes", type=int, nargs="+", default=[200, 1_000])
    parser.add_argument(
        "--pooled-scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=["no_drift", "correlation_0_to_0.5"],
    )
    parser.add_argument("--pooled-null-trials", type=int, default=200)
    parser.add_argument("--pooled-trials", type=int, default=50)
    parser.add_argument("--reference-rows", type=int, default=200)
    parser.add_argument("--reference-batch-rows", type=int, default=200)
    parser.add_argument("--references", type=int, default=20)
    parser.add_argument("--reference-batches", type=int, default=50, help="per fixed reference")
    parser.add_argument("--reference-fresh-trials", type=int, default=300)
    parser.add_argument("--threads", type=int, help="cap torch/OpenMP/BLAS threads (default: all)")
    parser.add_argument("--before", type=Path, default=RESULTS / "drift_quality.json")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from mlops_core.drift import DriftConfig

    production = DriftConfig()
    if production.false_alarm_rate != ALPHA:
        raise SystemExit(f"DriftConfig's level is {production.false_alarm_rate}, not {ALPHA}")
    limit_threads(args.threads)
    before = load_before(args.before)  # before the output (maybe the same file) is written
    payload: dict[str, Any] = {
        "alpha": ALPHA,
        "drift_config": production.model_dump(mode="json"),
        "seed": "DriftConfig(seed=trial); data seeds crc32('<n>/<scenario>/<trial>')",
        "parts": args.parts,
        "targets": {
            "combined_false_alarm_max": ALPHA,
            "false_alarm_allowance": "2 Monte-Carlo standard errors",
            "detection_min_at_1000": TARGET_DETECTION,
            "scenarios": list(TARGET_SCENARIOS),
        },
    }
    started = time.perf_counter()
    if "scenarios" in args.parts:
        methods = [] if args.no_anchors else list(args.anchor_methods)
        rows = run_scenarios(
            args.sizes,
            args.scenarios,
            args.null_trials,
            args.trials,
            anchor_methods=methods,
            anchor_trials=args.anchor_trials,
            before=before,
        )
        checks = check_targets(rows)
        anchors_info: dict[str, Any] = {"skipped": "--no-anchors"}
        if methods:
            import anchors

            anchors_info = {
                "methods": methods,
                "capped": {CAPPED: args.anchor_trials},
                "chunks": 10,
                "versions": anchors.versions(),
            }
        payload["scenarios"] = {
            "sizes": args.sizes,
            "null_trials": args.null_trials,
            "trials": args.trials,
            "label": {
                "coefficients": COEFFICIENTS,
                "concept_coefficients": CONCEPT_COEFFICIENTS,
                "model": f"LogisticRegression pipeline trained on {TRAIN_ROWS} rows per size",
            },
            "definitions": {
                name: {
                    "description": SCENARIOS[name].description,
                    "features": SCENARIOS[name].shape.features,
                    "change": SCENARIOS[name].change,
                    "concept": SCENARIOS[name].concept,
                }
                for name in args.scenarios
            },
            "anchors": anchors_info,
            "rows": rows,
            "target_checks": checks,
        }
        print_scenarios(rows)
        print_targets(checks)
    if "pooled" in args.parts:
        pooled = run_pooled(
            args.pooled_sizes, args.pooled_scenarios, args.pooled_null_trials, args.pooled_trials
        )
        payload["pooled"] = {"rows": pooled}
        print_pooled(pooled)
    if "reference" in args.parts:
        result = run_reference(
            args.reference_rows,
            args.reference_batch_rows,
            args.references,
            args.reference_batches,
            args.reference_fresh_trials,
        )
        payload["reference"] = result
        print_reference(result)
    payload["seconds"] = time.perf_counter() - started
    path = write_results("drift_quality", payload, args.out)
    print(f"\nwrote {path} ({payload['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
