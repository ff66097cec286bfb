"""Fault 2: the MLflow tracking server goes away while a batch is processed.

A real `mlflow server` process (SQLite backend, served artifacts) is the tracking and registry
store. It is stopped; the next batch's IO tasks retry with backoff (Prefect task retries over
MLflow's own HTTP retries), give up, and the batch stays in the landing zone marked ``failed``
with the reason. The server comes back on the same port; ``reconcile`` finishes the batch, with
one decision, and the champion is the one it was all along.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from stackproc import DATASET, decision_runs, files_under, ledger_agrees_with_folders, wait

from flows.process_batch import process_batch
from flows.reconcile import reconcile
from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_cli.stack import free_port, stop_group
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import BatchState
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


class MlflowServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        wait(self.healthy, 120, "the MLflow server to answer /health", every=0.5)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None


def write_batch(path: Path, seed: int) -> Path:
    frame = generate_applications(np.random.default_rng(seed), 500, week=1).drop("default")
    frame.write_parquet(path)
    return path


def test_a_batch_survives_an_mlflow_outage_and_reconcile_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MlflowServer(tmp_path / "mlflow", free_port())
    for key, value in {
        "MLOPS_HOME": str(tmp_path / "home"),
        "MLOPS_GX_DIR": str(tmp_path / "gx"),
        "MLOPS_MLFLOW_TRACKING_URI": server.url,
        # MLflow's own HTTP retries, shortened (defaults: 7 retries, backoff factor 2).
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    server.start()
    try:
        reference = tmp_path / "reference.parquet"
        generate_applications(np.random.default_rng(0), 4_000).write_parquet(reference)
        DatasetCatalog(settings).add(CREDIT_SPEC, reference)
        registry = ModelRegistry(settings, DATASET)
        ctx = DatasetContext.open(settings, DATASET)
        data = gather_training_data(ctx, first_model=True)
        registry.promote(train_challenger(ctx, data).version)
        champion = registry.aliases()["champion"]

        zone = LandingZone(settings)
        first = zone.submit(write_batch(tmp_path / "a.parquet", 1), DATASET).entry.sha256
        assert process_batch(dataset=DATASET, sha256=first).state is BatchState.processed

        server.stop()
        assert not server.healthy()
        second = zone.submit(write_batch(tmp_path / "b.parquet", 2), DATASET).entry.sha256
        state = process_batch(dataset=DATASET, sha256=second, return_state=True)
        assert state.is_failed()

        failed = zone.get(DATASET, second)
        assert failed is not None and failed.state is BatchState.failed
        assert f"127.0.0.1:{server.port}" in failed.reason or "onnection" in failed.reason
        assert "mlops reconcile" in failed.reason
        assert Path(failed.location).parent == (settings.landing_dir / DATASET).resolve()
        assert Path(failed.location).is_file()
        # The IO task that met the outage was retried before the run gave up.
        with get_client(sync_client=True) as client:
            run = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )[0]
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
        retried = [t.name for t in tasks if t.run_count > 1]
        assert retried, [(t.name, t.run_count) for t in tasks]

        server.start()  # back, same port, same store
        done = reconcile(dataset=DATASET)
        assert [(d["sha256"], d["state"]) for d in done] == [(second, "processed")], done
        assert zone.get(DATASET, second).state is BatchState.processed
        assert len(decision_runs(settings, second)) == 1
        assert len(decision_runs(settings, first)) == 1
        assert registry.aliases()["champion"] == champion  # never moved by the broken run
        assert files_under(settings.landing_dir / DATASET) == []
        ledger_agrees_with_folders(settings)
    finally:
        server.stop()
