"""Fault 5: 50 batches submitted at once, a third of them duplicates, every event delivered.

`mlops up` runs for real (its runner executes two flow runs at a time). 50 threads submit at
the same instant: 34 unique files (28 unlabelled stable weeks, and 6 labelled concept-drift
weeks that each call for a retrain, whose challengers an unreachable accuracy floor refuses)
and 16 copies of them under other names; every submit is announced, duplicates too (an
at-least-once event bus delivers twice). Each unique batch must be processed exactly once, the
retrains must run one at a time (the dataset's concurrency limit), and the ledger and the
folders must agree file for file.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings
from stackproc import (
    DATASET,
    StackProcess,
    decision_runs,
    files_under,
    ledger_agrees_with_folders,
    prepare,
    settled,
    wait,
)

from mlops_cli.scenarios import PhaseKind, generate_applications
from mlops_core.adapters.announce import announce
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import Receipt

pytestmark = pytest.mark.slow


def test_fifty_batches_at_once_each_unique_one_processed_once(tmp_path: Path) -> None:
    env, settings = prepare(
        tmp_path,
        MLOPS_RETRAIN_COOLDOWN_HOURS="0",
        MLOPS_MIN_LABELLED_ROWS="500",
        # Every challenger is refused, so the champion stays and each concept-drift batch asks
        # for its own retrain (a promoted one would fit the new regime and end the requests).
        MLOPS_GATE_ACCURACY_FLOOR="0.99",
        # The six retrains run one at a time and are the test's critical path (about 70 s each
        # with the default boosting rounds): refused challengers need no more than these.
        MLOPS_TRAIN_MAX_ITER="40",
        # One training window, not a choice among four candidates refit: what is tested here is
        # that the retrains run one at a time, not which window they train on.
        MLOPS_WINDOW_SELECTION="false",
    )
    files = []
    for i in range(28):
        path = tmp_path / f"stable-{i:02d}.parquet"
        frame = generate_applications(np.random.default_rng(100 + i), 300, week=1)
        frame.drop("default").write_parquet(path)
        files.append(path)
    for i in range(6):
        path = tmp_path / f"regime-{i}.parquet"
        generate_applications(
            np.random.default_rng(200 + i), 1_500, week=20 + i, kind=PhaseKind.concept_drift
        ).write_parquet(path)
        files.append(path)
    for i in range(16):  # the same bytes under another name
        copy = tmp_path / f"resent-{i:02d}.parquet"
        shutil.copyfile(files[(i * 2) % len(files)], copy)
        files.append(copy)
    assert len(files) == 50

    stack = StackProcess(env, settings)
    try:
        start = threading.Barrier(len(files))

        def submit(path: Path) -> Receipt:
            start.wait()
            receipt = LandingZone(settings).submit(path, DATASET)
            with temporary_settings(updates={PREFECT_API_URL: stack.api}):
                announce(receipt.entry)
            return receipt

        with ThreadPoolExecutor(len(files)) as pool:
            receipts = list(pool.map(submit, files))
        unique = {r.entry.sha256 for r in receipts}
        assert len(unique) == 34
        assert sum(r.duplicate for r in receipts) == 16

        wait(
            lambda: all(settled(settings, sha) for sha in unique),
            1_500,  # a liveness bound: the other test process shares the cores under make test
            "every unique batch to be settled",
            every=1.0,
        )
        # Let the duplicate deliveries and the retrains they started play out.
        # Runs are named for their dataset and file: "credit · batch-03.parquet",
        # "credit · retrain after batch-03.parquet".
        wait(
            lambda: (
                all(
                    r.state and r.state.is_final()
                    for r in stack.flow_runs("")
                    if r.name.startswith("credit · ")
                )
                and any(r.name.startswith("credit · ") for r in stack.flow_runs(""))
            ),
            600,
            "every batch and retrain flow run to finish",
            every=1.0,
        )
    finally:
        stack.stop()

    for sha in unique:
        runs = decision_runs(settings, sha)
        assert len(runs) == 1, f"batch {sha[:12]}: {len(runs)} decisions"
    entries = LandingZone(settings).entries(DATASET)
    assert sorted(e.sha256 for e in entries) == sorted(unique)
    assert files_under(settings.landing_dir / DATASET) == []
    ledger_agrees_with_folders(settings)

    # Retrains: more than one was asked for, and no two trained or were judged at once.
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(DATASET).experiment_id
    trains = client.search_runs([experiment], "tags.`mlops.run_type` = 'train'")
    gates = client.search_runs([experiment], "tags.`mlops.run_type` = 'evaluate'")
    retrains = [t for t in trains if t.data.tags.get("mlops.batch_sha256")]
    assert len(retrains) >= 2, f"only {len(retrains)} retrain(s); the limit was not exercised"
    spans = []
    for train in retrains:
        judged = [g for g in gates if g.data.tags.get("mlops.train_run_id") == train.info.run_id]
        assert judged, f"train run {train.info.run_id} has no gate run"
        spans.append((train.info.start_time, judged[0].info.end_time))
    spans.sort()
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= end, f"retrains overlapped: {spans}"
