"""The soak's load and its watch, as background loops: users, the batch submitter, the RSS sampler.

* ``Users``: ``clients`` loops, each a ``/predict`` (one record, a routing key) then ``/feedback``
  with the true label, at ``rate`` requests per second;
* ``Batches``: every ``seconds``, a new stream file submitted as ``mlops submit`` does, or (every
  4th time) one already submitted, which must be recognised as a duplicate;
* ``Sampler``: the model server's RSS (with its children) every few seconds;
* ``Streams``: the scenario stream again and again (seeds 7, 8, ...), without the label column.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections import Counter
from itertools import count
from pathlib import Path
from typing import Any

from mlops_cli.loops import BackgroundLoop, Loops, Pace

DATASET = "credit"
Example = tuple[dict[str, Any], int]  # (record, true label)


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` and all its children, in bytes."""
    import psutil

    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return int(total)


class Users:
    """``clients`` loops: /predict (one record, a routing key), then /feedback with the label."""

    def __init__(self, url: str, examples: list[Example], clients: int, rate: float) -> None:
        import httpx

        self.url, self.examples, self.clients, self.rate = url, examples, clients, rate
        self.lock = threading.Lock()
        self.predictions = self.feedback = 0
        self.failed: Counter[str] = Counter()
        self.failures: list[tuple[float, str]] = []  # (seconds into the soak, what)
        self.latencies: list[float] = []  # /predict round trips, seconds
        self.slow: list[tuple[float, float]] = []  # (seconds into the soak, seconds) over 1 s
        self.variants: Counter[str] = Counter()
        self.t0 = time.monotonic()
        self.loops = Loops(
            self._client_loop(n, httpx.Client(base_url=url, timeout=10)) for n in range(clients)
        )

    def _client_loop(self, n: int, client: Any) -> BackgroundLoop:
        # Client n sends examples n, n + clients, n + 2 * clients, ... (spread by a prime stride).
        turns = count(n, self.clients)
        return BackgroundLoop(
            f"soak-user-{n}",
            lambda: self.request(client, n, next(turns)),
            1.0 / self.rate,
            pace=Pace.rate,
            join_seconds=15,
            within=lambda: client,
        )

    def fail(self, what: str) -> None:
        """Count a failed request by kind, with when it failed."""
        with self.lock:
            self.failed[what] += 1
            self.failures.append((round(time.monotonic() - self.t0, 1), what))

    def request(self, client: Any, n: int, i: int) -> None:
        """One prediction of example ``i`` by client ``n``, then its label as feedback."""
        import httpx

        began = time.monotonic()
        record, label = self.examples[(i * 7919) % len(self.examples)]
        try:
            answer = client.post(
                "/predict", json={"record": record, "routing_key": f"user-{n}-{i}"}
            )
        except httpx.HTTPError as exc:
            self.fail(f"predict: {type(exc).__name__}")
            return
        took = time.monotonic() - began
        with self.lock:
            self.latencies.append(took)
            if took > 1.0:
                self.slow.append((round(began - self.t0, 1), round(took, 2)))
        if not answer.is_success:
            self.fail(f"predict: HTTP {answer.status_code}")
            return
        body = answer.json()
        with self.lock:
            self.predictions += 1
            self.variants[body["variant"]] += 1
        self.send_feedback(client, body["request_id"], label)

    def send_feedback(self, client: Any, request_id: str, label: int) -> None:
        """The true label of an answered request to ``/feedback``; counted, or counted as failed."""
        import httpx

        try:
            back = client.post("/feedback", json={"request_id": request_id, "label": label})
        except httpx.HTTPError as exc:
            self.fail(f"feedback: {type(exc).__name__}")
            return
        if back.is_success:
            with self.lock:
                self.feedback += 1
        else:
            self.fail(f"feedback: HTTP {back.status_code}")

    def start(self) -> None:
        """Start every client; the soak's clock (``t0``) starts now."""
        self.t0 = time.monotonic()
        self.loops.start()

    def stop(self) -> None:
        """Stop every client (each finishes its request in flight)."""
        self.loops.stop()


