"""What the server keeps of its traffic: recent requests for the rollout analysis, and the
prediction and feedback logs that close the loop through the landing zone.

* ``Traffic`` holds the last requests (time, variant, latency, error, probabilities of the variant
  that answered and of the champion on the same rows) and the feedback joined to them, and
  summarises a window for the rollout flow (``stats``), with the histograms its divergence rests
  on, so that several replicas' windows add up (``mlops_core.replicas.merge_stats``).
* ``LogWriter`` buffers predictions (inputs, output, version, variant, request id, time) and
  feedback labels, and writes them as parquet micro-batches (every ``rows`` rows or ``seconds``
  seconds) into the landing zone as batches and labels, announcing them when a Prefect server
  listens.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlops_core.replicas import BINS, histogram, js_divergence_of_counts
from mlops_core.settings import Settings

logger = logging.getLogger("mlops.serving")


@dataclass(frozen=True)
class Seen:
    """One variant's part in a request: when, which version, how long, and its probabilities."""

    at: float
    request_id: str
    variant: str
    version: str
    latency: float
    error: bool
    probabilities: tuple[float, ...]
    champion_probabilities: tuple[float, ...]


class Traffic:
    """A bounded memory of recent requests and their feedback (thread-safe)."""

    def __init__(self, keep: int = 200_000) -> None:
        self._seen: deque[Seen] = deque(maxlen=keep)
        self._by_id: dict[str, Seen] = {}
        self._feedback: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def add(self, seen: Seen) -> None:
        """Remember ``seen``, forgetting the oldest request (and its feedback) when full."""
        with self._lock:
            if len(self._seen) == self._seen.maxlen:
                old = self._seen[0]
                self._by_id.pop(old.request_id, None)
                self._feedback.pop(old.request_id, None)
            self._seen.append(seen)
            self._by_id[seen.request_id] = seen

    def feedback(self, request_id: str, labels: tuple[int, ...]) -> bool:
        """Whether ``request_id`` is a remembered request; its ``labels`` are kept when it is."""
        with self._lock:
            if request_id not in self._by_id:
                return False
            self._feedback[request_id] = labels
            return True

    def stats(self, since: float) -> dict[str, Any]:
        """Per variant since ``since``: requests, errors, p99 latency, accuracy on feedback, and
        the divergence of the challenger's predictions from the champion's on the same rows."""
        with self._lock:
            window = [s for s in self._seen if s.at >= since]
            feedback = dict(self._feedback)
        result: dict[str, Any] = {"since": since, "variants": {}}
        for variant in ("champion", "challenger"):
            rows = [s for s in window if s.variant == variant]
            latencies = [s.latency for s in rows if not s.error]
            right = total = 0
            for s in rows:
                labels = feedback.get(s.request_id)
                if labels is None or s.error or len(labels) != len(s.probabilities):
                    continue
                predicted = [int(p >= 0.5) for p in s.probabilities]
                right += sum(int(a == b) for a, b in zip(predicted, labels, strict=True))
                total += len(labels)
            # The champion's answers on the challenger's rows, for a paired (McNemar) comparison.
            champion_right = only_challenger = only_champion = 0
            if variant == "challenger":
                for s in rows:
                    labels = feedback.get(s.request_id)
                    if labels is None or s.error or len(labels) != len(s.probabilities):
                        continue
                    for new, old, label in zip(
                        s.probabilities, s.champion_probabilities, labels, strict=True
                    ):
                        new_right, old_right = int(new >= 0.5) == label, int(old >= 0.5) == label
                        champion_right += old_right
                        only_challenger += new_right and not old_right
                        only_champion += old_right and not new_right
            result["variants"][variant] = {
                "requests": len(rows),
                "errors": sum(s.error for s in rows),
                "p99_latency_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None,
                "feedback_rows": total,
                "feedback_correct": right,
                "champion_feedback_correct": champion_right if variant == "challenger" else None,
                "only_challenger_right": only_challenger if variant == "challenger" else None,
                "only_champion_right": only_champion if variant == "challenger" else None,
            }
        pairs = [
            (p, q)
            for s in window
            if s.variant == "challenger" and not s.error
            for p, q in zip(s.probabilities, s.champion_probabilities, strict=False)
        ]
        result["paired_rows"] = len(pairs)
        # The bin counts, not only the divergence: replicas' windows add up (mlops_core.replicas).
        histograms = {
            "challenger": histogram([p for p, _ in pairs]),
            "champion": histogram([q for _, q in pairs]),
        }
        result["divergence"] = js_divergence_of_counts(
            histograms["challenger"], histograms["champion"]
        )
        result["histograms"] = histograms
        result["disagreement"] = (
            float(np.mean([(p >= 0.5) != (q >= 0.5) for p, q in pairs])) if pairs else None
        )
        return result


