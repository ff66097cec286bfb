"""``mlops status``: registered datasets, their model roles and latest decisions."""

import json

from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_core.adapters.audit import record_decision
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import BatchState, failure_reason
from mlops_core.policy import Evidence, decide
from mlops_core.settings import Settings

runner = CliRunner()


def test_status_lists_datasets_models_and_decisions(
    settings: Settings, registered: RegisteredDataset
) -> None:
    empty = runner.invoke(app, ["status", "--json"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == [
        {
            "dataset": "credit",
            "models": {},
            "metrics": {},
            "rollout": {},
            "batches": [],
            "decisions": [],
            "unfinished": [],
        }
    ]
    record_decision(
        ModelRegistry(settings, "credit"),
        decide(Evidence(validation_passed=True, drift=True)),
        batch_sha256="d" * 64,
    )
    text = runner.invoke(app, ["status", "--dataset", "credit"])
    assert text.exit_code == 0, text.output
    assert (
        "credit: no model yet" in text.output
        and "watch" in text.output
        and "dddddddddddd" in text.output
    )


def test_status_of_an_unknown_dataset_is_an_error(
    settings: Settings, registered: RegisteredDataset
) -> None:
    result = runner.invoke(app, ["status", "--dataset", "fraud"])
    assert result.exit_code == 2 and "not registered" in result.output


def test_status_lists_unfinished_batches_with_the_failure_reason(
    settings: Settings, registered: RegisteredDataset, stream
) -> None:
    zone = LandingZone(settings)
    sha = zone.submit(stream.batches[0].path, "credit").entry.sha256
    zone.claim("credit", sha)
    zone.fail("credit", sha, failure_reason(ConnectionError("MLflow at 127.0.0.1:5000 refused")))
    text = runner.invoke(app, ["status", "--dataset", "credit"])
    assert text.exit_code == 0, text.output
    assert f"failed   batch {sha[:12]}" in text.output
    assert "MLflow at 127.0.0.1:5000 refused" in text.output
    assert "mlops reconcile" in text.output


def test_status_shows_each_batch_once_with_file_outcome_time_and_both_accuracies(
    settings: Settings, registered: RegisteredDataset, stream
) -> None:
    """A batch decided on arrival (an estimate) and again when its labels came (an observation)
    is one row: its file, outcome, time, the estimate and the observation."""
    from datetime import timedelta

    zone = LandingZone(settings)
    week = stream.batches[1]
    sha = zone.submit(week.path, "credit").entry.sha256
    zone.claim("credit", sha)
    zone.settle("credit", sha, BatchState.processed, {})
    registry = ModelRegistry(settings, "credit")
    arrival = decide(
        Evidence(
            validation_passed=True,
            drift=True,
            reference_accuracy=0.85,
            estimated_accuracy=0.83,
            estimated_ci_high=0.86,
        )
    )
    record_decision(
        registry, arrival, batch_sha256=sha, original_name=week.path.name, key=f"batch:{sha}"
    )
    labelled = decide(
        Evidence(
            validation_passed=True,
            reference_accuracy=0.85,
            observed_accuracy=0.62,
            observed_degraded=True,
            labelled_rows=2_000,
            since_last_retrain=timedelta(days=3),
        )
    )
    record_decision(
        registry,
        labelled,
        batch_sha256="f" * 64,
        original_name="labels-week01.csv",
        kind="labels",
        key="labels:" + "f" * 64,
        extra_tags={"mlops.labels_for": sha[:12]},
    )
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)[0]
    assert [b["file"] for b in status["batches"]] == [week.path.name]
    row = status["batches"][0]
    assert row["outcome"] == "drift, watch" and row["estimated_accuracy"] == 0.83
    assert row["observed_accuracy"] == 0.62 and row["labels_decision"] == "retrain"
    text = runner.invoke(app, ["status", "--dataset", "credit"]).output
    assert text.count(week.path.name) == 1, text
    assert "drift, watch" in text and "estimated accuracy 83.0%" in text
    assert "observed 62.0% on 2,000 labelled rows once labelled" in text
    assert "labels: retrain" in text and sha[:12] not in text
