"""Several worker processes behind one address: one server to its callers, one process per core.

``mlops serve --workers N`` runs ``Supervisor``: N processes (``python -m
mlops_core.serving.workers``), each a whole server -- its own registry follower, compiled
models, micro-batchers and prediction log -- all bound to the public address with
``SO_REUSEPORT``, so the kernel spreads connections among them. Each worker also listens on a
loopback port of its own, its *peer* address, through which the others reach it. What a caller
expects of one server still holds:

* a request id names the worker that answered (``RequestIds``);
  feedback that reaches another worker is forwarded to that one, so the labels join the
  request where it is remembered;
* ``/rollout/stats`` adds up every worker's window as replicas' windows are added
  (``mlops_core.replicas.merge_stats``). A worker that does not answer makes it a 503 naming the
  worker: the rollout counts that server as unreachable, and never promotes on part of the
  evidence;
* ``/metrics`` gathers every worker's metrics, each sample with a ``worker`` label;
* ``/admin/refresh`` refreshes every worker.

The supervisor restarts a worker that exits -- after a pause that doubles with each exit within
10 s of a start, and not at all after five of those in a row (the server then stops with exit
code 1) -- and stops them all (SIGTERM, then SIGKILL after 10 s) when it is stopped.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops_core.serving.signing import TAG_HEX, signed, verified

QUICK_EXIT_SECONDS = 10.0
"""A worker that exits sooner than this after its start is restarted after a growing pause."""
MAX_QUICK_EXITS = 5
"""This many quick exits in a row stop the server: a worker that cannot start is not retried forever."""

BODY_HEX = 32
"""Hex digits of a request id's body; its last two name the worker."""
REQUEST_ID_HEX = BODY_HEX + TAG_HEX

FORWARDED = "x-mlops-forwarded"
"""Header on a request one worker passes to another (it is answered there, never passed on)."""


class RequestIds:
    """Unique request ids naming the worker that made them, signed so ``/feedback`` knows its own.

    An id is 48 hex digits: a 32-digit body (a random 64-bit prefix per process, a counter, and
    the worker's index as its last two digits) and the body's 16-digit tag under the server's
    feedback key (``mlops_core.serving.signing``). The prefix and counter are cheaper than
    ``uuid4`` (which reads the OS's random source on every call, 4% of a request's time in the
    profile), and unique across workers and restarts.
    """

    def __init__(self, worker: int = 0, key: bytes | None = None) -> None:
        self.prefix = os.urandom(8).hex()
        self.worker = worker
        self.key = key if key is not None else os.urandom(32)  # none given: this process's own
        self._counter = itertools.count()

    def __call__(self) -> str:
        """A new request id."""
        body = f"{self.prefix}{next(self._counter) & 0xFFFFFFFFFFFFFF:014x}{self.worker:02x}"
        return signed(self.key, body)

    def issued(self, request_id: str) -> bool:
        """Whether ``request_id`` was made by a server holding this key."""
        return len(request_id) == REQUEST_ID_HEX and verified(self.key, request_id)


@dataclass(frozen=True)
class Workers:
    """This worker's index and every worker's peer address (``http://127.0.0.1:port``)."""

    index: int
    peers: tuple[str, ...]

    @classmethod
    def from_environment(cls) -> Workers | None:
        """The workers ``Supervisor`` told this process about, or None (a single server)."""
        peers = os.environ.get("MLOPS_SERVE_PEERS")
        if not peers:
            return None
        return cls(int(os.environ["MLOPS_SERVE_WORKER"]), tuple(json.loads(peers)))

    def owner(self, request_id: str) -> int | None:
        """The worker that made ``request_id``, when it names one of these workers."""
        if len(request_id) != REQUEST_ID_HEX:
            return None
        try:
            index = int(request_id[BODY_HEX - 2 : BODY_HEX], 16)
        except ValueError:
            return None
        return index if index < len(self.peers) else None

    def others(self) -> list[tuple[int, str]]:
        """Every other worker's index and peer address."""
        return [(i, url) for i, url in enumerate(self.peers) if i != self.index]


