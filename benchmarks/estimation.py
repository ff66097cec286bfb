"""Benchmark: accuracy estimation without labels (CBPE), ours against NannyML's, on simulated streams.

A binary problem with 5 standard normal features x0..x4; the label is drawn from a logistic model
with an interaction, logit = 1.5 x0 - 1.0 x1 + 0.5 x2 + 0.8 x0 x1 (x3 and x4 are noise). The
model, a scikit-learn Pipeline(StandardScaler, LogisticRegression) trained once on 5,000 rows, is
linear, so it is misspecified: calibrated on average over the training distribution but not
region by region, which is what makes a shift of the inputs hard for confidence-based estimation.
Per trial a fresh holdout (600 or 3,000 rows from the training distribution, never trained on)
calibrates the estimator and a fresh batch of 2,000 rows is estimated; its labels give the
realised accuracy, used only to score the estimate.

Scenarios (the batch; the holdout never moves):

* ``no_shift`` -- the training distribution;
* ``covariate_0.5sd``, ``covariate_1sd`` -- the mean of x0, the most influential feature, shifted
  by 0.5 and 1 standard deviation; P(y | x) unchanged;
* ``leaves_holdout`` -- x0 shifted by +3 and x1 by -3 standard deviations: most of the batch lies
  where the holdout has almost no rows, the model is very confident there (beyond the most
  confident holdout row) and, through the interaction it does not know, often wrong;
* ``concept`` -- inputs unchanged, P(y | x) changed (x1's coefficient -1.0 -> +0.5): no
  label-free estimator can see it; it shows how wrong a confident estimate can be.

For ours (``PerformanceEstimator(spec, confidence=0.95)``) and for NannyML's CBPE fitted on the
same holdout (its 95% interval: estimate -+ 1.96 sampling errors; see anchors.py) it reports the
mean absolute error against the realised accuracy, the mean signed error (bias), the coverage of
the 95% interval (share of trials whose interval holds the realised accuracy) and the interval's
mean width; and, when our estimate carries them, the mean ``holdout_coverage`` (how much of the
batch the holdout covers), the share of trials with a ``warning`` and how often each calibrator
was chosen for the point estimate (``calibrators``).

Targets: where the holdout covers the batch (``no_shift`` and the two covariate scenarios)
coverage of our 95% interval >= 0.93, and our mean absolute error no worse than NannyML's (the
check is strict; the paired difference and its standard error say whether a miss is noise).
``leaves_holdout`` should be flagged (a warning, a low holdout coverage) rather than covered;
``concept`` is out of reach of any label-free estimate.

    .venv/bin/python benchmarks/estimation.py [--trials 200] [--holdouts 600 3000] [--no-anchors] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results  # noqa: E402

from mlops_core.spec import DatasetSpec, FeatureType  # noqa: E402

FEATURES = [f"x{i}" for i in range(5)]
TARGET = "y"
SPEC = DatasetSpec(
    name="estimation", features=dict.fromkeys(FEATURES, FeatureType.numeric), target=TARGET
)
TRAIN_ROWS = 5_000
BATCH_ROWS = 2_000
HOLDOUTS = (600, 3_000)
CONFIDENCE = 0.95
SCENARIOS: dict[str, dict[str, Any]] = {
    "no_shift": {},
    "covariate_0.5sd": {"shift": {"x0": 0.5}},
    "covariate_1sd": {"shift": {"x0": 1.0}},
    "leaves_holdout": {"shift": {"x0": 3.0, "x1": -3.0}},
    "concept": {"x1_coefficient": 0.5},
}
COVERED = ("no_shift", "covariate_0.5sd", "covariate_1sd")  # the holdout covers the batch
TARGET_COVERAGE = 0.93


def draw(
    n: int,
    rng: np.random.Generator,
    shift: dict[str, float] | None = None,
    x1_coefficient: float = -1.0,
) -> pl.DataFrame:
    """``n`` rows of the simulated problem: features x0..x4 and the 0/1 label ``y``.

    ``shift`` moves feature means (in standard deviations); ``x1_coefficient`` is x1's weight in
    the label's logit (-1.0 in training; another value is concept drift).
    """
    x = rng.normal(size=(n, len(FEATURES)))
    for column, delta in (shift or {}).items():
        x[:, FEATURES.index(column)] += delta
    logit = 1.5 * x[:, 0] + x1_coefficient * x[:, 1] + 0.5 * x[:, 2] + 0.8 * x[:, 0] * x[:, 1]
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pl.DataFrame({**{c: x[:, i] for i, c in enumerate(FEATURES)}, TARGET: y})


def train_model() -> Any:
    """The monitored model: standardised logistic regression on 5,000 training rows (seeded)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(zlib.crc32(b"estimation/train"))
    frame = draw(TRAIN_ROWS, rng)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    return model.fit(frame.select(FEATURES).to_pandas(), frame[TARGET].to_numpy())


