"""Reconcile and the labels flow as plain flow calls (Prefect's test harness, real MLflow/GX)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prefect.concurrency.sync import concurrency
from prefect.settings import PREFECT_API_URL

from flows.process_labels import process_labels
from flows.reconcile import reconcile
from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_cli.scenarios import PhaseKind, generate_applications
from mlops_core.adapters.audit import record_manual
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.adapters.retrain_claims import RetrainClaims
from mlops_core.batches import BatchState
from mlops_core.challenger import retrain_limit_name
from mlops_core.settings import Settings
from tasks.retrain import ensure_retrain_limit

pytestmark = pytest.mark.usefixtures("prefect_api")


def killed_at(point: str, code: str) -> None:
    """Run ``code`` in a Python process of its own, on this test's Prefect API, and check that
    it SIGKILLed itself at fail point ``point``."""
    killed = subprocess.run(
        [sys.executable, "-c", code],
        env={
            **os.environ,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "MLOPS_FAILPOINTS": f"{point}=kill",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def test_reconcile_processes_missed_and_crashed_batches_exactly_once(
    tmp_path, settings: Settings, registered: RegisteredDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = LandingZone(settings)
    shas = []
    for i in range(2):
        path = tmp_path / f"b{i}.parquet"
        generate_applications(np.random.default_rng(i), 300, week=1).write_parquet(path)
        shas.append(zone.submit(path, "credit").entry.sha256)
    zone.claim("credit", shas[1])  # a run claimed it, then crashed
    fresh = reconcile(dataset="credit")
    assert [d["sha256"] for d in fresh] == [shas[0]], "a fresh claim is left to its run"
    monkeypatch.setenv("MLOPS_RECONCILE_STALE_SECONDS", "0")
    stale = reconcile(dataset="credit")
    assert [d["sha256"] for d in stale] == [shas[1]] and stale[0]["state"] == "processed"
    assert reconcile(dataset="all") == [], "nothing twice"
    assert {e.state for e in zone.entries("credit")} == {BatchState.processed}


def test_labels_are_joined_to_their_batch_and_bad_labels_quarantined(
    tmp_path, settings: Settings, registered: RegisteredDataset
) -> None:
    frame = generate_applications(np.random.default_rng(7), 400, week=1)
    batch = tmp_path / "batch.parquet"
    frame.drop("default").write_parquet(batch)
    zone, labels_zone = LandingZone(settings), LandingZone(settings, "labels")
    zone.submit(batch, "credit")
    reconcile(dataset="credit")

    good = tmp_path / "labels.csv"
    frame.select("application_id", "default").head(300).write_csv(good)
    sha = labels_zone.submit(good, "credit").entry.sha256
    outcome = process_labels(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.processed
    report = json.loads(Path(outcome.location).with_name(f"{sha}.report.json").read_text())
    assert report["detail"]["labels"]["matched_rows"] == 300
    assert Path(outcome.location).parent == (settings.processed_dir / "credit" / "labels").resolve()

    bad = tmp_path / "no-label.csv"
    frame.select("application_id").write_csv(bad)
    bad_sha = labels_zone.submit(bad, "credit").entry.sha256
    refused = process_labels(dataset="credit", sha256=bad_sha)
    assert refused.state is BatchState.quarantined and "'default'" in refused.reason
    again = process_labels(dataset="credit", sha256=bad_sha)
    assert again.already_settled

    from mlops_core.adapters.context import DatasetContext
    from mlops_core.labels import attach_labels

    known = DatasetContext.open(settings, "credit").history.known_labels()
    joined = attach_labels(frame.drop("default"), known, registered.spec)
    assert joined["default"].null_count() == 100
    assert (
        joined.filter(pl.col("default").is_not_null())["default"].to_list()
        == frame["default"].head(300).to_list()
    )


def test_reconcile_carries_out_once_a_retrain_whose_worker_was_killed_inside_it(
    settings: Settings, registered: RegisteredDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(settings, "credit")
    decision = record_manual(registry, "retrain", reason="first model", before={})
    # The gated subflow, in a process of its own, SIGKILLed once it claimed the retrain: after
    # its batch was settled and its decision recorded, before any outcome. (Killed later, inside
    # the dataset's retrain concurrency slot, the slot is Prefect's until its lease expires --
    # 300 s -- and the resumed run waits for it.)
    killed_at(
        "retrain-claimed",
        "from flows.retrain_evaluate_deploy import retrain_evaluate_deploy as r; "
        f"r(dataset='credit', decision_run_id='{decision}')",
    )
    claims = RetrainClaims(settings)
    left = claims.get("credit", decision)
    assert left is not None and left.state == "running" and left.attempts == 1
    assert "mlops.retrain" not in registry.run_tags(decision)

    assert reconcile(dataset="credit") == [], "a claim younger than the stale time is its run's"
    monkeypatch.setenv("MLOPS_RECONCILE_STALE_SECONDS", "0")
    (resumed,) = reconcile(dataset="credit")
    assert resumed["kind"] == "retrain" and resumed["decision_run"] == decision
    assert resumed["attempt"] == 2 and resumed["state"] == "promoted"
    assert registry.run_tags(decision)["mlops.retrain"] == "promoted"
    assert set(registry.aliases()) == {"champion"}
    assert claims.get("credit", decision).state == "done"  # type: ignore[union-attr]
    assert reconcile(dataset="all") == [], "never twice"
    assert len(registry.training_runs()) == 1, "one training: the killed run trained nothing"


def test_reconcile_carries_out_once_a_retrain_whose_batch_run_died_before_claiming_it(
    settings: Settings,
    registered: RegisteredDataset,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(settings, "credit")
    first = retrain_evaluate_deploy(dataset="credit")
    frame = generate_applications(
        np.random.default_rng(21), 3_000, week=20, kind=PhaseKind.concept_drift
    )
    frame.write_parquet(tmp_path / "concept.parquet")
    zone = LandingZone(settings)
    sha = zone.submit(tmp_path / "concept.parquet", "credit").entry.sha256
    # The batch flow in a process of its own, SIGKILLed once the batch is settled with its
    # decision (retrain) recorded: before the gated subflow could claim the retrain.
    killed_at(
        "batch-settled",
        f"from flows.process_batch import process_batch as p; p(dataset='credit', sha256='{sha}')",
    )
    assert zone.get("credit", sha).state is BatchState.processed  # type: ignore[union-attr]
    claims = RetrainClaims(settings)
    (requested,) = claims.running("credit")
    assert requested.state == "requested" and requested.batch_sha256 == sha
    decision = requested.decision_run_id
    tags = registry.run_tags(decision)
    assert tags["mlops.decision"] == "retrain" and "mlops.retrain" not in tags
    assert len(registry.training_runs()) == 1, "nothing trained yet but the first champion"

    assert reconcile(dataset="credit") == [], "a request younger than the stale time waits"
    # Stale after 2 s (beats every second). The sweep takes the request over; its subflow then
    # waits for the dataset's retrain slot, held here, and its claim must beat while it waits, or
    # a second sweep would take a live retrain over and train twice.
    monkeypatch.setenv("MLOPS_RECONCILE_STALE_SECONDS", "2")
    while time.time() - requested.beat_at <= 2:
        time.sleep(0.1)
    ensure_retrain_limit.fn("credit")
    swept: list[list[dict[str, object]]] = []
    with concurrency(retrain_limit_name("credit"), occupy=1):
        sweep = threading.Thread(target=lambda: swept.append(reconcile(dataset="credit")))
        sweep.start()
        deadline = time.monotonic() + 120
        while (claim := claims.get("credit", decision)) is None or claim.state != "running":
            assert time.monotonic() < deadline and sweep.is_alive(), "the sweep took nothing"
            time.sleep(0.1)
        taken_at = claim.beat_at
        while (waiting := claims.get("credit", decision)) is None or waiting.beat_at < taken_at + 3:
            assert time.monotonic() < deadline, "a retrain waiting for its slot does not beat"
            time.sleep(0.1)
        assert waiting.state == "running" and waiting.attempts == 1
        assert (
            claims.take_over("credit", decision, sha, stale_after_seconds=2, max_attempts=3) is None
        ), "a second sweep leaves a waiting retrain to its run"
        assert sweep.is_alive() and len(registry.training_runs()) == 1, "it waits for the slot"
    sweep.join(timeout=300)
    (resumed,) = swept[0]
    assert resumed["kind"] == "retrain" and resumed["decision_run"] == decision
    assert resumed["sha256"] == sha and resumed["attempt"] == 1
    assert resumed["state"] == "promoted", resumed
    assert registry.run_tags(decision)["mlops.retrain"] == "promoted"
    assert registry.aliases()["previous"] == first.version
    assert claims.get("credit", decision).state == "done"  # type: ignore[union-attr]
    assert reconcile(dataset="all") == [], "never twice"
    assert len(registry.training_runs()) == 2, "one retrain for the decision"
