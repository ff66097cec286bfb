"""The demo world: deterministic, realistic enough, and its events really happen."""

from pathlib import Path

import numpy as np
import polars as pl

from mlops_cli.scenarios import (
    CREDIT_SPEC,
    DEFAULT_SCHEDULE,
    Corruption,
    PhaseKind,
    generate_applications,
    write_stream,
)
from mlops_core.spec import DatasetSpec

REPO = Path(__file__).resolve().parents[2]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_stream(tmp_path / "a", seed=5, reference_rows=500, batch_rows=100)
    b = write_stream(tmp_path / "b", seed=5, reference_rows=500, batch_rows=100)
    for x, y in zip(a.batches, b.batches, strict=True):
        assert x.path.read_bytes() == y.path.read_bytes()
    assert a.reference_path.read_bytes() == b.reference_path.read_bytes()


def test_schedule_covers_every_event_and_is_written(tmp_path: Path) -> None:
    stream = write_stream(tmp_path, seed=1, reference_rows=500, batch_rows=100)
    assert {p.kind for p in DEFAULT_SCHEDULE} == set(PhaseKind)
    assert {b.corruption for b in stream.batches if b.corruption} == set(Corruption)
    assert len(stream.batches) == sum(p.batches for p in DEFAULT_SCHEDULE)
    assert (tmp_path / "schedule.json").is_file()
    assert {p.suffix for p in (b.path for b in stream.batches)} == {".csv", ".parquet"}


def test_table_shape_matches_the_spec() -> None:
    frame = generate_applications(np.random.default_rng(0), 1000)
    assert len(CREDIT_SPEC.features) >= 8
    assert set(CREDIT_SPEC.known_columns) == set(frame.columns)
    assert frame["application_id"].n_unique() == 1000
    assert 0.05 < frame["default"].mean() < 0.35
    assert 0 < frame["employment_years"].null_count() < 100


def default_rate(frame: pl.DataFrame, condition: pl.Expr) -> float:
    return frame.filter(condition)["default"].mean()


def test_label_depends_non_linearly_on_credit_score() -> None:
    frame = generate_applications(np.random.default_rng(0), 50_000)
    low = default_rate(frame, pl.col("credit_score") < 580)
    mid = default_rate(frame, pl.col("credit_score").is_between(640, 700))
    high = default_rate(frame, pl.col("credit_score") > 760)
    assert low > 2 * mid, "a cliff below the cut"
    assert abs(mid - high) < (low - mid) / 2, "flat above it: not a linear relation"


def test_concept_drift_changes_the_relation_not_the_inputs() -> None:
    before = generate_applications(np.random.default_rng(1), 50_000)
    after = generate_applications(np.random.default_rng(2), 50_000, kind=PhaseKind.concept_drift)
    assert abs(before["credit_score"].mean() - after["credit_score"].mean()) < 2
    band = pl.col("credit_score").is_between(640, 700)
    assert default_rate(after, band) > default_rate(before, band) + 0.1


def test_harmless_drift_moves_only_the_ignored_feature() -> None:
    before = generate_applications(np.random.default_rng(1), 50_000)
    after = generate_applications(np.random.default_rng(2), 50_000, kind=PhaseKind.harmless_drift)
    share = lambda f: (f["channel"] == "partner").mean()  # noqa: E731
    assert share(after) > share(before) + 0.3
    assert abs(before["default"].mean() - after["default"].mean()) < 0.01


def test_repository_spec_file_is_the_generator_spec() -> None:
    assert DatasetSpec.from_yaml(REPO / "datasets" / "credit.yaml") == CREDIT_SPEC
