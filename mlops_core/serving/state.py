"""What one model server's routes share: its dataset, the models it follows, its traffic and logs.

``create_app`` builds one ``ServerState`` and keeps it on ``app.state.server``; the routes reach
it through the ``ServerDep`` dependency (``mlops_core.serving.dependencies``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.errors import MlopsError
from mlops_core.serving.follower import ModelFollower
from mlops_core.serving.metrics import ServerMetrics
from mlops_core.serving.records import LogWriter, Traffic
from mlops_core.serving.signing import feedback_key
from mlops_core.serving.workers import RequestIds, Workers
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec


class ServerState:
    """One server's dataset, model follower, traffic memory, prediction/feedback logs and metrics."""

    def __init__(
        self,
        settings: Settings,
        dataset: str,
        spec: DatasetSpec,
        *,
        loader: Callable[[str], Any] | None = None,
        follow: bool = True,
        log_traffic: bool = True,
        workers: Workers | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers  # None: a single process
        self.request_id = RequestIds(workers.index if workers else 0, feedback_key(settings))
        self.dataset = dataset
        self.spec = spec
        self.follow = follow
        self.metrics = ServerMetrics()
        self.follower = ModelFollower(
            settings, dataset, loader=loader, on_load=self.metrics.loaded, spec=spec
        )
        self.traffic = Traffic(keep=settings.serve_traffic_keep)
        self.writer = LogWriter(settings, dataset, self.metrics) if log_traffic else None

    @classmethod
    def for_dataset(
        cls,
        settings: Settings,
        dataset: str | None = None,
        *,
        loader: Callable[[str], Any] | None = None,
        follow: bool = True,
        log_traffic: bool = True,
        workers: Workers | None = None,
    ) -> ServerState:
        """The state of a server for ``dataset`` (the only registered one when not given)."""
        catalog = DatasetCatalog(settings)
        if dataset is None:
            names = catalog.names()
            if len(names) != 1:
                raise MlopsError(
                    "say which dataset to serve with --dataset "
                    f"(registered: {', '.join(names) or 'none'})"
                )
            dataset = names[0]
        spec = catalog.get(dataset).spec
        return cls(
            settings,
            dataset,
            spec,
            loader=loader,
            follow=follow,
            log_traffic=log_traffic,
            workers=workers,
        )

    def start(self) -> None:
        """Load the registry's models now, then follow the registry and log in the background."""
        self.follower.refresh()
        if self.follow:
            self.follower.start()
        if self.writer is not None:
            self.writer.start()

    def stop(self) -> None:
        """Stop following the registry, and land what the logs still hold."""
        self.follower.stop()
        if self.writer is not None:
            self.writer.stop()
