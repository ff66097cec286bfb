"""The pipeline's metrics exporter, ``python -m mlops_core.adapters.exporter --port N``.

``mlops up`` (and ``mlops up --cluster``) starts it.

It serves ``/metrics`` for Prometheus (job ``mlops-pipeline`` in ``deployments/prometheus.yml``)
with the figures of ``mlops_core.pipeline_metrics``, read from the owners of those facts: the
ledger and batch reports (``LandingZone``), the decision runs and the registry's rollout tags
(MLflow). A scrape reads every registered dataset at most once per ``--min-interval`` seconds
(default 5; a busier Prometheus gets the cached figures). A dataset that cannot be read is left
out of that scrape and counted in ``mlops_exporter_errors_total{dataset}``, never an HTTP error.

Nothing in the model server reads these files: a server answers requests, the exporter reports
on the pipeline.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlops_core.adapters.scrape_targets import announced
from mlops_core.pipeline_metrics import DatasetFigures, RolloutState, families
from mlops_core.settings import Settings

log = logging.getLogger("mlops.exporter")


def read_figures(settings: Settings, name: str) -> DatasetFigures:
    """One dataset's figures: its timeline (no plots), ledger entries and rollout state."""
    from mlops_core.adapters.context import DatasetContext
    from mlops_core.adapters.timeline_source import decision_run_tags, load_timeline

    ctx = DatasetContext.open(settings, name)
    timeline = load_timeline(ctx, plots=False)
    try:
        tags = ctx.registry.tags()
    except Exception:  # noqa: BLE001 -- no registered model yet: no rollout
        tags = {}
    return DatasetFigures(
        timeline=timeline,
        entries=ctx.batches.entries(name),
        rollout=RolloutState.from_tags(tags),
        expected_interval_seconds=settings.expected_batch_interval_hours * 3600,
        decision_runs=list(decision_run_tags(ctx).values()),
    )


class PipelineCollector(Collector):
    """Collects the pipeline metrics of every registered dataset, cached for ``min_interval`` s."""

    def __init__(self, settings: Settings, min_interval: float = 5.0) -> None:
        self.settings = settings
        self.min_interval = min_interval
        self.lock = threading.Lock()
        self.cached: list[Metric] = []
        self.read_at = float("-inf")
        self.errors: dict[str, int] = {}
        self.seconds = 0.0

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the families depend on what the datasets hold at scrape time."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """The figures, read afresh when the cached ones are older than ``min_interval``."""
        with self.lock:
            if time.monotonic() - self.read_at >= self.min_interval:
                self.cached = self._read()
                self.read_at = time.monotonic()
            yield from self.cached
            errors = CounterMetricFamily(
                "mlops_exporter_errors", "Datasets the exporter could not read", labels=["dataset"]
            )
            for name, count in sorted(self.errors.items()):
                errors.add_metric([name], count)
            yield errors
            yield GaugeMetricFamily(
                "mlops_exporter_scrape_seconds", "Seconds the last read took", value=self.seconds
            )

    def _read(self) -> list[Metric]:
        from mlops_core.adapters.catalog import DatasetCatalog

        started = time.perf_counter()
        found = []
        for name in DatasetCatalog(self.settings).names():
            try:
                found.append(read_figures(self.settings, name))
            except Exception as exc:  # noqa: BLE001 -- one unreadable dataset never hides the rest
                self.errors[name] = self.errors.get(name, 0) + 1
                log.warning("mlops exporter: dataset %s could not be read: %s", name, exc)
        self.seconds = time.perf_counter() - started
        return families(found)


def main(argv: list[str] | None = None) -> int:
    """Serve ``/metrics`` until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops_core.adapters.exporter", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9108)
    parser.add_argument("--min-interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings()
    registry = CollectorRegistry()
    registry.register(PipelineCollector(settings, args.min_interval))
    server, _ = start_http_server(args.port, addr=args.host, registry=registry)
    address = f"{args.host}:{server.server_port}"
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with announced(settings, "mlops-pipeline", address):
        print(f"READY http://{address}/metrics", flush=True)
        stopping.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
