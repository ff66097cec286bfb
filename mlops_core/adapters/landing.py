"""The landing zone: batches land under their sha256, are claimed once, and end processed or quarantined.

Every file that enters is accounted for in a ledger, wherever ``MLOPS_LEDGER_URL`` points: a
SQLite file (``<home>/ledger.db``) by default, for one machine; PostgreSQL when several workers on
several machines share the landing zone. The files themselves are in the store
(:mod:`mlops_core.adapters.store`, ``MLOPS_STORE_URL``: the folder ``<home>`` or ``s3://...``).
Every file ends in exactly one of ``processed/<dataset>/`` or ``quarantine/<dataset>/``, with a
JSON report beside it. The file's location is the truth; the
ledger row follows it within one transaction, so a crash between the two leaves a file that
``reconcile`` can still find by its name.

A claim is exactly-once across processes and machines because it is one conditional statement,
``UPDATE ... SET state = 'processing' WHERE ... AND state IN ('landed', 'failed')``, and a claim
counts only when it changed one row: PostgreSQL (under READ COMMITTED) makes a second claimer wait
for the first one's row lock and then re-checks the condition, which no longer holds; SQLite runs
every transaction write-locked (``BEGIN IMMEDIATE``), one at a time. Releasing a stale claim and
failing one are conditional the same way, and settling locks its row first (``SELECT ... FOR
UPDATE`` on PostgreSQL), so two runs never both finish one batch.

A run that could not finish (MLflow unreachable, a bug) leaves its batch in the landing zone as
``failed``, with the reason in the ledger; ``reconcile`` claims it again and finishes it. Every
claim counts an attempt: a batch given back after ``MLOPS_MAX_BATCH_ATTEMPTS`` of them (or whose
claim goes stale that often) is ``dead_letter`` instead, its last error as the reason, still in
the landing zone, and no sweep claims it until ``retry`` puts it back or ``drop`` quarantines it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from mlops_core.adapters.store import Staged, Store, open_store, read_json, write_json
from mlops_core.batches import (
    CLAIMABLE,
    FINAL_STATES,
    BatchState,
    LedgerEntry,
    Receipt,
    after_failure,
    crash_reason,
    dead_letter_reason,
    last_error,
    retried_reason,
)
from mlops_core.data import sniff_format
from mlops_core.errors import LandingError, UnusableInputError
from mlops_core.settings import Settings
from mlops_core.spec import check_dataset_name

KINDS = {"batch": "batches", "labels": "labels"}  # what lands -> its ledger table
UNREADABLE = "unknown"  # the file format of a file quarantined on arrival: not a table at all


class QuarantinedOnArrival(UnusableInputError):
    """A submitted file that is not a table at all, quarantined at once with its report.

    ``entry`` is its ledger row (``quarantined``): the submitter announces it like any arrival,
    so it gets an event and a run of its own (which ends ``Quarantined`` with the reason).
    """

    def __init__(self, message: str, entry: LedgerEntry, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.entry = entry

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes, entry included
        return (type(self), (self.message, self.entry, self.hint))


def quarantined_on_arrival(entry: LedgerEntry) -> bool:
    """Whether ``entry`` was quarantined when it was submitted (it was never a readable table)."""
    return entry.state is BatchState.quarantined and entry.file_format == UNREADABLE


_METADATA = sa.MetaData()


def _ledger_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        _METADATA,
        sa.Column("dataset", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("original_name", sa.Text, nullable=False),
        sa.Column("file_format", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text),
        # ISO 8601 in UTC with microseconds: sorts as text, the same on every backend.
        sa.Column("submitted_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        # Claims so far; added after the first ledgers were made: see _add_missing_columns.
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )


_TABLES = {kind: _ledger_table(table) for kind, table in KINDS.items()}

# The retrains decisions asked for, claimed by the run carrying them out (adapters.retrain_claims).
RETRAINS = sa.Table(
    "retrains",
    _METADATA,
    sa.Column("dataset", sa.Text, primary_key=True),
    sa.Column("decision_run_id", sa.Text, primary_key=True),
    sa.Column("batch_sha256", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # requested, running or done
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("beat_at", sa.Float, nullable=False),  # Unix seconds of the holder's last beat
)

# One engine (and its connection pool) per ledger URL per process, tables created once.
_ENGINES: dict[str, tuple[int, Engine]] = {}
_ENGINES_LOCK = threading.Lock()


def _shown(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _unreachable(url: sa.URL, error: BaseException) -> LandingError:
    """The ledger database did not answer: which one (no password), why in one line, what to do."""
    cause = getattr(error, "orig", None) or error
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return LandingError(
        f"the ledger database {_shown(url)} cannot be reached: {first[:300]}",
        hint=(
            "start that database, or point MLOPS_LEDGER_URL at one that runs (unset, it is the "
            "SQLite file <MLOPS_HOME>/ledger.db); nothing was changed"
        ),
    )


def _new_engine(url: sa.URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    # SQLAlchemy's recipe for pysqlite: sqlite3 emits no BEGIN of its own, we emit BEGIN
    # IMMEDIATE, so every transaction holds the write lock from its start and they serialise.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _create_tables(engine: Engine) -> None:
    """Create the ledger's tables unless they exist, and add the columns an older ledger lacks;
    another process doing either at the same moment (PostgreSQL's catalog refuses the second,
    SQLite says "duplicate column") is fine: their tables and columns are ours."""
    for attempt in range(3):
        try:
            _METADATA.create_all(engine, checkfirst=True)
            _add_missing_columns(engine)
            return
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.OperationalError) as exc:
            text = str(exc.orig).lower()
            if attempt == 2 or not any(
                known in text for known in ("already exists", "duplicate key", "duplicate column")
            ):
                raise


def _add_missing_columns(engine: Engine) -> None:
    """Bring a ledger made by an older version up to this table: each column it lacks is added
    with its default (``attempts`` 0 on every existing row). Idempotent; no migration tool for
    one table whose columns are only ever added."""
    inspector = sa.inspect(engine)
    for table in _TABLES.values():
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        if not missing:
            continue
        with engine.begin() as connection:
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                null = "" if column.nullable else " NOT NULL"
                default = getattr(column.server_default, "arg", None)
                value = f" DEFAULT {default}" if default is not None else ""
                connection.exec_driver_sql(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{null}{value}'
                )


def _engine(database_url: str) -> Engine:
    """This process's engine of the ledger at ``database_url``, its tables created."""
    try:
        url = sa.make_url(database_url)
    except sa_exc.ArgumentError:
        raise LandingError(
            "MLOPS_LEDGER_URL is not a database URL",
            hint="set it to sqlite:///<path> or postgresql+psycopg2://<user>@<host>:<port>/<db>",
        ) from None
    with _ENGINES_LOCK:
        known = _ENGINES.get(database_url)
        if known is not None:
            pid, engine = known
            if pid == os.getpid():
                return engine
            # Inherited over fork: the parent's pooled connections stay the parent's.
            engine.dispose(close=False)
        try:
            engine = _new_engine(url)
        except (sa_exc.NoSuchModuleError, ImportError) as exc:
            raise LandingError(
                f"the ledger database {_shown(url)} needs a driver that is not installed ({exc})",
                hint="use sqlite:/// or postgresql+psycopg2:// in MLOPS_LEDGER_URL",
            ) from None
        except OSError as exc:
            raise LandingError(
                f"the ledger database {_shown(url)} cannot be created ({exc.strerror or exc})",
                hint="fix the folder's permissions or point MLOPS_LEDGER_URL elsewhere",
            ) from None
        try:
            _create_tables(engine)
        except sa_exc.DBAPIError as exc:
            engine.dispose()
            if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
                raise _unreachable(url, exc) from None
            raise
        _ENGINES[database_url] = (os.getpid(), engine)
        return engine


