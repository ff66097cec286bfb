"""Decision runs in MLflow (SQLite in a temporary folder): tags, evidence, markdown, order."""

from datetime import timedelta

from mlops_core.adapters.audit import (
    decision_markdown,
    note_retrain,
    readable_duration,
    recent_decisions,
    record_decision,
)
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.policy import Evidence, decide
from mlops_core.settings import Settings


def test_decisions_are_runs_with_reasons_and_evidence(settings: Settings) -> None:
    quiet = decide(Evidence(validation_passed=True))
    degraded = decide(
        Evidence(
            validation_passed=True,
            reference_accuracy=0.85,
            observed_accuracy=0.7,
            observed_degraded=True,
            labelled_rows=5_000,
            since_last_retrain=timedelta(days=2),
        )
    )
    first = record_decision(ModelRegistry(settings, "credit"), quiet, batch_sha256="a" * 64)
    second = record_decision(
        ModelRegistry(settings, "credit"),
        degraded,
        batch_sha256="b" * 64,
        artifacts={"drift.json": "{}"},
    )
    records = recent_decisions(ModelRegistry(settings, "credit"))
    assert [r.run_id for r in records] == [second, first]
    assert [r.action for r in records] == ["retrain", "none"]
    assert records[0].batch_sha256 == "b" * 64 and "observed accuracy 70.0%" in records[0].reasons

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run = client.get_run(second)
    assert (
        run.data.tags["mlops.run_type"] == "decision"
        and run.data.tags["mlops.decision"] == "retrain"
    )
    assert run.data.metrics["observed_accuracy"] == 0.7 and "expected_benefit" in run.data.metrics
    assert run.info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(second)}
    assert {"decision.md", "drift.json"} <= names


def test_markdown_reads_like_a_record() -> None:
    text = decision_markdown(decide(Evidence(validation_passed=False)), "c" * 64)
    assert text.startswith("# Decision: none") and "failed validation" in text and "```json" in text


def test_no_experiment_means_no_decisions(settings: Settings) -> None:
    assert recent_decisions(ModelRegistry(settings, "credit")) == []


def test_a_keyed_decision_is_recorded_once_and_half_written_runs_are_closed(
    settings: Settings,
) -> None:
    from mlflow.tracking import MlflowClient

    decision = decide(Evidence(validation_passed=True, drift=True))
    registry = ModelRegistry(settings, "credit")
    # What a crash leaves: a decision run created under the key, never terminated.
    orphan = registry.client.create_run(
        registry.experiment_id(), tags={"mlops.decision_key": "batch:" + "f" * 64}
    ).info.run_id
    first = record_decision(
        ModelRegistry(settings, "credit"), decision, batch_sha256="f" * 64, key="batch:" + "f" * 64
    )
    again = record_decision(
        ModelRegistry(settings, "credit"), decision, batch_sha256="f" * 64, key="batch:" + "f" * 64
    )
    other = record_decision(
        ModelRegistry(settings, "credit"), decision, batch_sha256="e" * 64, key="batch:" + "e" * 64
    )
    assert again == first and other != first
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(orphan).data.tags["mlops.superseded"] == "true"
    assert [d.run_id for d in recent_decisions(ModelRegistry(settings, "credit"))] == [other, first]


def test_decision_runs_say_what_happened_to_which_file(settings: Settings) -> None:
    """Named for the file and the outcome, described in MLflow's note, durations readable."""
    registry = ModelRegistry(settings, "credit")
    drifted = decide(
        Evidence(
            validation_passed=True,
            drift=True,
            reference_accuracy=0.85,
            observed_accuracy=0.7,
            observed_degraded=True,
            labelled_rows=5_000,
            since_last_retrain=timedelta(days=63, seconds=35),
        )
    )
    assert drifted.action.value == "retrain"
    run_id = record_decision(
        registry, drifted, batch_sha256="a" * 64, original_name="batch-19-week19.csv"
    )
    bad = record_decision(
        registry,
        decide(Evidence(validation_passed=False)),
        batch_sha256="b" * 64,
        original_name="batch-06-week06.csv",
    )
    quiet = record_decision(
        registry, decide(Evidence(validation_passed=True)), batch_sha256="c" * 64
    )
    client = registry.client
    run = client.get_run(run_id)
    assert run.info.run_name == "batch-19-week19.csv · drift, degraded, retrain"
    assert client.get_run(bad).info.run_name == "batch-06-week06.csv · quarantined"
    assert client.get_run(quiet).info.run_name == f"batch-{'c' * 12} · quiet"
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**retrain**") and "`batch-19-week19.csv`" in note
    assert "observed accuracy 70.0%" in note
    assert run.data.params["since_last_retrain"] == "63 d 0 h"
    assert abs(run.data.metrics["since_last_retrain_hours"] - (63 * 24 + 35 / 3600)) < 1e-6

    note_retrain(registry, run_id, "refused", "the challenger lost on the recent rows")
    note_retrain(registry, run_id, "refused", "the challenger lost on the recent rows")
    again = client.get_run(run_id)
    assert again.info.run_name == "batch-19-week19.csv · drift, degraded, retrain → refused"
    assert again.data.tags["mlflow.note.content"].count("**Retrain refused**") == 1


def test_durations_read_like_a_person_says_them() -> None:
    assert readable_duration(timedelta(days=63, seconds=35)) == "63 d 0 h"
    assert readable_duration(timedelta(hours=5, minutes=12)) == "5 h 12 min"
    assert readable_duration(timedelta(seconds=40)) == "40 s"
    assert readable_duration(timedelta(minutes=3, seconds=2)) == "3 min 2 s"
