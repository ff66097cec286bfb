"""The soak's processes: ``mlops up``, ``mlops serve`` and ``mlops train`` as children, each in its
own process group, stopped by its id; and the planned challengers, trained and registered."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT
from soak_load import DATASET

BIN = Path(sys.executable).parent


def log(text: str) -> None:
    """Print ``text`` with the time of day, at once."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def spawn(home: Path, command: list[str], name: str) -> tuple[subprocess.Popen[str], Path]:
    """A child in its own process group (stopped as a whole by its id), output to a log file."""
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"soak-{name}.log"
    handle = path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        command,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        text=True,
        start_new_session=True,
        cwd=ROOT,
    )
    handle.close()
    return process, path


def wait_for(condition: Any, timeout: float, what: str, alive: Any = None) -> Any:
    """The first truthy value of ``condition`` (polled every 0.3 s); ``RuntimeError`` after ``timeout``."""
    from mlops_cli.loops import poll_until

    value = poll_until(condition, timeout, every=0.3, check=alive)
    if not value:
        raise RuntimeError(f"waited {timeout:.0f} s for {what}")
    return value


def stop_stack(up: subprocess.Popen[str], settings: Any) -> str:
    """SIGTERM ``mlops up`` (it stops its own children); by their pids if it does not."""
    from mlops_cli.stack import stop_group

    if up.poll() is not None:
        return f"had exited with code {up.returncode}"
    pids: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        pids = json.loads(settings.stack_file.read_text())["pids"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(up.pid, signal.SIGTERM)
    try:
        up.wait(timeout=90)
        how = f"stopped (exit code {up.returncode})"
    except subprocess.TimeoutExpired:
        how = "did not stop within 90 s; its children were killed by their process groups"
        stop_group(up, grace=5)
    for pid in pids.values():  # group leaders started by `mlops up`; gone unless it failed
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            how += f"; killed leftover group {pid}"
    return how


def register_challenger(settings: Any, kind: str, seed: int) -> str:
    """Train on fresh applications (labels flipped for the bad one) and register a new version."""
    import numpy as np
    import polars as pl

    from mlops_cli.scenarios import generate_applications
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.challenger import TrainingData, train_challenger

    rng = np.random.default_rng(seed)
    window = generate_applications(rng, 10_000, week=1, id_prefix=f"C{seed}")
    holdout = generate_applications(rng, 2_000, week=1, id_prefix=f"H{seed}")
    if kind.startswith("bad"):
        window = window.with_columns((1 - pl.col("default")).alias("default"))
    data = TrainingData(window=window, gate_holdout=holdout, lineage=(), data_until=None, sources=1)
    context = DatasetContext.open(settings, DATASET)
    return train_challenger(context, data, batch_sha256="", parent_run_id=None).version


def train_first_champion(settings: Any) -> None:
    """Train the first champion with ``mlops train`` as a process (the gated subflow)."""
    from mlops_core.adapters.registry import ModelRegistry

    trained = subprocess.run(
        [str(BIN / "mlops"), "train", "--dataset", DATASET, "--json"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if trained.returncode != 0:
        raise RuntimeError(f"mlops train failed:\n{trained.stdout}\n{trained.stderr}")
    try:
        first = json.loads(trained.stdout)
    except ValueError:
        first = {"status": "?", "reason": trained.stdout.strip()[-200:]}
    champion = ModelRegistry(settings, DATASET).aliases().get("champion")
    log(f"first champion v{champion} ({first.get('status')}: {first.get('reason')})")
