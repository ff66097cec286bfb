"""What the drift tests see, and what each feature's test means: encoding, effect sizes, verdicts.

Pure, and free of alibi-detect: ``mlops_core.drift`` runs the tests on what ``DriftPreprocessor``
encodes, then ``feature_drifts`` turns the per-feature p-values into verdicts. Each feature carries
an effect size (Wasserstein distance over the reference standard deviation; Jensen-Shannon
distance for categoricals), and is called drifted only when its Bonferroni-adjusted p-value is
below the false-alarm rate *and* its effect reaches ``min_effect``, so a huge batch does not flag a
trivial shift (alibi-detect issue #646).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from mlops_core.drift_report import DriftConfig, FeatureDrift, RawTestResult
from mlops_core.errors import UnusableInputError
from mlops_core.spec import DatasetSpec

Matrix = npt.NDArray[np.float64]


class DriftPreprocessor:
    """Encodes a dataset's features for the tests; fitted once on the reference, reused per batch.

    scikit-learn's contract: ``__init__`` stores parameters, ``fit`` returns ``self``, learned
    attributes end in ``_``.
    """

    def __init__(self, spec: DatasetSpec, *, max_kernel_dims: int = 20, seed: int = 0) -> None:
        self.spec = spec
        self.max_kernel_dims = max_kernel_dims
        self.seed = seed

    def fit(self, reference: pl.DataFrame) -> DriftPreprocessor:
        """This preprocessor, fitted: scales, categories and projection learned from ``reference``."""
        check_columns(self.spec, reference, "reference")
        numeric = reference.select(self.spec.numeric).cast(pl.Float64)
        self.means_ = np.array([_finite_or(numeric[c].mean(), 0.0) for c in self.spec.numeric])
        stds = np.array([_finite_or(numeric[c].std(), 1.0) for c in self.spec.numeric])
        self.stds_ = np.where(stds > 0, stds, 1.0)
        self.categories_ = {
            c: sorted(reference[c].cast(pl.String).drop_nulls().unique().to_list())
            for c in self.spec.categorical
        }
        # Missing numerics sit below the reference minimum in the per-feature tests, so a change
        # in the share of missing values moves the distribution that KS compares.
        minimum = [_finite_or(numeric[c].min(), 0.0) for c in self.spec.numeric]
        self.missing_fill_ = np.array(minimum) - self.stds_
        self.pca_: Any = None
        encoded = self._kernel_encode(reference)
        if encoded.shape[1] > self.max_kernel_dims:
            from sklearn.decomposition import PCA

            self.pca_ = PCA(n_components=self.max_kernel_dims, random_state=self.seed)
            self.pca_.fit(encoded)
        return self

    def _kernel_encode(self, frame: pl.DataFrame) -> Matrix:
        parts = []
        if self.spec.numeric:
            values = frame.select(self.spec.numeric).cast(pl.Float64).to_numpy()
            missing = ~np.isfinite(values)
            scaled = np.where(missing, 0.0, (values - self.means_) / self.stds_)
            parts += [scaled, missing.astype(np.float64)]
        for column, levels in self.categories_.items():
            codes = _codes(frame[column], levels)
            one_hot = np.zeros((frame.height, len(levels) + 1))  # last slot: unseen or missing
            one_hot[np.arange(frame.height), np.where(codes < 0, len(levels), codes)] = 1.0
            parts.append(one_hot)
        return np.hstack(parts) if parts else np.zeros((frame.height, 0))

    def kernel_features(self, frame: pl.DataFrame) -> npt.NDArray[np.float32]:
        """Standardised numerics, missing indicators, one-hot categoricals; PCA when wide."""
        encoded = self._kernel_encode(frame)
        if self.pca_ is not None:
            encoded = self.pca_.transform(encoded)
        return encoded.astype(np.float32)

    def classifier_features(self, frame: pl.DataFrame) -> Matrix:
        """Raw numerics (NaN for missing) then categorical codes (NaN for unseen or missing)."""
        columns = []
        if self.spec.numeric:
            columns.append(frame.select(self.spec.numeric).cast(pl.Float64).to_numpy())
        for column, levels in self.categories_.items():
            codes = _codes(frame[column], levels).astype(np.float64)
            codes[codes < 0] = np.nan
            columns.append(codes[:, None])
        return np.hstack(columns)

    def tabular_features(self, frame: pl.DataFrame) -> Matrix:
        """Numerics with missing below the reference range, then categorical codes (-1: other)."""
        columns = []
        if self.spec.numeric:
            values = frame.select(self.spec.numeric).cast(pl.Float64).to_numpy()
            columns.append(np.where(np.isfinite(values), values, self.missing_fill_))
        for column, levels in self.categories_.items():
            columns.append(_codes(frame[column], levels).astype(np.float64)[:, None])
        return np.hstack(columns)

    @property
    def categorical_mask(self) -> npt.NDArray[np.bool_]:
        """One flag per feature column (numerics first, then categoricals): is it categorical?"""
        return np.array([False] * len(self.spec.numeric) + [True] * len(self.spec.categorical))


def _finite_or(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _codes(values: pl.Series, levels: list[str]) -> npt.NDArray[np.int64]:
    """Integer codes of ``values`` among ``levels``; -1 for unseen or missing."""
    lookup = pl.DataFrame({"level": levels, "code": np.arange(len(levels), dtype=np.int64)})
    frame = pl.DataFrame({"level": values.cast(pl.String)})
    joined = frame.join(lookup, on="level", how="left", maintain_order="left")
    codes: npt.NDArray[np.int64] = joined["code"].fill_null(-1).to_numpy()
    return codes


def check_columns(spec: DatasetSpec, frame: pl.DataFrame, what: str) -> None:
    """Returns when ``frame`` can be tested; else ``UnusableInputError`` says what it lacks."""
    missing = [c for c in spec.features if c not in frame.columns]
    if missing:
        raise UnusableInputError(f"{what} lacks feature column(s): {', '.join(missing)}")
    if frame.height < 2:
        raise UnusableInputError(f"{what} has {frame.height} row(s); drift needs at least 2")
    for column in spec.numeric:
        if not frame[column].dtype.is_numeric():
            raise UnusableInputError(
                f"{what}: feature {column!r} should be numeric but holds {frame[column].dtype}"
            )


def sample_rows(frame: pl.DataFrame, cap: int, seed: int) -> pl.DataFrame:
    """A seeded uniform sample without replacement of at most ``cap`` rows."""
    if frame.height <= cap:
        return frame
    return frame.sample(n=cap, with_replacement=False, shuffle=True, seed=seed)


def wasserstein_effect(reference: Matrix, current: Matrix, scale: float) -> float:
    """Earth mover's distance between the two samples, in reference standard deviations."""
    from scipy.stats import wasserstein_distance

    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    if reference.size == 0 or current.size == 0:
        return 0.0
    return float(wasserstein_distance(reference, current) / scale)


