"""Training data for a challenger, on the landing zone's processed batches."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from live import land_processed

from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.assessment import data_time
from mlops_core.challenger import (
    MIN_REFERENCE_ROWS,
    TrainingData,
    gather_training_data,
    reference_holdout,
    train_challenger,
)
from mlops_core.performance import model_input
from mlops_core.settings import Settings
from mlops_core.training import train_model


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


def test_a_new_model_is_measured_against_newest_rows_it_neither_trained_on_nor_was_selected_on(
    settings: Settings, registered: RegisteredDataset, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land_processed(
        settings,
        tmp_path,
        generate_applications(np.random.default_rng(3), 1_500, week=1),
        "a.parquet",
    )
    newest_frame = generate_applications(np.random.default_rng(4), 2_000, week=2)
    land_processed(settings, tmp_path, newest_frame, "b.parquet")
    monkeypatch.setenv("MLOPS_TRAIN_MAX_ITER", "20")
    ctx = DatasetContext.open(Settings(), "credit")
    data = gather_training_data(ctx)
    challenger = train_challenger(ctx, data)

    reference = ctx.registry.holdout(challenger.run_id)
    ids = set(reference["application_id"])
    gate_ids = set(data.gate_holdout["application_id"])
    assert len(ids) >= MIN_REFERENCE_ROWS
    assert ids <= set(newest_frame["application_id"]), "the newest batch's rows"
    assert not ids & gate_ids, "never the rows the gates selected the model on"
    # Neither trained on: the window's rows that training kept are the window less these.
    trained = train_model(data.window, CREDIT_SPEC, ctx.settings.training_config())
    trained_ids = set(data.window.filter(pl.Series(~trained.held_out))["application_id"])
    assert not ids & trained_ids
    run = ctx.registry.client.get_run(challenger.run_id).data.metrics
    assert run["holdout_rows"] == len(ids)
    truth = reference["default"].to_numpy()
    predicted = challenger.model.predict(model_input(reference, CREDIT_SPEC))
    assert run["holdout_accuracy"] == pytest.approx(float((predicted == truth).mean()))
    ctx.registry.promote(challenger.version)
    champion = ctx.champion()
    assert champion is not None
    assert champion.estimator.reference_accuracy_ == pytest.approx(run["holdout_accuracy"])


def test_the_reference_holdout_reaches_back_past_a_small_newest_batch() -> None:
    frame = generate_applications(np.random.default_rng(5), 1_000, week=1)
    data = TrainingData(
        window=frame, gate_holdout=frame.head(0), lineage=(), data_until=None, newest_rows=100
    )
    held_out = np.zeros(frame.height, dtype=np.bool_)
    held_out[::4] = True  # 250 held-out rows, 25 of them among the newest 100
    rows = reference_holdout(data, held_out)
    assert rows.height == MIN_REFERENCE_ROWS
    assert rows["application_id"].to_list() == frame[::4].tail(200)["application_id"].to_list()
    data = TrainingData(
        window=frame, gate_holdout=frame.head(0), lineage=(), data_until=None, newest_rows=900
    )
    assert reference_holdout(data, held_out).height == 225
