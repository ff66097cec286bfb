"""The batch flow on a real (temporary) Prefect server: validate, then settle exactly once."""

import json
from pathlib import Path

import numpy as np
import pytest

from flows.process_batch import process_batch
from mlops_cli.scenarios import Corruption, PhaseKind, corrupt, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog, RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def land(tmp_path, settings: Settings, frame, name: str) -> str:
    path = tmp_path / name
    frame.write_parquet(path)
    return LandingZone(settings).submit(path, "credit").entry.sha256


def test_clean_batch_is_processed(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    sha = land(
        tmp_path,
        settings,
        generate_applications(np.random.default_rng(1), 300, week=1),
        "ok.parquet",
    )
    outcome = process_batch(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.processed and outcome.reason is None
    assert Path(outcome.location).parent == (settings.processed_dir / "credit").resolve()
    report = json.loads(Path(outcome.location).with_name(f"{sha}.report.json").read_text())
    assert report["detail"]["validation"]["verdict"] == "passed"
    assert report["detail"]["drift"]["is_drift"] is False
    assert outcome.drift is not None and outcome.drift.false_alarm_rate == 0.05
    # The Data Docs page is rendered after the batch settles, from the stored result.
    assert report["detail"]["validation"]["data_docs"] == outcome.validation.data_docs
    assert Path(outcome.validation.data_docs).is_file()
    assert list((settings.data_docs_dir / "validations").rglob("*.html"))


def test_corrupted_batch_is_quarantined_with_its_reason(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    frame = corrupt(
        generate_applications(np.random.default_rng(2), 300, week=1),
        Corruption.nulls,
        np.random.default_rng(0),
    )
    sha = land(tmp_path, settings, frame, "bad.parquet")
    outcome = process_batch(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.quarantined
    assert "income" in outcome.reason and "null" in outcome.reason
    assert Path(outcome.location).parent == (settings.quarantine_dir / "credit").resolve()
    report = json.loads(Path(outcome.location).with_name(f"{sha}.report.json").read_text())
    assert report["detail"]["validation"]["failures"][0]["column"] == "income"
    assert report["detail"]["drift"] is None, "a batch that failed validation is not drift-tested"


def test_processing_twice_does_nothing_the_second_time(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    sha = land(
        tmp_path,
        settings,
        generate_applications(np.random.default_rng(3), 300, week=1),
        "once.parquet",
    )
    first = process_batch(dataset="credit", sha256=sha)
    second = process_batch(dataset="credit", sha256=sha)
    assert not first.already_settled and second.already_settled
    assert second.state is first.state and Path(second.location) == Path(first.location)
    assert LandingZone(settings).get("credit", sha).state is BatchState.processed


def test_shifted_batch_is_processed_with_drift_named(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    frame = generate_applications(
        np.random.default_rng(4), 600, week=1, kind=PhaseKind.sudden_shift
    )
    sha = land(tmp_path, settings, frame, "shifted.parquet")
    outcome = process_batch(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.processed, "drift is not corruption: the batch is kept"
    assert outcome.drift.is_drift and "credit_score" in outcome.drift.drivers
    report = json.loads(Path(outcome.location).with_name(f"{sha}.report.json").read_text())
    assert report["detail"]["drift"]["p_value"] <= 0.05


def test_every_batch_gets_a_decision_run_with_its_evidence(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    from mlflow.tracking import MlflowClient

    shifted = generate_applications(
        np.random.default_rng(8), 600, week=1, kind=PhaseKind.sudden_shift
    ).drop("default")  # unlabelled: the decision rests on drift and the estimate
    broken = corrupt(
        generate_applications(np.random.default_rng(9), 300, week=1),
        Corruption.nulls,
        np.random.default_rng(0),
    )
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    kept = process_batch(dataset="credit", sha256=land(tmp_path, settings, shifted, "s.parquet"))
    assert kept.decision.action == "watch", kept.decision.reasons
    artifacts = {a.path for a in client.list_artifacts(kept.decision_run_id)}
    assert {"decision.md", "validation.json", "assessment.json", "drift"} <= artifacts
    drift_files = {a.path for a in client.list_artifacts(kept.decision_run_id, "drift")}
    assert {"drift/drift.json", "drift/effect_sizes.png", "drift/distributions.png"} <= drift_files

    refused = process_batch(dataset="credit", sha256=land(tmp_path, settings, broken, "b.parquet"))
    assert refused.state is BatchState.quarantined and refused.decision.action == "none"
    run = client.get_run(refused.decision_run_id)
    assert (
        run.data.tags["mlops.decision"] == "none"
        and "failed validation" in run.data.tags["mlops.reasons"]
    )
    report = json.loads(
        Path(refused.location).with_name(f"{refused.sha256}.report.json").read_text()
    )
    assert report["detail"]["decision_run_id"] == refused.decision_run_id


def test_on_an_s3_store_batches_reports_and_plots_live_in_the_bucket(
    tmp_path, s3_settings: Settings, stream, s3_server
) -> None:
    DatasetCatalog(s3_settings).add(stream.spec, stream.reference_path)  # the spec in the bucket
    shifted = generate_applications(
        np.random.default_rng(4), 600, week=1, kind=PhaseKind.sudden_shift
    )
    broken = corrupt(
        generate_applications(np.random.default_rng(2), 300, week=1),
        Corruption.nulls,
        np.random.default_rng(0),
    )
    kept = process_batch(dataset="credit", sha256=land(tmp_path, s3_settings, shifted, "s.parquet"))
    refused = process_batch(
        dataset="credit", sha256=land(tmp_path, s3_settings, broken, "b.parquet")
    )
    assert kept.state is BatchState.processed and kept.drift.is_drift
    assert refused.state is BatchState.quarantined and "income" in refused.reason
    assert kept.location.startswith("s3://mlops-test/") and refused.location.startswith("s3://")
    zone = LandingZone(s3_settings)
    report = zone.read_report(zone.get("credit", kept.sha256))
    assert report["detail"]["drift"]["p_value"] <= 0.05
    folders = {key.split("/")[1] for key in s3_server.keys("mlops-test", tmp_path.name)}
    assert folders == {"datasets", "processed", "quarantine", "reports"}  # the drift plots too
    home = s3_settings.home
    stored = ("datasets", "landing", "processed", "quarantine", "reports")
    assert not any((home / part).exists() for part in stored)
