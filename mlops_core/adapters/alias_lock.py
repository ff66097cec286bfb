"""One lock per dataset, in the ledger's database, around every move of its registry aliases.

MLflow's registry has no compare-and-set. Without a lock, a rollout could check that nobody
moved the aliases, and a person's ``mlops rollback`` could then land in the instant before the
rollout's own write overwrote it. Every move takes this lock, and holds it from its check to its
last write: the rollout's steps and its promotion, ``mlops promote`` and ``mlops rollback``.
The moves of one dataset are then serialised, on every machine that shares the ledger.

* On PostgreSQL it is a transaction-level advisory lock (``pg_advisory_xact_lock``) on a 64-bit
  key derived from the dataset's name. It is released when the transaction ends, or when the
  connection drops with a crashed holder.
* On SQLite it is the database's write lock (``BEGIN IMMEDIATE``). It is coarser: a ledger write
  waits while an alias moves, for the few hundred milliseconds a move takes.

A waiter gives up after ``wait_seconds`` with an error that says so, and nothing is moved. The
lock is re-entrant within one thread, so a move made inside a held lock does not wait on itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from mlops_core.adapters.landing import ledger_transaction
from mlops_core.errors import MlopsError

WAIT_SECONDS = 30.0
"""How long a move waits for another move of the same dataset to finish."""

_held = threading.local()


def lock_key(dataset: str) -> int:
    """The advisory-lock key of ``dataset``'s aliases: a signed 64-bit integer."""
    digest = hashlib.blake2b(f"mlops.aliases:{dataset}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def alias_lock(
    database_url: str, dataset: str, wait_seconds: float = WAIT_SECONDS
) -> Iterator[None]:
    """Hold the lock on ``dataset``'s aliases for the block (re-entrant within a thread)."""
    held: dict[tuple[str, str], int] = _held.__dict__.setdefault("counts", {})
    key = (database_url, dataset)
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    with contextlib.ExitStack() as stack:
        try:
            connection = stack.enter_context(ledger_transaction(database_url))
            if connection.dialect.name == "postgresql":
                timeout = f"{int(wait_seconds * 1000)}ms"
                connection.execute(sa.text(f"SET LOCAL lock_timeout = '{timeout}'"))
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(dataset)}
                )
            # SQLite: the transaction began with BEGIN IMMEDIATE, the database's write lock
            # (its wait is the engine's busy timeout, 30 s).
        except sa_exc.OperationalError as exc:
            raise _busy(dataset, wait_seconds, exc) from None
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)


def _busy(dataset: str, wait_seconds: float, exc: BaseException) -> MlopsError:
    return MlopsError(
        f"another move of dataset {dataset!r}'s model aliases held the lock for more than "
        f"{wait_seconds:g} s ({str(getattr(exc, 'orig', exc)).strip().splitlines()[0][:200]})",
        hint="a rollout step or a person's promote/rollback is under way: run the command again; "
        "nothing was moved",
    )
