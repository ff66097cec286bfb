"""The prediction log never loses a row: a landing that fails is retried, then its rows wait in
the dead-letter folder, counted, until ``mlops logs resubmit`` lands them.

The store fails for real: ``MLOPS_STORE_URL`` names a folder under a regular file, so every
landing's ``mkdir`` fails (a read-only folder would not stop root). The dataset is registered
once per module in a store of its own (building its expectation suite is the slow part); each
test has its own home (ledger, dead-letter folder) on that store.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.serving import dead_letter
from mlops_core.serving.metrics import ServerMetrics
from mlops_core.serving.records import LogWriter
from mlops_core.settings import Settings

runner = CliRunner()
SENT = 25


def logged_rows(n: int) -> list[dict[str, Any]]:
    """Prediction-log rows as the server writes them: ids of both JSON types, UTC datetimes."""
    served = datetime(2024, 5, 1, 12, tzinfo=UTC)
    return [
        {
            "application_id": i if i % 2 else f"req-{i}",  # a client's integer ids among ours
            "applied_at": served - timedelta(minutes=i),
            "income": 1000.0 + i,
            "purpose": "car" if i % 3 else None,
            "prediction": i % 2,
            "probability": 0.25,
            "request_id": "req",
            "served_at": served,
        }
        for i in range(n)
    ]


def spilled_total(metrics: ServerMetrics, kind: str = "batch") -> float:
    value = metrics.registry.get_sample_value("mlops_log_rows_spilled_total", {"kind": kind})
    return float(value or 0.0)


def wait_for_dead_letters(current: Settings, seconds: float = 20) -> list[Path]:
    deadline = time.monotonic() + seconds
    while not dead_letter.files(current) and time.monotonic() < deadline:
        time.sleep(0.02)
    return dead_letter.files(current)


@pytest.fixture(scope="module")
def credit_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store where the credit dataset is registered (from a small reference)."""
    root = tmp_path_factory.mktemp("spill-store")
    reference = root / "reference.parquet"
    generate_applications(np.random.default_rng(0), 300).write_parquet(reference)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLOPS_HOME", str(root / "home"))
        env.setenv("MLOPS_GX_DIR", str(root / "great_expectations"))
        env.setenv("MLOPS_STORE_URL", str(root / "store"))
        DatasetCatalog(Settings()).add(CREDIT_SPEC, reference)
    return root / "store"


