"""Task that tests a landed batch for drift against its dataset's reference."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.drift import DriftConfig, DriftDetector, DriftReport
from mlops_core.spec import DatasetSpec

# A detector is fitted once per reference file (and version), spec and config in this process.
_FITTED: dict[tuple[str, int, str, str], DriftDetector] = {}


def _fitted(reference: Path, spec: DatasetSpec, config: DriftConfig) -> DriftDetector:
    import polars as pl

    key = (str(reference), reference.stat().st_mtime_ns, spec.to_yaml(), config.model_dump_json())
    if key not in _FITTED:
        if len(_FITTED) >= 8:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = DriftDetector(spec, config).fit(pl.read_parquet(reference))
    return _FITTED[key]


def drift_config(ctx: DatasetContext) -> DriftConfig:
    """The drift tests' configuration from settings."""
    return DriftConfig(
        false_alarm_rate=ctx.settings.drift_false_alarm_rate,
        permutations=ctx.settings.drift_permutations,
        backend=ctx.settings.drift_backend,
    )


def fitted_detector(ctx: DatasetContext) -> DriftDetector:
    """The dataset's detector, fitted on its reference once per process."""
    return _fitted(ctx.registered.reference_path, ctx.spec, drift_config(ctx))


@task(cache_policy=NO_CACHE)
def detect_batch_drift(ctx: DatasetContext, path: Path) -> DriftReport:
    """Test the batch against the dataset's reference: MMD, classifier and per-feature tests."""
    return fitted_detector(ctx).detect(ctx.read_batch(path))
