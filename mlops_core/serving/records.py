"""What the server keeps of its traffic: recent requests for the rollout analysis, and the
prediction and feedback logs that close the loop through the landing zone.

* ``Traffic`` holds the last requests (time, variant, latency, error, probabilities of the variant
  that answered and of the champion on the same rows) and the feedback joined to them, and
  summarises a window for the rollout flow (``stats``), with the histograms its divergence rests
  on, so that several replicas' windows add up (``mlops_core.replicas.merge_stats``).
* ``LogWriter`` buffers predictions (inputs, output, version, variant, request id, time) and
  feedback labels, and writes them as parquet micro-batches (every ``rows`` rows or ``seconds``
  seconds) into the landing zone as batches and labels, announcing them when a Prefect server
  listens; what cannot land waits in the dead-letter folder (``serving.dead_letter``).
* ``resubmit`` lands a dead-letter file's rows through the same writer (``mlops logs resubmit``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import reprlib
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_core.replicas import BINS, histogram, js_divergence_of_counts
from mlops_core.serving import dead_letter
from mlops_core.serving.inputs import is_text
from mlops_core.serving.metrics import ServerMetrics
from mlops_core.settings import Settings

if TYPE_CHECKING:
    import polars as pl

    from mlops_core.batches import Receipt
    from mlops_core.spec import DatasetSpec

logger = logging.getLogger("mlops.serving")


@dataclass(frozen=True, slots=True)  # ~100,000 are kept: no per-instance dict
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


@dataclass(frozen=True)
class LogTable:
    """Logged rows as one table (``frame``, of ``rows``), and the rows that do not fit in it,
    each with the reason (``refused``)."""

    frame: pl.DataFrame | None  # None: no row fits
    rows: list[dict[str, Any]]
    refused: list[tuple[dict[str, Any], str]]


def log_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """``rows`` as one table (a polars error, or ``UnicodeEncodeError``, when they do not make one)."""
    import polars as pl

    columns = list(dict.fromkeys(key for row in rows for key in row))
    # Column by column: a frame from row dicts infers every row's types (slower).
    return pl.DataFrame({key: [row.get(key) for row in rows] for key in columns}, strict=False)


def log_table(rows: Sequence[dict[str, Any]]) -> LogTable:
    """``rows`` as one table, leaving out (with the reason) only the rows that keep it from being
    one: a string no file can hold, or a value whose type its column cannot take beside the
    other rows' (``12.5`` among datetimes). One such row no longer costs the others their place.
    """
    try:
        return LogTable(log_frame(rows), list(rows), [])
    except Exception:  # noqa: BLE001 -- find the rows at fault below
        pass
    refused: dict[int, str] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if isinstance(value, str) and not is_text(value):
                refused[i] = f"{key}: a string with a lone surrogate cannot be written ({value!r})"
                break
    for key in dict.fromkeys(key for row in rows for key in row):
        kept = [i for i in range(len(rows)) if i not in refused]
        values = [rows[i].get(key) for i in kept]
        if _column_builds(values):
            continue
        # The types in the order of how many rows hold them: each joins while the column builds.
        types = Counter(_type_of(v) for v in values if v is not None)
        fitting: list[str] = []
        for name, _ in types.most_common():
            if _column_builds([v for v in values if v is None or _type_of(v) in {*fitting, name}]):
                fitting.append(name)
        for i in kept:
            value = rows[i].get(key)
            if value is not None and _type_of(value) not in fitting:
                shown = value.isoformat() if isinstance(value, datetime) else reprlib.repr(value)
                refused[i] = (
                    f"{key}: {shown} ({_type_of(value)}) cannot share a column with the other "
                    f"rows' {' and '.join(fitting) or 'other'} values"
                )
    good = [row for i, row in enumerate(rows) if i not in refused]
    bad = [(rows[i], refused[i]) for i in sorted(refused)]
    try:
        return LogTable(log_frame(good) if good else None, good, bad)
    except Exception as exc:  # noqa: BLE001 -- what no one column explains: every row waits
        reason = f"the rows do not make one table ({_first_line(exc)})"
        return LogTable(None, [], [*bad, *((row, reason) for row in good)])


def _column_builds(values: list[Any]) -> bool:
    import polars as pl

    try:
        pl.Series(values, strict=False)
    except Exception:  # noqa: BLE001 -- any failure: it does not build
        return False
    return True


def _type_of(value: Any) -> str:
    if isinstance(value, datetime):
        return "datetime" if value.tzinfo is not None else "datetime without a time zone"
    return type(value).__name__


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def land_table(settings: Settings, dataset: str, kind: str, frame: pl.DataFrame) -> Receipt:
    """``frame`` written as a parquet file and landed as ``kind`` (``batch`` or ``labels``)."""
    from mlops_core.adapters.landing import LandingZone

    with tempfile.TemporaryDirectory() as folder:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = Path(folder) / f"served-{kind}-{stamp}.parquet"
        frame.write_parquet(path)
        return LandingZone(settings, kind).submit(path, dataset)


def announce_landed(settings: Settings, receipt: Receipt, kind: str) -> None:
    """Announce a newly landed log file to a running Prefect server (none: nothing to do)."""
    from mlops_core.adapters.stack_state import running_api_url

    if receipt.duplicate or not running_api_url(settings):
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mlops_core.adapters.announce import announce

    with (
        contextlib.suppress(Exception),
        temporary_settings(updates={PREFECT_API_URL: running_api_url(settings)}),
    ):
        announce(receipt.entry, kind)


class LogWriter:
    """Prediction and feedback micro-batches into the landing zone (N rows or T seconds).

    Requests only append to a buffer; a full buffer wakes the writer's thread, which writes and
    lands the file. Writing on the request's path (a 2,000-row frame, a parquet file, the
    ledger, the announcement) held the event loop for tens of milliseconds every 2,000 rows: it
    was most of the p99 under load.

    No row is lost on the way. A row that keeps the others from making one table waits in the
    dead-letter folder (``serving.dead_letter``), with its reason, and the others land. A landing
    that fails (the store unreachable, a full disk) is tried ``serve_log_attempts`` times, the
    pauses doubling from ``serve_log_retry_seconds``, in the writer's thread (requests go on
    filling the buffer meanwhile); then its rows go to the dead-letter folder too, on local disk.
    ``mlops logs resubmit`` lands them later. Each failed try and each spilled row is counted
    (``ServerMetrics``) and logged, the spill with its file.
    """

    def __init__(
        self, settings: Settings, dataset: str, metrics: ServerMetrics | None = None
    ) -> None:
        self.settings = settings
        self.dataset = dataset
        self.metrics = metrics
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
        self.spilled = {"batch": 0, "labels": 0}

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
        """Write what is buffered of ``kind`` as one file and land it; its location in the store.

        None when nothing was buffered or nothing landed (the rows are in the dead-letter folder).
        """
        with self._lock:
            rows = self._predictions if kind == "batch" else self._labels
            if not rows:
                return None
            taken = list(rows)
            rows.clear()
        table = log_table(taken)
        if table.refused:
            self._spill(kind, table.refused)
        if table.frame is None:
            return None
        error: Exception | None = None
        pause = self.settings.serve_log_retry_seconds
        for attempt in range(1, self.settings.serve_log_attempts + 1):
            try:
                receipt = land_table(self.settings, self.dataset, kind, table.frame)
            except Exception as exc:  # noqa: BLE001 -- logging must never fail a request
                error = exc
                if self.metrics is not None:
                    self.metrics.flush_failed(kind)
                logger.warning(
                    "try %d of %d to land %d %s rows failed: %s",
                    attempt,
                    self.settings.serve_log_attempts,
                    len(table.rows),
                    kind,
                    _first_line(exc),
                )
                if attempt < self.settings.serve_log_attempts:
                    # Once the server stops, no pause: shutdown waits for nothing, and what still
                    # fails is spilled.
                    self._stop.wait(pause)
                    pause *= 2
                continue
            self.written[kind] += 1
            announce_landed(self.settings, receipt, kind)
            return receipt.entry.location
        reason = f"could not be landed: {_first_line(error) if error else 'unknown error'}"
        self._spill(kind, [(row, reason) for row in table.rows])
        return None

    def _spill(self, kind: str, rows: list[tuple[dict[str, Any], str]]) -> None:
        """``rows`` into a dead-letter file; back into the buffer when even that fails."""
        try:
            path = dead_letter.spill(self.settings, self.dataset, kind, rows)
        except Exception as exc:  # noqa: BLE001 -- the rows stay in memory: the next flush tries again
            logger.error(
                "could not land %d %s rows nor write them to %s (%s); they stay buffered",
                len(rows),
                kind,
                dead_letter.dead_letter_dir(self.settings),
                _first_line(exc),
            )
            with self._lock:
                buffer = self._predictions if kind == "batch" else self._labels
                buffer[:0] = [row for row, _ in rows]
            return
        self.spilled[kind] += len(rows)
        if self.metrics is not None:
            self.metrics.rows_spilled(kind, len(rows))
        logger.error(
            "%d %s rows kept in %s (the first %s); `mlops logs resubmit` lands them",
            len(rows),
            kind,
            path,
            rows[0][1],
        )

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


@dataclass(frozen=True)
class Resubmitted:
    """What ``resubmit`` did with one dead-letter file (or would do, on a dry run)."""

    file: Path
    rows: int  # lines in the file
    landed: int  # rows landed (on a dry run: that would be tried)
    locations: tuple[str, ...] = ()  # where they landed, one file per dataset and kind
    kept: dict[str, int] = field(default_factory=dict)  # rows still waiting, by reason
    done: Path | None = None  # where the landed rows' lines went

    @property
    def waiting(self) -> int:
        """Rows still in the dead-letter folder after this."""
        return sum(self.kept.values())


def resubmit(settings: Settings, path: Path, *, dry_run: bool = False) -> Resubmitted:
    """Land the rows of the dead-letter file ``path`` that are valid now.

    A row is valid when its dataset is registered (in this installation's store: resubmitting
    with another ``MLOPS_STORE_URL`` lands nothing), its id and event time are what ``/predict``
    accepts (``serving.inputs``), and it makes one table with the others. Rows are landed per
    dataset and kind, as the writer lands them, and announced. The file then goes to ``done/``
    when every row landed; otherwise its landed rows' lines go to ``done/`` and the file keeps
    the others, each with the reason it still waits: nothing is dropped. A landing that fails
    again leaves its rows waiting. ``dry_run``: say what would happen, change nothing.
    """
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import KINDS
    from mlops_core.errors import MlopsError

    letters = dead_letter.read(path)
    waiting: dict[int, str] = {}  # line -> why it waits
    groups: dict[tuple[str, str], list[int]] = {}
    for i, letter in enumerate(letters):
        if letter.row is None or letter.dataset is None or letter.kind is None:
            waiting[i] = letter.reason
        elif letter.kind not in KINDS:
            waiting[i] = f"unknown kind {letter.kind!r} (batch or labels)"
        else:
            groups.setdefault((letter.dataset, letter.kind), []).append(i)
    catalog = DatasetCatalog(settings)
    for (dataset, kind), lines in groups.items():
        try:
            spec = catalog.get(dataset).spec
        except Exception as exc:  # noqa: BLE001 -- an unknown dataset, an unreachable store
            reason = (
                str(exc)
                if isinstance(exc, MlopsError)
                else f"dataset {dataset!r}: its spec could not be read ({_first_line(exc)})"
            )
            waiting.update((i, reason) for i in lines)
            continue
        for i in lines:
            problem = _invalid_row(letters[i].row or {}, spec, kind)
            if problem is not None:
                waiting[i] = problem
    landed: list[int] = []
    locations: list[str] = []
    for (dataset, kind), every in groups.items():
        lines = [i for i in every if i not in waiting]
        table = log_table([letters[i].row or {} for i in lines])
        refused = {id(row): reason for row, reason in table.refused}
        for i in lines:
            if id(letters[i].row) in refused:
                waiting[i] = refused[id(letters[i].row)]
        chosen = [i for i in lines if i not in waiting]
        if table.frame is None or not chosen:
            continue
        if dry_run:
            landed += chosen
            continue
        try:
            receipt = land_table(settings, dataset, kind, table.frame)
        except Exception as exc:  # noqa: BLE001 -- its rows stay, saying why
            for i in chosen:
                waiting[i] = f"could not be landed: {_first_line(exc)}"
            continue
        announce_landed(settings, receipt, kind)
        locations.append(receipt.entry.location)
        landed += chosen
    kept = Counter(waiting.values())
    result = Resubmitted(path, len(letters), len(landed), tuple(locations), dict(kept))
    if dry_run or not landed:
        if not dry_run and waiting:  # the reasons brought up to date
            dead_letter.write(
                path, (letters[i].with_reason(waiting[i]).text() for i in sorted(waiting))
            )
        return result
    done = dead_letter.done_dir(settings)
    done.mkdir(parents=True, exist_ok=True)
    target = dead_letter.free_name(done, path.name)
    if not waiting:
        os.replace(path, target)
    else:
        # The landed lines first: a crash between the two writes repeats a landing (recognised
        # by its sha256 when it is the same file), never loses a row.
        dead_letter.write(target, (letters[i].text() for i in sorted(landed)))
        dead_letter.write(
            path, (letters[i].with_reason(waiting[i]).text() for i in sorted(waiting))
        )
    return Resubmitted(path, len(letters), len(landed), tuple(locations), dict(kept), done=target)


def _invalid_row(row: dict[str, Any], spec: DatasetSpec, kind: str) -> str | None:
    """Why a logged ``row`` of ``kind`` cannot land for ``spec``'s dataset; None when it can
    (its event time then a UTC datetime, as the server logs it)."""
    from mlops_core.serving.inputs import checked_id, checked_timestamp

    wanted = [spec.id] if kind == "labels" else [spec.id, spec.timestamp]
    for column in (c for c in wanted if c is not None):
        value = row.get(column)
        if value is None:
            return f"{column}: missing (the server always fills it in)"
        try:
            if column == spec.id:
                checked_id(value)
            elif not (isinstance(value, datetime) and value.tzinfo is not None):
                row[column] = checked_timestamp(value)  # a hand-written ISO string: as served
        except ValueError as exc:
            return f"{column}: {exc}"
    if kind == "labels" and spec.target is not None and row.get(spec.target) not in (0, 1):
        return f"{spec.target}: expected a label 0 or 1, got {reprlib.repr(row.get(spec.target))}"
    return None
