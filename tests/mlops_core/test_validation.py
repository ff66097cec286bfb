"""Validation with Great Expectations run for real: every bad-input case, and the suite itself."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_cli.scenarios import Corruption, corrupt, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.gx_project import (
    build_data_docs,
    load_suite,
    suite_path,
    validate_file,
    validate_frame,
)
from mlops_core.settings import Settings
from mlops_core.validation import build_suite


def clean_batch(seed: int = 3, n: int = 400) -> pl.DataFrame:
    return generate_applications(np.random.default_rng(seed), n, week=1)


def run(frame: pl.DataFrame, registered: RegisteredDataset, settings: Settings, **kw):
    suite = load_suite(settings, registered.name)
    return validate_frame(
        frame, registered.spec, suite, settings, source="batch", data_docs=False, **kw
    )


def test_clean_batch_passes(registered: RegisteredDataset, settings: Settings) -> None:
    report = run(clean_batch(), registered, settings)
    assert report.success and report.usable and report.exit_code == 0
    assert report.rows == 400
    assert report.failures == ()
    assert report.evaluated > 30


def test_unlabelled_batch_passes(registered: RegisteredDataset, settings: Settings) -> None:
    report = run(clean_batch().drop("default"), registered, settings)
    assert report.success, report.reasons()


@pytest.mark.parametrize(
    ("corruption", "column", "kind"),
    [
        (Corruption.missing_column, "credit_score", "missing column"),
        (Corruption.nulls, "income", "nulls"),
        (Corruption.out_of_bounds, "age", "out of bounds"),
        (Corruption.unseen_category, "purpose", "unseen category"),
        (Corruption.wrong_type, "credit_score", "wrong type"),
    ],
)
def test_each_corruption_fails_with_its_reason(
    registered: RegisteredDataset,
    settings: Settings,
    corruption: Corruption,
    column: str,
    kind: str,
) -> None:
    frame = corrupt(clean_batch(), corruption, np.random.default_rng(0))
    report = run(frame, registered, settings)
    assert not report.success and report.usable and report.exit_code == 1
    # Reported once, on the right column, without follow-on noise from dependent expectations.
    assert [(f.column, f.kind) for f in report.failures] == [(column, kind)]
    assert column in report.summary() and kind in report.summary()


def test_failure_evidence_is_specific(registered: RegisteredDataset, settings: Settings) -> None:
    frame = corrupt(clean_batch(), Corruption.nulls, np.random.default_rng(0))
    (failure,) = run(frame, registered, settings).failures
    assert "% null" in failure.observed and "at most" in failure.expected
    frame = corrupt(clean_batch(), Corruption.unseen_category, np.random.default_rng(0))
    (failure,) = run(frame, registered, settings).failures
    assert "'crypto'" in failure.observed and "debt_consolidation" in failure.expected
    frame = corrupt(clean_batch(), Corruption.wrong_type, np.random.default_rng(0))
    (failure,) = run(frame, registered, settings).failures
    assert failure.observed == "type String"


def test_extra_column_is_allowed_and_reported(
    registered: RegisteredDataset, settings: Settings
) -> None:
    report = run(clean_batch().with_columns(pl.lit("x").alias("browser")), registered, settings)
    assert report.success
    assert any("browser" in w for w in report.warnings)


def test_small_share_of_nulls_within_learned_tolerance(
    registered: RegisteredDataset, settings: Settings
) -> None:
    # employment_years is ~3% null in the reference, so its tolerance is learned above that.
    report = run(clean_batch(n=2000), registered, settings)
    assert report.success
    frame = clean_batch(n=2000).with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0)
        .then(None)
        .otherwise(pl.col("employment_years"))
        .alias("employment_years")
    )
    report = run(frame, registered, settings)
    assert [(f.column, f.kind) for f in report.failures] == [("employment_years", "nulls")]


def test_duplicate_ids_and_row_count(registered: RegisteredDataset, settings: Settings) -> None:
    frame = clean_batch()
    doubled = pl.concat([frame, frame.head(5)])
    assert ("application_id", "duplicate ids") in [
        (f.column, f.kind) for f in run(doubled, registered, settings).failures
    ]
    tiny = frame.head(3)
    assert [f.kind for f in run(tiny, registered, settings).failures] == ["row count"]


def test_unusable_files_give_a_report_not_an_error(
    registered: RegisteredDataset, settings: Settings, tmp_path: Path
) -> None:
    suite = load_suite(settings, registered.name)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(bytes(range(256)) * 4)
    for path, problem in [(empty, "empty"), (garbage, "neither parquet nor CSV")]:
        report = validate_file(path, registered.spec, suite, settings, data_docs=False)
        assert not report.usable and report.exit_code == 2
        assert problem in report.error and str(path) in report.error


def test_csv_and_parquet_validate_alike(
    registered: RegisteredDataset, settings: Settings, tmp_path: Path
) -> None:
    suite = load_suite(settings, registered.name)
    frame = clean_batch()
    frame.write_csv(tmp_path / "b.csv")
    frame.write_parquet(tmp_path / "b.parquet")
    for name in ("b.csv", "b.parquet"):
        report = validate_file(tmp_path / name, registered.spec, suite, settings, data_docs=False)
        assert report.success, report.reasons()


def test_suite_is_readable_json_in_the_gx_project(
    registered: RegisteredDataset, settings: Settings
) -> None:
    path = suite_path(settings, "credit")
    assert path == registered.suite_path and path.is_file()
    data = json.loads(path.read_text())
    kinds = {e["type"] for e in data["expectations"]}
    assert {
        "expect_column_to_exist",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_table_row_count_to_be_between",
    } <= kinds
    ages = next(
        e
        for e in data["expectations"]
        if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "age"
    )
    reference_ages = registered.reference()["age"]
    assert (
        ages["kwargs"]["min_value"] <= reference_ages.min()
        and ages["kwargs"]["max_value"] >= reference_ages.max()
    )
    assert (settings.gx_dir / "great_expectations.yml").is_file()
    assert not (settings.gx_dir / "__init__.py").exists()


def test_hand_edited_suite_takes_effect(registered: RegisteredDataset, settings: Settings) -> None:
    path = suite_path(settings, "credit")
    data = json.loads(path.read_text())
    for expectation in data["expectations"]:
        if (
            expectation["type"] == "expect_column_values_to_be_between"
            and expectation["kwargs"]["column"] == "age"
        ):
            expectation["kwargs"]["max_value"] = 30
    path.write_text(json.dumps(data, indent=2))
    report = run(clean_batch(), registered, settings)
    assert [(f.column, f.kind) for f in report.failures] == [("age", "out of bounds")]


def test_data_docs_are_built_under_home(registered: RegisteredDataset, settings: Settings) -> None:
    suite = load_suite(settings, registered.name)
    report = validate_frame(clean_batch(), registered.spec, suite, settings, source="batch.parquet")
    assert report.data_docs is not None
    index = Path(report.data_docs)
    assert index.is_file() and index.is_relative_to(settings.home.resolve())
    pages = list((settings.data_docs_dir / "validations").rglob("*.html"))
    assert pages, "a validation page is rendered"


def test_deferred_data_docs_render_the_same_page_later(
    registered: RegisteredDataset, settings: Settings
) -> None:
    suite = load_suite(settings, registered.name)
    report = validate_frame(
        clean_batch(), registered.spec, suite, settings, source="b.parquet", data_docs="deferred"
    )
    pages = settings.data_docs_dir / "validations"
    assert report.docs_pending is not None and not pages.exists(), "nothing rendered yet"
    assert "docs_pending" not in report.to_dict()

    index = build_data_docs(settings, report)
    assert index == report.data_docs and Path(index).is_file()
    rendered = list(pages.rglob("*.html"))
    assert len(rendered) == 1 and report.docs_pending[1] in str(rendered[0])
    assert build_data_docs(settings, report.model_copy(update={"docs_pending": None})) is None


def test_suite_bounds_come_from_the_reference(settings: Settings) -> None:
    from mlops_core.spec import DatasetSpec

    spec = DatasetSpec(name="toy", features={"x": "numeric", "c": "categorical"})
    reference = pl.DataFrame({"x": np.linspace(100.0, 200.0, 1001), "c": ["a", "b"] * 500 + ["a"]})
    suite = build_suite(spec, reference, settings)
    between = next(
        e for e in suite.expectations if e.expectation_type == "expect_column_values_to_be_between"
    )
    assert 40 < between.min_value < 100 and 200 < between.max_value < 260
    in_set = next(
        e for e in suite.expectations if e.expectation_type == "expect_column_values_to_be_in_set"
    )
    assert sorted(in_set.value_set) == ["a", "b"]


def test_the_gx_project_holds_suites_and_no_runtime_state(
    registered: RegisteredDataset, settings: Settings
) -> None:
    report = validate_file(
        registered.reference_path, registered.spec, load_suite(settings, "credit"), settings
    )
    assert report.success
    stored = sorted(p.name for p in (settings.gx_dir / "expectations").iterdir())
    assert stored == ["credit.json"], "GX wrote runtime state beside the suites"


def with_event_times(frame: pl.DataFrame, *times: datetime) -> pl.DataFrame:
    """``frame`` with its first rows' event times replaced by ``times``."""
    stamps = frame["applied_at"].to_list()
    stamps[: len(times)] = list(times)
    return frame.with_columns(pl.Series("applied_at", stamps, dtype=frame["applied_at"].dtype))


