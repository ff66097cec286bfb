"""Micro-batching: concurrent requests to one model are answered by one ``predict_proba`` call.

A scikit-learn pipeline costs about the same for 1 row as for 50 (validation, the column
transformer, the booster's setup dominate), so the server queues the rows of concurrent requests
for up to ``wait_ms`` (or ``max_rows``), scores them together in one worker thread per model, and
hands each request its own slice. A model that raises fails only the requests of that call;
the app then answers them with the champion.

A request can still hold a snapshot whose model was just swapped out: ``close()`` never strands
it. What was queued before the close is scored before the worker ends, and a request that comes
after is scored in its own thread.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]  # positive-class probabilities, one per row


class Batcher:
    """One model's micro-batcher: a worker thread scoring the queued rows of concurrent requests."""

    def __init__(self, model: Any, *, wait_ms: float = 2.0, max_rows: int = 512) -> None:
        self.model = model
        self.wait = wait_ms / 1000
        self.max_rows = max_rows
        self._queue: queue.Queue[tuple[Any, Future[Scores]] | None] = queue.Queue()
        self._lock = threading.Lock()  # a put and the close never interleave
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mlops-batcher", daemon=True)
        self._thread.start()

    def scores(self, frame: Any, timeout: float = 30.0) -> Scores:
        """The positive-class probabilities of ``frame``'s rows (blocks until scored)."""
        future: Future[Scores] = Future()
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put((frame, future))
        if closed:  # swapped out while this request held it: score here
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1):
                return self._score([frame])
        return future.result(timeout=timeout)

    def _score(self, frames: list[Any]) -> Scores:
        import pandas as pd

        combined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        probabilities = np.asarray(self.model.predict_proba(combined), dtype=np.float64)
        scores = probabilities[:, 1]
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

    def _answer(self, items: list[tuple[Any, Future[Scores]]]) -> None:
        try:
            scores = self._score([frame for frame, _ in items])
        except Exception as exc:  # noqa: BLE001 -- each waiting request gets the failure
            for _, future in items:
                future.set_exception(exc)
            return
        start = 0
        for frame, future in items:
            future.set_result(scores[start : start + len(frame)])
            start += len(frame)

    def close(self) -> None:
        """No new work: what is queued is still scored, later requests score in their thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
