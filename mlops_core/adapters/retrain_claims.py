"""Claims on the retrains that decisions asked for, in the ledger's database: each one is carried
out to a recorded outcome, exactly once, even when the process carrying it out dies.

The batch flow records that its decision asked for a retrain (``request``: state ``requested``)
before it settles the batch. The gated subflow claims that retrain as it starts (``start``) and
beats while it waits for its slot and works (``held``: every ``beat_seconds``, from a thread of
its own, so a long queue or training keeps its claim). It marks the claim ``done`` once the
outcome is on the decision run. A worker killed in between leaves the claim ``requested``
(killed before the subflow claimed it) or ``running`` (killed inside it), and nothing beats on
it. Once its last beat (or the request) is older than ``MLOPS_RECONCILE_STALE_SECONDS``,
reconcile takes the claim over (``take_over``) and runs the subflow again -- a request only once
its batch settled as processed (a batch left unsettled is processed again first, and that run's
subflow claims the retrain). A decision recorded by a flow told not to act (``act=False``) is
never requested, so it is never carried out behind its caller's back.

Taking over is one conditional update, so of two sweeps at once only one wins, and a live
holder's claim is never taken. After ``MLOPS_MAX_BATCH_ATTEMPTS`` claims the retrain is not
taken again: it is left to a person.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from mlops_core.adapters.landing import RETRAINS, _engine, ledger_transaction
from mlops_core.settings import Settings

REQUESTED = "requested"
RUNNING = "running"
DONE = "done"


@dataclass(frozen=True)
class RetrainClaim:
    """A retrain's claim as the ledger holds it."""

    dataset: str
    decision_run_id: str
    batch_sha256: str
    state: str
    attempts: int
    beat_at: float


@dataclass(frozen=True)
class TakenRetrain:
    """A decision's retrain that reconcile took over: run it again as attempt ``attempt``."""

    decision_run_id: str
    batch_sha256: str
    attempt: int


class RetrainClaims:
    """The claims on one ledger (``MLOPS_LEDGER_URL``)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.ledger_database_url
        _engine(self.url)  # the tables exist from here on

    def _key(self, dataset: str, decision_run_id: str) -> sa.ColumnElement[bool]:
        columns = RETRAINS.c
        return sa.and_(columns.dataset == dataset, columns.decision_run_id == decision_run_id)

    def get(self, dataset: str, decision_run_id: str) -> RetrainClaim | None:
        """The claim on a decision's retrain; None when nothing claimed it."""
        with ledger_transaction(self.url) as connection:
            row = connection.execute(
                sa.select(RETRAINS).where(self._key(dataset, decision_run_id))
            ).first()
        return RetrainClaim(**row._mapping) if row is not None else None

    def request(self, dataset: str, decision_run_id: str, batch_sha256: str) -> bool:
        """Record that a decision asked for a retrain, before its batch is settled; False when
        it was requested or claimed before (a batch run again after a crash). A request made
        again is renewed, so reconcile leaves it to the run that is about to claim it."""
        if self._insert(dataset, decision_run_id, batch_sha256, REQUESTED, attempts=0):
            return True
        with ledger_transaction(self.url) as connection:
            connection.execute(
                sa.update(RETRAINS)
                .where(self._key(dataset, decision_run_id), RETRAINS.c.state == REQUESTED)
                .values(beat_at=time.time())
            )
        return False

    def start(self, dataset: str, decision_run_id: str, batch_sha256: str) -> bool:
        """Claim a decision's retrain for its first run; False when it was claimed before."""
        if self._insert(dataset, decision_run_id, batch_sha256, RUNNING, attempts=1):
            return True
        columns = RETRAINS.c
        with ledger_transaction(self.url) as connection:
            claimed = connection.execute(
                sa.update(RETRAINS)
                .where(self._key(dataset, decision_run_id), columns.state == REQUESTED)
                .values(state=RUNNING, attempts=columns.attempts + 1, beat_at=time.time())
            )
        return claimed.rowcount == 1

    def _insert(
        self, dataset: str, decision_run_id: str, batch_sha256: str, state: str, attempts: int
    ) -> bool:
        try:
            with ledger_transaction(self.url) as connection:
                connection.execute(
                    sa.insert(RETRAINS).values(
                        dataset=dataset,
                        decision_run_id=decision_run_id,
                        batch_sha256=batch_sha256,
                        state=state,
                        attempts=attempts,
                        beat_at=time.time(),
                    )
                )
        except sa_exc.IntegrityError:
            return False
        return True

    def take_over(
        self,
        dataset: str,
        decision_run_id: str,
        batch_sha256: str,
        *,
        stale_after_seconds: float,
        max_attempts: int,
    ) -> int | None:
        """Claim a retrain whose holder stopped beating, or that was requested and never claimed
        within the stale time: the attempt number it is now, or None -- never requested, done,
        held by a live run, or tried ``max_attempts`` times."""
        now = time.time()
        claim = self.get(dataset, decision_run_id)
        if (
            claim is None
            or claim.state not in (REQUESTED, RUNNING)
            or now - claim.beat_at < stale_after_seconds
            or claim.attempts >= max_attempts
        ):
            return None
        columns = RETRAINS.c
        with ledger_transaction(self.url) as connection:
            taken = connection.execute(
                sa.update(RETRAINS)
                .where(
                    self._key(dataset, decision_run_id),
                    columns.state == claim.state,
                    columns.beat_at == claim.beat_at,  # nobody beat, claimed or took it meanwhile
                )
                .values(state=RUNNING, attempts=claim.attempts + 1, beat_at=now)
            )
        return claim.attempts + 1 if taken.rowcount == 1 else None

    def running(self, dataset: str) -> list[RetrainClaim]:
        """The dataset's retrains requested or claimed and not marked done, oldest beat first."""
        with ledger_transaction(self.url) as connection:
            rows = connection.execute(
                sa.select(RETRAINS)
                .where(RETRAINS.c.dataset == dataset, RETRAINS.c.state.in_((REQUESTED, RUNNING)))
                .order_by(RETRAINS.c.beat_at)
            ).all()
        return [RetrainClaim(**row._mapping) for row in rows]

    def beat(self, dataset: str, decision_run_id: str) -> None:
        """The holder is alive."""
        with ledger_transaction(self.url) as connection:
            connection.execute(
                sa.update(RETRAINS)
                .where(self._key(dataset, decision_run_id), RETRAINS.c.state == RUNNING)
                .values(beat_at=time.time())
            )

    def finish(self, dataset: str, decision_run_id: str) -> None:
        """The retrain's outcome is recorded: nothing is to be taken over any more."""
        with ledger_transaction(self.url) as connection:
            connection.execute(
                sa.update(RETRAINS)
                .where(self._key(dataset, decision_run_id))
                .values(state=DONE, beat_at=time.time())
            )

    @contextlib.contextmanager
    def held(self, dataset: str, decision_run_id: str, beat_seconds: float) -> Iterator[None]:
        """Beat every ``beat_seconds`` from a thread of its own while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(beat_seconds):
                with contextlib.suppress(Exception):  # a missed beat only ages the claim
                    self.beat(dataset, decision_run_id)

        thread = threading.Thread(target=beat, name="retrain-claim-beat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
