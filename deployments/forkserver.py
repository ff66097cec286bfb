"""The warm process a process worker's flow runs fork from: ``python -m deployments.forkserver``.

It binds a Unix socket, imports once what every flow run of the loop imports (Prefect's engine, the
flows, Great Expectations, MLflow with skops, torch, alibi-detect's detectors, scikit-learn,
matplotlib), then serves: each connection from ``deployments.flow_run`` (the command the worker
starts for a flow run) carries that command's environment, folder, arguments, stdin, stdout and
stderr. The server forks; the child takes them on and runs ``prefect.engine`` as ``python -m
prefect.engine`` would, so the run is an ordinary Prefect flow run in a process of its own,
started in milliseconds instead of about 20 s of imports. The server sends the child's pid, and
once the child has exited, its exit code (a signal N as 128 + N) back over the connection.

The server is single-threaded (a fork from a process with other threads could copy a lock held
mid-operation) and opens no connection to anything before forking: clients, database engines and
thread pools are made by each child, never shared. ``python -m deployments.worker`` starts it
beside ``prefect worker start`` and points the worker's runs at it (``MLOPS_FORKSERVER``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import warnings
from pathlib import Path

from deployments.flow_run import CODE, receive_exactly

logger = logging.getLogger("mlops.forkserver")

# What the loop's flow runs import; each is imported once here instead of once per run.
PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "flows.process_batch",
    "flows.process_labels",
    "flows.retrain_evaluate_deploy",
    "flows.reconcile",
    "flows.rollout",
    "flows.alerts",
    "flows.gc",
    "great_expectations",
    "mlflow.sklearn",
    "skops.io",
    "torch",
    "alibi_detect.cd.pytorch.mmd",
    "alibi_detect.cd.sklearn.classifier",
    "alibi_detect.utils.pytorch.kernels",
    "sklearn.ensemble",
    "matplotlib.pyplot",
)


class ForkedChild(Exception):  # noqa: N818 -- control flow, not an error
    """Raised in the child right after the fork, so it leaves the server's frames before running."""

    def __init__(
        self, module: str, connection: socket.socket, fds: list[int], header: dict[str, object]
    ):
        super().__init__("forked")
        self.module = module
        self.connection = connection
        self.fds = fds
        self.header = header

    def run(self) -> int:
        """Become the flow-run process the header describes; the engine's exit code."""
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stdout.flush()
        sys.stderr.flush()
        for target, fd in enumerate(self.fds):
            os.dup2(fd, target)
            os.close(fd)
        env = self.header["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        cwd = str(self.header["cwd"])
        os.chdir(cwd)
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        argv = self.header["argv"]
        assert isinstance(argv, list)
        sys.argv = [self.module, *map(str, argv)]
        # Prefect read its settings from the server's environment at import: read them again.
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
        watch_client(self.connection)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules"
                import runpy

                runpy.run_module(self.module, run_name="__main__", alter_sys=True)
        except SystemExit as exit_:
            return exit_code(exit_.code)
        return 0


def exit_code(code: object) -> int:
    """``sys.exit``'s argument as the process's exit code."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def watch_client(connection: socket.socket) -> None:
    """Kill this process when its client (``deployments.flow_run``) is gone: killed with its
    worker, the run must not go on alone, as the plain engine process would not have."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while connection.recv(1):
                pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="mlops-forkserver-client", daemon=True).start()


def preload(modules: tuple[str, ...]) -> float:
    """Import ``modules`` (a failure is logged, never fatal); the seconds it took."""
    began = time.monotonic()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 -- a run imports what it needs itself
            logger.warning("could not preload %s: %s", name, exc)
    gc.collect()
    gc.freeze()  # the imported objects stay out of the children's collections (copy-on-write)
    return time.monotonic() - began


def _receive(connection: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``connection``; ConnectionError when it closes first."""
    data = receive_exactly(connection, size)
    if data is None:
        raise ConnectionError("the client closed the connection mid-request")
    return data


class ForkServer:
    """Accept flow-run requests on ``path`` and fork a child for each until stopped; each child
    runs ``module`` as ``python -m module`` would."""

    def __init__(self, path: Path, module: str = "prefect.engine"):
        self.path = path
        self.module = module
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.listener.bind(str(path))
        self.listener.listen(64)  # requests queue here while the server is still importing
        self.listener.settimeout(0.2)

    def serve(self) -> None:
        """Fork a child per request, report each child's exit code; no try/finally here, so a
        child raising ``ForkedChild`` leaves these frames without running the server's cleanup."""
        while not self.stopping:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                connection = None
            except InterruptedError:  # pragma: no cover -- a signal during accept
                connection = None
            if connection is not None:
                self.start(connection)
            self.reap()

    def start(self, connection: socket.socket) -> None:
        """Read one request and fork its child (which raises ``ForkedChild``)."""
        connection.settimeout(30)
        try:
            message, fds, _, _ = socket.recv_fds(connection, CODE.size, 3)
            message += _receive(connection, CODE.size - len(message))
            (size,) = CODE.unpack(message)
            header = json.loads(_receive(connection, size))
        except (OSError, ValueError, struct.error) as exc:
            logger.warning("refused a malformed flow-run request: %s", exc)
            for fd in locals().get("fds", []):
                os.close(fd)
            connection.close()
            return
        if len(fds) != 3:
            logger.warning("refused a flow-run request with %d file descriptors", len(fds))
            for fd in fds:
                os.close(fd)
            connection.close()
            return
        connection.setblocking(True)
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            for other in self.children.values():
                other.close()
            raise ForkedChild(self.module, connection, fds, header)
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):  # the client is gone: its child notices and stops
            connection.sendall(CODE.pack(pid))
        self.children[pid] = connection

    def reap(self) -> None:
        """Send each exited child's exit code to its client and close the connection."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            connection = self.children.pop(pid, None)
            if connection is None:
                continue
            with contextlib.suppress(OSError):
                connection.sendall(CODE.pack(128 - code if code < 0 else code))
            connection.close()

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, SIGTERM the children still running, SIGKILL them after ``grace``."""
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.reap()


def main(argv: list[str] | None = None) -> int:
    """Bind, preload, serve until SIGTERM or SIGINT; a child returns its run's exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True, type=Path, help="the Unix socket to bind")
    parser.add_argument(
        "--preload",
        default=",".join(PRELOAD),
        help="modules to import before serving, comma-separated (default: the loop's)",
    )
    parser.add_argument(
        "--module", default="prefect.engine", help="what each child runs, as `python -m` would"
    )
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()  # this module's lines only: the libraries' stay quiet
    handler.setFormatter(logging.Formatter("%(asctime)s forkserver %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    server = ForkServer(args.socket, args.module)

    def stop(_signum: int, _frame: object) -> None:
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    seconds = preload(tuple(name for name in args.preload.split(",") if name))
    logger.info("ready on %s (imports took %.1f s)", args.socket, seconds)
    try:
        server.serve()
    except ForkedChild as child:  # in the child: the server's frames are left behind
        code = child.run()
        sys.stdout.flush()
        return code
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