@pytest.fixture
def good_store(settings: Settings, credit_store: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """This test's home, on the store where credit is registered."""
    monkeypatch.setenv("MLOPS_STORE_URL", str(credit_store))
    return Settings()


@pytest.fixture
def broken_store(good_store: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose store is a folder under a regular file, fast retries, 25-row batches."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the store's folder should be")
    monkeypatch.setenv("MLOPS_STORE_URL", str(blocker / "store"))
    monkeypatch.setenv("MLOPS_SERVE_LOG_ROWS", str(SENT))
    monkeypatch.setenv("MLOPS_SERVE_LOG_RETRY_SECONDS", "0.01")
    return Settings()


def test_a_failing_store_spills_every_row_and_resubmit_lands_them(
    broken_store: Settings, credit_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = ServerMetrics()
    writer = LogWriter(broken_store, "credit", metrics)
    writer.start()
    try:
        sent = logged_rows(SENT)
        writer.predictions(sent)  # a full buffer: the writer's thread tries, retries, spills
        files = wait_for_dead_letters(broken_store)
    finally:
        writer.stop()
    assert len(files) == 1, files
    name = files[0].name
    assert name.startswith("batch-") and name.endswith(".jsonl")
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(lines) == SENT, "every row sent is in the dead-letter file"
    assert {line["dataset"] for line in lines} == {"credit"}
    assert "could not be copied into the landing zone" in lines[0]["reason"]
    # Kept as they were: integer ids stay integers, strings strings, nulls nulls.
    assert [line["row"]["application_id"] for line in lines] == [r["application_id"] for r in sent]
    assert lines[3]["row"]["purpose"] is None
    assert spilled_total(metrics) == SENT
    failures = metrics.registry.get_sample_value(
        "mlops_log_flush_failures_total", {"kind": "batch"}
    )
    assert failures == broken_store.serve_log_attempts
    assert LandingZone(broken_store).entries("credit") == []

    # Still broken: the rows wait, saying why, and nothing moves.
    stuck = runner.invoke(app, ["logs", "resubmit"])
    assert stuck.exit_code == 1, stuck.output
    assert f"{SENT} rows wait" in stuck.output and "Traceback" not in stuck.output
    assert dead_letter.files(broken_store) == files

    # The store is back: a dry run changes nothing, then resubmit lands every row.
    monkeypatch.setenv("MLOPS_STORE_URL", str(credit_store))
    fixed = Settings()
    dry = runner.invoke(app, ["logs", "resubmit", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"{SENT} of {SENT} rows would land" in dry.output
    assert dead_letter.files(fixed) == files and LandingZone(fixed).entries("credit") == []

    result = runner.invoke(app, ["logs", "resubmit"])
    assert result.exit_code == 0, result.output
    assert f"{SENT} of {SENT} rows landed" in result.output
    entries = LandingZone(fixed).entries("credit")
    assert len(entries) == 1 and entries[0].original_name.startswith("served-batch")
    landed = pl.read_parquet(entries[0].location)
    assert landed.height == SENT
    assert landed["application_id"].to_list() == [str(r["application_id"]) for r in sent]
    assert landed.schema["applied_at"] == pl.Datetime("us", "UTC"), "datetimes come back"
    assert landed["served_at"].to_list() == [r["served_at"] for r in sent]
    assert dead_letter.files(fixed) == []
    assert (dead_letter.done_dir(fixed) / name).is_file(), "the finished file moved to done/"

    again = runner.invoke(app, ["logs", "resubmit"])
    assert again.exit_code == 0 and "nothing to resubmit" in again.output


def test_one_bad_row_waits_with_its_reason_and_the_others_land(good_store: Settings) -> None:
    current = good_store
    metrics = ServerMetrics()
    writer = LogWriter(current, "credit", metrics)
    rows = logged_rows(10)
    rows[4]["applied_at"] = 12.5  # what a request could once pass through to the log
    writer.predictions(rows)
    location = writer.flush("batch")
    assert location is not None, "the nine good rows land"
    assert pl.read_parquet(location).height == 9
    assert spilled_total(metrics) == 1
    [waiting] = dead_letter.files(current)
    [line] = [json.loads(text) for text in waiting.read_text().splitlines()]
    assert line["row"]["applied_at"] == 12.5, "the row is kept as it was"
    assert line["reason"].startswith("applied_at: 12.5 (float)")

    # Alone it would make a table, but 12.5 is no event time: it keeps waiting, and says why.
    result = runner.invoke(app, ["logs", "resubmit", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["waiting"] == 1 and report["files"][0]["landed"] == 0
    [reason] = report["files"][0]["waiting"]
    assert reason.startswith("applied_at: expected an ISO 8601 timestamp") and "12.5" in reason
    assert dead_letter.files(current) == [waiting], "nothing landed: the file stays"
    assert json.loads(waiting.read_text())["reason"] == reason
    assert len(LandingZone(current).entries("credit")) == 1


def test_a_dead_letter_file_with_a_broken_line_keeps_it_and_lands_the_rest(
    good_store: Settings,
) -> None:
    settings = good_store
    folder = dead_letter.dead_letter_dir(settings)
    folder.mkdir(parents=True)
    good = [
        dead_letter.encode("credit", "labels", {"application_id": f"r-{i}", "default": i % 2}, "x")
        for i in range(3)
    ]
    path = folder / "labels-20240501T120000000000Z-1.jsonl"
    path.write_text("\n".join([good[0], '{"cut short', *good[1:]]) + "\n")
    result = runner.invoke(app, ["logs", "resubmit"])
    assert result.exit_code == 1, result.output
    assert "3 of 4 rows landed" in result.output and "1 row waits: not a JSON line" in result.output
    [kept] = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept["line"] == '{"cut short' and kept["reason"].startswith("not a JSON line")
    done = dead_letter.done_dir(settings) / path.name
    assert len(done.read_text().splitlines()) == 3
    [entry] = LandingZone(settings, "labels").entries("credit")
    assert pl.read_parquet(entry.location)["application_id"].to_list() == ["r-0", "r-1", "r-2"]
