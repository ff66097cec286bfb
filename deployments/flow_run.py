"""The process worker's flow-run command: ``python -m deployments.flow_run`` (standard library only).

A Prefect process worker starts every flow run as a fresh ``python -m prefect.engine``, which must
import Prefect, polars, Great Expectations, MLflow, torch, skops and alibi-detect again: about 20 s
of CPU on this machine before the flow's first task. The cluster's deployments run this command
instead. When the worker was started by ``python -m deployments.worker`` (``MLOPS_FORKSERVER``
names its fork server's socket), the run is forked from that warm process, which has imported all
of it once; otherwise this process becomes ``python -m prefect.engine`` itself (``exec``), exactly
what the worker would have run.

To the worker this process *is* the flow run: the run's output goes to this process's stdout and
stderr (passed to the fork as file descriptors), a SIGTERM or SIGINT sent to it (a cancellation, a
worker stopping) reaches the run, and it exits with the run's exit code. If this process dies
(SIGKILL), the forked run sees its connection close and kills itself, as a plain engine process
would have died with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

SOCKET_ENV = "MLOPS_FORKSERVER"
# The wire format both ends share (``deployments.forkserver`` imports it): a request's header
# length, the run's pid, its exit code, each one signed 4-byte integer.
CODE = struct.Struct("!i")


def plain_engine() -> None:
    """Become ``python -m prefect.engine`` with this process's arguments (no return)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``connection``; None when it closed first."""
    data = b""
    while len(data) < size:
        try:
            chunk = connection.recv(size - len(data))
        except InterruptedError:  # pragma: no cover -- PEP 475 retries recv itself
            continue
        if not chunk:
            return None
        data += chunk
    return data


def request(connection: socket.socket) -> None:
    """Send the run's environment, folder and arguments, with stdin, stdout and stderr."""
    header = json.dumps(
        {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:]}
    ).encode()
    socket.send_fds(connection, [CODE.pack(len(header))], [0, 1, 2])
    connection.sendall(header)


def main() -> int:
    """Run the flow run through the fork server when there is one; its exit code."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        plain_engine()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)  # type: ignore[arg-type]
        request(connection)
        pid_bytes = receive_exactly(connection, CODE.size)
    except OSError as exc:
        sys.stderr.write(f"fork server at {path} unreachable ({exc}); running the plain engine\n")
        connection.close()
        plain_engine()
        return 1  # pragma: no cover -- plain_engine does not return
    if pid_bytes is None:
        sys.stderr.write(f"fork server at {path} closed before starting the run\n")
        return 1
    (pid,) = CODE.unpack(pid_bytes)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # the run has just ended
            os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = receive_exactly(connection, CODE.size)
    if code is None:
        sys.stderr.write(f"fork server at {path} went away while flow run {pid} ran\n")
        return 1
    return int(CODE.unpack(code)[0])


if __name__ == "__main__":
    raise SystemExit(main())
