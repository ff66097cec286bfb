"""Fail points: named places where a fault drill makes this process die, raise or stall.

The fault suite (``tests/faults/``) proves that a crash at the worst moment loses nothing. To
crash *at* that moment, not near it, the flows call ``failpoint(name)`` at the few places where
a crash is most dangerous (after a claim, after a decision is recorded, as training starts,
as a trained challenger is judged, as a rollout promotes). They do nothing unless
``MLOPS_FAILPOINTS`` names them, e.g.::

    MLOPS_FAILPOINTS="batch-decided=kill"            # SIGKILL this process there
    MLOPS_FAILPOINTS="batch-claimed=raise,retrain-evaluating=sleep:5"

Actions: ``kill`` (SIGKILL: no cleanup, no finally blocks, like the OOM killer or a pulled
plug), ``raise`` (a ``FaultInjected`` exception), ``sleep:<seconds>``. Never set it in production.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "MLOPS_FAILPOINTS"
POINTS = (
    "batch-claimed",
    "batch-decided",
    "batch-settled",  # the batch settled, its retrain requested, before the subflow claims it
    "retrain-claimed",  # the subflow claimed its decision's retrain, before its concurrency slot
    "retrain-training",
    "retrain-evaluating",
    "rollout-promoting",  # the rollout checked nobody moved the aliases, and holds their lock
)


class FaultInjected(RuntimeError):
    """Raised at a fail point set to ``raise``."""


def _actions() -> dict[str, str]:
    found: dict[str, str] = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, action = item.strip().partition("=")
        if name:
            found[name] = action.strip() or "raise"
    return found


def failpoint(name: str) -> None:
    """Carry out the action ``MLOPS_FAILPOINTS`` sets for ``name``; nothing when unset."""
    if name not in POINTS:
        raise ValueError(f"unknown fail point {name!r}; known: {', '.join(POINTS)}")
    action = _actions().get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # the signal is asynchronous; never run on past the point
    elif action == "raise":
        raise FaultInjected(f"fault injected at {name} ({ENV})")
    elif action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))
    else:
        raise ValueError(f"{ENV}: unknown action {action!r} for {name} (kill, raise, sleep:<s>)")
