"""What the drift tests see, and what each feature's test means: encoding, effect sizes, verdicts.

Pure, and free of alibi-detect: ``mlops_core.drift`` runs the tests on what ``DriftPreprocessor``
encodes, then ``feature_drifts`` turns the per-feature p-values into verdicts. Each feature carries
an effect size (Wasserstein distance over the reference standard deviation; Jensen-Shannon
distance for categoricals), and is called drifted only when its Bonferroni-adjusted p-value is
below the false-alarm rate *and* its effect reaches ``min_effect``, so a huge batch does not flag a
trivial shift (alibi-detect issue #646).

Missing values count on both sides of that rule. The tests see them: a missing numeric sits below
the reference minimum, so Kolmogorov-Smirnov compares the missing share too; a missing categorical
is a level of its own for chi-squared. And so does the effect: a numeric feature's effect is the
larger of the Wasserstein distance of its present values (in reference standard deviations) and
the change in its missing share (10 percentage points more missing weigh as a 0.1-sd shift); a
categorical's Jensen-Shannon distance already counts "missing" as a level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

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
        self.kernel_width_ = self._kernel_encode(reference.head(1)).shape[1]
        return self

    @property
    def wide(self) -> bool:
        """Whether the kernel test's encoding is projected (wider than ``max_kernel_dims``)."""
        return bool(self.kernel_width_ > self.max_kernel_dims)

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
        """Standardised numerics, missing indicators, one-hot categoricals (never projected)."""
        return self._kernel_encode(frame).astype(np.float32)

    def kernel_pair(
        self, reference: pl.DataFrame, batch: pl.DataFrame
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Both samples as the kernel test sees them: encoded, and when wide, projected by PCA.

        The projection is fitted on the two samples together. Fitted on the reference alone, its
        leading components follow the reference's own noise, so the reference has more variance
        along them than any batch: with 80 numeric features every no-drift batch was called
        drifted. A permutation test needs a transformation that treats both samples alike.
        """
        x_ref, x_cur = self._kernel_encode(reference), self._kernel_encode(batch)
        if self.wide:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=self.max_kernel_dims, random_state=self.seed)
            pca.fit(np.vstack([x_ref, x_cur]))
            x_ref, x_cur = pca.transform(x_ref), pca.transform(x_cur)
        return x_ref.astype(np.float32), x_cur.astype(np.float32)

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
        missing_change = 0.0
        if categorical:
            missing_change = float((column_batch < 0).mean() - (column_reference < 0).mean())
            effect = jensen_shannon_effect(column_reference, column_batch)
            minimum, metric, test = config.min_effect_categorical, "jensen_shannon", "chi2"
        else:
            fill = preprocessor.missing_fill_[i]
            missing_reference, missing_batch = column_reference == fill, column_batch == fill
            missing_change = float(missing_batch.mean() - missing_reference.mean())
            effect = max(
                wasserstein_effect(
                    np.where(missing_reference, np.nan, column_reference),
                    np.where(missing_batch, np.nan, column_batch),
                    float(preprocessor.stds_[i]),
                ),
                abs(missing_change),
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
                missing_change=missing_change,
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


def normal_scores(values: Matrix) -> Matrix:
    """Each column replaced by its van der Waerden normal scores; missing values at 0 (the centre).

    Ranks make the correlation test below robust to skewed and heavy-tailed features (incomes,
    amounts): only each column's order within its own sample matters, not its scale.
    """
    from scipy.stats import norm, rankdata

    scores = np.zeros_like(values, dtype=np.float64)
    for j in range(values.shape[1]):
        present = np.isfinite(values[:, j])
        if present.sum() > 1:
            ranks = rankdata(values[present, j])
            scores[present, j] = norm.ppf((ranks - 0.5) / present.sum())
    return scores


class Correlations(NamedTuple):
    """A sample's pairwise normal-score correlations, their variances times n, and its rows."""

    r: Matrix
    variance: Matrix
    rows: int


def correlations(values: Matrix) -> Correlations:
    """The pairwise correlations of ``values``' columns (normal scores), with their variances."""
    r, variance = _correlations(normal_scores(values))
    return Correlations(r, variance, values.shape[0])


def _correlations(scores: Matrix) -> tuple[Matrix, Matrix]:
    """Pairwise correlations and each one's asymptotic variance times n, free of normality.

    With standardised u, v and r = E[uv], the influence function of r is
    uv - r (u^2 + v^2) / 2, so n Var(r) = E[u^2 v^2] - r (E[u^3 v] + E[u v^3])
    + r^2 (E[u^4] + 2 E[u^2 v^2] + E[v^4]) / 4 (the delta method, no distributional assumption).
    """
    n = scores.shape[0]
    centred = scores - scores.mean(axis=0)
    scale = centred.std(axis=0)
    u = centred / np.where(scale > 0, scale, 1.0)
    r = u.T @ u / n
    squares = u**2
    m22 = squares.T @ squares / n
    m31 = (u**3).T @ u / n  # [i, j] = E[u_i^3 u_j]
    m4 = np.diag(m22)
    variance = m22 - r * (m31 + m31.T) + r**2 * (m4[:, None] + 2 * m22 + m4[None, :]) / 4
    # The fourth-moment estimate is noisy, and a denominator that is too small by chance makes
    # heavy tails where Bonferroni looks: never below the variance under a Gaussian copula,
    # (1 - r^2)^2, which normal scores make the natural floor.
    variance = np.maximum(variance, (1 - r**2) ** 2)
    constant = scale == 0
    variance[constant, :] = np.inf
    variance[:, constant] = np.inf
    return r, variance


def correlation_test(
    names: Sequence[str], reference: Correlations, batch: Correlations
) -> RawTestResult:
    """Has the dependence between numeric features changed? One test over every pair.

    Per pair, the difference of the two samples' normal-score correlations over its standard
    error (each sample's from the delta method above, the samples being independent): a z-test,
    two-sided; the test's p-value is the Bonferroni minimum over the pairs, valid under any
    dependence between them. It sees what the per-feature tests cannot (two features that start
    moving together, marginals unchanged) at a fraction of the classifier's cost: O(n d^2).
    """
    from scipy.stats import norm

    reference_rows, batch_rows = reference.rows, batch.rows
    upper = np.triu_indices(len(names), k=1)
    difference = (batch.r - reference.r)[upper]
    spread = reference.variance[upper] / reference_rows + batch.variance[upper] / batch_rows
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(difference) / np.sqrt(spread)
    z = np.nan_to_num(z, nan=0.0, posinf=0.0)
    pairs = difference.size
    if pairs == 0:
        strongest, p_value, effect, metric = -1, 1.0, 0.0, "max |change in correlation|"
    else:
        strongest = int(np.argmax(z))
        p_value = min(1.0, pairs * float(2 * norm.sf(z[strongest])))
        effect = float(abs(difference[strongest]))
        i, j = upper[0][strongest], upper[1][strongest]
        metric = f"|change in correlation| ({names[i]}, {names[j]})"
    return {
        "name": "correlation",
        "statistic": float(z.max()) if pairs else 0.0,
        "p_value": p_value,
        "effect_size": effect,
        "effect_metric": metric,
        "reference_rows": reference_rows,
        "current_rows": batch_rows,
    }
