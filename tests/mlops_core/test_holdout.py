"""The fixed split of labelled rows into the rows that decide and the rows the gates judge on."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from live import land_processed

from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.challenger import gather_training_data
from mlops_core.holdout import decision_rows, gate_rows
from mlops_core.settings import Settings


@pytest.mark.parametrize("with_id", [True, False])
def test_the_split_is_a_fixed_share_and_a_property_of_the_row(with_id: bool) -> None:
    frame = generate_applications(np.random.default_rng(0), 20_000)
    spec = CREDIT_SPEC if with_id else CREDIT_SPEC.model_copy(update={"id": None})
    held = gate_rows(frame, spec, 0.3)
    assert 0.29 < held.mean() < 0.31
    # Shuffled, sliced or read again elsewhere: every row keeps its part.
    order = np.random.default_rng(1).permutation(frame.height)
    shuffled = frame[order]
    assert (gate_rows(shuffled, spec, 0.3).to_numpy() == held.to_numpy()[order]).all()
    assert (gate_rows(frame.head(500), spec, 0.3).to_numpy() == held.to_numpy()[:500]).all()
    deciding = decision_rows(frame, spec, 0.3)
    assert deciding.height + int(held.sum()) == frame.height
    assert decision_rows(frame.head(0), spec, 0.3).height == 0


def test_rows_that_decided_never_judge_the_challenger_nor_train_it(
    settings: Settings, registered: RegisteredDataset, tmp_path
) -> None:
    newest = generate_applications(np.random.default_rng(5), 2_000, week=2)
    land_processed(settings, tmp_path, newest, "newest.parquet")
    ctx = DatasetContext.open(Settings(), "credit")
    data = gather_training_data(ctx)
    judged = set(data.gate_holdout["application_id"])
    decided = set(
        decision_rows(newest, CREDIT_SPEC, settings.gate_holdout_fraction)["application_id"]
    )
    assert judged and decided
    assert not judged & decided, "a row that decided also judges"
    assert judged | decided == set(newest["application_id"])
    assert not judged & set(data.window["application_id"]), "gate rows never train"
    assert isinstance(data.gate_holdout, pl.DataFrame)
