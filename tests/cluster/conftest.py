"""The cluster stack for its tests, started once for the module: PostgreSQL, Redis, moto's S3,
the MLflow server, two Prefect APIs + services, the work pool with two workers, and two model
servers of the credit dataset (registered, with a first champion, before the servers start)."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from live import first_champion

from mlops_cli.cluster import BUCKET, Cluster
from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.settings import Settings


def _missing() -> str | None:
    if not shutil.which("redis-server"):
        return "redis-server"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "PostgreSQL"
    return None


@pytest.fixture(scope="module")  # stopped as soon as the cluster tests end
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(
                f"{missing} is not installed; .ci/run installs it (bash .ci/system-packages)"
            )
        pytest.skip(f"{missing} is not installed: run `bash .ci/system-packages` as root")
    root = tmp_path_factory.mktemp("cluster")
    settings = Settings(home=root / "home", gx_dir=root / "gx")
    stack = Cluster(
        settings,
        log=lambda text: print(text, flush=True),
        worker_environment={
            # Challengers are refused at the gate: retrains are decided, trained and recorded,
            # and the champion stays, so every labelled batch of concept drift asks again.
            "MLOPS_GATE_ACCURACY_FLOOR": "0.99",
            "MLOPS_RETRAIN_COOLDOWN_HOURS": "0",
            "MLOPS_MIN_LABELLED_ROWS": "500",
            "MLOPS_RECONCILE_STALE_SECONDS": "15",
            "MLOPS_RECONCILE_INTERVAL_SECONDS": "3600",
            # A cheaper kernel test (p-value resolution 1/201, enough for a 5% family-wise rate
            # over three tests): each flow run is a fresh process on 2 shared cores here.
            "MLOPS_DRIFT_PERMUTATIONS": "200",
            # Refused challengers need no more boosting rounds than this to be decided and timed.
            "MLOPS_TRAIN_MAX_ITER": "40",
        },
    )
    saved = dict(os.environ)
    try:
        stack.start()
        assert stack.store is not None
        # This process reads the store as the workers do (boto3 takes credentials from here).
        os.environ.update(stack.store.environment())
        client = Settings(
            home=settings.home,
            gx_dir=settings.gx_dir,
            ledger_url=stack.postgres.url("ledger"),  # type: ignore[union-attr]
            mlflow_tracking_uri=stack.mlflow_url,
            store_url=f"s3://{BUCKET}/store",
            s3_endpoint_url=stack.store.endpoint,
        )
        reference = root / "reference.parquet"
        generate_applications(np.random.default_rng(0), 2_500).write_parquet(reference)
        DatasetCatalog(client).add(CREDIT_SPEC, reference)
        first_champion(client, "credit")
        stack.start_model_servers("credit")
        stack.client = client  # type: ignore[attr-defined]
        yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stack.stop()
        # As root under pytest's private tmp folder, PostgreSQL's data went to /tmp (services.py).
        if stack.postgres is not None and stack.postgres.folder.parent.name.startswith(
            "mlops-postgres-"
        ):
            shutil.rmtree(stack.postgres.folder.parent, ignore_errors=True)


@pytest.fixture
def client_settings(cluster: Cluster) -> Settings:
    """Settings of a client of the cluster: the ledger on PostgreSQL, the MLflow server."""
    return cluster.client  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path
