"""The event-driven stack for real: `mlops up` as a process (a Prefect server process, the served
deployments, automations, the watcher), driven by `mlops submit`, events and dropped files."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live import first_champion
from mlflow.tracking import MlflowClient
from stackproc import MLOPS, StackProcess, wait

from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import BatchState
from mlops_core.settings import Settings

PROMETHEUS = shutil.which("prometheus")
DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    root = tmp_path_factory.mktemp("stack")
    reference = root / "reference.parquet"
    generate_applications(np.random.default_rng(0), 10_000).write_parquet(reference)
    env = {
        **os.environ,
        "MLOPS_HOME": str(root / "home"),
        "MLOPS_GX_DIR": str(root / "gx"),
        "MLOPS_PREFECT_PORT": "0",
        "MLOPS_RECONCILE_INTERVAL_SECONDS": "5",
        "MLOPS_RECONCILE_STALE_SECONDS": "600",
    }
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)  # the stack's Prefect home goes under MLOPS_HOME
    settings = Settings(home=root / "home", gx_dir=root / "gx")
    DatasetCatalog(settings).add(CREDIT_SPEC, reference)
    first_champion(settings)
    # With Prometheus where it is installed (.ci/system-packages installs it; the test that
    # needs it says so when it is missing).
    running = StackProcess(env, settings, *(["--prometheus"] if PROMETHEUS else []))
    yield running
    output = running.stop()  # every process the stack started is gone
    assert running.process.returncode == 0, output
    assert "stopped: no process left behind" in output
    assert not settings.stack_file.exists()


def write_batch(tmp_path: Path, name: str, seed: int, **kind: Any) -> Path:
    path = tmp_path / name
    generate_applications(np.random.default_rng(seed), 500, week=1, **kind).drop(
        "default"
    ).write_parquet(path)
    return path


def test_up_reports_its_parts_and_refuses_a_second_stack(stack: StackProcess) -> None:
    assert stack.api.startswith("http://127.0.0.1:")
    parts = {"prefect-server", "deployments", "exporter"} | (
        {"prometheus"} if PROMETHEUS else set()
    )
    assert set(stack.state["pids"]) == parts
    second = stack.mlops("up")
    assert second.returncode == 2 and "already running" in second.stderr


def test_submit_triggers_process_batch_and_the_decision_is_in_mlflow(
    stack: StackProcess, tmp_path: Path
) -> None:
    path = write_batch(tmp_path, "arrived.parquet", 1)
    done = stack.mlops("submit", str(path), "--dataset", "credit", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["announced"] == stack.api
    entry = wait(lambda: stack.settled(answer["sha256"]), 120, "the triggered batch flow")
    assert entry.state is BatchState.processed
    detail = stack.report(entry)
    run = MlflowClient(tracking_uri=stack.settings.tracking_uri).get_run(detail["decision_run_id"])
    assert run.data.tags["mlops.batch_sha256"] == answer["sha256"]
    assert run.data.tags["mlops.decision"] == detail["decision"]["action"]
    # The triggered run exists (the scheduled reconcile may also have raced it to the claim:
    # then one of the two found the batch settled).
    triggered = wait(
        lambda: [
            r
            for r in stack.runs_of(answer["sha256"])
            if r.deployment_id is not None and "sha256" in r.parameters
        ],
        30,
        "the run started by the deployment's trigger",
    )
    assert triggered[0].parameters == {"dataset": "credit", "sha256": answer["sha256"]}


def test_the_same_event_twice_processes_the_batch_once(stack: StackProcess, tmp_path: Path) -> None:
    path = write_batch(tmp_path, "twice.parquet", 2)
    entry = LandingZone(stack.settings).submit(path, "credit").entry
    stack.announce(entry)
    stack.announce(entry)

    def all_done() -> bool:
        # The two triggered runs and the run that acts on the batch (``act``): all of them
        # final, and the batch settled (two final runs alone could be the triggered ones, with
        # the acting run still settling the batch).
        runs = [r for r in stack.runs_of(entry.sha256) if "sha256" in r.parameters]
        triggered = [r for r in runs if not r.parameters.get("act")]
        return (
            len(triggered) == 2
            and all(r.state and r.state.is_final() for r in runs)
            and stack.settled(entry.sha256) is not None
        )

    wait(all_done, 120, "both triggered runs to finish and the batch to settle")
    decisions = MlflowClient(tracking_uri=stack.settings.tracking_uri).search_runs(
        [ModelRegistry(stack.settings, "credit").experiment_id()],
        filter_string=f"tags.`mlops.batch_sha256` = '{entry.sha256}'",
    )
    assert len(decisions) == 1, "one decision for one batch, however many events"
    assert stack.settled(entry.sha256).state is BatchState.processed


def test_a_file_landed_while_nothing_listened_is_reconciled(
    stack: StackProcess, tmp_path: Path
) -> None:
    path = write_batch(tmp_path, "missed.parquet", 3)
    entry = LandingZone(stack.settings).submit(path, "credit").entry  # no event at all
    settled = wait(lambda: stack.settled(entry.sha256), 60, "the scheduled reconcile")
    assert settled.state is BatchState.processed
    assert stack.report(settled)["decision_run_id"]


def test_files_dropped_in_the_inbox_are_landed_and_processed(
    stack: StackProcess, tmp_path: Path
) -> None:
    inbox = stack.settings.inbox / "credit"
    source = write_batch(tmp_path, "dropped.parquet", 4)
    staged = inbox / ".dropped.parquet.tmp"
    staged.write_bytes(source.read_bytes())
    staged.rename(inbox / "dropped.parquet")
    landed = wait(
        lambda: [
            e
            for e in LandingZone(stack.settings).entries("credit")
            if e.original_name == "dropped.parquet"
        ],
        30,
        "the watcher",
    )
    assert wait(lambda: stack.settled(landed[0].sha256), 120, "the batch flow").state is (
        BatchState.processed
    )
    assert (inbox / ".submitted" / "dropped.parquet").exists()


def test_delayed_labels_are_joined_and_judged(stack: StackProcess, tmp_path: Path) -> None:
    frame = generate_applications(
        np.random.default_rng(5), 500, week=3, kind=PhaseKind.concept_drift
    )
    batch = tmp_path / "concept.parquet"
    frame.drop("default").write_parquet(batch)
    labels = tmp_path / "concept-labels.csv"
    frame.select("application_id", "default").write_csv(labels)
    done = json.loads(stack.mlops("submit", str(batch), "--dataset", "credit", "--json").stdout)
    wait(lambda: stack.settled(done["sha256"]), 120, "the batch")
    answer = stack.mlops("labels", str(labels), "--dataset", "credit", "--json")
    assert answer.returncode == 0, answer.stderr
    sha = json.loads(answer.stdout)["sha256"]
    entry = wait(lambda: stack.settled(sha, "labels"), 120, "the labels flow")
    detail = stack.report(entry)
    assert detail["labels"]["matched_rows"] == 500
    evidence = detail["decision"]["evidence"]
    assert evidence["observed_accuracy"] < evidence["reference_accuracy"] - 0.1
    assert detail["decision"]["action"] in ("retrain", "watch")


def test_automations_exist_and_a_failed_run_raises_an_alert(stack: StackProcess) -> None:
    from prefect.automations import Automation
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.automations import FLOW_RUN_FAILED, REPEATED_DRIFT

    with temporary_settings(updates={PREFECT_API_URL: stack.api}):
        assert Automation.read(name=REPEATED_DRIFT).enabled
        assert Automation.read(name=FLOW_RUN_FAILED).enabled
    # An arrival for a batch that never landed: process_batch fails, the automation alerts.
    from mlops_core.batches import LedgerEntry

    ghost = LedgerEntry(
        "credit",
        "f" * 64,
        BatchState.landed,
        Path("/nonexistent.parquet"),
        "ghost",
        "parquet",
        0,
        None,
        "",
        "",
    )
    stack.announce(ghost)
    alerts = wait(
        lambda: [r for r in stack.flow_runs("alert-") if r.state and r.state.is_completed()],
        120,
        "the alert flow run started by the failure automation",
    )
    # The failed run is named for its dataset and file (the sha256 when the ledger has none).
    assert alerts[0].parameters["what"].startswith("flow run credit · ffffffffffff")


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    import httpx

    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (Debian's package; .ci/system-packages installs it)",
)
def test_prometheus_scrapes_the_exporter_and_a_model_server_for_every_dashboard_query(
    stack: StackProcess,
) -> None:
    """Runs last in this module: by now the stack processed batches, labels and a failed run."""
    import httpx

    from mlops_cli.services import free_port, http_ok

    prometheus = stack.state["prometheus_url"]
    assert prometheus and stack.state["metrics_url"]
    port = free_port()
    server = subprocess.Popen(
        [MLOPS, "serve", "--dataset", "credit", "--port", str(port)],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # 120 s: on a loaded CI machine 60 s was once too short for its imports and first model
        wait(lambda: http_ok(f"{url}/ready", timeout=1), 120, "mlops serve")
        records = (
            generate_applications(np.random.default_rng(9), 40)
            .drop("default", "application_id", "applied_at")
            .to_dicts()
        )
        dashboard = json.loads((DEPLOYMENTS / "grafana-dashboard.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        missing: list[str] = exprs
        deadline = time.monotonic() + 120
        while missing and time.monotonic() < deadline:
            for record in records:  # traffic through every scrape until the rates have data
                assert httpx.post(f"{url}/predict", json={"record": record}).status_code == 200
            time.sleep(1)
            missing = [e for e in exprs if not _finite(_query(prometheus, e))]
        assert not missing, f"dashboard queries without data after 120 s: {missing}"

        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
        assert health == {"mlops-model-server": "up", "mlops-pipeline": "up"}, health
        rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
        assert len(loaded) >= 8 and set(loaded.values()) == {"ok"}, loaded
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    # It leaves Prometheus' discovery when it stops.
    assert not list((stack.settings.home / "prometheus" / "targets").glob("mlops-model-server-*"))

    # The exporter's figures are the ledger's and MLflow's, a scrape (5 s) behind at most: the
    # model server's own logs land as batches too, so one can settle between the two reads. They
    # are compared until they agree, for up to a minute.
    wrong = _exporter_disagreements(stack, prometheus)
    deadline = time.monotonic() + 60
    while wrong and time.monotonic() < deadline:
        time.sleep(2)
        wrong = _exporter_disagreements(stack, prometheus)
    assert not wrong, wrong


def _exporter_disagreements(stack: StackProcess, prometheus: str) -> list[str]:
    """Where Prometheus' figures (scraped from the exporter) differ from the ledger and MLflow."""
    entries = LandingZone(stack.settings).entries("credit")
    processed = [e for e in entries if e.state is BatchState.processed]
    found = float(
        _query(prometheus, 'mlops_batches{dataset="credit",state="processed"}')[0]["value"][1]
    )
    decisions = MlflowClient(tracking_uri=stack.settings.tracking_uri).search_runs(
        [ModelRegistry(stack.settings, "credit").experiment_id()],
        filter_string="tags.`mlops.run_type` = 'decision'",
    )
    counted = float(
        _query(prometheus, 'sum(mlops_decisions_total{dataset="credit"})')[0]["value"][1]
    )
    wrong = []
    if not processed or found != len(processed):
        wrong.append(f"processed batches: ledger {len(processed)}, Prometheus {found:g}")
    if not decisions or counted != len(decisions):
        wrong.append(f"decisions: MLflow {len(decisions)}, Prometheus {counted:g}")
    if processed:
        newest = max(processed, key=lambda e: e.submitted_at)
        p_value = stack.report(newest)["drift"]["p_value"]
        exported = float(_query(prometheus, 'mlops_drift_p_value{dataset="credit"}')[0]["value"][1])
        if exported != pytest.approx(p_value, rel=1e-9):
            wrong.append(
                f"drift p-value of {newest.original_name}: {p_value}, Prometheus {exported}"
            )
    return wrong
