"""``mlops up``: the long-running stack on embedded defaults, started and stopped as one.

Parts, each started as a child process in its own process group and waited on until healthy:

1. a local Prefect server (``prefect server start``) on 127.0.0.1, SQLite under
   ``<home>/prefect`` -- unless ``PREFECT_API_URL`` points at a server already;
2. the deployments, served by the warm runner (``python -m deployments.serve``), which also
   creates the automations and the retrain concurrency limits;
3. the MLflow UI (``--mlflow-ui``), on the same SQLite store;
4. the pipeline's metrics exporter (``python -m mlops_core.adapters.exporter``) and, with
   ``--prometheus``, Debian's Prometheus scraping it and every ``mlops serve`` (``mlops_cli.prometheus``);
5. in this process, the landing-zone watcher: files dropped into ``<inbox>/<dataset>/`` are landed
   and announced with ``mlops.batch.arrived`` (``<inbox>/<dataset>/labels/``: labels).

``stop()`` (Ctrl-C) stops the watcher, then each child group (SIGTERM, then SIGKILL after 10 s),
by the process ids it started, and removes ``<home>/stack.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_cli.services import free_port, http_ok
from mlops_cli.services import stop_process_group as stop_group
from mlops_core.adapters.stack_state import StackState, clear_state, healthy, write_state
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings, prefect_environment


def _http_ok(url: str) -> bool:
    return http_ok(url, timeout=1)


# A part that was started and is still to be waited on: what it is, when it is ready, how long
# to wait, and its process.
Starting = tuple[str, Callable[[], bool], float, "Child"]


@dataclass
class Child:
    """A process the stack started: its name, the process and the log file it writes."""

    name: str
    process: subprocess.Popen[str]
    log: Path


@dataclass
class Stack:
    """What `mlops up` runs (Prefect server, deployments, MLflow UI, watcher), started and stopped as one."""

    settings: Settings
    mlflow_ui: bool = False
    default_runner: bool = False
    prometheus: bool = False
    log: Any = print
    children: list[Child] = field(default_factory=list)
    api_url: str = ""
    ui_url: str = ""
    mlflow_url: str | None = None
    metrics_url: str | None = None
    prometheus_url: str | None = None
    deployments: dict[str, str] = field(default_factory=dict)
    watcher: InboxWatcher | None = None
    _ready: dict[str, Any] = field(default_factory=dict)  # the deployments' READY line

    # ------------------------------------------------------------------ start

    def environment(self) -> dict[str, str]:
        """The environment each child runs in: ours, plus the stack's home, GX folder and Prefect API."""
        env = dict(os.environ)
        for key, value in prefect_environment(self.settings).items():
            env.setdefault(key, value)
        env["MLOPS_HOME"] = str(self.settings.home.resolve())
        env["MLOPS_GX_DIR"] = str(Path(self.settings.gx_dir).resolve())
        env["PYTHONUNBUFFERED"] = "1"
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
        return env

    def _spawn(self, name: str, command: list[str]) -> Child:
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{name}.log"
        handle = path.open("w", encoding="utf-8")
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE if name == "deployments" else handle,
            stderr=handle,
            env=self.environment(),
            text=True,
            start_new_session=True,  # its own process group: stopped as a whole, by its id
            cwd=Path(__file__).resolve().parents[1],
        )
        child = Child(name, process, path)
        self.children.append(child)
        return child

    def _wait(self, name: str, ready: Any, timeout: float, child: Child | None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if child is not None and child.process.poll() is not None:
                raise MlopsError(
                    f"{name} exited with code {child.process.returncode} while starting",
                    hint=f"see its log: {child.log}",
                )
            time.sleep(0.3)
        raise MlopsError(
            f"{name} was not ready after {timeout:.0f} s",
            hint=f"see its log: {child.log if child else '-'}",
        )

    def start(self) -> StackState:
        """The running stack's URLs and process ids, once every part is healthy (a failure stops them all)."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        try:
            if self.prometheus:
                from mlops_cli.prometheus import binary

                binary()  # not installed: say so before anything starts
            prefect = self._start_prefect()
            # Every other part starts while the Prefect server does: the deployments' process
            # imports the flows and warms up first, then waits for the API to register. Then
            # each part is waited on, the Prefect server first.
            starting = [self._start_deployments()]
            if self.mlflow_ui:
                starting.append(self._start_mlflow())
            starting.append(self._start_exporter())
            if self.prometheus:
                starting.append(self._start_prometheus())
            for name, ready, timeout, child in [*prefect, *starting]:
                self._wait(name, ready, timeout, child)
            self.deployments = self._ready.get("deployments", {})
            self.watcher = InboxWatcher(self.settings, self.api_url, log=self.log)
            self.watcher.start()
        except BaseException:
            self.stop()
            raise
        state = StackState(
            prefect_api_url=self.api_url,
            prefect_ui_url=self.ui_url,
            mlflow_ui_url=self.mlflow_url,
            metrics_url=self.metrics_url,
            prometheus_url=self.prometheus_url,
            pids={c.name: c.process.pid for c in self.children},
            owner_pid=os.getpid(),
        )
        write_state(self.settings, state)
        return state

    def _start_prefect(self) -> list[Starting]:
        """The Prefect server, spawned (nothing to wait on when ``PREFECT_API_URL`` names one)."""
        existing = os.environ.get("PREFECT_API_URL")
        if existing:
            if not healthy(existing):
                raise MlopsError(
                    f"PREFECT_API_URL={existing} does not answer its health check",
                    hint="start that server, or unset PREFECT_API_URL to run an embedded one",
                )
            self.api_url = existing
            self.ui_url = existing.removesuffix("/api")
            self.log(f"Prefect: using the server at {existing}")
            return []
        port = self.settings.prefect_port or free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.ui_url = f"http://127.0.0.1:{port}"
        if healthy(self.api_url):
            raise MlopsError(
                f"something already answers on {self.api_url}",
                hint="stop it, or set MLOPS_PREFECT_PORT to another port (0: any free one)",
            )
        self.log(f"starting the Prefect server on {self.ui_url} (about 20 s)...")
        child = self._spawn(
            "prefect-server",
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
        )
        url = self.api_url
        return [("the Prefect server", lambda: healthy(url), 120, child)]

    def _start_deployments(self) -> Starting:
        mode = "default prefect.serve" if self.default_runner else "warm runner"
        self.log(f"serving the deployments ({mode}), creating automations...")
        command = [sys.executable, "-m", "deployments.serve"]
        if self.default_runner:
            command.append("--default")
        child = self._spawn("deployments", command)
        ready = self._ready

        def read_ready() -> None:
            assert child.process.stdout is not None
            for line in child.process.stdout:
                if line.startswith("READY "):
                    ready.update(json.loads(line.removeprefix("READY ")))
                with child.log.open("a", encoding="utf-8") as handle:
                    handle.write(line)

        threading.Thread(target=read_ready, daemon=True).start()
        return ("the deployments", lambda: bool(ready), 240, child)

    def _start_mlflow(self) -> Starting:
        port = self.settings.mlflow_port or free_port()
        if _http_ok(f"http://127.0.0.1:{port}/health"):
            port = free_port()
        self.mlflow_url = f"http://127.0.0.1:{port}"
        self.log(f"starting the MLflow UI on {self.mlflow_url}...")
        child = self._spawn(
            "mlflow-ui",
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                self.settings.tracking_uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
        )
        url = self.mlflow_url
        return ("the MLflow UI", lambda: _http_ok(f"{url}/health"), 90, child)

    def _start_exporter(self) -> Starting:
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.log(f"starting the pipeline metrics exporter on {self.metrics_url}...")
        child = self._spawn(
            "exporter", [sys.executable, "-m", "mlops_core.adapters.exporter", "--port", str(port)]
        )
        url = self.metrics_url
        return ("the metrics exporter", lambda: _http_ok(url), 60, child)

    def _start_prometheus(self) -> Starting:
        from mlops_cli.prometheus import command, write_config

        port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{port}"
        config = write_config(self.settings)
        self.log(f"starting Prometheus on {self.prometheus_url} ({config})...")
        child = self._spawn("prometheus", command(self.settings, config, port))
        url = self.prometheus_url
        return ("Prometheus", lambda: _http_ok(f"{url}/-/ready"), 60, child)

    def dead(self) -> list[Child]:
        """Children that exited although nobody stopped them."""
        return [c for c in self.children if c.process.poll() is not None]

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Stop the watcher and every child this stack started (by process group id)."""
        if self.watcher is not None:
            self.watcher.stop()
        for child in reversed(self.children):
            stop_group(child.process)
        self.children.clear()
        clear_state(self.settings)


class InboxWatcher:
    """Lands and announces files dropped into ``<inbox>/<dataset>/`` (and ``.../labels/``)."""

    def __init__(self, settings: Settings, api_url: str, log: Any = print) -> None:
        self.settings = settings
        self.api_url = api_url
        self.log = log
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.landed = 0

    def start(self) -> None:
        """Land what already waits in the inbox, then watch it for new files in a background thread."""
        from mlops_core.adapters.catalog import DatasetCatalog

        for name in DatasetCatalog(self.settings).names():
            (self.settings.inbox / name / "labels").mkdir(parents=True, exist_ok=True)
        self.settings.inbox.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.settings.inbox.rglob("*")):  # dropped while nothing watched
            self.handle(path)
        self.thread = threading.Thread(target=self._watch, name="mlops-inbox", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        from watchfiles import Change, watch

        for changes in watch(
            self.settings.inbox, stop_event=self.stopping, debounce=300, rust_timeout=500
        ):
            for change, name in sorted(changes, key=lambda c: c[1]):
                if change is not Change.deleted:
                    self.handle(Path(name))

    def handle(self, path: Path) -> None:
        """Land one dropped file and announce it; leave it (with a log line) when it cannot be."""
        from mlops_core.adapters.announce import announce
        from mlops_core.adapters.landing import LandingZone, QuarantinedOnArrival

        if path.name.startswith(".") or path.suffix == ".tmp":
            return
        try:
            relative = path.relative_to(self.settings.inbox)
        except ValueError:
            return
        parts = relative.parts
        if len(parts) == 2:
            dataset, kind = parts[0], "batch"
        elif len(parts) == 3 and parts[1] == "labels":
            dataset, kind = parts[0], "labels"
        else:
            return
        # Before is_file(), which follows links: a link dropped here (or a linked folder on the
        # way) would land whatever it points at -- /etc/passwd, another user's file -- with this
        # process's rights. Only files copied into the inbox are landed.
        steps = (self.settings.inbox.joinpath(*parts[: depth + 1]) for depth in range(len(parts)))
        link = next((step for step in steps if step.is_symlink()), None)
        if link is not None:
            self._refuse_link(path, link, dataset)
            return
        if not path.is_file():
            return
        done = self.settings.inbox / dataset / ".submitted"
        try:
            receipt = LandingZone(self.settings, kind).submit(path, dataset)
        except MlopsError as exc:
            self.log(f"inbox: {path.name}: {exc}")
            done = self.settings.inbox / dataset / ".refused"
            if isinstance(exc, QuarantinedOnArrival):
                # Not a table at all: still announced, so its run shows the quarantine and why.
                try:
                    with _api(self.api_url):
                        announce(exc.entry, kind)
                except Exception as failure:  # noqa: BLE001 -- the watcher must keep watching
                    self.log(f"inbox: {path.name}: could not announce the quarantine: {failure}")
        else:
            if not receipt.duplicate:
                with _api(self.api_url):
                    announce(receipt.entry, kind)
                self.landed += 1
            self.log(f"inbox: {receipt.describe()}")
        done.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.replace(path, done / path.name)

    def _refuse_link(self, path: Path, link: Path, dataset: str) -> None:
        """Log why ``path`` is not landed; move ``link`` itself (never its target) to ``.refused/``.

        A linked dataset folder is left where it is (there is no folder of the dataset's own to
        move it to); a linked file, or a linked ``labels/`` folder, is moved.
        """
        try:
            target = os.readlink(link)
        except OSError:
            target = "?"
        where = "" if link == path else f"{link.relative_to(self.settings.inbox)} "
        self.log(
            f"inbox: {path.name}: refused: a symbolic link ({where}to {target}); "
            "copy the file into the inbox instead"
        )
        refused = self.settings.inbox / dataset / ".refused"
        if link == self.settings.inbox / dataset:
            return
        with contextlib.suppress(OSError):
            refused.mkdir(parents=True, exist_ok=True)
            os.replace(link, refused / link.name)  # renames the link, never what it points at

    def stop(self) -> None:
        """Stop watching the inbox, waiting up to 5 s for the watcher thread to end."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


@contextlib.contextmanager
def _api(url: str) -> Any:
    """Point this process's Prefect client at ``url`` for the duration."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield
