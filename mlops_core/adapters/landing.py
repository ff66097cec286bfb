"""The landing zone: batches land under their sha256, are claimed once, and end processed or quarantined.

Every file that enters is accounted for in a SQLite ledger (``<home>/ledger.db``) and ends in
exactly one of ``processed/<dataset>/`` or ``quarantine/<dataset>/``, with a JSON report beside it.
The file's location is the truth; the ledger row follows it within one transaction, so a crash
between the two leaves a file that ``reconcile`` can still find by its name.

A run that could not finish (MLflow unreachable, a bug) leaves its batch in the landing zone as
``failed``, with the reason in the ledger; ``reconcile`` claims it again and finishes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_core.batches import CLAIMABLE, FINAL_STATES, BatchState, LedgerEntry, Receipt
from mlops_core.data import sniff_format
from mlops_core.errors import LandingError, UnusableInputError
from mlops_core.settings import Settings
from mlops_core.spec import check_dataset_name

KINDS = {"batch": "batches", "labels": "labels"}  # what lands -> its ledger table

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    dataset TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    location TEXT NOT NULL,
    original_name TEXT NOT NULL,
    file_format TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    reason TEXT,
    submitted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (dataset, sha256)
)
"""


class LandingZone:
    """Lands, claims and settles batch files for every dataset under one ``MLOPS_HOME``."""

    def __init__(self, settings: Settings, kind: str = "batch") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind is one of {sorted(KINDS)}, not {kind!r}")
        self.settings = settings
        self.kind = kind
        self._table = KINDS[kind]

    def folder(self, root: Path, dataset: str) -> Path:
        """Where this kind of file lives for ``dataset`` under ``root`` (labels in a subfolder)."""
        return root / dataset if self.kind == "batch" else root / dataset / "labels"

    # ------------------------------------------------------------------ ledger plumbing

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction, so concurrent submits and claims serialise."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.settings.ledger_path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA.format(table=self._table))
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> LedgerEntry:
        return LedgerEntry(
            dataset=row[0],
            sha256=row[1],
            state=BatchState(row[2]),
            location=Path(row[3]),
            original_name=row[4],
            file_format=row[5],
            size_bytes=row[6],
            reason=row[7],
            submitted_at=row[8],
            updated_at=row[9],
        )

    _COLUMNS = (
        "dataset, sha256, state, location, original_name, file_format, size_bytes, reason, "
        "submitted_at, updated_at"
    )

    def _select(
        self, connection: sqlite3.Connection, dataset: str, sha256: str
    ) -> LedgerEntry | None:
        row = connection.execute(
            f"SELECT {self._COLUMNS} FROM {self._table} WHERE dataset = ? AND sha256 = ?",
            (dataset, sha256),
        ).fetchone()
        return self._entry(row) if row else None

    def get(self, dataset: str, sha256: str) -> LedgerEntry | None:
        """What the ledger knows of the file ``sha256`` of ``dataset``; None when it never landed."""
        with self._transaction() as connection:
            return self._select(connection, dataset, sha256)

    def entries(self, dataset: str | None = None) -> list[LedgerEntry]:
        """Every ledger row (of one dataset when given), oldest first."""
        query = f"SELECT {self._COLUMNS} FROM {self._table}"
        params: tuple[str, ...] = ()
        if dataset is not None:
            query += " WHERE dataset = ?"
            params = (dataset,)
        with self._transaction() as connection:
            rows = connection.execute(query + " ORDER BY submitted_at, rowid", params).fetchall()
        return [self._entry(row) for row in rows]

    # ------------------------------------------------------------------ the life of a batch

    def submit(self, source: Path, dataset: str) -> Receipt:
        """Copy ``source`` atomically into ``landing/<dataset>/<sha256>.<ext>`` unless it is known.

        A file that is not a readable parquet or CSV table is quarantined at once, with a report,
        and ``UnusableInputError`` is raised naming where it went.
        """
        check_dataset_name(dataset)
        source = Path(source)
        try:
            file_format = sniff_format(source, max_bytes=self.settings.max_batch_bytes).value
            problem = None
        except UnusableInputError as exc:
            if not source.is_file() or source.stat().st_size > self.settings.max_batch_bytes:
                raise  # nothing to keep: a missing file, or one too big to copy in at all
            file_format, problem = "unknown", exc
        incoming = self.folder(self.settings.landing_dir, dataset)
        staged, sha256, size = self._stage(source, incoming)
        now = _now()
        try:
            with self._transaction() as connection:
                known = self._select(connection, dataset, sha256)
                if known is not None:
                    _discard(staged)
                    return Receipt(entry=known, duplicate=True)
                if problem is None:
                    state, folder, reason = BatchState.landed, incoming, None
                else:
                    state, reason = BatchState.quarantined, str(problem)
                    folder = self.folder(self.settings.quarantine_dir, dataset)
                    folder.mkdir(parents=True, exist_ok=True)
                suffix = file_format if problem is None else "bin"
                location = (folder / f"{sha256}.{suffix}").resolve()
                entry = LedgerEntry(
                    dataset=dataset,
                    sha256=sha256,
                    state=state,
                    location=location,
                    original_name=source.name,
                    file_format=file_format,
                    size_bytes=size,
                    reason=reason,
                    submitted_at=now,
                    updated_at=now,
                )
                if problem is not None:
                    _write_json(entry.report_path, _report(entry, stage="submit", reason=reason))
                os.replace(staged, location)
                connection.execute(
                    f"INSERT INTO {self._table} ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dataset,
                        sha256,
                        state.value,
                        str(location),
                        source.name,
                        file_format,
                        size,
                        reason,
                        now,
                        now,
                    ),
                )
        finally:
            _discard(staged)
        if problem is not None:
            raise UnusableInputError(
                f"{problem}; quarantined as {entry.location} with its report",
                hint="fix the file and submit it again",
            )
        return Receipt(entry=entry, duplicate=False)

    def _stage(self, source: Path, folder: Path) -> tuple[Path, str, int]:
        """Copy into a hidden temporary file in ``folder``, hashing on the way; clean up on failure."""
        staged = folder / f".incoming-{uuid.uuid4().hex}.tmp"
        digest = hashlib.sha256()
        size = 0
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as reader, staged.open("wb") as writer:
                for chunk in iter(lambda: reader.read(1024 * 1024), b""):
                    digest.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                writer.flush()
                os.fsync(writer.fileno())
        except OSError as exc:
            _discard(staged)
            raise LandingError(
                f"{source}: could not be copied into the landing zone {folder} ({exc.strerror or exc})",
                hint="free some disk space or fix permissions, then submit again; nothing was landed",
            ) from None
        return staged, digest.hexdigest(), size

    def claim(self, dataset: str, sha256: str) -> LedgerEntry | None:
        """Mark a landed (or failed) batch as being processed; ``None`` when someone else has it
        or it is done."""
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256)
            if entry is None or entry.state not in CLAIMABLE:
                return None
            now = _now()
            connection.execute(
                f"UPDATE {self._table} SET state = ?, updated_at = ? "
                "WHERE dataset = ? AND sha256 = ?",
                (BatchState.processing.value, now, dataset, sha256),
            )
            return self._select(connection, dataset, sha256)

    def pending(self, dataset: str, *, stale_after_seconds: float) -> list[LedgerEntry]:
        """What nothing finished: ``landed`` and ``failed`` files, and ``processing`` ones whose
        claim is older than ``stale_after_seconds`` (the run that claimed them crashed). Oldest
        first."""
        now = datetime.now(UTC)
        found = []
        for entry in self.entries(dataset):
            if entry.state in CLAIMABLE:
                found.append(entry)
            elif entry.state is BatchState.processing:
                age = (now - datetime.fromisoformat(entry.updated_at)).total_seconds()
                if age >= stale_after_seconds:
                    found.append(entry)
        return found

    def release(self, dataset: str, sha256: str, *, stale_after_seconds: float) -> bool:
        """Put a stale ``processing`` claim back to ``landed`` so it can be claimed again.

        Only when the claim is still older than ``stale_after_seconds`` (checked under the write
        lock), so a live run's claim is never taken from it. True when released.
        """
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256)
            if entry is None or entry.state is not BatchState.processing:
                return False
            age = (datetime.now(UTC) - datetime.fromisoformat(entry.updated_at)).total_seconds()
            if age < stale_after_seconds:
                return False
            connection.execute(
                f"UPDATE {self._table} SET state = ?, updated_at = ? "
                "WHERE dataset = ? AND sha256 = ?",
                (BatchState.landed.value, _now(), dataset, sha256),
            )
            return True

    def fail(self, dataset: str, sha256: str, reason: str) -> LedgerEntry | None:
        """Give a claimed batch back as ``failed``, with ``reason``: its file stays where it landed
        and ``reconcile`` will claim it again. None when this run no longer holds the claim."""
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256)
            if entry is None or entry.state is not BatchState.processing:
                return None
            connection.execute(
                f"UPDATE {self._table} SET state = ?, reason = ?, updated_at = ? "
                "WHERE dataset = ? AND sha256 = ?",
                (BatchState.failed.value, reason[:2000], _now(), dataset, sha256),
            )
            return self._select(connection, dataset, sha256)

    def settle(
        self,
        dataset: str,
        sha256: str,
        state: BatchState,
        report: dict[str, Any],
        reason: str | None = None,
    ) -> LedgerEntry:
        """Move a claimed batch to processed/ or quarantine/ with ``report`` beside it."""
        if state not in FINAL_STATES:
            raise ValueError(f"a batch settles as processed or quarantined, not {state}")
        root = (
            self.settings.processed_dir
            if state is BatchState.processed
            else self.settings.quarantine_dir
        )
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256)
            if entry is None:
                raise LandingError(
                    f"batch {sha256[:12]} of dataset {dataset!r} is not in the ledger"
                )
            if entry.state is not BatchState.processing:
                raise LandingError(
                    f"batch {sha256[:12]} of dataset {dataset!r} is {entry.state.value}, not processing"
                )
            folder = self.folder(root, dataset)
            folder.mkdir(parents=True, exist_ok=True)
            location = (folder / entry.location.name).resolve()
            now = _now()
            settled = LedgerEntry(
                **{
                    **entry.__dict__,
                    "state": state,
                    "location": location,
                    "reason": reason,
                    "updated_at": now,
                }
            )
            _write_json(
                settled.report_path, _report(settled, stage="process", reason=reason, detail=report)
            )
            if entry.location.exists():
                os.replace(entry.location, location)
            elif not location.exists():
                raise LandingError(
                    f"batch file {entry.location} is gone; the ledger cannot settle it"
                )
            connection.execute(
                f"UPDATE {self._table} SET state = ?, location = ?, reason = ?, updated_at = ? "
                "WHERE dataset = ? AND sha256 = ?",
                (state.value, str(location), reason, now, dataset, sha256),
            )
        return settled


def _discard(path: Path) -> None:
    """Remove a temporary file if it is there; never fail while cleaning up."""
    with contextlib.suppress(OSError):
        path.unlink()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _report(
    entry: LedgerEntry, *, stage: str, reason: str | None, detail: Any = None
) -> dict[str, Any]:
    return {
        "dataset": entry.dataset,
        "sha256": entry.sha256,
        "original_name": entry.original_name,
        "state": entry.state.value,
        "stage": stage,
        "reason": reason,
        "file": str(entry.location),
        "at": entry.updated_at,
        "detail": detail,
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file + rename) so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    staged.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(staged, path)
