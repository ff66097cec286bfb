"""Background loops for the demo and the soak: a step run again and again in a thread, stopped as one.

Both keep users sending predictions and feedback, and watchers reading the registry or the
server's memory, while the foreground submits batches and waits for what the flows did. A
``BackgroundLoop`` is one such thread; ``Loops`` starts a group and stops it together, so every
loop is told to stop before any is waited for (a slow one does not hold the others running).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import TypeVar

Value = TypeVar("Value")


class Pace(StrEnum):
    """How the seconds between steps are counted."""

    # Load at a set rate: a step that took long shortens the wait before the next one.
    rate = "rate"
    # A rest after every step, however long the step took.
    pause = "pause"


class BackgroundLoop:
    """A daemon thread that runs ``step`` every ``seconds`` until stopped.

    An exception from ``step`` is recorded in ``errors`` (``"Type: message"``) and the loop goes
    on: a loop watches or loads, and one bad read must not end it. ``wait_first`` waits before
    the first step (a watcher that has nothing to see yet). ``within`` is entered in the loop's
    own thread around all its steps: the HTTP client its steps share, closed when it stops, or
    Prefect settings (they hold per thread).
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        seconds: float,
        *,
        pace: Pace = Pace.pause,
        wait_first: bool = False,
        join_seconds: float = 10.0,
        within: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.seconds = seconds
        self.pace = pace
        self.wait_first = wait_first
        self.join_seconds = join_seconds
        self.within = within
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        with self.within() if self.within is not None else contextlib.nullcontext():
            self._steps()

    def _steps(self) -> None:
        if self.wait_first and self.stopping.wait(self.seconds):
            return
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 -- recorded; the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            rest = self.seconds
            if self.pace is Pace.rate:
                rest = max(0.0, self.seconds - (time.monotonic() - began))
            if self.stopping.wait(rest):
                return

    def start(self) -> None:
        """Start the thread; the first step runs now (or after ``seconds`` with ``wait_first``)."""
        self.thread.start()

    def signal_stop(self) -> None:
        """Tell the loop to stop after its current step, without waiting for it."""
        self.stopping.set()

    def stop(self) -> None:
        """Stop the loop and wait for it, at most ``join_seconds``."""
        self.signal_stop()
        self.join()

    def join(self) -> None:
        """Wait for the thread to end, at most ``join_seconds`` (it is a daemon either way)."""
        if self.thread.is_alive():
            self.thread.join(timeout=self.join_seconds)


class Loops:
    """A group of background loops started together and stopped together."""

    def __init__(self, loops: Iterable[BackgroundLoop] = ()) -> None:
        self.loops = list(loops)

    def start(self) -> None:
        """Start every loop of the group, in the order added."""
        for loop in self.loops:
            loop.start()

    def stop(self) -> None:
        """Tell every loop to stop, then wait for each (so their waits overlap)."""
        for loop in self.loops:
            loop.signal_stop()
        for loop in self.loops:
            loop.join()


def poll_until(
    condition: Callable[[], Value],
    timeout: float,
    *,
    every: float,
    check: Callable[[], object] | None = None,
) -> Value | None:
    """The first truthy value of ``condition`` polled every ``every`` s; ``None`` after ``timeout``.

    ``check`` runs between polls: it raises to give up early (a process that died meanwhile).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if check is not None:
            check()
        time.sleep(every)
    return None
