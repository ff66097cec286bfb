"""Benchmark: which combined drift verdict? The candidates measured on the same trials.

The combined verdict must keep its family-wise false-alarm rate under any dependence between the
tests and lose little power when a single test alone sees the change. Each trial draws a fresh
reference and batch of n rows of the 20-feature table (``common.table20``) and records, on the
same data, the p-values of:

* the production tests (``detect_drift`` with ``DriftConfig(seed=trial)``: 1,000 permutations):
  ``mmd``, ``classifier``, ``features``, ``correlation``;
* the MMD at five bandwidths (0.125 to 2 times the median heuristic's squared distance) on the
  same 1,000 permutations, and MMDAgg: the minimum of their p-values, calibrated against the same
  permutations' minima (Schrab et al., JMLR 2023; exact level);
* a more regularised classifier (7 leaves, at least 40 rows per leaf, 60 iterations).

Then the verdict under each combination rule: Holm over the four production tests (what ships),
Holm over the three older tests (what shipped before the correlation test), Holm with MMDAgg in
place of the MMD, and the Cauchy combination (Liu and Xie, JASA 2020) of the three older tests.
Scenarios: no drift (false alarms), a correlation change 0 -> 0.5 between two features with
unchanged marginals, a 0.3-sd mean shift in one feature, a category-share change, a variance
change (sd x 1.5), a harmless 0.5-sd shift. Target: correlation detected >= 0.90 at n = 1,000
with the false-alarm rate <= 0.05 (within its Monte-Carlo error), no scenario worse than before.

    .venv/bin/python benchmarks/drift_combinations.py [--null-trials 300] [--trials 40] [--n 1000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SPEC20, print_table, table20, write_results  # noqa: E402

SCENARIOS: dict[str, dict[str, Any]] = {
    "no_drift": {},
    "correlation_0_to_0.5": {"correlation": 0.5},
    "mean_shift_0.3sd": {"mean_shift": (3, 0.3)},
    "category_shares": {"shares": [0.25, 0.3, 0.2, 0.25]},
    "variance_x1.5": {"scale": (5, 1.5)},
    "harmless_shift_0.5sd": {"mean_shift": (15, 0.5)},
}
BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)
PERMUTATIONS = 1_000
ALPHA = 0.05


def mmd_bandwidths(x: np.ndarray, n_reference: int, seed: int) -> tuple[list[float], float]:
    """Per-bandwidth permutation p-values, and MMDAgg's p-value, on the same permutations."""
    import torch

    from mlops_core.drift_native import permutation_mmd2_blocks

    data = torch.from_numpy(x).float()
    distances = torch.cdist(data, data) ** 2
    reference = distances[:n_reference, :n_reference]
    median = reference[~torch.eye(n_reference, dtype=torch.bool)].median()
    statistics = []
    for factor in BANDWIDTHS:
        kernel = torch.exp(-distances / (median * factor))
        kernel.fill_diagonal_(0.0)
        generator = torch.Generator().manual_seed(seed)  # the same permutations for every kernel
        observed, permuted = permutation_mmd2_blocks(
            kernel[:n_reference, :n_reference],
            kernel[:n_reference, n_reference:],
            kernel[n_reference:, n_reference:],
            PERMUTATIONS,
            generator,
        )
        statistics.append(torch.cat([observed.reshape(1), permuted]))
    table = torch.stack(statistics)  # bandwidths x (1 + permutations)
    permuted = table[:, 1:]
    exceed = (permuted >= table[:, :1]).sum(dim=1)
    p_values = ((exceed + 1).double() / (PERMUTATIONS + 1)).tolist()
    # Each permutation's own p-values among the permutations, then the minimum over bandwidths.
    share = (permuted[:, :, None] <= permuted[:, None, :]).sum(dim=1).double() / PERMUTATIONS
    permuted_min = share.min(dim=0).values
    observed_min = (exceed.double() / PERMUTATIONS).min()
    aggregated = (int((permuted_min <= observed_min).sum()) + 1) / (PERMUTATIONS + 1)
    return p_values, aggregated