def jensen_shannon_effect(reference: Matrix, current: Matrix) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the category frequencies."""
    from scipy.spatial.distance import jensenshannon

    levels = np.union1d(np.unique(reference), np.unique(current))
    p = np.array([(reference == v).sum() for v in levels], dtype=np.float64)
    q = np.array([(current == v).sum() for v in levels], dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def feature_drifts(
    preprocessor: DriftPreprocessor,
    reference: Matrix,
    batch: Matrix,
    p_values: Matrix,
    statistics: Matrix,
    config: DriftConfig,
) -> list[FeatureDrift]:
    """Each feature's verdict from its test's p-value and statistic and its effect size.

    ``reference`` and ``batch`` are the tabular encodings (``tabular_features``), one column per
    feature in the order of ``p_values``: numerics first, then categoricals.
    """
    spec = preprocessor.spec
    k = len(p_values)
    features = []
    for i, name in enumerate([*spec.numeric, *spec.categorical]):
        categorical = bool(preprocessor.categorical_mask[i])
        column_reference, column_batch = reference[:, i], batch[:, i]
        if categorical:
            effect = jensen_shannon_effect(column_reference, column_batch)
            minimum, metric, test = config.min_effect_categorical, "jensen_shannon", "chi2"
        else:
            fill = preprocessor.missing_fill_[i]
            effect = wasserstein_effect(
                np.where(column_reference == fill, np.nan, column_reference),
                np.where(column_batch == fill, np.nan, column_batch),
                float(preprocessor.stds_[i]),
            )
            minimum, metric, test = config.min_effect_numeric, "wasserstein_std", "ks"
        adjusted = min(1.0, float(p_values[i]) * k)
        features.append(
            FeatureDrift(
                feature=name,
                test=test,
                statistic=float(statistics[i]),
                p_value=float(p_values[i]),
                adjusted_p_value=adjusted,
                effect_size=effect,
                effect_metric=metric,
                is_drift=adjusted <= config.false_alarm_rate and effect >= minimum,
            )
        )
    return features


def feature_family(
    features: Sequence[FeatureDrift],
    config: DriftConfig,
    *,
    reference_rows: int,
    current_rows: int,
) -> RawTestResult:
    """The per-feature tests as one dataset-level test, ``features``, for the Holm combination."""
    # The family's p-value: the smallest Bonferroni-adjusted p-value among features whose
    # effect is large enough to matter (1 when none is). Requiring the effect as well only
    # rejects less often, so the family-wise false-alarm rate stays at most the level.
    relevant = [
        f.adjusted_p_value
        for f in features
        if f.effect_size
        >= (config.min_effect_categorical if f.test == "chi2" else config.min_effect_numeric)
    ]
    strongest = max(features, key=lambda f: f.effect_size, default=None)
    return {
        "name": "features",
        "statistic": float(sum(f.is_drift for f in features)),  # features called drifted
        "p_value": min(relevant, default=1.0),
        "effect_size": strongest.effect_size if strongest else None,
        "effect_metric": f"max ({strongest.feature})" if strongest else None,
        "reference_rows": reference_rows,
        "current_rows": current_rows,
    }