class Streams:
    """The scenario stream again and again (seeds 7, 8, ...), without the label column."""

    def __init__(self, home: Path, batch_rows: int) -> None:
        self.home, self.batch_rows, self.seed = home, batch_rows, 7
        self.reference: Path | None = None

    def next(self) -> list[Path]:
        """The next seed's stream files, in order: unlabelled copies, corrupted files as they are."""
        from mlops_cli.demo_weeks import without_labels
        from mlops_cli.scenarios import write_stream

        seed, self.seed = self.seed, self.seed + 1
        stream = write_stream(
            self.home / "streams" / f"seed{seed}", seed=seed, batch_rows=self.batch_rows
        )
        self.reference = self.reference or stream.reference_path
        out = self.home / "batches"
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for batch in stream.batches:
            path = batch.path
            if batch.rows and batch.corruption is None:  # unlabelled, as the demo sends them
                path = out / f"seed{seed}-{path.name}"
                without_labels(batch.path, path)
            files.append(path)  # corrupted files as they are: quarantined either way
        return files


class Batches:
    """Every ``seconds``: a new stream file, or (every 4th time) one already submitted."""

    def __init__(self, settings: Any, api_url: str, streams: Streams, seconds: float) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self.settings, self.streams = settings, streams
        self.files: list[Path] = []
        self.unique: dict[str, dict[str, Any]] = {}  # sha256 -> what happened at submit
        self.resubmitted: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.rng = random.Random(1)
        self.count = 0
        # Prefect's settings hold per thread: the announcements go to the stack's server.
        self.loop = BackgroundLoop(
            "soak-batches",
            self.submit_next,
            seconds,
            pace=Pace.rate,
            join_seconds=60,
            within=lambda: temporary_settings(updates={PREFECT_API_URL: api_url}),
        )

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

    def submit_next(self) -> None:
        """One submission: every 4th a resubmitted file, else the stream's next file."""
        self.count += 1
        try:
            if self.count % 4 == 0 and self.unique:
                self.resubmit()
            else:
                self.submit_new()
        except Exception as exc:  # noqa: BLE001 -- counted, the soak goes on
            self.errors.append(f"submit: {type(exc).__name__}: {exc}")

    def resubmit(self) -> None:
        """Submit a file already submitted again: it must be recognised as a duplicate."""
        sha = self.rng.choice(sorted(self.unique))
        got, duplicate, state = self.submit(self.unique[sha]["path"])
        self.resubmitted.append(
            {"sha256": sha, "recognised": duplicate and got == sha, "state": state}
        )

    def submit_new(self) -> None:
        """Submit the stream's next file (a new seed's stream when this one is used up)."""
        if not self.files:
            self.files = self.streams.next()
        path = self.files.pop(0)
        sha, duplicate, state = self.submit(path)
        if duplicate and sha in self.unique:
            # Same bytes under another name (every stream's week-20 file is the same empty
            # file): a duplicate, and rightly recognised.
            self.resubmitted.append({"sha256": sha, "recognised": True, "state": state})
            return
        if duplicate:
            self.errors.append(f"{path.name}: a new file was called a duplicate")
        self.unique[sha] = {
            "path": path,
            "name": path.name,
            "state_at_submit": state,
            "submitted": time.time(),
        }

    def start(self) -> None:
        """Start submitting (the first file now)."""
        self.loop.start()

    def stop(self) -> None:
        """Stop submitting (a submission in flight finishes)."""
        self.loop.stop()


class Sampler:
    """The model server's RSS every few seconds."""

    def __init__(self, pid: int, every: float = 5.0) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.started = time.monotonic()
        # A failed sample (the server busy exiting) is skipped: the loop records it and goes on.
        self.loop = BackgroundLoop("soak-rss", self.sample, every, wait_first=True, join_seconds=10)

    def sample(self) -> None:
        """Record (seconds since created, RSS bytes) once."""
        self.samples.append((time.monotonic() - self.started, rss_bytes(self.pid)))

    def start(self) -> None:
        """Start sampling (the first sample after ``every`` seconds)."""
        self.loop.start()

    def stop(self) -> None:
        """Stop sampling."""
        self.loop.stop()
