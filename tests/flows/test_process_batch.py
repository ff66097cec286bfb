"""The batch flow on a real (temporary) Prefect server: validate, then settle exactly once."""

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from prefect import get_client
from prefect.artifacts import Artifact

from flows.process_batch import process_batch
from mlops_cli.scenarios import Corruption, PhaseKind, corrupt, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog, RegisteredDataset
from mlops_core.adapters.landing import LandingZone, QuarantinedOnArrival
from mlops_core.adapters.stack_state import StackState, write_state
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


def test_a_batch_with_an_event_after_its_landing_is_quarantined_with_the_range(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    frame = generate_applications(np.random.default_rng(2), 300, week=1)
    stamps = frame["applied_at"].to_list()
    stamps[7] = datetime(2100, 1, 1)
    frame = frame.with_columns(pl.Series("applied_at", stamps, dtype=frame["applied_at"].dtype))
    sha = land(tmp_path, settings, frame, "future.parquet")
    outcome = process_batch(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.quarantined
    # The reason names the column, the count, the range (up to the landing time + 24 h), and
    # what to do.
    assert "column 'applied_at': implausible timestamp: 1 event time(s)" in outcome.reason
    landed = LandingZone(settings).get("credit", sha).submitted_at
    until = datetime.fromisoformat(landed) + timedelta(hours=24)
    assert f"to {until:%Y-%m-%d %H:%M} UTC" in outcome.reason
    assert "submit the batch again" in outcome.reason


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
    tmp_path, settings: Settings, registered: RegisteredDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from mlflow.tracking import MlflowClient

    scratch = tmp_path / "scratch"  # the flow's temporary folder: the drift plots are drawn here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

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
    assert not list(scratch.glob("mlops-drift-*")), "the plots' folder outlived their logging"

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
    # The drift plots live in the decision run (MLflow serves them), not beside the batches.
    assert folders == {"datasets", "processed", "quarantine"}
    home = s3_settings.home
    stored = ("datasets", "landing", "processed", "quarantine", "reports")
    assert not any((home / part).exists() for part in stored)


def flow_run_of(state):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def report_of(sha256: str) -> str:
    artifact = Artifact.get(f"batch-credit-{sha256[:12]}")
    assert artifact is not None, "the batch's markdown artifact was published"
    return str(artifact.data)


def stored_events(name: str, sha256: str, timeout: float = 30) -> list[dict]:
    """The ``name`` events about ``sha256`` that the Prefect server stored."""
    from prefect.settings import PREFECT_API_URL

    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(
            f"{PREFECT_API_URL.value()}/events/filter",
            json={"filter": {"event": {"name": [name]}}, "limit": 50},
            timeout=10,
        )
        answer.raise_for_status()
        found = [e for e in answer.json()["events"] if e["payload"].get("sha256") == sha256]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_runs_are_named_for_their_file_and_end_in_a_state_named_for_the_outcome(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    write_state(
        settings,
        StackState("http://127.0.0.1:1/api", "http://127.0.0.1:1", "http://127.0.0.1:5999"),
    )
    broken = corrupt(
        generate_applications(np.random.default_rng(2), 300, week=1),
        Corruption.nulls,
        np.random.default_rng(0),
    )
    bad = land(tmp_path, settings, broken, "batch-02-week2.parquet")
    state = process_batch(dataset="credit", sha256=bad, return_state=True)
    assert state.is_completed() and state.name == "Quarantined"
    assert "income" in state.message
    outcome = state.result()  # the flow's value is still what callers get
    assert outcome.state is BatchState.quarantined and outcome.sha256 == bad
    run = flow_run_of(state)
    assert run.name == "credit · batch-02-week2.parquet"
    assert run.state_name == "Quarantined" and "quarantined" in run.tags

    shifted = generate_applications(
        np.random.default_rng(8), 600, week=1, kind=PhaseKind.sudden_shift
    ).drop("default")
    drifted = land(tmp_path, settings, shifted, "batch-03-week3.parquet")
    state = process_batch(dataset="credit", sha256=drifted, return_state=True)
    outcome = state.result()
    assert outcome.drift.is_drift and state.name == "Drift", state.name
    run = flow_run_of(state)
    assert run.name == "credit · batch-03-week3.parquet" and "drift" in run.tags
    assert "quarantined" not in run.tags

    quiet = land(
        tmp_path,
        settings,
        generate_applications(np.random.default_rng(1), 300, week=1),
        "batch-04-week4.parquet",
    )
    state = process_batch(dataset="credit", sha256=quiet, return_state=True)
    assert state.name == "Completed" and flow_run_of(state).tags == []

    report = report_of(drifted)
    run_id = outcome.decision_run_id
    assert "`batch-03-week3.parquet`" in report and "file://" not in report
    assert "p = 0 " not in report and "p-value (Bonferroni over the features)" in report
    # Links from the stack's MLflow UI of now; the plots from the decision run, over HTTP.
    assert "(http://127.0.0.1:5999/#/experiments/" in report
    assert f"/runs/{run_id}?workflowType=machine_learning)" in report
    assert f"/runs/{run_id}/artifacts/report/batch.html?workflowType=machine_learning)" in report
    for plot in ("distributions", "effect_sizes"):
        url = f"http://127.0.0.1:5999/get-artifact?path=drift/{plot}.png&run_uuid={run_id}"
        assert f"]({url})" in report


def test_an_unusable_file_gets_a_run_and_a_quarantine_event_with_its_reason(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    empty = tmp_path / "batch-06-week6.csv"
    empty.write_bytes(b"")
    with pytest.raises(QuarantinedOnArrival) as refused:
        LandingZone(settings).submit(empty, "credit")
    entry = refused.value.entry
    assert entry.state is BatchState.quarantined and "empty" in entry.reason
    state = process_batch(dataset="credit", sha256=entry.sha256, return_state=True)
    assert state.name == "Quarantined" and "empty" in state.message
    outcome = state.result()
    assert outcome.state is BatchState.quarantined and outcome.location == entry.location
    run = flow_run_of(state)
    assert run.name == "credit · batch-06-week6.csv" and "quarantined" in run.tags
    [event] = stored_events("mlops.batch.quarantined", entry.sha256)
    assert "empty" in event["payload"]["reason"] and event["payload"]["stage"] == "submit"
    assert "unusable" in report_of(entry.sha256)
    # Still accounted for once: quarantined with its report, never claimed or moved.
    assert LandingZone(settings).get("credit", entry.sha256) == entry
