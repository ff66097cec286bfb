"""The live parts of ``mlops demo`` in its own process: the model server, its users, what it watches.

* ``ServerThread``: the model server (uvicorn) in a thread, ready when ``/ready`` answers;
* ``Traffic``: steady users sending the current week's applicants, then their true labels;
* ``RolloutWatcher``: prints each rollout step as the registry's rollout tags move;
* ``Outcomes``: reads what the event-driven flows did (ledger, reports, decision runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console

from mlops_cli.loops import BackgroundLoop, poll_until
from mlops_cli.scenarios import CREDIT_SPEC
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings
from mlops_core.tags import CHAMPION, RETRAIN, ROLLBACK

if TYPE_CHECKING:
    import polars as pl
    from fastapi import FastAPI

CREDIT_FEATURES = list(CREDIT_SPEC.features)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; a clear error after ``timeout``."""
    value = poll_until(condition, timeout, every=0.2)
    if not value:
        raise MlopsError(f"the demo waited {timeout:.0f} s for {what}", hint="see <home>/logs/")
    return value


class ServerThread:
    """The model server (uvicorn) inside this process, on 127.0.0.1."""

    def __init__(self, app: FastAPI, port: int, *, log_level: str = "warning") -> None:
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level)
        )
        self.thread = threading.Thread(target=self.server.run, name="mlops-server", daemon=True)

    def start(self) -> None:
        """Start serving and return once ``/ready`` answers 200 (a clear error after 60 s)."""
        import httpx

        self.thread.start()

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the model server")

    def routing(self) -> dict[str, Any]:
        """The server's current routing: champion, challenger, mode, weight."""
        import httpx

        return dict(httpx.get(f"{self.url}/routing", timeout=5).json())

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it, at most 10 s."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Traffic:
    """Steady users: one application per request from the current week, then its true label."""

    def __init__(self, url: str, world: pl.DataFrame) -> None:
        import httpx

        self.url = url
        self.world = world  # this week's applicants; the demo swaps it as the weeks go by
        self.answered = self.failed = 0
        self.sent = 0
        self.client = httpx.Client(base_url=url, timeout=10)
        self.loop = BackgroundLoop("mlops-traffic", self.send_one, 0.01, within=lambda: self.client)

    def send_one(self) -> None:
        """One application from the current week to ``/predict``; its true label as feedback."""
        import httpx

        i, world = self.sent, self.world
        self.sent += 1
        row = world.row(i % world.height, named=True)
        label = row.pop("default")
        record = {f: row[f] for f in CREDIT_FEATURES}
        try:
            answer = self.client.post(
                "/predict", json={"record": record, "routing_key": f"user-{i}"}
            )
            if answer.status_code == 200:
                self.answered += 1
                request_id = answer.json()["request_id"]
                self.client.post("/feedback", json={"request_id": request_id, "label": label})
            else:
                self.failed += 1
        except httpx.HTTPError:
            self.failed += 1


class RolloutWatcher:
    """Prints each rollout step as the registry's rollout tags move."""

    def __init__(self, settings: Settings, dataset: str, console: Console) -> None:
        from mlops_core.adapters.registry import ModelRegistry

        self.registry = ModelRegistry(settings, dataset)
        self.console = console
        self.seen: tuple[str, ...] = ()
        # A failed read is display only: the loop records it and looks again.
        self.loop = BackgroundLoop(
            "mlops-rollout-watch", self.look, 0.3, wait_first=True, join_seconds=5
        )

    def look(self) -> None:
        """Read the rollout tags once; print a line when the rollout moved."""
        tags = self.registry.tags()
        now = tuple(
            tags.get(k, "")
            for k in ("mlops.rollout.version", "mlops.rollout.mode", "mlops.rollout.weight")
        )
        if now != self.seen and now[0] and now[1] not in ("", "idle"):
            version, mode, weight = now
            self.console.print(
                f"    [cyan]rollout v{version}: {mode} {float(weight or 0):.0%} of traffic[/cyan]",
                highlight=False,
            )
        self.seen = now


class Outcomes:
    """Reads what the event-driven flows did: the ledger, the reports, the decision runs."""

    def __init__(self, settings: Settings, dataset: str) -> None:
        from mlops_core.adapters.registry import ModelRegistry

        self.settings = settings
        self.dataset = dataset
        self.registry = ModelRegistry(settings, dataset)

    def settled(self, sha256: str, kind: str) -> dict[str, Any] | None:
        """The ledger entry and its report's detail once settled; ``None`` until then."""
        entry = LandingZone(self.settings, kind).get(self.dataset, sha256)
        if entry is None or entry.state not in (BatchState.processed, BatchState.quarantined):
            return None
        report = LandingZone(self.settings, kind).read_report(entry)
        return {"entry": entry, "detail": report.get("detail") or {}}

    def acted(self, detail: dict[str, Any]) -> dict[str, str] | None:
        """The decision run's tags once the flow has acted on it (retrain/rollback noted)."""
        decision = detail.get("decision") or {}
        run_id = detail.get("decision_run_id")
        action = decision.get("action")
        if not run_id or action not in ("retrain", "rollback"):
            return {}
        tags = self.registry.run_tags(run_id)
        key = RETRAIN if action == "retrain" else ROLLBACK
        return tags if key in tags else None

    def retrain(self, detail: dict[str, Any]) -> str | None:
        """What the retrain or rollback did, as the decision run's tags say; ``None`` if nothing."""
        tags = self.acted(detail) or {}
        return tags.get(RETRAIN) or ("rolled back" if ROLLBACK in tags else None)

    def champion(self) -> str:
        """The champion's version now (``-`` before the first)."""
        return self.registry.aliases().get(CHAMPION, "-")
