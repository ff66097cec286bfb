"""Fault 1: the worker process is SIGKILLed in the middle of a batch.

`mlops up` runs for real; its warm runner (the process that executes flow runs) kills itself at a
fail point -- right after claiming the batch, or right after recording the decision in MLflow
and before settling the file. The stack notices the dead part and stops. After a restart, the
scheduled reconcile finds the stale claim and processes the batch: once, with one decision, and
with every file where the ledger says it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stackproc import (
    DATASET,
    StackProcess,
    decision_runs,
    files_under,
    ledger_agrees_with_folders,
    pid_alive,
    prepare,
    settled,
    wait,
)

from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["batch-claimed", "batch-decided"])
def test_a_batch_whose_worker_was_killed_is_processed_once_after_restart(
    tmp_path: Path, point: str
) -> None:
    env, settings = prepare(tmp_path)
    batch = tmp_path / "week-1.parquet"
    generate_applications(np.random.default_rng(5), 500, week=1).drop("default").write_parquet(
        batch
    )

    stack = StackProcess({**env, "MLOPS_FAILPOINTS": f"{point}=kill"}, settings)
    try:
        submitted = stack.mlops("submit", str(batch), "--dataset", DATASET)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        sha = LandingZone(settings).entries(DATASET)[0].sha256
        output = stack.wait_exit(timeout=180)
    finally:
        stack.stop()
    assert stack.process.returncode != 0
    assert "deployments stopped unexpectedly (exit code -9)" in output, output
    for name, pid in stack.state["pids"].items():
        assert not pid_alive(pid), f"{name} (pid {pid}) outlived the crashed stack"

    # What the crash left: a claimed batch still in the landing zone.
    entry = LandingZone(settings).get(DATASET, sha)
    assert entry is not None and entry.state is BatchState.processing
    assert Path(entry.location).parent == (settings.landing_dir / DATASET).resolve()
    assert Path(entry.location).is_file()
    before = [r.info.run_id for r in decision_runs(settings, sha)]
    assert len(before) == (1 if point == "batch-decided" else 0)

    # Restart: the scheduled reconcile takes over the stale claim.
    restarted = StackProcess(
        {
            **env,
            "MLOPS_RECONCILE_INTERVAL_SECONDS": "3",
            "MLOPS_RECONCILE_STALE_SECONDS": "2",
        },
        settings,
    )
    try:
        done = wait(lambda: settled(settings, sha), 360, "the batch to be settled after restart")
        assert done.state is BatchState.processed
        runs = decision_runs(settings, sha)
        assert len(runs) == 1, [r.info.run_id for r in runs]
        if before:
            assert runs[0].info.run_id == before[0]  # the recorded decision was reused
        report = Path(done.report_location).read_text()
        assert runs[0].info.run_id in report
        assert LandingZone(settings).pending(DATASET, stale_after_seconds=0) == []
        assert files_under(settings.landing_dir / DATASET) == []  # nothing half-copied left
        ledger_agrees_with_folders(settings)
    finally:
        restarted.stop()
