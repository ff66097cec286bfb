"""Runs NannyML and Evidently for ``benchmarks/anchors.py``, inside the anchors' own environment.

    <anchors venv>/bin/python benchmarks/anchors_worker.py JOBDIR

It reads ``JOBDIR/jobs.json`` and the parquet files that it names, runs every job, and writes
``JOBDIR/results.json``. It runs under another interpreter with other pins (numpy 2, pandas 2.3,
the two libraries), so it must never import the ``mlops_core`` package; ``anchors.py`` documents
the configuration and the meaning of every field it writes.

jobs.json::

    {"libraries": ["nannyml", "evidently"],       # the ones this environment holds
     "drift": {"reference": "drift_reference.parquet", "current": "drift_current.parquet",
               "numeric": [...], "categorical": [...], "alpha": 0.05, "chunks": 10,
               "methods": ["evidently_preset", "nannyml_univariate", ...]} | null,
     "cbpe": {"reference": "cbpe_reference.parquet", "analysis": "cbpe_analysis.parquet"} | null}

Each parquet file holds every job's rows one after the other, told apart by the ``__job`` column
(0, 1, ...). results.json: ``{"versions": {...}, "unavailable": {library: message},
"drift": [per pair], "cbpe": [per job]}``; a library that cannot be imported is reported under
``unavailable`` and its fields are left out of the per-job results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

# Before either library is imported: no usage tracking, no plotting backend, one thread each.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("NML_DISABLE_USER_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

JOB = "__job"


def _quiet() -> None:
    """Library chatter down to errors: the worker's stderr is read only when it fails."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


def _by_job(path: Path) -> list[pd.DataFrame]:
    """The frames of one parquet file, one per job, in job order, without the job column."""
    frame = pd.read_parquet(path)
    return [
        part.drop(columns=JOB).reset_index(drop=True) for _, part in frame.groupby(JOB, sort=True)
    ]


