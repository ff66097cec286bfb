"""The drift verdict's shape: how drift is tested, each test's result, and how the tests combine.

Pure: no test runs here. ``mlops_core.drift`` runs the tests and hands their raw outcomes to
``combine_tests``, which corrects them for multiplicity by Holm's step-down procedure: it keeps the
family-wise false-alarm rate at ``false_alarm_rate`` whatever the dependence between the tests
(they share data, so they are dependent), and is uniformly more powerful than Bonferroni. The
combined p-value is the smallest Holm-adjusted p-value; drift is declared when it is at most the
rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

TestName = Literal["mmd", "classifier", "features", "correlation"]
Backend = Literal["alibi-detect", "native"]
ALL_TESTS: tuple[TestName, ...] = ("mmd", "classifier", "features", "correlation")


class DriftConfig(BaseModel):
    """How drift is tested: the false-alarm rate, sample caps, permutations, seed, which tests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    false_alarm_rate: float = Field(default=0.05, gt=0, lt=1)
    tests: tuple[TestName, ...] = ALL_TESTS
    mmd_max_rows: int = Field(
        default=2_000, ge=10, description="Rows per side for the kernel test."
    )
    classifier_max_rows: int = Field(default=5_000, ge=20, description="Rows per side, classifier.")
    permutations: int = Field(default=1_000, ge=10)
    max_kernel_dims: int = Field(default=20, ge=1, description="PCA-project wider inputs to this.")
    classifier_folds: int = Field(default=2, ge=2)
    classifier_iterations: int = Field(default=100, ge=10)
    correlation_max_rows: int = Field(
        default=20_000, ge=10, description="Rows per side for the correlation test."
    )
    min_effect_numeric: float = Field(default=0.1, ge=0, description="Wasserstein / reference std.")
    min_effect_categorical: float = Field(
        default=0.05, ge=0, description="Jensen-Shannon distance (base 2)."
    )
    seed: int = 0
    backend: Backend = Field(
        default="alibi-detect",
        description="alibi-detect (BSL 1.1) or native (scikit-learn, SciPy, PyTorch): same tests.",
    )


class TestResult(BaseModel):
    """One dataset-level test: its statistic, raw and Holm-adjusted p-values, and verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    p_value: float
    adjusted_p_value: float
    is_drift: bool
    effect_size: float | None = None
    effect_metric: str | None = None
    reference_rows: int
    current_rows: int


class FeatureDrift(BaseModel):
    """One feature's test, effect size and verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    test: str
    statistic: float
    p_value: float
    adjusted_p_value: float
    effect_size: float
    effect_metric: str
    missing_change: float = Field(
        default=0.0, description="The batch's missing share minus the reference's (-1 to 1)."
    )
    is_drift: bool


class DriftReport(BaseModel):
    """The drift verdict on one batch against the reference, with every test's evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_drift: bool
    p_value: float
    false_alarm_rate: float
    correction: str = "holm"
    tests: tuple[TestResult, ...]
    features: tuple[FeatureDrift, ...]
    drivers: tuple[str, ...]
    reference_rows: int
    current_rows: int

    def test(self, name: str) -> TestResult:
        """The result of the test called ``name`` (``mmd``, ``classifier`` or ``features``)."""
        return next(t for t in self.tests if t.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready plain data."""
        return self.model_dump(mode="json")

    def summary(self) -> str:
        """One line a person reads: the verdict, its p-value and rate, and the main drivers."""
        verdict = "drift" if self.is_drift else "no drift"
        parts = [f"{verdict} (p={self.p_value:.3g} at false-alarm rate {self.false_alarm_rate:g})"]
        if self.drivers:
            parts.append("drivers: " + ", ".join(self.drivers[:5]))
        return "; ".join(parts)


class RawTestResult(TypedDict):
    """One test's outcome before the multiple-testing correction (a ``TestResult`` in the making)."""

    name: str
    statistic: float
    p_value: float
    effect_size: float | None
    effect_metric: str | None
    reference_rows: int
    current_rows: int


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def combine_tests(
    raw: Sequence[RawTestResult],
    features: Sequence[FeatureDrift],
    config: DriftConfig,
    *,
    reference_rows: int,
    current_rows: int,
) -> DriftReport:
    """The report whose verdict is the Holm-corrected combination of the ``raw`` test outcomes."""
    adjusted = holm([r["p_value"] for r in raw])
    tests = tuple(
        TestResult(**r, adjusted_p_value=a, is_drift=a <= config.false_alarm_rate)
        for r, a in zip(raw, adjusted, strict=True)
    )
    combined = min(adjusted) if adjusted else 1.0
    drivers = tuple(f.feature for f in sorted(features, key=lambda f: -f.effect_size) if f.is_drift)
    return DriftReport(
        is_drift=combined <= config.false_alarm_rate,
        p_value=combined,
        false_alarm_rate=config.false_alarm_rate,
        tests=tests,
        features=tuple(features),
        drivers=drivers,
        reference_rows=reference_rows,
        current_rows=current_rows,
    )
