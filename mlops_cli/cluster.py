"""``mlops up --cluster``: the loop on the standard distributed parts, started on this machine.

The parts, each a process of its own on a free loopback port, in the order they start:

1. PostgreSQL (databases ``prefect``, ``mlflow``, ``ledger``), Redis, and an S3-compatible store
   (moto's server mode here; MinIO or S3 in production);
2. the MLflow tracking server on PostgreSQL, proxying artifacts to ``s3://<bucket>/mlflow`` (so
   MLflow's clients need no object-store credentials); batches, reports, quarantine and the
   servers' logs go to ``s3://<bucket>/store`` (``MLOPS_STORE_URL``);
3. Prefect: the schema upgraded once, two API processes started one after the other with
   ``--no-services``, one ``prefect server services start``, all on PostgreSQL with Redis for
   messaging, event ordering, lease storage and the docket;
4. a ``process`` work pool with the loop's deployments and their event triggers, the automations
   and the per-dataset retrain concurrency limits, and two ``prefect worker`` processes (one per
   API, as a load balancer would spread them);
5. two model-server replicas (``mlops serve``) of the served dataset, each following the registry.

The parts' process ids, ports and URLs are written to ``<home>/cluster/cluster.json``, and the
environment a client needs to use it to ``<home>/cluster/env.sh``; ``mlops down`` stops every
process it lists by its process id (SIGTERM, then SIGKILL), and PostgreSQL with ``pg_ctl stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_cli.services import (
    ObjectStore,
    Postgres,
    Redis,
    free_port,
    http_ok,
    stop_process_group,
    wait_until,
)
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
POOL = "mlops"
BUCKET = "mlops"


def _bin(name: str) -> str:
    """An executable of this virtualenv (prefect, mlflow, mlops)."""
    return str(Path(sys.executable).parent / name)


@dataclass
class Part:
    """A process the cluster started: its name, process id, log and (when it serves) its URL."""

    name: str
    pid: int
    log: str
    url: str | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The part as plain JSON data (without the process handle)."""
        return {"name": self.name, "pid": self.pid, "log": self.log, "url": self.url}

    def alive(self) -> bool:
        """Whether the process is still running."""
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def kill(self) -> None:
        """Kill the process group this part leads at once (SIGKILL), as a crash would."""
        kill_pid_group(self.pid)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process group this part leads, by its process id (and what it started in
        sessions of its own, such as a worker's flow runs, when they outlive it)."""
        if self.process is not None:
            leftovers = _descendants(self.pid)
            stop_process_group(self.process, grace)
            _kill_all(leftovers)
            return
        stop_pid_group(self.pid, grace)


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill_all(processes: list[Any]) -> None:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def kill_pid_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` and every process it started, even those in
    sessions of their own (a worker's flow runs): a machine's crash, for fault tests."""
    import signal

    descendants = _descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _kill_all(descendants)


def stop_pid_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid`` (started by us), SIGKILL after ``grace`` seconds."""
    import signal

    leftovers = _descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _kill_all([p for p in leftovers if p.is_running()])


@dataclass
class Cluster:
    """The loop on PostgreSQL, Redis, an object store, an MLflow server, two Prefect APIs,
    a work pool with workers and model-server replicas -- all on this machine."""

    settings: Settings
    workers: int = 2
    apis: int = 2
    replicas: int = 2
    serve: str | None = None  # the dataset the model servers serve (none: no model servers)
    worker_environment: dict[str, str] = field(default_factory=dict)  # extra MLOPS_* for workers
    log: Any = print
    parts: list[Part] = field(default_factory=list)
    postgres: Postgres | None = None
    redis: Redis | None = None
    store: ObjectStore | None = None
    api_urls: list[str] = field(default_factory=list)
    mlflow_url: str = ""
    metrics_url: str = ""
    serve_urls: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """Where the cluster keeps its services' data, logs and state file."""
        return (self.settings.home / "cluster").resolve()

    @property
    def state_file(self) -> Path:
        """``<home>/cluster/cluster.json``: what ``mlops down`` stops."""
        return self.root / "cluster.json"

    # ------------------------------------------------------------------ environments

    def prefect_server_environment(self) -> dict[str, str]:
        """Prefect's server settings: PostgreSQL, and Redis for messaging, ordering and leases."""
        assert self.postgres is not None and self.redis is not None
        return {
            "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": self.postgres.url("prefect", "asyncpg"),
            "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
            "PREFECT_REDIS_MESSAGING_PORT": str(self.redis.port),
            "PREFECT_REDIS_MESSAGING_DB": "0",
            "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:{self.redis.port}/1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }

    def client_environment(self, api_url: str | None = None) -> dict[str, str]:
        """What a worker, a model server or a person's shell needs to use the cluster."""
        assert self.postgres is not None
        env = {
            "MLOPS_HOME": str(self.settings.home.resolve()),
            "MLOPS_GX_DIR": str(Path(self.settings.gx_dir).resolve()),
            "MLOPS_LEDGER_URL": self.postgres.url("ledger"),
            # Batches, reports, quarantine and the servers' logs in the object store.
            "MLOPS_STORE_URL": f"s3://{BUCKET}/store",
            "MLOPS_MLFLOW_TRACKING_URI": self.mlflow_url,
            # Any MLflow call that does not pass our URI (a library's) reaches the same server,
            # instead of creating mlflow.db in the working folder.
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_API_URL": api_url or (self.api_urls[0] if self.api_urls else ""),
            "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        if self.serve_urls:
            env["MLOPS_SERVE_URL"] = ",".join(self.serve_urls)
        if self.store is not None:
            env.update(self.store.environment())
            env["MLOPS_S3_ENDPOINT_URL"] = self.store.endpoint
        return env

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str], url: str | None = None
    ) -> Part:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{name}.log"
        with path.open("w", encoding="utf-8") as handle:
            process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self._environment(env),
                text=True,
                start_new_session=True,  # its own process group: stopped as a whole, by its id
                cwd=REPO,
            )
        part = Part(name, process.pid, str(path), url, process)
        self.parts.append(part)
        self._save()
        return part

    def _wait(self, part: Part, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not part.alive():
                raise MlopsError(
                    f"{part.name} exited while starting", hint=f"see its log: {part.log}"
                )
            time.sleep(0.3)
        raise MlopsError(
            f"{part.name} did not answer within {timeout:.0f} s", hint=f"see its log: {part.log}"
        )

    def _run(self, what: str, command: list[str], env: dict[str, str], timeout: float = 300) -> str:
        done = subprocess.run(
            command,
            env=self._environment(env),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=timeout,
        )
        if done.returncode:
            raise MlopsError(
                f"{what} failed (exit code {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
        return done.stdout

    # ------------------------------------------------------------------ start

    def start(self) -> dict[str, Any]:
        """Start every part, wait until each answers; the state (URLs, process ids). On failure
        what was started is stopped again."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._start_services()
            self._start_mlflow()
            self._start_prefect()
            self._deploy()
            self._start_workers()
            self._start_exporter()
            if self.serve:
                self.start_model_servers(self.serve)
        except BaseException:
            self.stop()
            raise
        (self.root / "env.sh").write_text(
            "".join(
                f"export {k}={shlex.quote(v)}\n"
                for k, v in sorted(self.client_environment().items())
            )
        )
        return self._save()

    def _start_services(self) -> None:
        started = time.monotonic()
        self.postgres = Postgres(self.root / "postgres").start(("prefect", "mlflow", "ledger"))
        self._save()
        self.redis = Redis(self.root / "redis").start()
        self._save()
        self.store = ObjectStore(self.root / "s3").start((BUCKET,))
        self._save()
        self.log(
            f"  PostgreSQL :{self.postgres.port}, Redis :{self.redis.port}, "
            f"S3 {self.store.endpoint} ({time.monotonic() - started:.0f} s)"
        )

    def _start_mlflow(self) -> None:
        assert self.postgres is not None and self.store is not None
        started = time.monotonic()
        port = free_port()
        self.mlflow_url = f"http://127.0.0.1:{port}"
        part = self._spawn(
            "mlflow",
            [
                _bin("mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                self.postgres.url("mlflow"),
                "--artifacts-destination",
                f"s3://{BUCKET}/mlflow",
                "--workers",
                "1",
            ],
            # Its background job runner (huey consumers, for GenAI jobs the loop never runs) off.
            {**self.store.environment(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            self.mlflow_url,
        )
        self._wait(part, lambda: http_ok(f"{self.mlflow_url}/health"), 180)
        self.log(f"  MLflow server {self.mlflow_url} ({time.monotonic() - started:.0f} s)")

    def _start_prefect(self) -> None:
        started = time.monotonic()
        server_env = self.prefect_server_environment()
        # The schema once, before any API starts (two APIs migrating at once collide).
        self._run(
            "prefect server database upgrade",
            [_bin("prefect"), "server", "database", "upgrade", "-y"],
            {**server_env, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        )
        for index in range(self.apis):
            port = free_port()
            url = f"http://127.0.0.1:{port}/api"
            part = self._spawn(
                f"prefect-api-{index + 1}",
                [
                    _bin("prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-services",
                ],
                {**server_env, "PREFECT_UI_API_URL": url},
                url,
            )
            self._wait(part, lambda u=url: http_ok(f"{u}/health"), 180)  # type: ignore[misc]
            self.api_urls.append(url)
        self._spawn(
            "prefect-services",
            [_bin("prefect"), "server", "services", "start"],
            {**server_env, "PREFECT_API_URL": self.api_urls[0]},
        )
        self.log(
            f"  Prefect APIs {', '.join(self.api_urls)} + services "
            f"({time.monotonic() - started:.0f} s)"
        )

    def _deploy(self) -> None:
        started = time.monotonic()
        self._run(
            "deploying the loop to the work pool",
            [sys.executable, "-m", "deployments.cluster", "--pool", POOL],
            self.client_environment(),
        )
        self.log(
            f"  work pool {POOL!r}: deployments, triggers, automations ({time.monotonic() - started:.0f} s)"
        )

    def _start_workers(self) -> None:
        for index in range(self.workers):
            self.start_worker(index + 1)
        wait_until(self._workers_online, f"{self.workers} workers online in pool {POOL!r}", 120)
        self.log(f"  {self.workers} workers polling pool {POOL!r}")

    def start_worker(self, number: int) -> Part:
        """Worker ``number`` (1, 2, ...) on the pool, following API ``number`` (round robin)."""
        api = self.api_urls[(number - 1) % len(self.api_urls)]
        env = {
            **self.client_environment(api),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            # Each flow run is a process of its own: one math thread each, so runs side by side
            # do not oversubscribe the cores (OpenMP in scikit-learn, torch).
            "OMP_NUM_THREADS": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
            **self.worker_environment,
        }
        if self.serve_urls:
            env["MLOPS_SERVE_URL"] = ",".join(self.serve_urls)
        return self._spawn(
            f"worker-{number}",
            [
                # ``prefect worker start`` beside a fork server: its flow runs start warm.
                sys.executable,
                "-m",
                "deployments.worker",
                "--pool",
                POOL,
                "--type",
                "process",
                "--name",
                f"mlops-worker-{number}",
                "--limit",
                "2",
            ],
            env,
        )

    def _workers_online(self) -> bool:
        try:
            request = urllib.request.Request(
                f"{self.api_urls[0]}/work_pools/{POOL}/workers/filter",
                data=b"{}",
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=2) as answer:
                workers = json.loads(answer.read())
        except OSError:
            return False
        return sum(w.get("status") == "ONLINE" for w in workers) >= self.workers

    def _start_exporter(self) -> None:
        """The pipeline metrics exporter, reading the shared ledger, store and MLflow server."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        part = self._spawn(
            "exporter",
            [sys.executable, "-m", "mlops_core.adapters.exporter", "--port", str(port)],
            self.client_environment(),
            url,
        )
        self._wait(part, lambda: http_ok(url), 60)
        self.metrics_url = url
        self._save()
        self.log(f"  pipeline metrics {url}")

    def start_model_servers(self, dataset: str) -> None:
        """The model-server replicas of ``dataset`` (its champion must be registered)."""
        for index in range(self.replicas):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            part = self._spawn(
                f"model-server-{index + 1}",
                [_bin("mlops"), "serve", "--dataset", dataset, "--port", str(port)],
                self.client_environment(),
                url,
            )
            self._wait(part, lambda u=url: http_ok(f"{u}/health"), 120)  # type: ignore[misc]
            self.serve_urls.append(url)
            self._save()
        self.log(f"  model servers {', '.join(self.serve_urls)}")

    # ------------------------------------------------------------------ state and stop

    def _save(self) -> dict[str, Any]:
        state = {
            "home": str(self.settings.home.resolve()),
            "owner_pid": os.getpid(),
            "parts": [p.to_dict() for p in self.parts],
            "postgres": None
            if self.postgres is None
            else {"data": str(self.postgres.folder), "port": self.postgres.port},
            "redis": None
            if self.redis is None
            else {"port": self.redis.port, "pid": self._pid(self.redis)},
            "s3": None
            if self.store is None
            else {"endpoint": self.store.endpoint, "pid": self._pid(self.store), "bucket": BUCKET},
            "prefect_api_urls": self.api_urls,
            "prefect_ui_url": self.api_urls[0].removesuffix("/api") if self.api_urls else None,
            "mlflow_url": self.mlflow_url or None,
            "serve_urls": self.serve_urls,
            "metrics_url": self.metrics_url or None,
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        staged = self.state_file.with_suffix(".tmp")
        staged.write_text(json.dumps(state, indent=2))
        staged.replace(self.state_file)
        return state

    @staticmethod
    def _pid(service: Redis | ObjectStore) -> int | None:
        return service.process.pid if service.process is not None else None

    def part(self, name: str) -> Part:
        """The newest started part called ``name`` (a restarted worker keeps its name)."""
        for part in reversed(self.parts):
            if part.name == name:
                return part
        raise KeyError(name)

    def stop(self) -> None:
        """Stop every part this object started, newest first, then the services."""
        for part in reversed(self.parts):
            part.stop()
        for service in (self.store, self.redis, self.postgres):
            if service is not None:
                service.stop()
        with contextlib.suppress(OSError):
            self.state_file.unlink()


def read_cluster(home: Path) -> dict[str, Any] | None:
    """The state of the cluster recorded under ``home``; None when none is."""
    state_file = home.resolve() / "cluster" / "cluster.json"
    try:
        return dict(json.loads(state_file.read_text()))
    except (OSError, ValueError):
        return None


def stop_recorded(home: Path) -> list[str]:
    """``mlops down``: stop every process listed in ``<home>/cluster/cluster.json`` by its id,
    then PostgreSQL; the names of what was stopped."""
    state_file = home.resolve() / "cluster" / "cluster.json"
    if not state_file.exists():
        raise MlopsError(
            f"no cluster is recorded under {home.resolve()}",
            hint="start one with `mlops up --cluster` (or set MLOPS_HOME to where it runs)",
        )
    state = json.loads(state_file.read_text())
    stopped = []
    for part in reversed(state.get("parts", [])):
        stop_pid_group(int(part["pid"]))
        stopped.append(part["name"])
    for name in ("s3", "redis"):
        info = state.get(name) or {}
        if info.get("pid"):
            stop_pid_group(int(info["pid"]))
            stopped.append(name)
    if state.get("postgres"):
        data = Path(state["postgres"]["data"])
        Postgres(data.parent, port=int(state["postgres"]["port"]), data=data).stop()
        stopped.append("postgres")
    state_file.unlink()
    return stopped
