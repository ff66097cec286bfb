"""Reconcile and the labels flow as plain flow calls (Prefect's test harness, real MLflow/GX)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from flows.process_labels import process_labels
from flows.reconcile import reconcile
from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_reconcile_processes_missed_and_crashed_batches_exactly_once(
    tmp_path, settings: Settings, registered: RegisteredDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = LandingZone(settings)
    shas = []
    for i in range(2):
        path = tmp_path / f"b{i}.parquet"
        generate_applications(np.random.default_rng(i), 300, week=1).write_parquet(path)
        shas.append(zone.submit(path, "credit").entry.sha256)
    zone.claim("credit", shas[1])  # a run claimed it, then crashed
    fresh = reconcile(dataset="credit")
    assert [d["sha256"] for d in fresh] == [shas[0]], "a fresh claim is left to its run"
    monkeypatch.setenv("MLOPS_RECONCILE_STALE_SECONDS", "0")
    stale = reconcile(dataset="credit")
    assert [d["sha256"] for d in stale] == [shas[1]] and stale[0]["state"] == "processed"
    assert reconcile(dataset="all") == [], "nothing twice"
    assert {e.state for e in zone.entries("credit")} == {BatchState.processed}


def test_labels_are_joined_to_their_batch_and_bad_labels_quarantined(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    frame = generate_applications(np.random.default_rng(7), 400, week=1)
    batch = tmp_path / "batch.parquet"
    frame.drop("default").write_parquet(batch)
    zone, labels_zone = LandingZone(settings), LandingZone(settings, "labels")
    zone.submit(batch, "credit")
    reconcile(dataset="credit")

    good = tmp_path / "labels.csv"
    frame.select("application_id", "default").head(300).write_csv(good)
    sha = labels_zone.submit(good, "credit").entry.sha256
    outcome = process_labels(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.processed
    report = json.loads(Path(outcome.location).with_name(f"{sha}.report.json").read_text())
    assert report["detail"]["labels"]["matched_rows"] == 300
    assert Path(outcome.location).parent == (settings.processed_dir / "credit" / "labels").resolve()

    bad = tmp_path / "no-label.csv"
    frame.select("application_id").write_csv(bad)
    bad_sha = labels_zone.submit(bad, "credit").entry.sha256
    refused = process_labels(dataset="credit", sha256=bad_sha)
    assert refused.state is BatchState.quarantined and "'default'" in refused.reason
    again = process_labels(dataset="credit", sha256=bad_sha)
    assert again.already_settled

    from mlops_core.adapters.context import DatasetContext
    from mlops_core.labels import attach_labels

    known = DatasetContext.open(settings, "credit").history.known_labels()
    joined = attach_labels(frame.drop("default"), known, registered.spec)
    assert joined["default"].null_count() == 100
    assert (
        joined.filter(pl.col("default").is_not_null())["default"].to_list()
        == frame["default"].head(300).to_list()
    )
