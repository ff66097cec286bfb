"""The standard services the cluster stack stands on, started on this machine on loopback ports.

* ``Postgres`` -- Debian's PostgreSQL (``initdb`` + ``pg_ctl``); ``initdb`` refuses root, so as
  root the cluster is created and run as the ``postgres`` user (``runuser``);
* ``Redis`` -- ``redis-server`` without persistence (Prefect's messaging and event ordering);
* ``ObjectStore`` -- moto's server mode, an S3 stand-in (MinIO or S3 in production).

Each one is started in its own process group, waited on until it answers, and stopped by the
process id it started (PostgreSQL by ``pg_ctl stop``, which reads its own ``postmaster.pid``).
Nothing here stops a process by name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlops_core.errors import MlopsError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(ready: object, what: str, timeout: float, log: Path | None = None) -> None:
    """Poll ``ready()`` until it is true; a clear error naming ``what`` (and its log) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.2)
    where = f"; see its log: {log}" if log else ""
    raise MlopsError(f"{what} did not answer within {timeout:.0f} s{where}")


def stop_process_group(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10.0
) -> None:
    """SIGTERM the process group led by ``process``, then SIGKILL what is left after ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    # Children of the group that outlived its leader.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise MlopsError(
        f"PostgreSQL's {name} is not installed",
        hint="install Debian's postgresql package (bash .ci/system-packages does, as root)",
    )


def _as_postgres_user() -> list[str]:
    """``runuser -u postgres --`` when we are root (``initdb`` refuses root), else nothing."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class Postgres:
    """A PostgreSQL cluster of our own: its data folder, port and the databases made in it."""

    root: Path
    port: int = 0
    user: str = "postgres"
    log: Path = field(init=False)

    data: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.port = self.port or free_port()
        if self.data is None:
            self.data = self.root / "data"
        self.log = self.data.parent / "postgres.log"

    @property
    def folder(self) -> Path:
        """The cluster's data folder."""
        assert self.data is not None
        return self.data

    def url(self, database: str, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URL of ``database`` (``driver``: psycopg2, asyncpg)."""
        return f"postgresql+{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def _prepare(self) -> None:
        """A data folder the ``postgres`` user can own and reach (as root: under a 0755 path)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        parent = self.folder.parent
        parent.mkdir(parents=True, exist_ok=True)
        if any(not os.stat(p).st_mode & 0o001 for p in [parent, *parent.parents]):
            # A private parent (pytest's tmp folders are 0700): the cluster lives in /tmp instead.
            parent = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
            os.chmod(parent, 0o755)
            self.data, self.log = parent / "data", parent / "postgres.log"
        shutil.chown(parent, user="postgres")

    def start(self, databases: tuple[str, ...] = ()) -> Postgres:
        """Create the cluster when new, start it, and create ``databases`` that are missing."""
        fresh = not (self.folder / "PG_VERSION").exists()
        if fresh:
            self._prepare()
            done = subprocess.run(
                [
                    *_as_postgres_user(),
                    _postgres_bin("initdb"),
                    "-D",
                    str(self.folder),
                    "-A",
                    "trust",
                    "-U",
                    self.user,
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                cwd="/",
            )
            if done.returncode:
                raise MlopsError(f"initdb failed: {done.stderr.strip()[-500:]}")
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", self._options())
        wait_until(lambda: port_open(self.port), f"PostgreSQL on port {self.port}", 30, self.log)
        for database in databases:
            self.create_database(database)
        return self

    def _options(self) -> str:
        return (
            f"-k {self.folder} -c listen_addresses=127.0.0.1 -p {self.port} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            [*_as_postgres_user(), _postgres_bin("pg_ctl"), "-D", str(self.folder), *args],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if done.returncode:
            raise MlopsError(
                f"pg_ctl {args[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}",
                hint=f"see PostgreSQL's log: {self.log}",
            )

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists (with ``pg_trgm``, which Prefect's server needs)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                exists = connection.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if not exists:
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        engine = sa.create_engine(self.url(name), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        finally:
            engine.dispose()

    def pid(self) -> int | None:
        """The postmaster's process id, from its own ``postmaster.pid``; None when not running."""
        try:
            return int((self.folder / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def restart(self) -> None:
        """Stop (fast: open connections are closed) and start again on the same port."""
        self._pg_ctl(
            "restart", "-w", "-t", "60", "-m", "fast", "-l", str(self.log), "-o", self._options()
        )
        wait_until(lambda: port_open(self.port), f"PostgreSQL on port {self.port}", 30, self.log)

    def stop(self) -> None:
        """Stop the cluster (``pg_ctl stop -m fast``); nothing when it is not running."""
        if self.pid() is None:
            return
        with contextlib.suppress(MlopsError):
            self._pg_ctl("stop", "-w", "-t", "30", "-m", "fast")


@dataclass
class Redis:
    """A ``redis-server`` without persistence on a loopback port."""

    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.port = self.port or free_port()

    @property
    def log(self) -> Path:
        """Redis's log file."""
        return self.root / "redis.log"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        """Start it and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise MlopsError(
                "redis-server is not installed",
                hint="install Debian's redis-server package (bash .ci/system-packages does, as root)",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--logfile",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port), f"Redis on port {self.port}", 20, self.log)
        return self

    def stop(self) -> None:
        """Stop the server by its process id."""
        if self.process is not None:
            stop_process_group(self.process)


@dataclass
class ObjectStore:
    """moto's S3 server on a loopback port, with ``buckets`` created."""

    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.port = self.port or free_port()

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """moto's log file."""
        return self.root / "s3.log"

    def environment(self) -> dict[str, str]:
        """What an S3 client (boto3, MLflow's artifact proxy) needs to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": "mlops",
            "AWS_SECRET_ACCESS_KEY": "mlops-secret",
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def start(self, buckets: tuple[str, ...] = ()) -> ObjectStore:
        """Start moto's server and create ``buckets``."""
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise MlopsError(
                "moto is not installed (it stands in for S3 on one machine)",
                hint="pip install 'moto[server]' (make setup installs it)",
            ) from None
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: port_open(self.port), f"the S3 stand-in on port {self.port}", 60, self.log
        )
        for bucket in buckets:
            self.create_bucket(bucket)
        return self

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client of this store."""
        import boto3

        env = self.environment()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        """Create ``name`` (nothing when it exists)."""
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def stop(self) -> None:
        """Stop the server by its process id."""
        if self.process is not None:
            stop_process_group(self.process)
