"""Anchors: NannyML's and Evidently's verdicts and estimates on our benchmarks' data, side by side.

The two libraries are kept out of our environment (about 150 packages, numpy 2 and
pandas 3 by default, against alibi-detect's numpy<2 and pandas<3; Evidently 0.7.23 does not even
import under pandas 3, which it does not exclude), so they get their own virtual environment,
created on first use with the system's ``python3.11 -m venv`` at ``$MLOPS_ANCHORS_VENV`` (default
``<repo>/.mlops/anchors-venv``, git-ignored), with the pins below (no torch is pulled in; a
constraint keeps it at ``torch==2.13.0`` if a future version asks for it). Both install into one
environment; were that to fail, each gets its own (``<venv>-nannyml``, ``<venv>-evidently``), and
one that cannot be installed at all is reported as ``{"unavailable": "<pip's message>"}`` while
the other keeps working. Usage tracking is off (``NML_DISABLE_USAGE_LOGGING``,
``NML_DISABLE_USER_ANALYTICS``, ``DO_NOT_TRACK``).

Our side writes the data to a temporary folder as parquet and runs ``anchors_worker.py`` once per
call, for the whole list of jobs (importing the two libraries costs seconds), then reads JSON back.

``drift_verdicts(pairs, numeric, categorical, alpha)``, per (reference, current) pair:

* ``evidently_preset`` -- Evidently's ``DataDriftPreset`` exactly as shipped: per column, the test
  Evidently picks (reference of at most 1,000 rows: KS for numerics, chi-squared for categoricals,
  a z-test for two values, at p < ``alpha``, 0.05 by default; above: normed Wasserstein distance
  for numerics and Jensen-Shannon distance for categoricals, >= 0.1, where ``alpha`` does not
  apply), and the dataset drifts when at least half of the columns drift. With it
  ``evidently_share`` (share of drifted columns), ``evidently_drifted_columns`` and
  ``evidently_methods`` (the test picked per column).
* ``nannyml_univariate`` -- ``UnivariateDriftCalculator`` with its default methods (in 0.13.1:
  Jensen-Shannon distance for continuous and for categorical columns; the worker reads them from
  the calculator and reports them in ``nannyml_univariate_methods``) and default thresholds (mean
  + 3 standard deviations of the reference chunks' values); alerts on any column in any chunk.
  ``nannyml_univariate_columns``: the columns alerted in some chunk.
* ``nannyml_reconstruction`` -- ``DataReconstructionDriftCalculator`` (PCA keeping 65% of the
  variance, thresholds mean +- 3 standard deviations of the reference chunks' errors).
* ``nannyml_domain_classifier`` -- ``DomainClassifierCalculator`` (LightGBM, 5-fold
  cross-validated AUROC of chunk against the whole reference; alert outside [0.45, 0.65]).
  LightGBM runs on one thread: the same AUROCs, ten times faster on a busy machine. It is by far
  the slowest method (about 17 s per pair of 1,000-row samples with 20 columns on 2 cores, where
  Evidently takes about 2.5 s and the other two NannyML methods under 1 s, plus about 5 s per call
  to import); leave it out with ``methods=``.

NannyML 0.13.1 imports statsmodels without declaring it (Evidently brings it when the two share an
environment), so it is installed beside NannyML explicitly.

NannyML works on chunks: its thresholds come from the spread of the statistic over the reference
chunks, so with a single reference sample of n rows and a single batch of n rows, one chunk per
side would leave no spread to learn from. The configuration used here is NannyML's own default
chunking: its ``DefaultChunker`` cuts any data set into 10 chunks, which on a reference and a
batch of equal size gives ``chunk_number=10`` on both sides, so every analysis chunk has the size
of the reference chunks its threshold was learnt from (NannyML's docs call 6 reference chunks "a
reasonable minimum" and warn below it). The batch drifts when any of its 10 chunks alerts (for
the univariate method: on any column), which is how a NannyML user reads a red point on its plot;
the share of alerted chunks is reported too (``*_chunk_share``) for a reader who prefers another
aggregation. ``chunks=`` changes the count. Note what this implies, to quote the numbers fairly:
each analysis chunk holds n/10 rows, and the reference chunks are in-sample (part of the reference
they are compared with), so NannyML's false-alarm rate is not controlled at any stated level.

``cbpe_estimates(jobs)``: NannyML's CBPE (binary classification, metric accuracy, its default
isotonic calibration), fitted on the job's reference (its holdout) and run on the analysis batch
as exactly one chunk (``chunk_number=1``). Per job: ``estimate``, ``sampling_error`` (NannyML's
std(correct on reference) / sqrt(batch rows)), its ``lower/upper_confidence_boundary``
(estimate -+ 3 sampling errors), ``ci95_low``/``ci95_high`` (estimate -+ 1.96 sampling errors,
clipped to [0, 1]) and ``realised`` (the batch's accuracy from its labels, used for nothing else).

    .venv/bin/python benchmarks/anchors.py [--force]    # install (again) and print the versions
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("anchors_worker.py")

NANNYML = "nannyml==0.13.1"
EVIDENTLY = "evidently==0.7.23"
LIBRARIES = {"nannyml": NANNYML, "evidently": EVIDENTLY}
# What a library imports without declaring it: NannyML 0.13.1 imports statsmodels (which it gets
# through Evidently when the two share an environment).
UNDECLARED = {"nannyml": ("statsmodels",), "evidently": ()}
# Constraints, not requirements: what the two libraries compute with, held where the benchmark's
# numbers were taken. pandas 2: Evidently 0.7.23 imports a helper that pandas 3 removed. torch is
# pulled in by neither; the pin only stops an unpinned multi-GB CUDA build if a later one asks.
CONSTRAINTS = (
    "pandas==2.3.3",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "scikit-learn==1.9.1",
    "lightgbm==4.5.0",
    "pyarrow==26.0.1",
    "statsmodels==0.15.0",
    "torch==2.13.0",
)
EXTRA = ("pyarrow",)  # the worker reads parquet
PYTHON = "python3.11"
INSTALL_TIMEOUT_S = 1_800
QUIET = {
    "NML_DISABLE_USAGE_LOGGING": "1",
    "NML_DISABLE_USER_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
DRIFT_METHODS = (
    "evidently_preset",
    "nannyml_univariate",
    "nannyml_reconstruction",
    "nannyml_domain_classifier",
)
JOB = "__job"

_versions: dict[str, Any] = {}


class AnchorError(RuntimeError):
    """The anchors' environment could not be built or the worker failed; the message says why."""