def model_outputs(model: Any, frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """NannyML's view of a frame: ``y_true``, ``y_pred_proba`` (of class 1) and ``y_pred``."""
    probabilities = np.asarray(model.predict_proba(frame.select(FEATURES).to_pandas()))
    classes = np.asarray(model.classes_)
    predicted = classes[probabilities.argmax(axis=1)]
    return {
        "y_true": frame[TARGET].to_numpy(),
        "y_pred_proba": probabilities[:, list(classes).index(1)],
        "y_pred": predicted.astype(np.int64),
    }


def _summary(
    estimates: np.ndarray, low: np.ndarray, high: np.ndarray, realised: np.ndarray
) -> dict[str, float]:
    error = estimates - realised
    return {
        "mae": float(np.abs(error).mean()),
        "bias": float(error.mean()),
        "coverage": float(((low <= realised) & (realised <= high)).mean()),
        "width": float((high - low).mean()),
    }


def run(
    trials: int, holdouts: list[int], anchors: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per scenario and holdout size: ours and NannyML's error, coverage and width.

    Also returns what the anchors ran with (versions, or why they did not run).
    """
    from mlops_core.performance import PerformanceEstimator

    model = train_model()
    rows: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    for scenario, change in SCENARIOS.items():
        for size in holdouts:
            started = time.perf_counter()
            ours: dict[str, list[float]] = {"estimate": [], "low": [], "high": [], "realised": []}
            coverage: list[float] = []
            chosen: list[str] = []
            warned = 0
            first_job = len(jobs)
            for trial in range(trials):
                seed = zlib.crc32(f"{scenario}/{size}/{trial}".encode())  # reproducible across runs
                rng = np.random.default_rng(seed)
                holdout = draw(size, rng)
                batch = draw(BATCH_ROWS, rng, **change)
                estimate = (
                    PerformanceEstimator(SPEC, confidence=CONFIDENCE)
                    .fit(model, holdout)
                    .estimate(batch.drop(TARGET))
                )
                outputs = model_outputs(model, batch)
                ours["estimate"].append(estimate.estimated_accuracy)
                ours["low"].append(estimate.ci_low)
                ours["high"].append(estimate.ci_high)
                ours["realised"].append(float((outputs["y_pred"] == outputs["y_true"]).mean()))
                share = getattr(estimate, "holdout_coverage", None)
                if share is not None:
                    coverage.append(float(share))
                warned += getattr(estimate, "warning", None) is not None
                if getattr(estimate, "calibrator", None) is not None:
                    chosen.append(str(estimate.calibrator))
                if anchors:
                    jobs.append({"reference": model_outputs(model, holdout), "analysis": outputs})
            realised = np.array(ours["realised"])
            row: dict[str, Any] = {
                "scenario": scenario,
                "holdout": size,
                "trials": trials,
                "realised_accuracy": float(realised.mean()),
                "ours": _summary(
                    np.array(ours["estimate"]),
                    np.array(ours["low"]),
                    np.array(ours["high"]),
                    realised,
                ),
                "holdout_coverage": float(np.mean(coverage)) if coverage else None,
                "warned": warned / trials if hasattr(estimate, "warning") else None,
                "calibrators": {kind: chosen.count(kind) / trials for kind in sorted(set(chosen))},
                "covered_by_design": scenario in COVERED,
                "seconds_ours": time.perf_counter() - started,
                "_jobs": (first_job, len(jobs)),
                "_realised": realised,
                "_errors": np.abs(np.array(ours["estimate"]) - realised),
            }
            rows.append(row)
            print(
                f"{scenario:<16} holdout={size:<5} realised={row['realised_accuracy']:.3f} "
                f"ours: mae={row['ours']['mae']:.4f} coverage={row['ours']['coverage']:.3f} "
                f"width={row['ours']['width']:.4f} ({row['seconds_ours']:.1f} s)",
                flush=True,
            )
    anchored = _add_nannyml(rows, jobs) if anchors else {"skipped": "--no-anchors"}
    for row in rows:
        row.pop("_jobs")
        row.pop("_realised")
        row.pop("_errors")
    return rows, anchored


def _add_nannyml(rows: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run CBPE on every trial at once; add its summary to each row; what it ran with."""
    import anchors

    started = time.perf_counter()
    try:
        results = anchors.cbpe_estimates(jobs)
    except anchors.AnchorError as error:
        print(f"NannyML did not run: {error}", file=sys.stderr)
        for row in rows:
            row["nannyml"] = {"unavailable": str(error)}
        return {"error": str(error)}
    print(f"NannyML CBPE: {len(jobs)} trials in {time.perf_counter() - started:.0f} s", flush=True)
    for row in rows:
        start, end = row["_jobs"]
        found = results[start:end]
        message = anchors.unavailable(found[0]) if found else "no trials"
        if message:
            row["nannyml"] = {"unavailable": message}
            continue
        realised = np.array([r["realised"] for r in found])
        if not np.allclose(realised, row["_realised"]):
            raise RuntimeError(
                "NannyML's realised accuracy differs from ours: the jobs are misaligned"
            )
        row["nannyml"] = _summary(
            np.array([r["estimate"] for r in found]),
            np.array([r["ci95_low"] for r in found]),
            np.array([r["ci95_high"] for r in found]),
            realised,
        )
        row["nannyml"]["sampling_error"] = float(np.mean([r["sampling_error"] for r in found]))
        # Paired over the same trials: our absolute error minus NannyML's, with its standard error.
        difference = row["_errors"] - np.abs(np.array([r["estimate"] for r in found]) - realised)
        row["mae_difference"] = {
            "mean": float(difference.mean()),
            "se": float(difference.std(ddof=1) / np.sqrt(difference.size)),
        }
    return {"versions": anchors.versions(), "seconds": time.perf_counter() - started}


def _cell(value: Any, key: str, digits: int = 4) -> str:
    if not isinstance(value, dict) or key not in value:
        return "n/a"
    return f"{value[key]:.{digits}f}"


def _difference(value: dict[str, float] | None) -> str:
    return "n/a" if not value else f"{value['mean']:+.4f} ({value['se']:.4f})"


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row where the holdout covers the batch: are the coverage and MAE targets met?"""
    checks = []
    for row in rows:
        if not row["covered_by_design"]:
            continue
        nannyml_mae = row.get("nannyml", {}).get("mae")
        checks.append(
            {
                "scenario": row["scenario"],
                "holdout": row["holdout"],
                "coverage_ok": row["ours"]["coverage"] >= TARGET_COVERAGE,
                "mae_ok": None if nannyml_mae is None else row["ours"]["mae"] <= nannyml_mae,
            }
        )
    return checks


def main() -> None:
    """Run every scenario at every holdout size; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--holdouts", type=int, nargs="+", default=list(HOLDOUTS))
    parser.add_argument("--no-anchors", action="store_true", help="skip NannyML's CBPE")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows, anchored = run(args.trials, args.holdouts, anchors=not args.no_anchors)
    print(f"\nAccuracy estimates against the realised accuracy ({CONFIDENCE:.0%} intervals)")
    print_table(
        ["scenario", "holdout", "trials", "realised", "ours mae", "ours bias", "ours cover", "ours width",
         "nml mae", "nml bias", "nml cover", "nml width", "mae diff (se)", "holdout cov", "warned", "calibrator"],
        [
            [r["scenario"], r["holdout"], r["trials"], f"{r['realised_accuracy']:.3f}",
             _cell(r["ours"], "mae"), _cell(r["ours"], "bias"), _cell(r["ours"], "coverage", 3), _cell(r["ours"], "width"),
             _cell(r.get("nannyml"), "mae"), _cell(r.get("nannyml"), "bias"), _cell(r.get("nannyml"), "coverage", 3), _cell(r.get("nannyml"), "width"),
             _difference(r.get("mae_difference")),
             "n/a" if r["holdout_coverage"] is None else f"{r['holdout_coverage']:.3f}",
             "n/a" if r["warned"] is None else f"{r['warned']:.3f}",
             " ".join(f"{k} {v:.2f}" for k, v in r.get("calibrators", {}).items()) or "n/a"]
            for r in rows
        ],
    )  # fmt: skip
    checks = _targets(rows)
    print("\nTargets where the holdout covers the batch (coverage >= 0.93; MAE <= NannyML's):")
    for check in checks:
        print(
            f"  {check['scenario']:<16} holdout={check['holdout']:<5} "
            f"coverage {'ok' if check['coverage_ok'] else 'MISSED'}, "
            f"mae {'n/a' if check['mae_ok'] is None else 'ok' if check['mae_ok'] else 'MISSED'}"
        )
    path = write_results(
        "estimation",
        {
            "confidence": CONFIDENCE,
            "train_rows": TRAIN_ROWS,
            "batch_rows": BATCH_ROWS,
            "holdouts": args.holdouts,
            "model": "Pipeline(StandardScaler, LogisticRegression); label logit "
            "1.5 x0 - 1.0 x1 + 0.5 x2 + 0.8 x0 x1",
            "scenarios": SCENARIOS,
            "targets": {
                "coverage_min": TARGET_COVERAGE,
                "mae_no_worse_than": "nannyml",
                "scenarios": COVERED,
                "checks": checks,
            },
            "anchors": anchored,
            "rows": rows,
        },
        args.out,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
