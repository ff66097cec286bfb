"""Training data for a challenger, on the landing zone's processed batches."""

from __future__ import annotations

import numpy as np
import pytest
from live import land_processed

from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.assessment import data_time
from mlops_core.challenger import gather_training_data
from mlops_core.settings import Settings


def test_training_data_holds_out_the_newest_batch_and_keeps_lineage(
    settings: Settings, registered: RegisteredDataset, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = land_processed(
        settings,
        tmp_path,
        generate_applications(np.random.default_rng(3), 800, week=1),
        "a.parquet",
    )
    newest_frame = generate_applications(np.random.default_rng(4), 1_000, week=2)
    newest = land_processed(settings, tmp_path, newest_frame, "b.parquet")
    monkeypatch.setenv("MLOPS_TRAIN_RECENT_ROWS", "500")
    monkeypatch.setenv("MLOPS_TRAIN_OLDER_ROWS", "400")
    data = gather_training_data(DatasetContext.open(Settings(), "credit"))
    assert [i.sha256 for i in data.lineage][1:] == [older, newest]
    ids = set(data.gate_holdout["application_id"])
    assert ids <= set(newest_frame["application_id"]) and 200 < len(ids) < 400
    assert not ids & set(data.window["application_id"]), "gate rows never train"
    assert data.window.height == 900
    assert data.data_until == data_time(newest_frame, CREDIT_SPEC)