def regularised_classifier(x_ref: np.ndarray, x: np.ndarray, mask: Any, seed: int) -> float:
    """The cross-fitted classifier test with a shallower, slower-learning model."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from mlops_core.drift_native import cross_fit_classifier

    model = HistGradientBoostingClassifier(
        max_iter=60,
        max_leaf_nodes=7,
        min_samples_leaf=40,
        categorical_features=mask,
        early_stopping=False,
        random_state=seed,
    )
    p_value, _ = cross_fit_classifier(x_ref, x, model, folds=2, seed=seed)
    return p_value


def one_trial(n: int, scenario: str, trial: int) -> dict[str, Any]:
    """The candidate tests' p-values on one fresh reference/batch pair."""
    from mlops_core.drift import DriftConfig, detect_drift
    from mlops_core.drift_features import DriftPreprocessor

    rng = np.random.default_rng(zlib.crc32(f"{n}/{scenario}/{trial}".encode()))
    reference, current = table20(n, rng), table20(n, rng, **SCENARIOS[scenario])
    report = detect_drift(reference, current, SPEC20, DriftConfig(seed=trial))
    pre = DriftPreprocessor(SPEC20).fit(reference)
    kernel_x = np.vstack(pre.kernel_pair(reference, current))
    bandwidth_p, aggregated = mmd_bandwidths(kernel_x, reference.height, trial)
    regularised = regularised_classifier(
        pre.classifier_features(reference), pre.classifier_features(current),
        pre.categorical_mask, trial,
    )  # fmt: skip
    return {
        **{t.name: t.p_value for t in report.tests},
        "shipped": report.p_value,
        "mmd_bandwidths": bandwidth_p,
        "mmdagg": aggregated,
        "classifier_regularised": regularised,
    }


def cauchy(p_values: list[float]) -> float:
    """The Cauchy combination of equally weighted p-values."""
    clipped = np.clip(np.asarray(p_values, dtype=np.float64), 1e-15, 1 - 1e-15)
    statistic = float(np.mean(np.tan((0.5 - clipped) * np.pi)))
    return float(0.5 - math.atan(statistic) / math.pi)


def holm_min(p_values: list[float]) -> float:
    """The smallest Holm-adjusted p-value (the combined verdict's p-value)."""
    return min(1.0, len(p_values) * min(p_values))


RULES: dict[str, Callable[[dict[str, Any]], float]] = {
    "holm 4 (ships)": lambda r: r["shipped"],
    "holm 3 (before)": lambda r: holm_min([r["mmd"], r["classifier"], r["features"]]),
    "holm 3, MMDAgg": lambda r: holm_min([r["mmdagg"], r["classifier"], r["features"]]),
    "cauchy 3": lambda r: cauchy([r["mmd"], r["classifier"], r["features"]]),
    "mmd alone": lambda r: r["mmd"],
    "MMDAgg alone": lambda r: r["mmdagg"],
    "classifier alone": lambda r: r["classifier"],
    "regularised classifier alone": lambda r: r["classifier_regularised"],
    "correlation alone": lambda r: r["correlation"],
}


def main() -> None:
    """Run the trials, print each rule's alarm rate per scenario, write the JSON."""
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--null-trials", type=int, default=300)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    for scenario in SCENARIOS:
        count = args.null_trials if scenario == "no_drift" else args.trials
        started = time.perf_counter()
        results[scenario] = [one_trial(args.n, scenario, t) for t in range(count)]
        print(f"{scenario:<22} {count} trials, {time.perf_counter() - started:.0f} s", flush=True)
    rates: list[dict[str, Any]] = []
    for rule, combine in RULES.items():
        row: dict[str, Any] = {"rule": rule}
        for scenario, trials in results.items():
            row[scenario] = float(np.mean([combine(r) <= ALPHA for r in trials]))
        rates.append(row)
    print(f"\nAlarm rates at alpha {ALPHA}, n = {args.n} per side (no_drift: false alarms)")
    print_table(
        ["rule", *(f"{s} ({len(results[s])})" for s in SCENARIOS)],
        [[r["rule"], *(f"{r[s]:.3f}" for s in SCENARIOS)] for r in rates],
    )
    path = write_results(
        "drift_combinations",
        {
            "n": args.n,
            "alpha": ALPHA,
            "permutations": PERMUTATIONS,
            "bandwidths": BANDWIDTHS,
            "trials": {s: len(t) for s, t in results.items()},
            "rates": rates,
            "p_values": results,
        },
        args.out,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
