"""Soak test: the whole product running for a bounded time under steady load, then accounted for.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--batch-seconds 5] [--clients 3]

On a fresh temporary MLOPS_HOME / PREFECT_HOME (analytics off), the soak:

1. writes the built-in credit-risk scenario streams (``write_stream``, seeds 7, 8, ...: 20 weekly
   batches each, their corrupted files included), registers the dataset from seed 7's reference,
   starts ``mlops up`` as a real process (Prefect server, the served deployments on the warm
   runner, automations, inbox watcher), trains the first champion with ``mlops train`` (the gated
   subflow, promoted directly) and starts ``mlops serve`` on a free loopback port;
2. for ``--minutes`` (the soak window) keeps ``--clients`` threads sending single-record
   ``/predict`` requests with a routing key (``--rate`` requests per second each; fresh stable-week
   applications, not the reference the champion was trained on), each followed by ``/feedback``
   with the true label; a request failed when it raised a transport error (10 s timeout) or got a
   non-2xx answer;
3. every ``--batch-seconds`` submits a batch exactly as ``mlops submit`` does
   (``LandingZone.submit``, then ``announce`` -> ``mlops.batch.arrived`` to the stack's Prefect
   server unless the file is a duplicate): the stream's batches without their label column, as the demo sends them, and every
   4th submission a file already submitted, which must be recognised as a duplicate;
4. measures the server's RSS once warmed up: after ``--warmup`` seconds and the server's first
   prediction and feedback log files landed (its first flush, after 60 s, imports the Prefect
   client: a one-time ~50 MiB), then every 5 s, and at the end of the window;
5. runs three rollouts through the rollout flow (``flows.rollout.rollout``, in this process,
   against the served URL, with PREFECT_API_URL on the stack's server) at 15%, 45% and 75% of the
   window, none before the warm-up ends, of challengers trained on 10,000 fresh applications and
   registered in the MLflow registry (``train_challenger``) during the setup: two good ones that
   must be promoted and one trained on flipped labels (as in ``bad_challenger.py``) that must be
   rolled back.
   Canary 10% -> 50% -> 100% with 60 requests and 60 feedback rows per step, so each takes well
   under two minutes; a rollout starts no earlier than the previous one ended, and the window is
   extended until the third has ended;
6. then stops the traffic, waits up to ``--grace`` seconds for every submitted batch to settle,
   and reports.

Policy during the soak: ``MLOPS_MIN_LABELLED_ROWS`` is set out of reach, so a batch decision (or
the repeated-drift review) that would retrain says ``watch`` instead: the only model changes are
the three rollouts. The batches carry no labels, so the rollback rule (champion worse than the
previous one on labelled rows) cannot fire on them; the server's own feedback log (landed as
labels every 60 s by ``mlops serve``) can still reach it, and any policy retrain or rollback seen
in MLflow is printed. ``MLOPS_GATE_LATENCY_BUDGET_MS`` is raised to 500 ms: on a loaded 2-core
machine the first champion's single-row latency gate (50 ms) refuses sound models, and that gate
is not what a soak measures. The server's prediction and feedback logs are landed and processed
by the stack as in production; they are reported, but the batch targets concern the submitted
files.

Reports duration, requests served and failed, batches submitted (unique), duplicates resubmitted,
batches processed / quarantined (the ledger), lost batches (submitted, not settled within the
grace period), duplicated batches (a sha256 with more than one per-batch decision run in MLflow --
tag ``mlops.batch_sha256``, review-drift runs excluded -- or a resubmission not recognised), the
rollouts, and the RSS of the ``mlops serve`` process and its children after warm-up and at the end.
Targets: 0 failed requests, 0 lost, 0 duplicated batches, RSS growth < 10%, and the rollouts'
outcomes as planned. Prints PASS/FAIL per target, writes ``benchmarks/results/soak.json`` and exits
1 when a target is missed. Everything started is stopped by process id / group, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, print_table, write_results

HOME = Path(tempfile.mkdtemp(prefix="mlops-bench-soak-"))
os.environ.update(
    MLOPS_HOME=str(HOME),
    MLOPS_GX_DIR=str(HOME / "great_expectations"),
    MLOPS_PREFECT_PORT="0",
    PREFECT_HOME=str(HOME / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
    GX_ANALYTICS_ENABLED="false",
    MLFLOW_LOGGING_LEVEL="WARNING",
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    # No batch decision starts a retrain: "not retraining: only N labelled rows" -> watch.
    MLOPS_MIN_LABELLED_ROWS="1000000000",
    # The first champion's latency gate (p95 single-row predict <= 50 ms) measured on a loaded
    # 2-core machine refuses sound models; the soak is about endurance, not that gate.
    MLOPS_GATE_LATENCY_BUDGET_MS="500",
    # Rollouts that finish in a minute or two.
    MLOPS_ROLLOUT_STEPS="10,50,100",
    MLOPS_ROLLOUT_MIN_REQUESTS="60",
    MLOPS_ROLLOUT_MIN_FEEDBACK="60",
    MLOPS_ROLLOUT_STEP_SECONDS="90",
    MLOPS_ROLLOUT_MAX_P99_MS="1000",
    MLOPS_SERVE_POLL_SECONDS="0.5",
)
for _key in ("PREFECT_API_URL", "MLOPS_SERVE_URL", "MLOPS_INBOX_DIR", "MLOPS_MLFLOW_TRACKING_URI"):
    os.environ.pop(_key, None)

BIN = Path(sys.executable).parent
DATASET = "credit"
PLAN = (("good", 0.15), ("bad (flipped labels)", 0.45), ("good", 0.75))
EXPECTED = {"good": "promoted", "bad (flipped labels)": "rolled back"}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rss_bytes(pid: int) -> int:
    import psutil

    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return int(total)


def spawn(command: list[str], name: str) -> tuple[subprocess.Popen[str], Path]:
    """A child in its own process group (stopped as a whole by its id), output to a log file."""
    logs = HOME / "logs"
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if alive is not None:
            alive()
        time.sleep(0.3)
    raise RuntimeError(f"waited {timeout:.0f} s for {what}")


# --------------------------------------------------------------------------- the load


class Users:
    """``clients`` threads: /predict (one record, a routing key), then /feedback with the label."""

    def __init__(
        self, url: str, examples: list[tuple[dict[str, Any], int]], clients: int, rate: float
    ):
        self.url, self.examples, self.clients, self.rate = url, examples, clients, rate
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.predictions = self.feedback = 0
        self.failed: Counter[str] = Counter()
        self.failures: list[tuple[float, str]] = []  # (seconds into the soak, what)
        self.latencies: list[float] = []  # /predict round trips, seconds
        self.slow: list[tuple[float, float]] = []  # (seconds into the soak, seconds) over 1 s
        self.variants: Counter[str] = Counter()
        self.t0 = time.monotonic()
        self.threads = [
            threading.Thread(target=self.run, args=(n,), name=f"soak-user-{n}", daemon=True)
            for n in range(clients)
        ]

    def fail(self, what: str) -> None:
        with self.lock:
            self.failed[what] += 1
            self.failures.append((round(time.monotonic() - self.t0, 1), what))

    def run(self, n: int) -> None:
        import httpx

        period = 1.0 / self.rate
        i = n
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopping.is_set():
                began = time.monotonic()
                record, label = self.examples[(i * 7919) % len(self.examples)]
                try:
                    answer = client.post(
                        "/predict", json={"record": record, "routing_key": f"user-{n}-{i}"}
                    )
                except httpx.HTTPError as exc:
                    self.fail(f"predict: {type(exc).__name__}")
                else:
                    took = time.monotonic() - began
                    with self.lock:
                        self.latencies.append(took)
                        if took > 1.0:
                            self.slow.append((round(began - self.t0, 1), round(took, 2)))
                    if answer.is_success:
                        body = answer.json()
                        with self.lock:
                            self.predictions += 1
                            self.variants[body["variant"]] += 1
                        try:
                            back = client.post(
                                "/feedback",
                                json={"request_id": body["request_id"], "label": label},
                            )
                        except httpx.HTTPError as exc:
                            self.fail(f"feedback: {type(exc).__name__}")
                        else:
                            if back.is_success:
                                with self.lock:
                                    self.feedback += 1
                            else:
                                self.fail(f"feedback: HTTP {back.status_code}")
                    else:
                        self.fail(f"predict: HTTP {answer.status_code}")
                i += self.clients
                self.stopping.wait(max(0.0, period - (time.monotonic() - began)))

    def start(self) -> None:
        self.t0 = time.monotonic()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)


class Batches:
    """Every ``seconds``: a new stream file, or (every 4th time) one already submitted."""

    def __init__(self, settings: Any, api_url: str, streams: Streams, seconds: float) -> None:
        self.settings, self.api_url, self.streams, self.seconds = (
            settings,
            api_url,
            streams,
            seconds,
        )
        self.files: list[Path] = []
        self.stopping = threading.Event()
        self.unique: dict[str, dict[str, Any]] = {}  # sha256 -> what happened at submit
        self.resubmitted: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, name="soak-batches", daemon=True)

    def submit(self, path: Path) -> tuple[str, bool, str]:
        """As ``mlops submit``: land, then announce unless a duplicate; (sha, duplicate, state)."""
        from mlops_core.adapters.announce import announce
        from mlops_core.adapters.landing import LandingZone
        from mlops_core.errors import UnusableInputError

        zone = LandingZone(self.settings)
        try:
            receipt = zone.submit(path, DATASET)
        except UnusableInputError:  # quarantined at once with its report, as the CLI says
            return sha256_of(path), False, "quarantined at submit"
        if not receipt.duplicate:
            announce(receipt.entry, "batch")
        return receipt.entry.sha256, receipt.duplicate, receipt.entry.state.value

    def run(self) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        rng = random.Random(1)
        count = 0
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            while not self.stopping.is_set():
                began = time.monotonic()
                count += 1
                resubmit = count % 4 == 0 and self.unique
                try:
                    if resubmit:
                        sha = rng.choice(sorted(self.unique))
                        path = self.unique[sha]["path"]
                        got, duplicate, state = self.submit(path)
                        self.resubmitted.append(
                            {"sha256": sha, "recognised": duplicate and got == sha, "state": state}
                        )
                    else:
                        if not self.files:
                            self.files = self.streams.next()
                        path = self.files.pop(0)
                        sha, duplicate, state = self.submit(path)
                        if duplicate and sha in self.unique:
                            # Same bytes under another name (every stream's week-20 file is
                            # the same empty file): a duplicate, and rightly recognised.
                            self.resubmitted.append(
                                {"sha256": sha, "recognised": True, "state": state}
                            )
                        else:
                            if duplicate:
                                self.errors.append(
                                    f"{path.name}: a new file was called a duplicate"
                                )
                            self.unique[sha] = {
                                "path": path,
                                "name": path.name,
                                "state_at_submit": state,
                                "submitted": time.time(),
                            }
                except Exception as exc:  # noqa: BLE001 -- counted, the soak goes on
                    self.errors.append(f"submit: {type(exc).__name__}: {exc}")
                self.stopping.wait(max(0.0, self.seconds - (time.monotonic() - began)))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)


class Sampler:
    """The model server's RSS every few seconds."""

    def __init__(self, pid: int, every: float = 5.0) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self.run, name="soak-rss", daemon=True)

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic() - self.started, rss_bytes(self.pid)))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


