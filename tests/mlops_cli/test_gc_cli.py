"""``mlops gc``: settled files past retention are deleted with their reports and ledger rows;
what a registered model trained on, what an open rollout delivers, what is not settled and
what is recent are kept, each kept file with its reason."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
import sqlalchemy as sa
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_cli.scenarios import Stream
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.serving.dead_letter import done_dir
from mlops_core.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")
runner = CliRunner()
OLD = (datetime.now(UTC) - timedelta(days=200)).isoformat(timespec="microseconds")


def mlops(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def settled(zone: LandingZone, path: Path, state: BatchState = BatchState.processed) -> str:
    sha = zone.submit(path, "credit").entry.sha256
    zone.claim("credit", sha)
    zone.settle("credit", sha, state, {"note": "settled by the test"}, reason=None)
    return sha


def age(settings: Settings, table: str, shas: list[str]) -> None:
    """Make ledger rows look settled 200 days ago."""
    engine = sa.create_engine(settings.ledger_database_url)
    with engine.begin() as connection:
        for sha in shas:
            connection.execute(
                sa.text(
                    f"UPDATE {table} SET updated_at = :old, submitted_at = :old WHERE sha256 = :sha"
                ),
                {"old": OLD, "sha": sha},
            )
    engine.dispose()


def a_model_trained_on(settings: Settings, sha: str) -> str:
    """A registered version whose training run names batch ``sha`` as its input (the lineage
    the trainer logs), without training anything. MLflow's fluent URI is set for the run and
    unset after the test (the root conftest)."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name("credit") or client.get_experiment(
        client.create_experiment("credit")
    )
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        source = HTTPDatasetSource("http://example.invalid/batch")
        mlflow.log_input(MetaDataset(source, name=f"batch-{sha[:12]}", digest=sha[:36]))
    client.create_registered_model("credit")
    version = client.create_model_version(
        "credit", source=str(settings.home), run_id=run.info.run_id
    )
    return str(version.version)


def test_gc_deletes_old_settled_files_and_keeps_lineage_unsettled_and_recent_ones(
    settings: Settings, registered: RegisteredDataset, stream: Stream
) -> None:
    zone, labels = LandingZone(settings), LandingZone(settings, "labels")
    paths = [batch.path for batch in stream.batches]
    trained_on = settled(zone, paths[0])
    expired = settled(zone, paths[1])
    refused = settled(zone, paths[2], BatchState.quarantined)
    waiting = zone.submit(paths[3], "credit").entry.sha256  # landed: the pipeline's, not gc's
    recent = settled(zone, paths[4])
    age(settings, "batches", [trained_on, expired, refused, waiting])
    version = a_model_trained_on(settings, trained_on)
    gone_files = [zone.get("credit", s).location for s in (expired, refused)]  # type: ignore[union-attr]
    reports = [zone.get("credit", s).report_location for s in (expired, refused)]  # type: ignore[union-attr]
    folder = done_dir(settings)
    folder.mkdir(parents=True)
    old_log, new_log = folder / "batch-old.jsonl", folder / "batch-new.jsonl"
    for log in (old_log, new_log):
        log.write_text("{}\n")
    then = time.time() - 200 * 86400
    os.utime(old_log, (then, then))

    dry = mlops("gc", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    (credit,) = planned["datasets"]
    assert {d["sha256"] for d in credit["deleted"]} == {expired, refused}
    assert all(Path(p).exists() for p in gone_files), "a dry run deletes nothing"
    assert old_log.exists()

    done = mlops("gc")
    assert done.exit_code == 0, done.output
    assert "deleted 2 files" in done.output
    assert f"kept batch {trained_on[:12]}" in done.output
    assert f"training data of model v{version}" in done.output
    for path in [*gone_files, *reports]:
        assert not Path(path).exists(), path
    assert zone.get("credit", expired) is None and zone.get("credit", refused) is None
    assert zone.get("credit", trained_on).state is BatchState.processed  # type: ignore[union-attr]
    assert Path(zone.get("credit", trained_on).location).exists()  # type: ignore[union-attr]
    assert zone.get("credit", waiting).state is BatchState.landed  # type: ignore[union-attr]
    assert zone.get("credit", recent) is not None
    assert not old_log.exists() and new_log.exists()
    assert labels.entries("credit") == []

    again = json.loads(mlops("gc", "--json").output)
    assert again["datasets"][0]["deleted"] == [], "nothing twice"
