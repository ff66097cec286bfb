"""Training data for a challenger, on the landing zone's processed batches."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import polars as pl
import pytest
from live import first_champion, land_processed

from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.assessment import data_time
from mlops_core.challenger import (
    MIN_REFERENCE_ROWS,
    gather_training_data,
    reference_holdout,
    train_challenger,
)
from mlops_core.performance import model_input
from mlops_core.settings import Settings
from mlops_core.tags import CONCEPT_SINCE
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
    window = challenger.window
    assert window is not None
    trained = train_model(window, CREDIT_SPEC, ctx.settings.training_config())
    trained_ids = set(window.filter(pl.Series(~trained.held_out))["application_id"])
    validation_ids = (
        set(data.validation["application_id"]) if data.validation is not None else set()
    )
    assert not validation_ids & gate_ids
    # Rows that chose the window only fill up to the minimum, after those that chose nothing.
    assert len(ids) == max(MIN_REFERENCE_ROWS, len(ids - validation_ids))
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
    held_out = np.zeros(frame.height, dtype=np.bool_)
    held_out[::4] = True  # 250 held-out rows, 25 of them among the newest 100
    rows = reference_holdout(frame, 100, held_out)
    assert rows.height == MIN_REFERENCE_ROWS
    assert rows["application_id"].to_list() == frame[::4].tail(200)["application_id"].to_list()
    assert reference_holdout(frame, 900, held_out).height == 225
    # Rows that chose the window are taken only after the newest rows that did not.
    avoid = np.zeros(frame.height, dtype=np.bool_)
    avoid[900:] = True
    rows = reference_holdout(frame, 200, held_out, avoid)
    chosen = set(rows["application_id"])
    assert rows.height == MIN_REFERENCE_ROWS
    assert set(frame[800:900:4]["application_id"]) <= chosen  # newest, did not choose
    assert set(frame[900::4]["application_id"]) <= chosen  # newest, chose
    assert len(chosen & set(frame[:800]["application_id"])) == 150  # then the newest older ones


def test_after_a_concept_change_the_window_is_chosen_on_rows_the_gates_never_see(
    settings: Settings, registered: RegisteredDataset, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_TRAIN_MAX_ITER", "40")
    first_champion(Settings())
    land_processed(
        settings,
        tmp_path,
        generate_applications(np.random.default_rng(3), 1_500, week=1),
        "a.parquet",
    )
    changed = generate_applications(
        np.random.default_rng(4), 2_000, week=2, kind=PhaseKind.concept_drift
    )
    land_processed(settings, tmp_path, changed, "b.parquet")
    ctx = DatasetContext.open(Settings(), "credit")
    data = gather_training_data(ctx)

    change = data.change
    assert change is not None and change.is_drop
    assert change.file == "b.parquet" and data.concept_since == change.since
    assert (
        change.since is not None
        and abs((change.since - changed["applied_at"].min().replace(tzinfo=UTC)).total_seconds())
        < 2 * 24 * 3600
    )  # within two days of the week's start
    validation = set(data.validation["application_id"]) if data.validation is not None else set()
    gated = set(data.gate_holdout["application_id"])
    assert len(validation) > 300 and validation <= set(changed["application_id"])
    assert not validation & gated
    for candidate in data.candidates:
        assert not set(candidate.frame["application_id"]) & (validation | gated), candidate.name
    assert {c.name for c in data.candidates} >= {"recent+older", "since change", "newest"}

    challenger = train_challenger(ctx, data)
    assert challenger.scores[challenger.window_name] == max(challenger.scores.values())
    run = ctx.registry.client.get_run(challenger.run_id).data
    assert run.params["window"] == challenger.window_name
    assert {
        f"window_score.{name.replace(' ', '_').replace('+', '_and_')}" for name in challenger.scores
    } <= set(run.metrics)
    assert run.tags[CONCEPT_SINCE] == change.since.isoformat()
    assert abs(run.metrics["concept_rows"] - changed.height) <= 100  # the change, as located


def test_a_refusal_is_said_in_a_persons_words() -> None:
    from mlops_core.challenger import gate_summary
    from mlops_core.evaluation import Gate, GateReport

    def gate(name: str, passed: bool, observed: str = "x") -> Gate:
        return Gate(name=name, threshold="t", observed=observed, passed=passed)

    report = GateReport(
        gates=(
            gate("primary", False, "57.6% vs 55.8% (+1.8%), p = 0.13"),
            gate("slice:purpose=car", False, "-6.0%"),
            gate("floor", True),
            gate("latency_p95_ms", False, "80 ms"),
        ),
        challenger_accuracy=0.576,
        champion_accuracy=0.558,
        rows=600,
    )
    said = gate_summary(report)
    assert said.startswith("refused: no better than the champion on the 600 recent rows")
    assert "(57.6% vs 55.8% (+1.8%), p = 0.13)" in said
    assert "worse than the champion where purpose=car" in said and "too slow (80 ms)" in said
    assert "floor" not in said.split(" -- ")[0]