def ask_others(
    workers: Workers,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> list[tuple[int, Any]]:
    """Every other worker's answer to one request, at once: (index, httpx.Response or the error)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def one(peer: tuple[int, str]) -> tuple[int, Any]:
        index, url = peer
        try:
            answer = httpx.request(
                method,
                f"{url}{path}",
                params=params,
                json=json_body,
                headers={FORWARDED: "1", **(headers or {})},
                timeout=5,
            )
            return index, answer
        except httpx.HTTPError as exc:
            return index, exc

    others = workers.others()
    with ThreadPoolExecutor(max(1, len(others))) as pool:
        return list(pool.map(one, others))


def with_worker_label(text: str, worker: int) -> str:
    """Prometheus' text format with ``worker="<n>"`` added to every sample's labels."""
    lines = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            lines.append(line)
            continue
        name_end = next((i for i, c in enumerate(line) if c in "{ "), len(line))
        name, rest = line[:name_end], line[name_end:]
        if rest.startswith("{"):
            lines.append(f'{name}{{worker="{worker}",{rest[1:]}')
        else:
            lines.append(f'{name}{{worker="{worker}"}}{rest}')
    return "\n".join(lines) + "\n"


def merge_expositions(texts: list[str]) -> str:
    """Several workers' labelled expositions as one: each family's HELP and TYPE once, its samples
    from every worker together (Prometheus rejects a family that appears twice)."""
    order: list[str] = []
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split(" ", 3)[2]
                if family not in headers:
                    order.append(family)
                    headers[family], samples[family] = [], []
                if line not in headers[family]:
                    headers[family].append(line)
            elif line and not line.startswith("#"):
                samples.setdefault(family, []).append(line)
    out = []
    for family in order:
        out += headers[family] + samples[family]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the processes


def public_socket(host: str, port: int) -> socket.socket:
    """The public address, bound with SO_REUSEPORT so that every worker can bind it too.

    The protocol is named (``IPPROTO_TCP``, not the default 0): asyncio turns Nagle's algorithm
    off (``TCP_NODELAY``) only on connections of sockets that say they are TCP. Without it, a
    response written in two parts waited for the client's delayed ACK: 20-40 ms a request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def loopback_socket(port: int) -> socket.socket:
    """A worker's peer address on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1, free right now."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(p.getsockname()[1]) for p in probes]
    finally:
        for probe in probes:
            probe.close()


class Supervisor:
    """Start ``count`` workers on ``host:port``, restart any that exits, stop them all on a signal."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        dataset: str | None,
        *,
        log: Callable[[str], None] = print,
        max_quick_exits: int = MAX_QUICK_EXITS,
    ) -> None:
        self.count = count
        self.max_quick_exits = max_quick_exits
        self.host, self.port, self.dataset = host, port, dataset
        self.log = log
        self.peers = [f"http://127.0.0.1:{p}" for p in free_ports(count)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self.stopping = False

    def _start(self, index: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "mlops_core.serving.workers", self.host, str(self.port)]
        if self.dataset:
            command.append(self.dataset)
        environment = {
            **os.environ,
            "MLOPS_SERVE_WORKER": str(index),
            "MLOPS_SERVE_PEERS": json.dumps(self.peers),
        }
        return subprocess.Popen(command, env=environment)

    def run(self) -> int:
        """Run until SIGINT or SIGTERM; the exit code."""
        # Checked here first, so that a taken port is one clear error and not N crashing workers.
        # SO_REUSEPORT would let a second server of the same user share the port silently, so a
        # port something already answers on is refused even when it could be bound.
        probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        try:
            socket.create_connection((probe_host, self.port), timeout=0.5).close()
        except OSError:
            pass
        else:
            raise OSError(errno.EADDRINUSE, "another server already listens there")
        guard = public_socket(self.host, self.port)
        previous = {
            sig: signal.signal(sig, lambda *_: setattr(self, "stopping", True))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        started = [0.0] * self.count
        quick_exits = [0] * self.count  # consecutive exits within QUICK_EXIT_SECONDS of a start
        due = [0.0] * self.count  # when a worker that exited may be started again
        code = 0
        try:
            for index in range(self.count):
                self.processes[index], started[index] = self._start(index), time.monotonic()
            while not self.stopping and code == 0:
                time.sleep(0.2)
                now = time.monotonic()
                for index, process in enumerate(self.processes):
                    if self.stopping:
                        break
                    if process is not None and process.poll() is not None:
                        quick = now - started[index] < QUICK_EXIT_SECONDS
                        quick_exits[index] = quick_exits[index] + 1 if quick else 0
                        if quick_exits[index] >= self.max_quick_exits:
                            self.log(
                                f"worker {index} exited with code {process.returncode} "
                                f"{quick_exits[index]} times in a row within "
                                f"{QUICK_EXIT_SECONDS:.0f} s of starting; stopping the server "
                                "(run it with --workers 1 to see its error)"
                            )
                            code = 1
                            break
                        delay = min(30.0, 2.0 ** quick_exits[index] / 2) if quick else 0.0
                        self.log(
                            f"worker {index} (pid {process.pid}) exited with code "
                            f"{process.returncode}; starting it again in {delay:.0f} s"
                        )
                        self.processes[index], due[index] = None, now + delay
                    elif process is None and now >= due[index]:
                        self.processes[index], started[index] = self._start(index), now
        finally:
            self.stop()
            guard.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def stop(self) -> None:
        """SIGTERM every worker; SIGKILL those still running after 10 s."""
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_worker(host: str, port: int, dataset: str | None) -> None:
    """One worker: the app on the shared public address and on its own peer address."""
    import uvicorn

    from mlops_core.serving import create_app
    from mlops_core.settings import Settings

    workers = Workers.from_environment()
    if workers is None:
        raise SystemExit("a worker is started by `mlops serve --workers N`")
    peer_port = int(workers.peers[workers.index].rsplit(":", 1)[1])
    app = create_app(Settings(), dataset, workers=workers)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[public_socket(host, port), loopback_socket(peer_port)])


if __name__ == "__main__":
    serve_worker(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