def test_one_far_future_event_time_fails_the_batch(
    registered: RegisteredDataset, settings: Settings
) -> None:
    # One row in 2,000 (0.05%, within MLOPS_BOUNDS_TOLERANCE of a numeric bound) is enough: it
    # would become the batch's newest event time, the data clock of the retrain cooldown.
    frame = with_event_times(clean_batch(n=2000), datetime(2100, 1, 1))
    landed = datetime(2026, 6, 1, 12, tzinfo=UTC)
    report = run(frame, registered, settings, ingested_at=landed)
    assert [(f.column, f.kind) for f in report.failures] == [
        ("applied_at", "implausible timestamp")
    ]
    (failure,) = report.failures
    assert (
        failure.observed.startswith("1 event time(s) outside") and "2100-01-01" in failure.observed
    )
    earliest = registered.reference()["applied_at"].min() - timedelta(days=3650)
    assert f"from {earliest:%Y-%m-%d %H:%M} UTC to 2026-06-02 12:00 UTC" in failure.expected
    assert "ingested 2026-06-01 12:00 UTC + 24 h" in failure.expected
    summary = report.summary()
    assert "column 'applied_at'" in summary and "submit the batch again" in summary


def test_event_times_from_1900_fail_the_batch(
    registered: RegisteredDataset, settings: Settings
) -> None:
    frame = with_event_times(clean_batch(), *[datetime(1900, 1, 1)] * 5)
    (failure,) = run(frame, registered, settings).failures
    assert (failure.column, failure.kind) == ("applied_at", "implausible timestamp")
    assert (
        failure.observed.startswith("5 event time(s)")
        and "1900-01-01 00:00 UTC" in failure.observed
    )
    assert "MLOPS_TIMESTAMP_PAST_DAYS" in failure.expected


def test_event_times_are_bounded_by_the_batch_ingestion_time(
    registered: RegisteredDataset, settings: Settings, tmp_path: Path
) -> None:
    # The clean batch's events happen from 2026-01-12 to 2026-01-19 (week 1 of the stream).
    frame = clean_batch()
    assert run(frame, registered, settings, ingested_at=datetime(2026, 1, 20, tzinfo=UTC)).success
    early = run(frame, registered, settings, ingested_at=datetime(2026, 1, 10, tzinfo=UTC))
    assert [f.kind for f in early.failures] == ["implausible timestamp"]
    # The same from a CSV file, its times read back from text.
    frame.write_csv(tmp_path / "b.csv")
    suite = load_suite(settings, registered.name)
    late = validate_file(
        tmp_path / "b.csv",
        registered.spec,
        suite,
        settings,
        data_docs=False,
        ingested_at=datetime(2026, 1, 10, tzinfo=UTC),
    )
    assert [f.kind for f in late.failures] == ["implausible timestamp"]
