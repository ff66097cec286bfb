"""Fault 7: the disk fills up while a batch is copied into the landing zone.

Two ways to fill it, both real system-call failures of `mlops submit` run as its own process:
the landing folder on a 256 KiB tmpfs (the write fails with ENOSPC, "No space left on device"),
and a file-size limit (RLIMIT_FSIZE; the write fails with EFBIG). The tmpfs is mounted by the test
itself when it runs as root (as in CI), and in a private user+mount namespace otherwise.
Either way the command must fail with a message that says what happened and what to do, print
no traceback, and leave no partial file and no ledger row that could later pass for a batch.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.settings import Settings

MLOPS = str(Path(sys.executable).parent / "mlops")


@pytest.fixture
def big_batch(tmp_path: Path) -> Path:
    """About 1.5 MB of CSV: far more than the space left."""
    path = tmp_path / "big-week.csv"
    generate_applications(np.random.default_rng(9), 12_000, week=1).drop("default").write_csv(path)
    assert path.stat().st_size > 1_000_000
    return path


def namespaces_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
    )
    return probe.returncode == 0


def mount_runner() -> list[str] | None:
    """The command that runs a shell script allowed to mount; None where no mount is allowed."""
    if os.geteuid() == 0:
        return ["sh", "-c"]  # mounts on this machine: the test unmounts it
    if namespaces_available():
        return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
    return None


def assert_nothing_landed(settings: Settings, output: str, files_left: list[str]) -> None:
    assert "could not be copied into the landing zone" in output, output
    assert "free some disk space" in output, output
    assert "Traceback" not in output, output
    assert files_left == [], f"partial files left behind: {files_left}"
    assert LandingZone(settings).entries("credit") == []


@pytest.mark.skipif(
    mount_runner() is None,
    reason="not root, and this kernel refuses unprivileged user+mount namespaces, so no small "
    "tmpfs can be mounted; the RLIMIT_FSIZE case below still fails the same write",
)
def test_submit_on_a_full_disk_fails_clearly_and_lands_nothing(
    settings: Settings, registered: RegisteredDataset, big_batch: Path
) -> None:
    runner = mount_runner()
    assert runner is not None
    landing = settings.landing_dir.resolve()
    landing.mkdir(parents=True, exist_ok=True)
    script = (
        f'mount -t tmpfs -o size=256k tmpfs "{landing}" || exit 99; '
        f'"{MLOPS}" submit "{big_batch}" --dataset credit; echo "rc=$?"; '
        f'find "{landing}" -type f'
    )
    try:
        done = subprocess.run(
            [*runner, script],
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        if os.path.ismount(landing):  # mounted as root on this machine: undone whatever happened
            subprocess.run(["umount", "-l", str(landing)], capture_output=True, timeout=30)
    assert not os.path.ismount(landing), f"the test's tmpfs is still mounted on {landing}"
    if done.returncode == 99:
        pytest.skip(f"mount -t tmpfs on {landing} was refused: {done.stderr.strip()}")
    lines = done.stdout.splitlines()
    rc_at = next(i for i, line in enumerate(lines) if line.startswith("rc="))
    assert lines[rc_at] != "rc=0"
    output = "\n".join(lines[:rc_at]) + done.stderr
    assert "No space left on device" in output, output
    assert_nothing_landed(settings, output, lines[rc_at + 1 :])


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write(), not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_submit_over_the_file_size_limit_fails_clearly_and_lands_nothing(
    settings: Settings, registered: RegisteredDataset, big_batch: Path
) -> None:
    done = subprocess.run(
        [MLOPS, "submit", str(big_batch), "--dataset", "credit"],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_limit_file_size,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "File too large" in output, output
    landing = settings.landing_dir
    files_left = [str(p) for p in landing.rglob("*") if p.is_file()] if landing.exists() else []
    assert_nothing_landed(settings, output, files_left)
