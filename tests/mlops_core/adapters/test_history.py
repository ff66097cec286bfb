"""A dataset's batch history: read once per handle, joined anew when labels land, walked in either
order, and the champion's answers taken from the newest batches only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mlops_cli.scenarios import PhaseKind, generate_applications
from mlops_core import change
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.settings import Settings


def land(zone: LandingZone, frame: pl.DataFrame, path: Path) -> LedgerEntry:
    """``frame`` written to ``path``, submitted and settled as processed."""
    frame.write_parquet(path)
    entry = zone.submit(path, "credit").entry
    zone.claim("credit", entry.sha256)
    return zone.settle("credit", entry.sha256, BatchState.processed, {"test": True})


def unlabelled_history(settings: Settings, tmp_path: Path) -> list[pl.DataFrame]:
    """Three processed batches without labels (their labels returned, in order)."""
    rng = np.random.default_rng(3)
    zone, labels = LandingZone(settings), []
    for week in (1, 2, 3):
        frame = generate_applications(rng, 200, week=week)
        land(zone, frame.drop("default"), tmp_path / f"batch-{week}.parquet")
        labels.append(frame.select("application_id", "default"))
    return labels


def walk(context: DatasetContext, **options: object) -> list[pl.DataFrame]:
    return [frame for _, frame in context.history.processed_batches(**options)]  # type: ignore[arg-type]


def test_a_handle_reads_each_file_once_and_joins_labels_again_when_a_labels_file_lands(
    settings: Settings, registered: RegisteredDataset, tmp_path: Path
) -> None:
    labels = unlabelled_history(settings, tmp_path)
    context = DatasetContext.open(settings, "credit")
    first = walk(context)
    assert [f.height for f in first] == [200, 200, 200]
    assert all("default" not in f.columns for f in first)

    # The files go; the handle that read them still has them, a new one finds none.
    for entry in context.batches.entries("credit"):
        context.batches.local_file(entry).unlink()
    again = walk(context)
    assert len(again) == 3 and all(a.equals(f) for a, f in zip(again, first, strict=True))
    assert walk(DatasetContext.open(settings, "credit")) == []

    # A labels file lands: the next walk of the same handle joins it.
    land(LandingZone(settings, kind="labels"), labels[1], tmp_path / "labels-2.parquet")
    joined = walk(context)
    assert joined[0]["default"].null_count() == 200
    assert joined[1]["default"].to_list() == labels[1]["default"].to_list()
    assert joined[2]["default"].null_count() == 200


def test_a_walk_runs_newest_first_or_only_after_a_time_and_a_zero_budget_keeps_nothing(
    settings: Settings,
    registered: RegisteredDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unlabelled_history(settings, tmp_path)
    context = DatasetContext.open(settings, "credit")
    entries = context.batches.entries("credit")
    oldest_first = [e.sha256 for e, _ in context.history.processed_batches()]
    assert oldest_first == [e.sha256 for e in entries]
    newest_first = [e.sha256 for e, _ in context.history.processed_batches(newest_first=True)]
    assert newest_first == oldest_first[::-1]
    after = datetime.fromisoformat(entries[0].updated_at)
    assert [e.sha256 for e, _ in context.history.processed_batches(after=after)] == oldest_first[1:]

    monkeypatch.setenv("MLOPS_HISTORY_CACHE_MIB", "0")
    unkept = DatasetContext.open(Settings(), "credit")
    assert len(walk(unkept)) == 3
    context.batches.local_file(entries[0]).unlink()
    assert len(walk(unkept)) == 2  # read again, and the file is gone
    assert len(walk(context)) == 3  # kept by the handle with a budget


def test_the_champions_history_is_the_newest_rows_of_the_whole_history(
    settings: Settings,
    registered: RegisteredDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = DatasetContext.open(settings, "credit")
    first = train_challenger(context, gather_training_data(context, first_model=True))
    context.registry.promote(first.version)
    rng = np.random.default_rng(4)
    zone = LandingZone(settings)
    for week in range(1, 7):
        kind = PhaseKind.concept_drift if week > 3 else PhaseKind.stable
        frame = generate_applications(rng, 1_000, week=week, kind=kind)
        land(zone, frame, tmp_path / f"labelled-{week}.parquet")
    newest = generate_applications(rng, 500, week=7, kind=PhaseKind.concept_drift)
    champion = context.champion()
    assert champion is not None

    monkeypatch.setattr(change, "MAX_SCANNED_ROWS", 10**9)
    whole = change.champion_history(context, champion, newest)
    files = whole["file"].unique(maintain_order=True).to_list()
    assert files[0].endswith("holdout") and files[-1] == "this batch" and len(files) == 8
    assert whole["right"].dtype == pl.Boolean

    monkeypatch.setattr(change, "MAX_SCANNED_ROWS", 2_000)
    bounded = change.champion_history(context, champion, newest)
    assert bounded.height == 2_000
    assert_frame_equal(bounded, whole.tail(2_000))
    # Old accuracy on the stable weeks, lower on the new concept: the answers are the model's.
    by_file = whole.group_by("file", maintain_order=True).agg(pl.col("right").mean())["right"]
    assert by_file[1] > by_file[-2] + 0.05