def _typed(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The features alone, numerics as float and categoricals as text (object dtype)."""
    out = pd.DataFrame({c: frame[c].astype("float64") for c in numeric})
    for c in categorical:
        out[c] = frame[c].astype(str).astype(object)
    return out


def _status(test: dict[str, Any]) -> str:
    status = test.get("status")
    return str(getattr(status, "value", status))


def evidently_preset(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    alpha: float,
) -> dict[str, Any]:
    """Evidently's DataDriftPreset with its defaults: per-column verdicts and the dataset verdict.

    The per-column test is Evidently's own choice; ``alpha`` is passed as the threshold only where
    that choice is a p-value test (a reference of at most 1,000 rows), where 0.05 is its default.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    preset = DataDriftPreset(threshold=alpha) if len(reference) <= 1_000 else DataDriftPreset()
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    share, drift_share, verdict = None, 0.5, None
    for metric in result["metrics"]:
        if metric["config"]["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            drift_share = float(metric["config"].get("drift_share", 0.5))
    drifted, methods = [], {}
    for test in result["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        kind = str(params.get("type", ""))
        if kind.endswith(":ValueDrift"):
            methods[params["column"]] = (
                f"{params.get('method')} (threshold {params.get('threshold')})"
            )
            if _status(test) == "FAIL":
                drifted.append(params["column"])
        elif kind.endswith(":DriftedColumnsCount"):
            verdict = (
                _status(test) == "FAIL"
            )  # the test is "share of drifted columns < drift_share"
    if share is None:
        raise RuntimeError("Evidently's report has no DriftedColumnsCount metric")
    if verdict is None:
        verdict = share >= drift_share
    return {
        "evidently_preset": bool(verdict),
        "evidently_share": share,
        "evidently_drifted_columns": drifted,
        "evidently_methods": methods,
    }


def _alerts(frame: pd.DataFrame, metric: str) -> np.ndarray:
    return frame[(metric, "alert")].to_numpy(dtype=bool)


def nannyml_univariate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    chunks: int,
) -> dict[str, Any]:
    """UnivariateDriftCalculator with its default methods; alerts per column and per chunk."""
    import nannyml as nml

    calculator = nml.UnivariateDriftCalculator(
        column_names=numeric + categorical,
        treat_as_numerical=numeric or None,
        treat_as_categorical=categorical or None,
        chunk_number=chunks,
    ).fit(reference)
    frame = calculator.calculate(current).filter(period="analysis").to_df()
    per_chunk = np.zeros(len(frame), dtype=bool)
    alerted = []
    for column in numeric + categorical:
        methods = (
            calculator.continuous_method_names
            if column in numeric
            else calculator.categorical_method_names
        )
        column_alerts = np.zeros(len(frame), dtype=bool)
        for method in methods:
            column_alerts |= frame[(column, method, "alert")].to_numpy(dtype=bool)
        per_chunk |= column_alerts
        if column_alerts.any():
            alerted.append(column)
    return {
        "nannyml_univariate": bool(per_chunk.any()),
        "nannyml_univariate_columns": alerted,
        "nannyml_univariate_chunk_share": float(per_chunk.mean()),
        "nannyml_univariate_methods": {
            "continuous": list(calculator.continuous_method_names),
            "categorical": list(calculator.categorical_method_names),
        },
        "nannyml_chunks": len(frame),
    }


def nannyml_reconstruction(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    chunks: int,
) -> dict[str, Any]:
    """DataReconstructionDriftCalculator (PCA reconstruction error) with its defaults, chunked."""
    import nannyml as nml

    calculator = nml.DataReconstructionDriftCalculator(
        column_names=numeric + categorical, chunk_number=chunks
    ).fit(reference)
    frame = calculator.calculate(current).filter(period="analysis").to_df()
    alerts = _alerts(frame, "reconstruction_error")
    return {
        "nannyml_reconstruction": bool(alerts.any()),
        "nannyml_reconstruction_chunk_share": float(alerts.mean()),
        "nannyml_reconstruction_error_max": float(frame[("reconstruction_error", "value")].max()),
        "nannyml_reconstruction_upper_threshold": float(
            frame[("reconstruction_error", "upper_threshold")].iloc[0]
        ),
    }


def nannyml_domain_classifier(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    chunks: int,
) -> dict[str, Any]:
    """DomainClassifierCalculator with its defaults, chunked; LightGBM on one thread, silent.

    The hyperparameters are NannyML's defaults with ``n_jobs=1`` and ``verbose=-1`` (the
    unrecognised ``silent`` key dropped): the same trees and AUROCs, without LightGBM's threads
    fighting over a busy machine (ten times slower there) or its log on stderr.
    """
    import nannyml as nml
    from nannyml.drift.multivariate.domain_classifier.calculator import DEFAULT_LGBM_HYPERPARAMS

    hyperparameters = {**DEFAULT_LGBM_HYPERPARAMS, "n_jobs": 1, "verbose": -1}
    hyperparameters.pop("silent", None)
    calculator = nml.DomainClassifierCalculator(
        feature_column_names=numeric + categorical,
        treat_as_categorical=categorical or None,
        chunk_number=chunks,
        hyperparameters=hyperparameters,
    ).fit(reference)
    frame = calculator.calculate(current).filter(period="analysis").to_df()
    alerts = _alerts(frame, "domain_classifier_auroc")
    return {
        "nannyml_domain_classifier": bool(alerts.any()),
        "nannyml_domain_classifier_chunk_share": float(alerts.mean()),
        "nannyml_domain_classifier_auroc_max": float(
            frame[("domain_classifier_auroc", "value")].max()
        ),
    }


DRIFT_METHODS = {
    "evidently_preset": ("evidently", evidently_preset),
    "nannyml_univariate": ("nannyml", nannyml_univariate),
    "nannyml_reconstruction": ("nannyml", nannyml_reconstruction),
    "nannyml_domain_classifier": ("nannyml", nannyml_domain_classifier),
}


def drift_jobs(job: dict[str, Any], folder: Path, available: set[str]) -> list[dict[str, Any]]:
    """Per pair, the verdicts of every requested method whose library is available."""
    numeric, categorical = list(job["numeric"]), list(job["categorical"])
    references = _by_job(folder / job["reference"])
    currents = _by_job(folder / job["current"])
    results = []
    for reference, current in zip(references, currents, strict=True):
        reference = _typed(reference, numeric, categorical)
        current = _typed(current, numeric, categorical)
        row: dict[str, Any] = {}
        for name in job["methods"]:
            library, method = DRIFT_METHODS[name]
            if library not in available:
                continue
            if library == "evidently":
                row.update(method(reference, current, numeric, categorical, job["alpha"]))
            else:
                row.update(method(reference, current, numeric, categorical, job["chunks"]))
        results.append(row)
    return results


def cbpe_jobs(job: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Per job, CBPE's estimated accuracy of the whole analysis batch as one chunk."""
    import nannyml as nml

    results = []
    references = _by_job(folder / job["reference"])
    analyses = _by_job(folder / job["analysis"])
    for reference, analysis in zip(references, analyses, strict=True):
        estimator = nml.CBPE(
            y_pred_proba="y_pred_proba",
            y_pred="y_pred",
            y_true="y_true",
            problem_type="classification_binary",
            metrics=["accuracy"],
            chunk_number=1,
        ).fit(reference)
        frame = (
            estimator.estimate(analysis.drop(columns="y_true")).filter(period="analysis").to_df()
        )
        if len(frame) != 1:
            raise RuntimeError(f"CBPE made {len(frame)} analysis chunks, expected 1")
        row = frame.iloc[0]
        realised = analysis["y_true"].to_numpy(dtype=int) == analysis["y_pred"].to_numpy(dtype=int)
        results.append(
            {
                "estimate": float(row[("accuracy", "value")]),
                "sampling_error": float(row[("accuracy", "sampling_error")]),
                "lower_confidence_boundary": float(row[("accuracy", "lower_confidence_boundary")]),
                "upper_confidence_boundary": float(row[("accuracy", "upper_confidence_boundary")]),
                "realised": float(realised.mean()),
                "reference_rows": len(reference),
                "rows": len(analysis),
            }
        )
    return results


def main(folder: Path) -> None:
    """Run the jobs in ``folder/jobs.json``, write ``folder/results.json``."""
    _quiet()
    jobs = json.loads((folder / "jobs.json").read_text())
    versions: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    for library in jobs["libraries"]:
        try:
            __import__(library)
            versions[library] = metadata.version(library)
        except Exception as error:  # the library is there but does not import: say why
            unavailable[library] = "".join(traceback.format_exception_only(error)).strip()
    for dependency in ("numpy", "pandas", "scikit-learn", "scipy", "lightgbm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dependency] = metadata.version(dependency)
    available = set(versions) & set(jobs["libraries"])
    results: dict[str, Any] = {"versions": versions, "unavailable": unavailable}
    if jobs.get("drift"):
        results["drift"] = drift_jobs(jobs["drift"], folder, available)
    if jobs.get("cbpe"):
        results["cbpe"] = cbpe_jobs(jobs["cbpe"], folder) if "nannyml" in available else []
    (folder / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: anchors_worker.py JOBDIR")
    main(Path(sys.argv[1]))