def venv_path() -> Path:
    """Where the anchors' virtual environment lives: ``$MLOPS_ANCHORS_VENV`` or ``.mlops/``."""
    return Path(os.environ.get("MLOPS_ANCHORS_VENV") or ROOT / ".mlops" / "anchors-venv")


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _environment() -> dict[str, str]:
    return {**os.environ, **QUIET}


def _pip_message(output: str) -> str:
    """What pip said that matters: from its first ERROR line on, else its last lines."""
    lines = [line for line in output.splitlines() if "is ignored: it is neither" not in line]
    start = next((i for i, line in enumerate(lines) if line.startswith("ERROR")), None)
    kept = lines[start:] if start is not None else lines[-30:]
    message = "\n".join(kept).strip()
    return message[-4_000:] or "pip failed without a message"


def _create(venv: Path) -> str | None:
    """None once ``venv`` exists with pip, else why it could not be made."""
    if _python(venv).exists():
        return None
    interpreter = shutil.which(PYTHON)
    if interpreter is None:
        return f"{PYTHON} was not found on PATH: the anchors' environment needs Python 3.11"
    venv.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [interpreter, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return f"{PYTHON} -m venv {venv} failed:\n{(done.stderr or done.stdout).strip()}"
    return None


def _install(venv: Path, requirements: Sequence[str]) -> str | None:
    """None once ``requirements`` are installed in ``venv``, else pip's (resolver's) message."""
    failed = _create(venv)
    if failed:
        return failed
    constraints = venv / "anchors-constraints.txt"
    constraints.write_text("\n".join(CONSTRAINTS) + "\n")
    command = [str(_python(venv)), "-m", "pip", "install", "--quiet", "-c", str(constraints)]
    try:
        done = subprocess.run(
            [*command, *requirements, *EXTRA],
            capture_output=True,
            text=True,
            check=False,
            timeout=INSTALL_TIMEOUT_S,
            env=_environment(),
        )
    except subprocess.TimeoutExpired:
        return f"pip install {' '.join(requirements)} ran past {INSTALL_TIMEOUT_S} s"
    if done.returncode != 0:
        return _pip_message(done.stdout + "\n" + done.stderr)
    return None


def _plan() -> dict[str, Any]:
    """What the environment was built from: a change in the pins rebuilds it."""
    return {
        "libraries": LIBRARIES,
        "undeclared": {k: list(v) for k, v in UNDECLARED.items()},
        "constraints": list(CONSTRAINTS),
        "python": PYTHON,
    }


def ensure(force: bool = False) -> dict[str, dict[str, str]]:
    """Per library, ``{"python": interpreter}`` or ``{"unavailable": message}``; installs on first use.

    The outcome is recorded in ``<venv>/anchors.json`` and reused until the pins change or
    ``force`` is set (a library that could not be installed is retried only then). Two processes
    asking at once wait for each other (a lock file beside the environment).
    """
    import fcntl

    venv = venv_path()
    venv.parent.mkdir(parents=True, exist_ok=True)
    record = venv / "anchors.json"
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and record.exists():
            saved = json.loads(record.read_text())
            if saved.get("plan") == _plan() and all(
                "unavailable" in home or Path(home["python"]).exists()
                for home in saved["homes"].values()
            ):
                return dict(saved["homes"])
        print(
            f"anchors: installing {', '.join(LIBRARIES.values())} into {venv} ...", file=sys.stderr
        )
        homes: dict[str, dict[str, str]] = {}
        joint = _install(venv, [*LIBRARIES.values(), *(u for v in UNDECLARED.values() for u in v)])
        if joint is None:
            homes = {library: {"python": str(_python(venv))} for library in LIBRARIES}
        else:  # they clash or one fails: each on its own, the first in the main environment
            used = False
            for library, requirement in LIBRARIES.items():
                home = venv if not used else venv.with_name(f"{venv.name}-{library}")
                failed = _install(home, [requirement, *UNDECLARED.get(library, ())])
                if failed is None:
                    homes[library] = {"python": str(_python(home))}
                    used = used or home == venv
                else:
                    homes[library] = {
                        "unavailable": f"{requirement} could not be installed: {failed}"
                    }
        if _python(venv).exists():
            record.write_text(json.dumps({"plan": _plan(), "homes": homes}, indent=2) + "\n")
        return homes


def _frame(data: pl.DataFrame | Mapping[str, Any]) -> pl.DataFrame:
    return data if isinstance(data, pl.DataFrame) else pl.DataFrame(dict(data))


def _stacked(frames: Sequence[pl.DataFrame], columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """The frames one after the other with a ``__job`` column, each cast to ``columns``."""
    parts = []
    for i, frame in enumerate(frames):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"job {i} lacks column(s): {', '.join(missing)}")
        parts.append(
            frame.select([pl.col(c).cast(t) for c, t in columns.items()]).with_columns(
                pl.lit(i, dtype=pl.Int64).alias(JOB)
            )
        )
    return pl.concat(parts, how="vertical")


def _run(
    jobs: dict[str, Any], files: dict[str, pl.DataFrame], libraries: Sequence[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Per library, the worker's results for it (or ``{"unavailable": message}``)."""
    homes = ensure()
    out: dict[str, dict[str, Any]] = {}
    by_python: dict[str, list[str]] = {}
    for library in libraries:
        home = homes[library]
        if "unavailable" in home:
            out[library] = {"unavailable": home["unavailable"]}
            _versions[library] = {"unavailable": home["unavailable"]}
        else:
            by_python.setdefault(home["python"], []).append(library)
    for python, held in by_python.items():
        with tempfile.TemporaryDirectory(prefix="mlops-anchors-") as folder:
            for name, frame in files.items():
                frame.write_parquet(Path(folder) / name)
            (Path(folder) / "jobs.json").write_text(json.dumps({**jobs, "libraries": held}))
            command = [python, str(WORKER), folder]
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=timeout,
                    cwd=folder,
                    env=_environment(),
                )
            except subprocess.TimeoutExpired as error:
                tail = (error.stderr or b"")[-3_000:]
                tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
                raise AnchorError(
                    f"the anchors worker ({', '.join(held)}) ran past {timeout:g} s; stderr:\n{tail}"
                ) from None
            results_path = Path(folder) / "results.json"
            if done.returncode != 0 or not results_path.exists():
                raise AnchorError(
                    f"the anchors worker ({', '.join(held)}) failed with exit code "
                    f"{done.returncode}; stderr:\n{done.stderr[-4_000:]}"
                )
            results = json.loads(results_path.read_text())
        _versions.update(results["versions"])
        for library in held:
            if library in results["unavailable"]:
                out[library] = {"unavailable": results["unavailable"][library]}
                _versions[library] = {"unavailable": results["unavailable"][library]}
            else:
                out[library] = {k: v for k, v in results.items() if k != "unavailable"}
    return out


def versions() -> dict[str, Any]:
    """The versions the anchors ran with (libraries and what they compute with), per library.

    Taken from the last worker run in this process; runs an empty one when there was none.
    A library that cannot be installed or imported appears as ``{"unavailable": message}``.
    """
    if not all(library in _versions for library in LIBRARIES):
        _run({"drift": None, "cbpe": None}, {}, list(LIBRARIES), timeout=600)
    return dict(_versions)


def drift_verdicts(
    pairs: Sequence[tuple[pl.DataFrame, pl.DataFrame]],
    numeric: Sequence[str],
    categorical: Sequence[str],
    alpha: float = 0.05,
    *,
    chunks: int = 10,
    methods: Sequence[str] = DRIFT_METHODS,
    timeout: float = 3_600,
) -> list[dict[str, Any]]:
    """Per (reference, current) pair, the anchors' drift verdicts (see the module docstring).

    Each verdict key (``evidently_preset``, ``nannyml_univariate``, ``nannyml_reconstruction``,
    ``nannyml_domain_classifier``) holds a bool, ``{"unavailable": message}`` when its library
    could not be installed, or None when it was not in ``methods``; the detail keys beside it are
    present only with a bool. ``chunks`` is NannyML's chunk count on each side.
    """
    unknown = sorted(set(methods) - set(DRIFT_METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose among {list(DRIFT_METHODS)}")
    if not pairs:
        return []
    columns: dict[str, pl.DataType] = {
        **dict.fromkeys(numeric, pl.Float64()),
        **dict.fromkeys(categorical, pl.String()),
    }
    references = _stacked([_frame(r) for r, _ in pairs], columns)
    currents = _stacked([_frame(c) for _, c in pairs], columns)
    jobs = {
        "drift": {
            "reference": "drift_reference.parquet",
            "current": "drift_current.parquet",
            "numeric": list(numeric),
            "categorical": list(categorical),
            "alpha": alpha,
            "chunks": chunks,
            "methods": list(methods),
        },
        "cbpe": None,
    }
    files = {"drift_reference.parquet": references, "drift_current.parquet": currents}
    needed = sorted({m.split("_", 1)[0] for m in methods})
    results = _run(jobs, files, needed, timeout)
    rows: list[dict[str, Any]] = [{} for _ in pairs]
    for name in DRIFT_METHODS:
        library = name.split("_", 1)[0]
        for row in rows:
            if name not in methods:
                row[name] = None
            elif "unavailable" in results[library]:
                row[name] = {"unavailable": results[library]["unavailable"]}
    for library in needed:
        if "unavailable" not in results[library]:
            for row, found in zip(rows, results[library]["drift"], strict=True):
                row.update({k: v for k, v in found.items() if k.startswith(library)})
    return rows


def cbpe_estimates(
    jobs: Sequence[Mapping[str, pl.DataFrame | Mapping[str, Any]]], *, timeout: float = 3_600
) -> list[dict[str, Any]]:
    """Per job, NannyML CBPE's estimated accuracy of its analysis batch (see the module docstring).

    Each job is ``{"reference": frame, "analysis": frame}``, frames (polars, or a mapping of
    column name to numpy array) with ``y_true`` (0/1), ``y_pred_proba`` (probability of class 1)
    and ``y_pred`` (0/1); the analysis labels give ``realised`` only. Returns per job
    ``estimate``, ``sampling_error``, ``lower_confidence_boundary``, ``upper_confidence_boundary``
    (3 sampling errors), ``ci95_low``, ``ci95_high``, ``realised``, ``reference_rows``, ``rows``;
    or ``{"unavailable": message}`` for every job when NannyML could not be installed.
    """
    if not jobs:
        return []
    columns: dict[str, pl.DataType] = {
        "y_true": pl.Int64(),
        "y_pred_proba": pl.Float64(),
        "y_pred": pl.Int64(),
    }
    references = _stacked([_frame(job["reference"]) for job in jobs], columns)
    analyses = _stacked([_frame(job["analysis"]) for job in jobs], columns)
    spec = {
        "drift": None,
        "cbpe": {"reference": "cbpe_reference.parquet", "analysis": "cbpe_analysis.parquet"},
    }
    files = {"cbpe_reference.parquet": references, "cbpe_analysis.parquet": analyses}
    result = _run(spec, files, ["nannyml"], timeout)["nannyml"]
    if "unavailable" in result:
        return [{"unavailable": result["unavailable"]} for _ in jobs]
    rows = []
    for found in result["cbpe"]:
        half = 1.959963984540054 * found["sampling_error"]
        rows.append(
            {
                **found,
                "ci95_low": float(np.clip(found["estimate"] - half, 0.0, 1.0)),
                "ci95_high": float(np.clip(found["estimate"] + half, 0.0, 1.0)),
            }
        )
    return rows


def unavailable(value: Any) -> str | None:
    """The message if ``value`` is an ``{"unavailable": message}`` result, else None."""
    return value.get("unavailable") if isinstance(value, dict) else None


def main() -> None:
    """Install the anchors' environment (again with ``--force``) and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall, retry what failed")
    args = parser.parse_args()
    homes = ensure(force=args.force)
    print(json.dumps({"venv": str(venv_path()), "homes": homes, "versions": versions()}, indent=2))


if __name__ == "__main__":
    main()
