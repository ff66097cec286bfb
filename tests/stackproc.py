"""Helpers of the stack and fault tests: a home with a registered dataset and a champion, `mlops up` as a
real process (started, waited on, stopped by its pid), and what the ledger, the folders and
MLflow say about each batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from live import first_champion
from mlflow.tracking import MlflowClient

from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import FINAL_STATES
from mlops_core.settings import Settings

MLOPS = str(Path(sys.executable).parent / "mlops")
DATASET = "credit"


def wait(condition: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"waited {timeout} s for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def prepare(root: Path, **extra_env: str) -> tuple[dict[str, str], Settings]:
    """A fresh home under ``root``: the credit dataset registered, a champion promoted."""
    reference = root / "reference.parquet"
    generate_applications(np.random.default_rng(0), 6_000).write_parquet(reference)
    env = {
        **os.environ,
        "MLOPS_HOME": str(root / "home"),
        "MLOPS_GX_DIR": str(root / "gx"),
        "MLOPS_PREFECT_PORT": "0",
        "MLOPS_RECONCILE_INTERVAL_SECONDS": "600",
        "MLOPS_RECONCILE_STALE_SECONDS": "600",
        **extra_env,
    }
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "MLOPS_FAILPOINTS"):
        env.pop(key, None)  # the stack's own Prefect server, its home under MLOPS_HOME
    settings = Settings(home=root / "home", gx_dir=root / "gx")
    DatasetCatalog(settings).add(CREDIT_SPEC, reference)
    first_champion(settings, DATASET)
    return env, settings


class StackProcess:
    """`mlops up` running as its own process, ready to take events."""

    def __init__(self, env: dict[str, str], settings: Settings, *flags: str) -> None:
        self.env, self.settings = env, settings
        self.process = subprocess.Popen(
            [MLOPS, "up", *flags],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("ready"):
                break
        else:
            raise AssertionError("mlops up ended before it was ready:\n" + "".join(self.lines))
        self.state = json.loads(settings.stack_file.read_text())
        self.api = self.state["prefect_api_url"]

    def mlops(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MLOPS, *args], env=self.env, capture_output=True, text=True, timeout=180
        )

    def flow_runs(self, like: str) -> list[Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api}),
            get_client(sync_client=True) as client,
        ):
            return list(
                client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=like)), limit=200
                )
            )

    def runs_of(self, sha256: str) -> list[Any]:
        """The flow runs whose parameters name batch ``sha256`` (runs are named by file)."""
        return [
            r
            for r in self.flow_runs("")
            if sha256 in (r.parameters.get("sha256"), r.parameters.get("batch_sha256"))
        ]

    def settled(self, sha256: str, kind: str = "batch") -> Any:
        return settled(self.settings, sha256, kind)

    @staticmethod
    def report(entry: Any) -> dict[str, Any]:
        return dict(json.loads(Path(entry.report_location).read_text())["detail"])

    def announce(self, entry: Any, kind: str = "batch") -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from mlops_core.adapters.announce import announce

        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            announce(entry, kind)

    def wait_exit(self, timeout: float) -> str:
        """Wait for the stack to end by itself (a part died); return the rest of its output."""
        rest = self.process.communicate(timeout=timeout)[0]
        return "".join(self.lines) + rest

    def stop(self) -> str:
        """Ctrl-C, as a person would; every process the stack started must be gone after."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        rest = self.process.communicate(timeout=90)[0]
        for name, pid in self.state["pids"].items():
            assert not pid_alive(pid), f"{name} (pid {pid}) outlived `mlops up`"
        return "".join(self.lines) + rest


def decision_runs(settings: Settings, sha256: str, *, finished_only: bool = True) -> list[Any]:
    """The decision runs recorded for one batch (finished ones: the decisions a person sees);
    drift reviews, which name the newest of the batches they review, are not counted."""
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(DATASET)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlops.batch_sha256` = '{sha256}' and tags.`mlops.run_type` = "
        "'decision'",
    )
    return [
        r
        for r in runs
        if (r.info.status == "FINISHED" or not finished_only) and "mlops.context" not in r.data.tags
    ]


def settled(settings: Settings, sha256: str, kind: str = "batch") -> Any:
    entry = LandingZone(settings, kind).get(DATASET, sha256)
    return entry if entry is not None and entry.state in FINAL_STATES else None


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def ledger_agrees_with_folders(settings: Settings) -> None:
    """Every ledger row's file is where the row says, with its report; no file is unaccounted."""
    entries = LandingZone(settings).entries(DATASET)
    listed = set()
    for entry in entries:
        assert Path(entry.location).is_file(), (
            f"{entry.sha256[:12]} is not at {Path(entry.location)}"
        )
        listed.add(Path(entry.location))
        if entry.state in FINAL_STATES:
            assert Path(entry.report_location).is_file(), f"{entry.sha256[:12]} has no report"
            listed.add(Path(entry.report_location))
    on_disk = set()
    for root in (settings.landing_dir, settings.processed_dir, settings.quarantine_dir):
        on_disk |= {p.resolve() for p in files_under(root / DATASET) if "labels" not in p.parts}
    assert on_disk == {p.resolve() for p in listed}, (
        f"files nobody accounts for: {sorted(map(str, on_disk - listed))}; "
        f"rows without files: {sorted(map(str, listed - on_disk))}"
    )
