"""Benchmark: false-alarm and detection rates of the drift verdict, on scenarios with known truth.

20 features (16 standard normal, 4 categorical with shares 0.4/0.3/0.2/0.1); reference and batch
of n rows each, both drawn fresh for every trial (the false-alarm guarantee is over such pairs).

Scenarios: no drift; a 0.3 standard-deviation mean shift in 1 of 20 features; a correlation
change between two features (0 -> 0.5, and 0 -> 0.8) with unchanged marginals; a change of category shares
in one categorical feature (0.4/0.3/0.2/0.1 -> 0.25/0.3/0.2/0.25); a variance change (standard
deviation 1 -> 1.5 in one feature); a harmless 0.5 standard-deviation shift in a feature the
label ignores (it is drift: whether it hurts is the performance estimate's question); and
label-only concept drift (the label's relation changes, the inputs do not, so input-drift tests
must stay at their false-alarm rate: concept drift is caught by labels, see performance.py).

Per test (each alone at the level) and for the combined Holm verdict, it prints the alarm rate,
and, computed on the same data, the baseline that flags a dataset when at least half its columns
drift (the default of the most used open-source monitor: per column KS / chi-squared at p < 0.05
for n <= 1,000, normalised Wasserstein / Jensen-Shannon distance >= 0.1 above).
Targets: combined false-alarm rate at most 0.06 at alpha 0.05; detection at least 0.9 at
n = 1,000 for the mean shift, the correlation change and the category change.

    .venv/bin/python benchmarks/drift_quality.py [--sizes 200 1000 5000] [--null-trials 200] [--trials 50]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CATEGORICAL, NUMERIC, SPEC20, print_table, table20, write_results  # noqa: E402

SCENARIOS: dict[str, dict[str, Any]] = {
    "no_drift": {},
    "mean_shift_0.3sd": {"mean_shift": (3, 0.3)},
    "correlation_0_to_0.5": {"correlation": 0.5},
    "correlation_0_to_0.8": {"correlation": 0.8},
    "category_shares": {"shares": [0.25, 0.3, 0.2, 0.25]},
    "variance_x1.5": {"scale": (5, 1.5)},
    "harmless_shift_0.5sd": {"mean_shift": (15, 0.5)},
    "label_only_concept": {},  # inputs unchanged by construction
}
TARGET_SCENARIOS = ("mean_shift_0.3sd", "correlation_0_to_0.5", "category_shares")


def baseline_share_drifted(reference: pl.DataFrame, current: pl.DataFrame) -> bool:
    """The 'at least half of the columns drifted' rule with per-column default tests."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

    small = current.height <= 1_000
    drifted = 0
    for column in NUMERIC:
        ref, cur = reference[column].to_numpy(), current[column].to_numpy()
        if small:
            drifted += ks_2samp(ref, cur).pvalue < 0.05
        else:
            drifted += wasserstein_distance(ref, cur) / (ref.std() or 1.0) >= 0.1
    for column in CATEGORICAL:
        levels = sorted(set(reference[column]) | set(current[column]))
        ref_counts = np.array([(reference[column] == v).sum() for v in levels], dtype=float)
        cur_counts = np.array([(current[column] == v).sum() for v in levels], dtype=float)
        if small:
            drifted += chi2_contingency(np.vstack([ref_counts, cur_counts]))[1] < 0.05
        else:
            drifted += (
                jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()) >= 0.1
            )
    return drifted >= 0.5 * (len(NUMERIC) + len(CATEGORICAL))


def run(sizes: list[int], null_trials: int, trials: int, permutations: int) -> list[dict[str, Any]]:
    """One row per size and scenario: each test's alarm rate, the combined verdict's, the baseline's."""
    from mlops_core.drift import DriftConfig, detect_drift

    rows = []
    for n in sizes:
        for scenario, change in SCENARIOS.items():
            count = null_trials if scenario == "no_drift" else trials
            alarms = {"mmd": 0, "classifier": 0, "features": 0, "combined": 0, "baseline": 0}
            started = time.perf_counter()
            for trial in range(count):
                seed = zlib.crc32(f"{n}/{scenario}/{trial}".encode())  # reproducible across runs
                rng = np.random.default_rng(seed)
                reference = table20(n, rng)
                current = table20(n, rng, **change)
                config = DriftConfig(permutations=permutations, seed=trial)
                report = detect_drift(reference, current, SPEC20, config)
                for test in report.tests:
                    alarms[test.name] += test.p_value <= config.false_alarm_rate
                alarms["combined"] += report.is_drift
                alarms["baseline"] += baseline_share_drifted(reference, current)
            seconds = time.perf_counter() - started
            rate = {k: v / count for k, v in alarms.items()}
            row = {"n": n, "scenario": scenario, "trials": count, "seconds": seconds, **rate}
            row["combined_se"] = math.sqrt(rate["combined"] * (1 - rate["combined"]) / count)
            rows.append(row)
            print(
                f"n={n:>5} {scenario:<22} trials={count:<4} combined={rate['combined']:.3f} "
                f"mmd={rate['mmd']:.3f} classifier={rate['classifier']:.3f} "
                f"features={rate['features']:.3f} baseline={rate['baseline']:.3f} ({seconds:.0f} s)",
                flush=True,
            )
    return rows


def main() -> None:
    """Run every scenario at every size; print the alarm rates, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1_000, 5_000])
    parser.add_argument("--null-trials", type=int, default=300)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = run(args.sizes, args.null_trials, args.trials, args.permutations)
    print("\nAlarm rates (no_drift and label_only_concept: false alarms; the rest: detection)")
    print_table(
        ["n", "scenario", "trials", "combined", "mmd", "classifier", "features", "half-columns baseline"],
        [
            [r["n"], r["scenario"], r["trials"], f"{r['combined']:.3f}", f"{r['mmd']:.3f}", f"{r['classifier']:.3f}", f"{r['features']:.3f}", f"{r['baseline']:.3f}"]
            for r in rows
        ],
    )  # fmt: skip
    path = write_results(
        "drift_quality",
        {
            "alpha": 0.05,
            "permutations": args.permutations,
            "targets": {
                "combined_false_alarm_max": 0.06,
                "detection_min_at_1000": 0.9,
                "scenarios": TARGET_SCENARIOS,
            },
            "rows": rows,
        },
        args.out,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