def js_divergence(a: list[float], b: list[float], bins: int = BINS) -> float | None:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two probability samples' histograms."""
    return js_divergence_of_counts(histogram(a, bins), histogram(b, bins))


class LogWriter:
    """Prediction and feedback micro-batches into the landing zone (N rows or T seconds).

    Requests only append to a buffer; a full buffer wakes the writer's thread, which writes and
    lands the file. Writing on the request's path (a 2,000-row frame, a parquet file, the
    ledger, the announcement) held the event loop for tens of milliseconds every 2,000 rows: it
    was most of the p99 under load.
    """

    def __init__(self, settings: Settings, dataset: str) -> None:
        self.settings = settings
        self.dataset = dataset
        self.rows = settings.serve_log_rows
        self.seconds = settings.serve_log_seconds
        self._predictions: list[dict[str, Any]] = []
        self._labels: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._first = {"batch": 0.0, "labels": 0.0}
        self._stop = threading.Event()
        self._full = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = {"batch": 0, "labels": 0}

    def predictions(self, rows: list[dict[str, Any]]) -> None:
        """Buffer prediction-log ``rows``, landing a batch at ``serve_log_rows`` rows."""
        with self._lock:
            if not self._predictions:
                self._first["batch"] = time.monotonic()
            self._predictions.extend(rows)
            full = len(self._predictions) >= self.rows
        if full:
            self._full.set()

    def labels(self, rows: list[dict[str, Any]]) -> None:
        """Buffer feedback-label ``rows``, landing labels at ``serve_log_rows`` rows."""
        with self._lock:
            if not self._labels:
                self._first["labels"] = time.monotonic()
            self._labels.extend(rows)
            full = len(self._labels) >= self.rows
        if full:
            self._full.set()

    def flush(self, kind: str) -> str | None:
        """Write what is buffered of ``kind`` as one file and land it; its location in the store."""
        import polars as pl

        from mlops_core.adapters.landing import LandingZone

        with self._lock:
            rows = self._predictions if kind == "batch" else self._labels
            if not rows:
                return None
            taken = list(rows)
            rows.clear()
        try:
            with tempfile.TemporaryDirectory() as folder:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
                path = Path(folder) / f"served-{kind}-{stamp}.parquet"
                columns = list(dict.fromkeys(key for row in taken for key in row))
                # Column by column: a frame from row dicts infers every row's types (slower).
                frame = pl.DataFrame(
                    {key: [row.get(key) for row in taken] for key in columns}, strict=False
                )
                frame.write_parquet(path)
                receipt = LandingZone(self.settings, kind).submit(path, self.dataset)
            self.written[kind] += 1
            self._announce(receipt, kind)
            return receipt.entry.location
        except Exception as exc:  # noqa: BLE001 -- logging must never fail a request
            logger.error("could not land %d %s rows: %s", len(taken), kind, exc)
            return None

    def _announce(self, receipt: Any, kind: str) -> None:
        from mlops_core.adapters.stack_state import running_api_url

        if receipt.duplicate or not running_api_url(self.settings):
            return
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from mlops_core.adapters.announce import announce

        with (
            contextlib.suppress(Exception),
            temporary_settings(updates={PREFECT_API_URL: running_api_url(self.settings)}),
        ):
            announce(receipt.entry, kind)

    def start(self) -> None:
        """Land each buffer from a background thread once its oldest row is ``seconds`` old."""

        def loop() -> None:
            while not self._stop.is_set():
                self._full.wait(0.5)
                self._full.clear()
                now = time.monotonic()
                for kind, buffer in (("batch", self._predictions), ("labels", self._labels)):
                    if buffer and (
                        len(buffer) >= self.rows or now - self._first[kind] >= self.seconds
                    ):
                        self.flush(kind)

        self._thread = threading.Thread(target=loop, name="mlops-log-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and land what is still buffered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush("batch")
        self.flush("labels")
