"""What `mlops up` runs, written down for the other commands: URLs and process ids.

``<home>/stack.json`` is written when the stack is ready and removed when it stops; a command
such as ``mlops submit`` reads it to find the Prefect API and announce its batch there.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_core.settings import Settings


@dataclass(frozen=True)
class StackState:
    """What a running `mlops up` recorded: its Prefect and MLflow URLs and its process ids."""

    prefect_api_url: str
    prefect_ui_url: str
    mlflow_ui_url: str | None = None
    metrics_url: str | None = None  # the pipeline exporter's /metrics
    prometheus_url: str | None = None  # `mlops up --prometheus`
    pids: dict[str, int] = field(default_factory=dict)
    owner_pid: int = 0


def write_state(settings: Settings, state: StackState) -> None:
    """Record ``state`` in ``<home>/stack.json``, replacing any earlier record in one step."""
    settings.home.mkdir(parents=True, exist_ok=True)
    staged = settings.stack_file.with_suffix(".tmp")
    staged.write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
    os.replace(staged, settings.stack_file)


def read_state(settings: Settings) -> StackState | None:
    """The stack recorded in ``<home>/stack.json``; None when there is none or it cannot be read."""
    try:
        payload: dict[str, Any] = json.loads(settings.stack_file.read_text(encoding="utf-8"))
        return StackState(**payload)
    except (OSError, ValueError, TypeError):
        return None


def clear_state(settings: Settings) -> None:
    """Remove ``<home>/stack.json`` (if any): no stack is recorded as running."""
    settings.stack_file.unlink(missing_ok=True)


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    """Whether a Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def running_api_url(settings: Settings) -> str | None:
    """The Prefect API to announce events to: ``PREFECT_API_URL``, else a healthy `mlops up`."""
    explicit = os.environ.get("PREFECT_API_URL")
    if explicit:
        return explicit
    state = read_state(settings)
    if state is not None and healthy(state.prefect_api_url):
        return state.prefect_api_url
    return None
