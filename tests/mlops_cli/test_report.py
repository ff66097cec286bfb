"""``mlops report`` and the timeline task on batches that went through the real batch flow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from live import first_champion
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.process_batch import process_batch
from flows.process_labels import process_labels
from mlops_cli.main import app
from mlops_cli.scenarios import Corruption, PhaseKind, corrupt, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.timeline_source import load_batch, load_timeline
from mlops_core.batches import BatchState
from mlops_core.settings import Settings
from mlops_core.timeline import batch_html
from tasks.timeline import publish_timeline, timeline_key

runner = CliRunner()


def _land(tmp_path, settings: Settings, frame, name: str) -> str:
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return LandingZone(settings).submit(path, "credit").entry.sha256


@pytest.fixture
def processed(
    tmp_path, registered: RegisteredDataset, prefect_api, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """A champion, then three batches through the batch flow: clean, shifted, corrupted."""
    # Fewer permutations and boosting rounds: the verdicts below stay clear, the test stays short.
    monkeypatch.setenv("MLOPS_DRIFT_PERMUTATIONS", "200")
    monkeypatch.setenv("MLOPS_TRAIN_MAX_ITER", "40")
    settings = Settings()
    first_champion(settings)
    batches = {
        "week-01-clean.parquet": generate_applications(np.random.default_rng(1), 400, week=1),
        "week-02-shifted.csv": generate_applications(
            np.random.default_rng(4), 500, week=2, kind=PhaseKind.sudden_shift
        ).drop("default"),
        "week-03-<broken>.parquet": corrupt(
            generate_applications(np.random.default_rng(2), 300, week=3),
            Corruption.nulls,
            np.random.default_rng(0),
        ),
    }
    outcomes = {}
    for name, frame in batches.items():
        outcomes[name] = process_batch(
            dataset="credit", sha256=_land(tmp_path, settings, frame, name)
        )
    return outcomes


def test_the_timeline_report_and_task_show_each_processed_batch_once(
    tmp_path, settings: Settings, processed: dict
) -> None:
    ctx = DatasetContext.open(settings, "credit")
    timeline = load_timeline(ctx)
    assert [row.file_name for row in timeline.rows] == list(processed)
    clean, shifted, broken = timeline.rows
    assert clean.verdict == "passed" and clean.observed is not None and clean.estimated is not None
    assert clean.observed.low <= clean.observed.value <= clean.observed.high
    assert shifted.drift is not None and shifted.drift.is_drift and shifted.observed is None
    assert shifted.plots, "the drift plots of the decision run come with the row"
    assert broken.quarantined and broken.outcome == "quarantined" and broken.drift is None
    assert broken.validation is not None and broken.validation.failures
    assert broken.champion_text() == clean.champion_text() != "-"
    records = timeline.records()
    assert records[2]["validation"] == "failed" and records[2]["outcome"] == "quarantined"
    assert records[1]["drift p"] == "< 0.001"

    page = tmp_path / "out" / "credit.html"
    result = runner.invoke(app, ["report", "--dataset", "credit", "--html", str(page), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [b["file"] for b in payload["batches"]] == list(processed)
    assert [b["state"] for b in payload["batches"]] == ["processed", "processed", "quarantined"]
    text = page.read_text(encoding="utf-8")
    assert "week-03-&lt;broken&gt;.parquet" in text and "<broken>" not in text
    assert text.count("data:image/png;base64,") >= 3  # the timeline and the shifted batch's plots
    assert f'id="batch-{shifted.sha256[:12]}"' in text

    table = runner.invoke(app, ["report", "--dataset", "credit"])
    assert table.exit_code == 0, table.output
    assert "week-02" in table.output and "quarantined" in table.output

    # The task: one Prefect artifact key per dataset, versioned; the pages on the decision run.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    clean = processed["week-01-clean.parquet"]
    first = publish_timeline(ctx, clean.sha256, clean.decision_run_id)
    assert first is not None and first.artifact_key == timeline_key("credit") == "timeline-credit"
    assert first.batches == 3
    shifted = processed["week-02-shifted.csv"]
    publish_timeline(ctx, shifted.sha256, shifted.decision_run_id)

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    logged = {a.path for a in client.list_artifacts(shifted.decision_run_id, "report")}
    assert logged == {"report/timeline.html", "report/timeline.png", "report/batch.html"}
    page = client.download_artifacts(shifted.decision_run_id, "report/batch.html")
    text = Path(page).read_text(encoding="utf-8")
    assert "week-02-shifted.csv" in text and "week-01-clean.parquet" not in text
    assert "Bonferroni-adjusted" in text and "Holm-adjusted" in text
    with get_client(sync_client=True) as prefect:
        versions = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["timeline-credit"]))
        )
    # Each batch's flow run published it once (3), then the two calls above: 5 versions, 1 key.
    # (The Prefect test server is shared by the session: other tests' versions are left out.)
    ours = set(processed)
    rows = [json.loads(v.data) if isinstance(v.data, str) else v.data for v in versions]
    rows = [r for r in rows if r and {record["file"] for record in r} <= ours]
    assert len(rows) == 5, "one key per dataset: Prefect keeps each publication as a version"
    assert sorted(len(r) for r in rows) == [1, 2, 3, 3, 3], (
        "the flows' versions grow batch by batch"
    )

    # A burst: while another batch of the dataset is in flight, a batch logs its own page only
    # and leaves the dataset's timeline to the last of them to settle (no new version).
    in_flight = _land(
        tmp_path, settings, generate_applications(np.random.default_rng(9), 200, week=4), "w4.csv"
    )
    deferred = publish_timeline(ctx, shifted.sha256, shifted.decision_run_id)
    assert deferred is not None and deferred.deferred, "another batch is landed: deferred"
    assert deferred.mlflow_paths == ("report/batch.html",)
    # Its page is read from its own row alone (not the dataset's history), and shows the same.
    alone = load_batch(ctx, shifted.sha256)
    assert [row.file_name for row in alone.rows] == ["week-02-shifted.csv"]
    assert alone.rows[0].plots and alone.records() == [load_timeline(ctx).records()[1]]
    assert batch_html(alone, shifted.sha256) == batch_html(load_timeline(ctx), shifted.sha256)
    page = client.download_artifacts(shifted.decision_run_id, "report/batch.html")
    text = Path(page).read_text(encoding="utf-8")
    assert "week-02-shifted.csv" in text and "Holm-adjusted" in text
    assert "data:image/png;base64," in text, "the batch's drift plots are on its page"
    with get_client(sync_client=True) as prefect:
        after = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["timeline-credit"]))
        )
    assert len(after) == len(versions), "no timeline version while a batch is in flight"
    zone = LandingZone(settings)
    zone.claim("credit", in_flight)
    zone.settle("credit", in_flight, BatchState.quarantined, {}, reason="settled by the test")
    published = publish_timeline(ctx, shifted.sha256, shifted.decision_run_id)
    assert published is not None and not published.deferred and published.batches == 4

    # The shifted batch's labels arrive later: its row now shows the accuracy they observed.
    truth = generate_applications(
        np.random.default_rng(4), 500, week=2, kind=PhaseKind.sudden_shift
    )
    labels_file = tmp_path / "labels-02.csv"
    truth.select("application_id", "default").write_csv(labels_file)
    labelled = LandingZone(settings, "labels").submit(labels_file, "credit").entry.sha256
    process_labels(dataset="credit", sha256=labelled)
    later = load_timeline(ctx, plots=False).row(shifted.sha256)
    assert later.labels is not None and later.labels.file_name == "labels-02.csv"
    assert later.observed is not None and later.observed.rows > 0
    assert "labels: " in later.decisions
    # Its Prefect artifact is published once the labels' decision was carried out.
    with get_client(sync_client=True) as prefect:
        found = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"labels-credit-{labelled[:12]}"])
            )
        )
    assert len(found) == 1 and "labels-02.csv" in str(found[0].data)
    if later.labels.action == "retrain":
        assert "**Retrain:**" in str(found[0].data) and "not carried out" not in str(found[0].data)


def test_report_of_an_unknown_dataset_or_one_without_batches_is_a_clear_error(
    settings: Settings, registered: RegisteredDataset
) -> None:
    unknown = runner.invoke(app, ["report", "--dataset", "fraud"])
    assert unknown.exit_code == 2 and "not registered" in unknown.output
    assert "Traceback" not in unknown.output
    empty = runner.invoke(app, ["report", "--dataset", "credit"])
    assert empty.exit_code != 0 and "no batches yet" in empty.output
    assert "mlops submit" in empty.output
