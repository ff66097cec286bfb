"""Micro-batching: concurrent requests to one model are answered by one scoring call.

Scoring costs little more for 50 rows than for 1 (a scikit-learn pipeline's validation and
column transformer, or the compiled path's call per tree, dominate), so the server queues the
records of concurrent requests for up to ``wait_ms`` (or ``max_rows``), scores them together in
one worker thread per model, and hands each request its own slice. A model that raises fails only
the requests of that call; the app then answers them with the champion.

A request can still hold a snapshot whose model was just swapped out: ``close()`` never strands
it. What was queued before the close is scored before the worker ends, and a request that comes
after is scored in its own thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]  # positive-class probabilities, one per row
Rows = Sequence[dict[str, Any]]


class Batcher:
    """One model's micro-batcher: a worker thread scoring the queued rows of concurrent requests.

    ``score`` maps records to their positive-class probabilities (``compiled.Scorer.score``).
    """

    def __init__(
        self, score: Callable[[Rows], Scores], *, wait_ms: float = 2.0, max_rows: int = 512
    ) -> None:
        self.score = score
        self.wait = wait_ms / 1000
        self.max_rows = max_rows
        self._queue: queue.Queue[tuple[Rows, Future[Scores]] | None] = queue.Queue()
        self._lock = threading.Lock()  # a put and the close never interleave
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mlops-batcher", daemon=True)
        self._thread.start()

    def submit(self, rows: Rows) -> Future[Scores]:
        """A future of the positive-class probabilities of ``rows`` (an event loop awaits it
        with ``asyncio.wrap_future``)."""
        future: Future[Scores] = Future()
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put((rows, future))
        if closed:  # swapped out while this request held it: score here
            from threadpoolctl import threadpool_limits

            try:
                with threadpool_limits(limits=1):
                    future.set_result(self._score([rows]))
            except Exception as exc:  # noqa: BLE001 -- the caller gets it from the future
                future.set_exception(exc)
        return future

    def scores(self, rows: Rows, timeout: float = 30.0) -> Scores:
        """The positive-class probabilities of ``rows`` (blocks until scored)."""
        return self.submit(rows).result(timeout=timeout)

    def _score(self, batches: list[Rows]) -> Scores:
        combined = batches[0] if len(batches) == 1 else [row for rows in batches for row in rows]
        scores = np.asarray(self.score(combined), dtype=np.float64)
        if scores.shape != (len(combined),):
            raise ValueError(f"the model returned {scores.shape} scores for {len(combined)} rows")
        if not np.all(np.isfinite(scores)):
            raise ValueError("the model returned non-finite probabilities")
        return scores

    def _run(self) -> None:
        from threadpoolctl import threadpool_limits

        # One OpenMP thread: a request's few rows gain nothing from parallel trees, and idle
        # OpenMP teams spinning in several threads starve everything else on a small machine.
        with threadpool_limits(limits=1):
            self._loop()

    def _loop(self) -> None:
        closing = False
        while True:
            if closing:  # everything queued before the close: serve it, then end
                try:
                    first = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                first = self._queue.get()
            if first is None:
                closing = True
                continue
            items = [first]
            rows = len(first[0])
            while rows < self.max_rows:
                try:
                    item = self._queue.get(timeout=self.wait)
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    continue
                items.append(item)
                rows += len(item[0])
            self._answer(items)

    def _answer(self, items: list[tuple[Rows, Future[Scores]]]) -> None:
        try:
            scores = self._score([rows for rows, _ in items])
        except Exception as exc:  # noqa: BLE001 -- each waiting request gets the failure
            for _, future in items:
                future.set_exception(exc)
            return
        start = 0
        for rows, future in items:
            future.set_result(scores[start : start + len(rows)])
            start += len(rows)

    def close(self) -> None:
        """No new work: what is queued is still scored, later requests score in their thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