@contextlib.contextmanager
def ledger_transaction(database_url: str) -> Iterator[Connection]:
    """One transaction on the ledger at ``database_url``, committed when the block ends, rolled
    back on error.

    On SQLite it is write-locked from its start (``BEGIN IMMEDIATE``), so concurrent submits
    and claims serialise; on PostgreSQL the statements themselves are conditional.
    """
    engine = _engine(database_url)
    try:
        connection = engine.connect()
    except sa_exc.DBAPIError as exc:
        raise _unreachable(engine.url, exc) from None
    with connection:
        try:
            with connection.begin():
                yield connection
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:  # the server went away in the middle
                raise _unreachable(engine.url, exc) from None
            raise


class LandingZone:
    """Lands, claims and settles batch files for every dataset under one ``MLOPS_HOME``."""

    def __init__(self, settings: Settings, kind: str = "batch") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind is one of {sorted(KINDS)}, not {kind!r}")
        self.settings = settings
        self.kind = kind
        self._table = _TABLES[kind]
        self.store: Store = open_store(settings)

    def folder(self, root: str, dataset: str) -> str:
        """The store folder of this kind of file for ``dataset`` under ``root`` (``landing``,
        ``processed`` or ``quarantine``; labels in a subfolder)."""
        return f"{root}/{dataset}" if self.kind == "batch" else f"{root}/{dataset}/labels"

    # ------------------------------------------------------------------ ledger plumbing

    def _transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """One transaction on the ledger (``ledger_transaction``)."""
        return ledger_transaction(self.settings.ledger_database_url)

    @staticmethod
    def _entry(row: sa.Row[Any]) -> LedgerEntry:
        values = row._mapping
        return LedgerEntry(
            dataset=values["dataset"],
            sha256=values["sha256"],
            state=BatchState(values["state"]),
            location=values["location"],
            original_name=values["original_name"],
            file_format=values["file_format"],
            size_bytes=int(values["size_bytes"]),
            reason=values["reason"],
            submitted_at=values["submitted_at"],
            updated_at=values["updated_at"],
            attempts=int(values["attempts"]),
        )

    def _key(self, dataset: str, sha256: str) -> sa.ColumnElement[bool]:
        return sa.and_(self._table.c.dataset == dataset, self._table.c.sha256 == sha256)

    def _select(
        self, connection: Connection, dataset: str, sha256: str, *, lock: bool = False
    ) -> LedgerEntry | None:
        query = sa.select(self._table).where(self._key(dataset, sha256))
        if lock:  # FOR UPDATE on PostgreSQL; SQLite's write lock is already held
            query = query.with_for_update()
        row = connection.execute(query).first()
        return self._entry(row) if row else None

    def _update(
        self,
        connection: Connection,
        dataset: str,
        sha256: str,
        *,
        when: sa.ColumnElement[bool],
        **values: Any,
    ) -> bool:
        """Update one row only while ``when`` holds; True when this statement changed it."""
        result = connection.execute(
            sa.update(self._table).where(self._key(dataset, sha256), when).values(**values)
        )
        return result.rowcount == 1

    def get(self, dataset: str, sha256: str) -> LedgerEntry | None:
        """What the ledger knows of the file ``sha256`` of ``dataset``; None when it never landed."""
        with self._transaction() as connection:
            return self._select(connection, dataset, sha256)

    def entries(self, dataset: str | None = None) -> list[LedgerEntry]:
        """Every ledger row (of one dataset when given), oldest first."""
        columns = self._table.c
        query = sa.select(self._table).order_by(
            columns.submitted_at, columns.dataset, columns.sha256
        )
        if dataset is not None:
            query = query.where(columns.dataset == dataset)
        with self._transaction() as connection:
            rows = connection.execute(query).all()
        return [self._entry(row) for row in rows]

    # ------------------------------------------------------------------ the life of a batch

    def submit(self, source: Path, dataset: str) -> Receipt:
        """Copy ``source`` atomically into ``landing/<dataset>/<sha256>.<ext>`` unless it is known.

        A file that is not a readable parquet or CSV table is quarantined at once, with a report,
        and ``QuarantinedOnArrival`` (an ``UnusableInputError``) is raised naming where it went and
        carrying its ledger entry, for the submitter to announce.
        """
        check_dataset_name(dataset)
        source = Path(source)
        try:
            file_format = sniff_format(source, max_bytes=self.settings.max_batch_bytes).value
            problem = None
        except UnusableInputError as exc:
            if not source.is_file() or source.stat().st_size > self.settings.max_batch_bytes:
                raise  # nothing to keep: a missing file, or one too big to copy in at all
            file_format, problem = UNREADABLE, exc
        incoming = self.folder("landing", dataset)
        staged = self._stage(source, incoming)
        sha256, size = staged.sha256, staged.size
        now = _now()
        try:
            with self._transaction() as connection:
                known = self._select(connection, dataset, sha256)
                if known is not None:
                    return Receipt(entry=known, duplicate=True)
                if problem is None:
                    state, folder, reason = BatchState.landed, incoming, None
                else:
                    state, reason = BatchState.quarantined, str(problem)
                    folder = self.folder("quarantine", dataset)
                suffix = file_format if problem is None else "bin"
                key = f"{folder}/{sha256}.{suffix}"
                location = self.store.location(key)
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
                # The row first: a second submitter of the same file waits on it (PostgreSQL)
                # and fails its insert before it touches the file this one lands.
                connection.execute(
                    sa.insert(self._table).values(
                        dataset=dataset,
                        sha256=sha256,
                        state=state.value,
                        location=location,
                        original_name=source.name,
                        file_format=file_format,
                        size_bytes=size,
                        reason=reason,
                        submitted_at=now,
                        updated_at=now,
                    )
                )
                if problem is not None:
                    self._write_report(entry, _report(entry, stage="submit", reason=reason))
                self.store.commit(staged, key)
        except sa_exc.IntegrityError:
            # Another process landed the same file between our look and our insert: theirs stands.
            known = self.get(dataset, sha256)
            if known is None:
                raise
            return Receipt(entry=known, duplicate=True)
        finally:
            self.store.discard(staged)
        if problem is not None:
            raise QuarantinedOnArrival(
                f"{problem}; quarantined as {entry.location} with its report",
                entry,
                hint="fix the file and submit it again",
            )
        return Receipt(entry=entry, duplicate=False)

    def _stage(self, source: Path, folder: str) -> Staged:
        """Copy aside (beside ``folder`` on a local store), hashing on the way; cleaned up on failure."""
        try:
            return self.store.stage(source, folder)
        except OSError as exc:
            raise LandingError(
                f"{source}: could not be copied into the landing zone "
                f"{self.store.location(folder)} ({exc.strerror or exc})",
                hint="free some disk space or fix permissions, then submit again; nothing was landed",
            ) from None

    def local_file(self, entry: LedgerEntry) -> Path:
        """The entry's file on this machine (a cached download from an ``s3://`` store)."""
        try:
            return self.store.local_path(entry.location)
        except FileNotFoundError:
            raise UnusableInputError(
                f"{entry.location}: no such file",
                hint="the ledger names a file the store no longer has; `mlops reconcile` reports it",
            ) from None

    def read_report(self, entry: LedgerEntry) -> Any:
        """The JSON report beside the entry's file."""
        return read_json(self.store, entry.report_location)

    def _write_report(self, entry: LedgerEntry, payload: dict[str, Any]) -> None:
        write_json(self.store, self.store.key(entry.report_location), payload)

    def claim(self, dataset: str, sha256: str) -> LedgerEntry | None:
        """Mark a landed (or failed) batch as being processed; ``None`` when someone else has it
        or it is done."""
        columns = self._table.c
        with self._transaction() as connection:
            claimed = self._update(
                connection,
                dataset,
                sha256,
                when=columns.state.in_([state.value for state in CLAIMABLE]),
                state=BatchState.processing.value,
                attempts=columns.attempts + 1,
                updated_at=_now(),
            )
            return self._select(connection, dataset, sha256) if claimed else None

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

    def release(
        self, dataset: str, sha256: str, *, stale_after_seconds: float
    ) -> LedgerEntry | None:
        """Put a stale ``processing`` claim back to ``landed`` so it can be claimed again; the
        entry as it is now, or None when it was not released.

        Only when the claim is still older than ``stale_after_seconds`` and still the very claim
        that was read (same ``updated_at``), so a live run's claim is never taken from it and two
        reconcilers never both release it. A claim that was the batch's last allowed attempt
        (``MLOPS_MAX_BATCH_ATTEMPTS``) goes to ``dead_letter`` instead: a batch that kills every
        run that takes it (out of memory, say) is not retried forever either.
        """
        columns = self._table.c
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256)
            if entry is None or entry.state is not BatchState.processing:
                return None
            age = (datetime.now(UTC) - datetime.fromisoformat(entry.updated_at)).total_seconds()
            if age < stale_after_seconds:
                return None
            state = after_failure(entry.attempts, self.settings.max_batch_attempts)
            values: dict[str, Any] = {"state": BatchState.landed.value}
            if state is BatchState.dead_letter:
                values = {
                    "state": state.value,
                    "reason": dead_letter_reason(
                        crash_reason(entry.attempts), entry.attempts, dataset, sha256
                    )[:2000],
                }
            released = self._update(
                connection,
                dataset,
                sha256,
                when=sa.and_(
                    columns.state == BatchState.processing.value,
                    columns.updated_at == entry.updated_at,
                ),
                updated_at=_now(),
                **values,
            )
            return self._select(connection, dataset, sha256) if released else None

    def fail(self, dataset: str, sha256: str, reason: str) -> LedgerEntry | None:
        """Give a claimed batch back as ``failed``, with ``reason``: its file stays where it landed
        and ``reconcile`` will claim it again -- unless that claim was its last allowed attempt
        (``MLOPS_MAX_BATCH_ATTEMPTS``): then it is ``dead_letter``, the reason its last error,
        and nothing claims it again until ``retry``. The entry as it is now; None when this run
        no longer holds the claim."""
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256, lock=True)
            if entry is None or entry.state is not BatchState.processing:
                return None
            state = after_failure(entry.attempts, self.settings.max_batch_attempts)
            if state is BatchState.dead_letter:
                reason = dead_letter_reason(reason, entry.attempts, dataset, sha256)
            failed = self._update(
                connection,
                dataset,
                sha256,
                when=self._table.c.state == BatchState.processing.value,
                state=state.value,
                reason=reason[:2000],
                updated_at=_now(),
            )
            return self._select(connection, dataset, sha256) if failed else None

    def retry(self, dataset: str, sha256: str) -> LedgerEntry:
        """Put a ``dead_letter`` batch back to ``failed`` with no attempts counted, so the next
        sweep (or a run announced now) claims it; the entry as it is now."""
        with self._transaction() as connection:
            entry = self._dead_letter(connection, dataset, sha256, "retried")
            retried = replace(
                entry,
                state=BatchState.failed,
                attempts=0,
                reason=retried_reason(entry.reason, entry.attempts)[:2000],
                updated_at=_now(),
            )
            self._update(  # the row is locked and dead_letter: this changes it
                connection,
                dataset,
                sha256,
                when=self._table.c.state == BatchState.dead_letter.value,
                state=retried.state.value,
                attempts=0,
                reason=retried.reason,
                updated_at=retried.updated_at,
            )
            return retried

    def drop(self, dataset: str, sha256: str, reason: str) -> LedgerEntry:
        """Quarantine a ``dead_letter`` batch because a person gave up on it: its file moves to
        quarantine/ with a report saying so, after how many attempts, its last error and
        ``reason``; the entry as it is now."""
        if not reason.strip():
            raise LandingError("say why the batch is dropped", hint="--reason TEXT")
        with self._transaction() as connection:
            entry = self._dead_letter(connection, dataset, sha256, "dropped")
            why = f"dropped by a person after {entry.attempts} failed attempts: {reason.strip()}"
            detail = {
                "dropped_by": "a person (mlops drop)",
                "attempts": entry.attempts,
                "reason": reason.strip(),
                "last_error": last_error(entry.reason),
            }
            return self._move(
                connection,
                entry,
                BatchState.quarantined,
                BatchState.dead_letter,
                stage="drop",
                reason=why[:2000],
                detail=detail,
                missing_ok=True,
            )

    def _dead_letter(
        self, connection: Connection, dataset: str, sha256: str, verb: str
    ) -> LedgerEntry:
        """The locked row of a ``dead_letter`` batch; an error a person can act on otherwise."""
        entry = self._select(connection, dataset, sha256, lock=True)
        if entry is None:
            raise LandingError(
                f"no {self.kind} {sha256[:12]} of dataset {dataset!r} in the ledger",
                hint="`mlops status --dataset NAME` lists the unfinished ones with their sha256",
            )
        if entry.state is not BatchState.dead_letter:
            raise LandingError(
                f"{self.kind} {sha256[:12]} of dataset {dataset!r} is {entry.state.value}, "
                f"not dead_letter: only a dead-lettered {self.kind} is {verb} by hand",
                hint="a failed one is retried by the next sweep (`mlops reconcile`); "
                "a processed or quarantined one is done",
            )
        return entry

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
        with self._transaction() as connection:
            # Locked until commit: a concurrent settle of this batch waits, then sees it settled.
            entry = self._select(connection, dataset, sha256, lock=True)
            if entry is None:
                raise LandingError(
                    f"batch {sha256[:12]} of dataset {dataset!r} is not in the ledger"
                )
            if entry.state is not BatchState.processing:
                raise LandingError(
                    f"batch {sha256[:12]} of dataset {dataset!r} is {entry.state.value}, not processing"
                )
            return self._move(
                connection,
                entry,
                state,
                BatchState.processing,
                stage="process",
                reason=reason,
                detail=report,
            )

    def expire(self, dataset: str, sha256: str) -> LedgerEntry | None:
        """Delete a settled file, its report and its ledger row (``mlops gc``); the entry that
        was deleted, or None when the row is gone or no longer settled."""
        with self._transaction() as connection:
            entry = self._select(connection, dataset, sha256, lock=True)
            if entry is None or entry.state not in FINAL_STATES:
                return None
            # The row last: a crash in between leaves a row whose file is gone, which gc
            # deletes the next time, never a file no row accounts for.
            for location in (entry.location, entry.report_location):
                self.store.delete(self.store.key(location))
            connection.execute(sa.delete(self._table).where(self._key(dataset, sha256)))
            return entry

    def _move(
        self,
        connection: Connection,
        entry: LedgerEntry,
        state: BatchState,
        was: BatchState,
        *,
        stage: str,
        reason: str | None,
        detail: Any,
        missing_ok: bool = False,
    ) -> LedgerEntry:
        """Within the caller's transaction, on its locked row (still ``was``): the report, then
        the file into processed/ or quarantine/, then the row; the entry as it is now.

        A file already gone is an error, unless ``missing_ok`` (a person dropping a batch whose
        file vanished: the row is settled anyway and the report says the file was missing).
        """
        dataset, sha256 = entry.dataset, entry.sha256
        root = "processed" if state is BatchState.processed else "quarantine"
        key = f"{self.folder(root, dataset)}/{entry.file_name}"
        location = self.store.location(key)
        current = self.store.key(entry.location)
        present = self.store.exists(current) or self.store.exists(key)
        if not present and not missing_ok:
            raise LandingError(f"batch file {entry.location} is gone; the ledger cannot settle it")
        if not present:
            detail = {**detail, "file_missing": f"{entry.location} was already gone"}
        now = _now()
        settled = replace(entry, state=state, location=location, reason=reason, updated_at=now)
        self._write_report(settled, _report(settled, stage=stage, reason=reason, detail=detail))
        if self.store.exists(current):
            self.store.move(current, key)
        if not self._update(
            connection,
            dataset,
            sha256,
            when=self._table.c.state == was.value,
            state=state.value,
            location=location,
            reason=reason,
            updated_at=now,
        ):
            raise LandingError(
                f"batch {sha256[:12]} of dataset {dataset!r} stopped being {was.value} while "
                f"it was settled; its file is at {location} and `mlops reconcile` accounts for it"
            )
        return settled


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
        "file": entry.location,
        "at": entry.updated_at,
        "detail": detail,
    }
