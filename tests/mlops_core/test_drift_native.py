"""The native backend computes alibi-detect's statistics: both run on the same data and agree."""

import numpy as np
import polars as pl
import pytest

from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications
from mlops_core.drift import DriftConfig, DriftDetector


def credit_with_gaps(n: int, seed: int, kind: PhaseKind = PhaseKind.stable) -> pl.DataFrame:
    """Applications with some missing incomes and an unseen purpose: every encoding path."""
    frame = generate_applications(np.random.default_rng(seed), n, kind=kind)
    gaps = pl.Series(np.random.default_rng(seed + 1).random(n) < 0.05)
    return frame.with_columns(
        pl.when(gaps).then(None).otherwise(pl.col("income")).alias("income"),
        pl.when(gaps).then(pl.lit("crypto")).otherwise(pl.col("purpose")).alias("purpose"),
    )


@pytest.mark.parametrize("kind", [PhaseKind.stable, PhaseKind.sudden_shift])
def test_both_backends_give_the_same_statistics_and_p_values(kind: PhaseKind) -> None:
    reference, batch = credit_with_gaps(600, 0), credit_with_gaps(500, 10, kind)
    reports = {
        backend: DriftDetector(CREDIT_SPEC, DriftConfig(permutations=300, backend=backend))
        .fit(reference)
        .detect(batch)
        for backend in ("alibi-detect", "native")
    }
    alibi, native = reports["alibi-detect"], reports["native"]
    # No randomness of their own: equal, but for Kolmogorov-Smirnov p-values that differ in the
    # 8th digit (alibi-detect calls SciPy with its older argument).
    for name in ("classifier", "features", "correlation"):
        a, b = alibi.test(name), native.test(name)
        assert b.statistic == pytest.approx(a.statistic, rel=1e-9, abs=1e-12), name
        assert b.p_value == pytest.approx(a.p_value, rel=1e-6, abs=1e-300), name
    for a, b in zip(alibi.features, native.features, strict=True):
        assert (b.feature, b.test) == (a.feature, a.test)
        assert b.statistic == pytest.approx(a.statistic, rel=1e-6)  # alibi-detect: float32
        assert b.p_value == pytest.approx(a.p_value, rel=1e-6, abs=1e-300)
    # The kernel test: the same permutations on kernels equal up to float32 rounding, so the
    # statistic agrees to float precision and the p-value within Monte-Carlo error (it is
    # equal unless a permuted statistic ties the observed one within rounding).
    a, b = alibi.test("mmd"), native.test("mmd")
    assert b.statistic == pytest.approx(a.statistic, rel=1e-4, abs=1e-6)
    assert abs(b.p_value - a.p_value) <= 3 * np.sqrt(a.p_value * (1 - a.p_value) / 300) + 1 / 301
    assert native.is_drift == alibi.is_drift == (kind is PhaseKind.sudden_shift)


def test_the_native_backend_never_imports_alibi_detect() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from mlops_cli.scenarios import CREDIT_SPEC, generate_applications\n"
        "from mlops_core.drift import DriftConfig, detect_drift\n"
        "a = generate_applications(np.random.default_rng(0), 300)\n"
        "b = generate_applications(np.random.default_rng(1), 300)\n"
        "detect_drift(a, b, CREDIT_SPEC, DriftConfig(permutations=100, backend='native'))\n"
        "print(any(m.startswith('alibi_detect') for m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
