"""A Prefect process worker whose flow runs start warm: ``python -m deployments.worker [options]``.

The options are ``prefect worker start``'s (``--pool mlops --type process --name w1 --limit 2``).
This starts the fork server (``deployments.forkserver``) on a socket in a temporary folder, then
``prefect worker start`` with ``MLOPS_FORKSERVER`` naming it, so the deployments' flow-run
command (``python -m deployments.flow_run``, set by ``python -m deployments.cluster``) forks each
run from the warm server instead of importing everything again. Both are children of this
process, in its process group: stopping the group stops the worker, the server and their runs.
Without this wrapper (a plain ``prefect worker start``) the same deployments run the plain engine.
A wrapper killed with SIGKILL cannot remove its socket folder; the next wrapper to start removes
such folders (``sweep_stale``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deployments.flow_run import SOCKET_ENV

REPO = Path(__file__).resolve().parents[1]
PREFIX = "mlops-forkserver-"
# A folder younger than this may be a wrapper's that has not bound its socket yet.
STALE_AFTER_SECONDS = 120.0


def _alive(pid_file: Path) -> bool:
    """Whether the wrapper whose pid ``pid_file`` holds still runs (no readable pid: no)."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process now has that pid: leave the folder be
        return True
    return True


def sweep_stale(tmp: Path, *, now: float | None = None) -> list[Path]:
    """Remove this user's socket folders left by wrappers that died without cleaning up: older
    than ``STALE_AFTER_SECONDS`` whose wrapper (the pid in its ``pid`` file) is gone. The folders
    removed."""
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(tmp.glob(f"{PREFIX}*")):
        try:
            info = folder.lstat()
        except FileNotFoundError:
            continue
        if not folder.is_dir() or folder.is_symlink() or info.st_uid != os.getuid():
            continue
        if now - info.st_mtime < STALE_AFTER_SECONDS or _alive(folder / "pid"):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def start_server(path: Path) -> subprocess.Popen[bytes]:
    """The fork server, once its socket is bound (it imports the loop's libraries after that)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "deployments.forkserver", "--socket", str(path)], cwd=REPO
    )
    deadline = time.monotonic() + 60
    while not path.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"the fork server did not bind {path} (exit {server.poll()})")
        time.sleep(0.05)
    return server


def main(argv: list[str] | None = None) -> int:
    """Run the worker until it exits; its exit code."""
    for stale in sweep_stale(Path(tempfile.gettempdir())):
        print(f"removed {stale}: a fork server's folder left by a worker that was killed")
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    (folder / "pid").write_text(str(os.getpid()))
    server = start_server(folder / "socket")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", *(argv or sys.argv[1:])],
        env={**os.environ, SOCKET_ENV: str(folder / "socket")},
    )

    def forward(signum: int, _frame: object) -> None:
        if worker.poll() is None:
            worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        code = worker.wait()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