# --------------------------------------------------------------------------- helpers


class Streams:
    """The scenario stream again and again (seeds 7, 8, ...), without the label column."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows, self.seed = batch_rows, 7
        self.reference: Path | None = None

    def next(self) -> list[Path]:
        import polars as pl

        from mlops_cli.scenarios import write_stream

        seed, self.seed = self.seed, self.seed + 1
        stream = write_stream(
            HOME / "streams" / f"seed{seed}", seed=seed, batch_rows=self.batch_rows
        )
        self.reference = self.reference or stream.reference_path
        out = HOME / "batches"
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for batch in stream.batches:
            path = batch.path
            if batch.rows and batch.corruption is None:  # unlabelled, as the demo sends them
                frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
                path = out / f"seed{seed}-{path.name}"
                if path.suffix == ".parquet":
                    frame.drop("default").write_parquet(path)
                else:
                    frame.drop("default").write_csv(path)
            files.append(path)  # corrupted files as they are: quarantined either way
        return files


def register_challenger(settings: Any, kind: str, seed: int) -> str:
    """Train on fresh applications (labels flipped for the bad one) and register a new version."""
    import numpy as np
    import polars as pl

    from mlops_cli.scenarios import generate_applications
    from mlops_core.lifecycle import TrainingData, train_challenger

    rng = np.random.default_rng(seed)
    window = generate_applications(rng, 10_000, week=1, id_prefix=f"C{seed}")
    holdout = generate_applications(rng, 2_000, week=1, id_prefix=f"H{seed}")
    if kind.startswith("bad"):
        window = window.with_columns((1 - pl.col("default")).alias("default"))
    data = TrainingData(window=window, gate_holdout=holdout, lineage=(), data_until=None, sources=1)
    return train_challenger(settings, DATASET, data).version


def decision_runs(settings: Any) -> list[Any]:
    from mlflow.tracking import MlflowClient

    from mlops_core.adapters.registry import ModelRegistry

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = ModelRegistry(settings, DATASET).experiment_id()
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string="tags.`mlops.run_type` = 'decision'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


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


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="the soak window (default 10)")
    parser.add_argument("--batch-seconds", type=float, default=5.0, help="between submissions")
    parser.add_argument("--batch-rows", type=int, default=1_000, help="rows per stream batch")
    parser.add_argument("--clients", type=int, default=3, help="client threads")
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s per client")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the first RSS")
    parser.add_argument("--grace", type=float, default=180.0, help="seconds to settle at the end")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)

    import httpx
    import numpy as np

    from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
    from mlops_cli.stack import free_port, stop_group
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.batches import FINAL_STATES, BatchState
    from mlops_core.settings import Settings

    window = args.minutes * 60
    settings = Settings()
    log(f"soak state: {HOME}")
    streams = Streams(args.batch_rows)
    first_files = streams.next()
    reference = streams.reference
    assert reference is not None
    DatasetCatalog(settings).add(CREDIT_SPEC, reference)
    features = list(CREDIT_SPEC.features)
    # Live traffic: fresh applications of a stable week, never the reference the first champion
    # was trained on (on its own training rows it would look better than any challenger).
    examples = [
        ({f: row[f] for f in features}, int(row["default"]))
        for row in generate_applications(
            np.random.default_rng(11), 10_000, week=1, id_prefix="U"
        ).to_dicts()
    ]
    log(f"dataset {DATASET} registered; stream batches of {args.batch_rows:,} rows")

    up: subprocess.Popen[str] | None = None
    serve: subprocess.Popen[str] | None = None
    users: Users | None = None
    batches: Batches | None = None
    sampler: Sampler | None = None
    stack_stop = "-"
    results: dict[str, Any] = {}
    try:
        started_setup = time.monotonic()
        up, up_log = spawn([str(BIN / "mlops"), "up"], "up")

        def alive() -> None:
            for name, process, path in (("mlops up", up, up_log), ("mlops serve", serve, None)):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with code {process.returncode}"
                        + (f"; see {path}" if path else "")
                    )

        wait_for(
            lambda: (
                "ready" in up_log.read_text(encoding="utf-8", errors="replace")
                and settings.stack_file.exists()
            ),
            300,
            "mlops up",
            alive,
        )
        api = json.loads(settings.stack_file.read_text())["prefect_api_url"]
        log(f"mlops up ready (pid {up.pid}), Prefect API {api}")

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
        registry = ModelRegistry(settings, DATASET)
        champion = registry.aliases().get("champion")
        log(f"first champion v{champion} ({first.get('status')}: {first.get('reason')})")
        challengers = [
            register_challenger(settings, kind, 100 + n) for n, (kind, _) in enumerate(PLAN)
        ]
        log(f"challengers registered: {', '.join(f'v{v}' for v in challengers)}")

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve, serve_log = spawn(
            [str(BIN / "mlops"), "serve", "--dataset", DATASET, "--port", str(port)], "serve"
        )

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 120, "mlops serve", alive)
        log(
            f"mlops serve ready on {url} (pid {serve.pid}); setup took "
            f"{time.monotonic() - started_setup:.0f} s"
        )

        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.rollout import rollout

        users = Users(url, examples, args.clients, args.rate)
        batches = Batches(settings, api, streams, args.batch_seconds)
        batches.files = first_files
        sampler = Sampler(serve.pid)
        t0 = time.monotonic()
        users.start()
        batches.start()
        sampler.start()
        log(
            f"soak window: {args.minutes:g} min; {args.clients} clients at {args.rate:g} req/s "
            f"each; a batch every {args.batch_seconds:g} s"
        )

        def sleep_until(moment: float) -> None:
            while time.monotonic() < moment:
                alive()
                time.sleep(min(1.0, max(0.0, moment - time.monotonic())))

        # Warm-up: --warmup seconds, and the server's first prediction and feedback log files
        # landed (after MLOPS_SERVE_LOG_SECONDS, 60 s: the first flush imports the Prefect client
        # into the server, a one-time ~50 MiB), so the baseline is the server's steady state.
        sleep_until(t0 + args.warmup)

        def first_logs() -> bool:
            return all(
                any(
                    e.original_name.startswith("served-")
                    for e in LandingZone(settings, k).entries(DATASET)
                )
                for k in ("batch", "labels")
            )

        with contextlib.suppress(RuntimeError):
            wait_for(first_logs, 120, "the server's first prediction log", alive)
        sleep_until(time.monotonic() + 5)
        rss_start = rss_bytes(serve.pid)
        warmed = time.monotonic() - t0
        log(f"server RSS after warm-up ({warmed:.0f} s): {rss_start / 2**20:.1f} MiB")

        rollouts: list[dict[str, Any]] = []
        for n, (kind, at) in enumerate(PLAN):
            sleep_until(t0 + max(at * window, warmed))
            began = time.monotonic()
            version = challengers[n]
            log(f"rollout {n + 1}: v{version} ({kind}) through {url}")
            with temporary_settings(updates={PREFECT_API_URL: api}):
                outcome = rollout(dataset=DATASET, version=version, server_url=url)
            alive()
            last = outcome["steps"][-1] if outcome["steps"] else {}
            rollouts.append(
                {
                    "version": version,
                    "challenger": kind,
                    "expected": EXPECTED[kind],
                    "outcome": outcome["status"],
                    "steps": len(outcome["steps"]),
                    "last_weight": last.get("weight"),
                    "reason": "; ".join(last.get("reasons", [])),
                    "champion_after": outcome["aliases"].get("champion"),
                    "seconds": round(time.monotonic() - began, 1),
                    "at_second": round(began - t0, 1),
                }
            )
            log(
                f"rollout {n + 1}: v{version} {outcome['status']} in "
                f"{rollouts[-1]['seconds']} s -- {rollouts[-1]['reason']}"
            )
        sleep_until(t0 + window)
        duration = time.monotonic() - t0
        rss_end = rss_bytes(serve.pid)
        latencies = sorted(users.latencies)

        def quantile(q: float) -> float:
            return (
                latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
                if latencies
                else 0.0
            )

        batches.stop()
        users.stop()
        sampler.stop()
        log(
            f"window over after {duration:.0f} s; server RSS {rss_end / 2**20:.1f} MiB; "
            f"waiting up to {args.grace:.0f} s for the batches to settle"
        )

        zone = LandingZone(settings)

        def unsettled() -> list[str]:
            out = []
            for sha in batches.unique:
                entry = zone.get(DATASET, sha)
                if entry is None or entry.state not in FINAL_STATES:
                    out.append(sha)
            return out

        deadline = time.monotonic() + args.grace
        while unsettled() and time.monotonic() < deadline:
            alive()
            time.sleep(1)
        lost = unsettled()
        states = Counter(
            (zone.get(DATASET, sha).state.value if zone.get(DATASET, sha) else "missing")
            for sha in batches.unique
        )
        settle_seconds = [
            (datetime.fromisoformat(e.updated_at).timestamp() - batches.unique[sha]["submitted"])
            for sha in batches.unique
            if (e := zone.get(DATASET, sha)) is not None
            and e.state in FINAL_STATES
            and batches.unique[sha]["state_at_submit"] != "quarantined at submit"
        ]
        runs = decision_runs(settings)
        per_sha: Counter[str] = Counter(
            r.data.tags.get("mlops.batch_sha256", "")
            for r in runs
            if r.data.tags.get("mlops.batch_sha256") and "mlops.context" not in r.data.tags
        )
        duplicated = sorted(sha for sha, k in per_sha.items() if k > 1)
        unrecognised = [r for r in batches.resubmitted if not r["recognised"]]
        flowed = [
            sha
            for sha, what in batches.unique.items()
            if what["state_at_submit"] != "quarantined at submit"
        ]
        no_decision = [sha for sha in flowed if sha not in lost and per_sha.get(sha, 0) == 0]
        actions = Counter(r.data.tags.get("mlops.decision", "?") for r in runs)
        policy_moves = [
            {"run": r.info.run_name, "decision": r.data.tags.get("mlops.decision")}
            for r in runs
            if r.data.tags.get("mlops.decision") in ("retrain", "rollback")
            and r.data.tags.get("mlops.manual") != "true"
        ]
        server_logged = [
            e
            for kind in ("batch", "labels")
            for e in LandingZone(settings, kind).entries(DATASET)
            if e.original_name.startswith("served-")
        ]
        growth = (rss_end - rss_start) / rss_start
        failed = sum(users.failed.values())
        served = users.predictions + users.feedback
        rollouts_ok = len(rollouts) == len(PLAN) and all(
            r["outcome"] == r["expected"] for r in rollouts
        )
        targets = {
            "failed requests": (failed, "0", failed == 0),
            "lost batches": (len(lost), "0", not lost),
            "duplicated batches": (
                len(duplicated) + len(unrecognised),
                "0",
                not duplicated and not unrecognised,
            ),
            "server RSS growth": (f"{growth:+.1%}", "< 10%", growth < 0.10),
            "rollouts as planned": (
                ", ".join(f"v{r['version']} {r['outcome']}" for r in rollouts),
                "promoted, rolled back, promoted",
                rollouts_ok,
            ),
        }
        rows = [
            ["duration (soak window)", f"{duration:.0f} s", "", ""],
            ["requests served (predict + feedback)", f"{served:,}", "", ""],
            ["  predictions / feedback", f"{users.predictions:,} / {users.feedback:,}", "", ""],
            ["  answered by challenger", f"{users.variants['challenger']:,}", "", ""],
            [
                "  /predict p50 / p99 / max",
                f"{quantile(0.5):.0f} / {quantile(0.99):.0f} / {quantile(1.0):.0f} ms",
                "",
                "",
            ],
            ["failed requests", failed, "0", "PASS" if targets["failed requests"][2] else "FAIL"],
            ["batches submitted (unique)", len(batches.unique), "", ""],
            [
                "duplicates resubmitted (recognised)",
                f"{len(batches.resubmitted)} ({len(batches.resubmitted) - len(unrecognised)})",
                "",
                "",
            ],
            ["batches processed", states.get(BatchState.processed.value, 0), "", ""],
            ["batches quarantined", states.get(BatchState.quarantined.value, 0), "", ""],
            [
                "lost batches",
                len(lost),
                "0",
                "PASS" if targets["lost batches"][2] else "FAIL",
            ],
            [
                "duplicated batches",
                targets["duplicated batches"][0],
                "0",
                "PASS" if targets["duplicated batches"][2] else "FAIL",
            ],
            [
                "submit -> settled p50 / max",
                (
                    f"{sorted(settle_seconds)[len(settle_seconds) // 2]:.1f} / "
                    f"{max(settle_seconds):.1f} s"
                    if settle_seconds
                    else "-"
                ),
                "",
                "",
            ],
            ["server RSS after warm-up", f"{rss_start / 2**20:.1f} MiB", "", ""],
            ["server RSS at end", f"{rss_end / 2**20:.1f} MiB", "", ""],
            [
                "server RSS growth",
                f"{growth:+.1%}",
                "< 10%",
                "PASS" if targets["server RSS growth"][2] else "FAIL",
            ],
            [
                "rollouts as planned",
                f"{sum(r['outcome'] == r['expected'] for r in rollouts)} of {len(PLAN)}",
                "3 of 3",
                "PASS" if rollouts_ok else "FAIL",
            ],
        ]
        print()
        print_table(["measure", "value", "target", "result"], rows)
        print()
        print_table(
            ["rollout", "version", "challenger", "outcome", "steps", "at s", "seconds", "champion"],
            [
                [
                    n + 1,
                    f"v{r['version']}",
                    r["challenger"],
                    r["outcome"],
                    r["steps"],
                    r["at_second"],
                    r["seconds"],
                    f"v{r['champion_after']}",
                ]
                for n, r in enumerate(rollouts)
            ],
        )
        for r in rollouts:
            print(f"v{r['version']}: {r['reason']}")
        print(
            f"decision runs: {dict(actions)}; policy retrains/rollbacks during the soak: "
            f"{len(policy_moves)}; server-logged micro-batches landed: "
            f"{Counter(e.state.value for e in server_logged)}"
        )
        if users.failed:
            print(f"failed requests (seconds into the soak, what): {users.failures[:20]}")
        if users.slow:
            print(f"/predict over 1 s (seconds into the soak, seconds): {users.slow[:20]}")
        if batches.errors:
            print(f"batch thread errors: {batches.errors[:10]}")
        if lost:
            print(f"lost: {[batches.unique[s]['name'] for s in lost]}")
        if duplicated or unrecognised:
            print(
                f"duplicated: {duplicated[:10]}; resubmissions not recognised: {unrecognised[:10]}"
            )
        if no_decision:
            print(f"settled without a decision run: {len(no_decision)}")
        results = {
            "settings": {
                "minutes": args.minutes,
                "batch_seconds": args.batch_seconds,
                "batch_rows": args.batch_rows,
                "clients": args.clients,
                "rate_per_client": args.rate,
                "warmup_seconds": args.warmup,
                "grace_seconds": args.grace,
                "rollout": {k: os.environ[k] for k in os.environ if k.startswith("MLOPS_ROLLOUT_")},
                "min_labelled_rows": os.environ["MLOPS_MIN_LABELLED_ROWS"],
                "gate_latency_budget_ms": os.environ["MLOPS_GATE_LATENCY_BUDGET_MS"],
            },
            "duration_seconds": round(duration, 1),
            "requests": {
                "predictions": users.predictions,
                "feedback": users.feedback,
                "served": served,
                "failed": failed,
                "failed_by_kind": dict(users.failed),
                "failures": users.failures,
                "predict_ms": {
                    "p50": round(quantile(0.5), 1),
                    "p99": round(quantile(0.99), 1),
                    "max": round(quantile(1.0), 1),
                },
                "predict_over_1s": users.slow,
                "variants": dict(users.variants),
            },
            "batches": {
                "submitted_unique": len(batches.unique),
                "resubmitted": len(batches.resubmitted),
                "resubmissions_recognised": len(batches.resubmitted) - len(unrecognised),
                "states": dict(states),
                "lost": [batches.unique[s]["name"] for s in lost],
                "duplicated_sha256": duplicated,
                "settled_without_decision_run": len(no_decision),
                "settle_seconds_p50": (
                    round(sorted(settle_seconds)[len(settle_seconds) // 2], 2)
                    if settle_seconds
                    else None
                ),
                "settle_seconds_max": round(max(settle_seconds), 2) if settle_seconds else None,
                "errors": batches.errors,
            },
            "decision_runs": dict(actions),
            "policy_retrains_or_rollbacks": policy_moves,
            "server_logged": dict(Counter(e.state.value for e in server_logged)),
            "rollouts": rollouts,
            "server_rss_mib": {
                "warmup_seconds": round(warmed, 1),
                "after_warmup": round(rss_start / 2**20, 1),
                "end": round(rss_end / 2**20, 1),
                "growth": round(growth, 4),
                "samples": [(round(t, 1), round(b / 2**20, 1)) for t, b in sampler.samples],
            },
            "targets": {
                k: {"value": v[0], "target": v[1], "passed": v[2]} for k, v in targets.items()
            },
        }
    except KeyboardInterrupt:
        log("interrupted: stopping everything started")
        results = {}
        return_code = 130
    else:
        return_code = 0 if all(t["passed"] for t in results["targets"].values()) else 1
    finally:
        for part in (batches, users, sampler):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        if serve is not None:
            stop_group(serve)
        if up is not None:
            stack_stop = stop_stack(up, settings)
            log(f"mlops up {stack_stop}")
    if results:
        results["stack_stop"] = stack_stop
        results["home"] = str(HOME)
        print(f"wrote {write_results('soak', results)}")
        print(f"wrote {plot_memory(results)}")
        for name, target in results["targets"].items():
            print(
                f"{'PASS' if target['passed'] else 'FAIL'}  {name}: {target['value']} "
                f"(target {target['target']})"
            )
    return return_code


def plot_memory(results: dict[str, Any]) -> Path:
    """The server's RSS over the soak, with the rollouts marked: ``results/soak_memory.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = results["server_rss_mib"]
    seconds, mib = zip(*memory["samples"], strict=True)
    figure, axis = plt.subplots(figsize=(9, 3.6))
    axis.plot(seconds, mib, color="#1f77b4", lw=1.4, label="mlops serve RSS")
    axis.axvline(memory["warmup_seconds"], color="grey", ls=":", lw=1)
    axis.axhline(memory["after_warmup"] * 1.1, color="#d62728", ls="--", lw=1, label="+10% target")
    for rollout in results["rollouts"]:
        colour = "#2ca02c" if rollout["outcome"] == "promoted" else "#d62728"
        start = rollout["at_second"]
        axis.axvspan(start, start + rollout["seconds"], color=colour, alpha=0.2)
        axis.annotate(
            f"v{rollout['version']} {rollout['outcome']}",
            (start, min(mib)),
            fontsize=8,
            rotation=90,
            va="bottom",
        )
    axis.set_xlabel("seconds into the soak window")
    axis.set_ylabel("MiB")
    axis.set_title(
        f"Soak: {results['requests']['served']:,} requests, "
        f"{results['requests']['failed']} failed; RSS {memory['after_warmup']:.0f} -> "
        f"{memory['end']:.0f} MiB ({memory['growth']:+.1%})"
    )
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path = ROOT / "benchmarks" / "results" / "soak_memory.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plot"]:  # redraw the plot from the last results
        print(plot_memory(json.loads((ROOT / "benchmarks/results/soak.json").read_text())))
        sys.exit(0)
    sys.exit(main())
