"""A Prefect process worker whose flow runs start warm: ``python -m deployments.worker [options]``.

The options are ``prefect worker start``'s (``--pool mlops --type process --name w1 --limit 2``).
This starts the fork server (``deployments.forkserver``) on a socket in a temporary folder, then
``prefect worker start`` with ``MLOPS_FORKSERVER`` naming it, so the deployments' flow-run
command (``python -m deployments.flow_run``, set by ``python -m deployments.cluster``) forks each
run from the warm server instead of importing everything again. Both are children of this
process, in its process group: stopping the group stops the worker, the server and their runs.
Without this wrapper (a plain ``prefect worker start``) the same deployments run the plain engine.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deployments.flow_run import SOCKET_ENV

REPO = Path(__file__).resolve().parents[1]


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
    import os

    folder = Path(tempfile.mkdtemp(prefix="mlops-forkserver-"))
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
