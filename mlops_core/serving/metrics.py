"""The server's Prometheus metrics (one registry per app, so tests and replicas never collide).

Names (the Grafana dashboard in ``deployments/grafana-dashboard.json`` queries exactly these):

* ``mlops_requests_total{variant,version}`` -- answered requests;
* ``mlops_request_errors_total{variant,version}`` -- failed model calls (a failing challenger's
  request is answered by the champion and counted here);
* ``mlops_request_latency_seconds{variant}`` -- histogram of request latency;
* ``mlops_rollout_weight`` -- the challenger's share of traffic;
* ``mlops_rollout_info{mode,challenger}`` -- 1 for the current rollout mode;
* ``mlops_model_loads_total{role,version}`` -- models loaded from the registry;
* ``mlops_scoring_path{version,path}`` -- 1 for the path a loaded version scores through:
  ``compiled`` (``serving.compiled``, checked equal to the model) or ``pipeline``;
* ``mlops_shadow_disagreements_total`` -- shadow predictions that differed from the answer;
* ``mlops_feedback_total`` -- feedback labels received;
* ``mlops_feedback_refused_total{reason}`` -- feedback refused: ``unissued_request_id`` (a
  request id no server holding this key issued: forged, mistyped, or from a server with another
  ``MLOPS_FEEDBACK_KEY``), ``no_labels_token`` (by record id while ``MLOPS_LABELS_TOKEN`` is
  unset) or ``bad_labels_token`` (by record id, without the right token);
* ``mlops_log_flush_failures_total{kind}`` -- tries to land a prediction (``batch``) or feedback
  (``labels``) log micro-batch that failed (each is retried);
* ``mlops_log_rows_spilled_total{kind}`` -- logged rows that could not be landed and were written
  to ``<home>/logs/dead-letter/`` instead (``mlops logs resubmit`` lands them later).

The pipeline's figures (drift, accuracy, decisions, batches, retrains, the rollout's step) come
from the exporter that reads their owners: ``mlops_core.pipeline_metrics``.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from mlops_core.routing import Mode, Split

METRIC_NAMES = (
    "mlops_requests_total",
    "mlops_request_errors_total",
    "mlops_request_latency_seconds",
    "mlops_rollout_weight",
    "mlops_rollout_info",
    "mlops_model_loads_total",
    "mlops_scoring_path",
    "mlops_shadow_disagreements_total",
    "mlops_feedback_total",
    "mlops_feedback_refused_total",
    "mlops_log_flush_failures_total",
    "mlops_log_rows_spilled_total",
)
LOG_KINDS = ("batch", "labels")  # the prediction log and the feedback log
FEEDBACK_REFUSALS = ("unissued_request_id", "no_labels_token", "bad_labels_token")


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlops_requests", "Answered requests", ["variant", "version"], registry=r
        )
        self.errors = Counter(
            "mlops_request_errors", "Failed model calls", ["variant", "version"], registry=r
        )
        self.latency = Histogram(
            "mlops_request_latency_seconds",
            "Request latency",
            ["variant"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.weight = Gauge("mlops_rollout_weight", "Challenger share of traffic", registry=r)
        self.info = Gauge(
            "mlops_rollout_info", "Current rollout mode", ["mode", "challenger"], registry=r
        )
        self.loads = Counter(
            "mlops_model_loads", "Models loaded from the registry", ["role", "version"], registry=r
        )
        self.path = Gauge(
            "mlops_scoring_path",
            "1 for the path a loaded version scores through (compiled or pipeline)",
            ["version", "path"],
            registry=r,
        )
        self.disagreements = Counter(
            "mlops_shadow_disagreements", "Shadow predictions that differed", registry=r
        )
        self.feedbacks = Counter("mlops_feedback", "Feedback labels received", registry=r)
        self.refusals = Counter(
            "mlops_feedback_refused", "Feedback refused, by reason", ["reason"], registry=r
        )
        for reason in FEEDBACK_REFUSALS:
            self.refusals.labels(reason)
        self.flush_failures = Counter(
            "mlops_log_flush_failures",
            "Failed tries to land a log micro-batch",
            ["kind"],
            registry=r,
        )
        self.spilled = Counter(
            "mlops_log_rows_spilled",
            "Logged rows written to the dead-letter folder instead of the landing zone",
            ["kind"],
            registry=r,
        )
        for kind in LOG_KINDS:  # at 0 from the start: an alert on increase() sees the first one
            self.flush_failures.labels(kind)
            self.spilled.labels(kind)

    def request(self, variant: str, version: str, seconds: float) -> None:
        """Count an answered request and observe its latency."""
        self.requests.labels(variant, version).inc()
        self.latency.labels(variant).observe(seconds)

    def error(self, variant: str, version: str) -> None:
        """Count a failed model call."""
        self.errors.labels(variant, version).inc()

    def loaded(self, role: str, version: str, path: str = "pipeline") -> None:
        """Count a model loaded from the registry, and the path it scores through."""
        self.loads.labels(role, version).inc()
        for other in ("compiled", "pipeline"):
            self.path.labels(version, other).set(1 if other == path else 0)

    def shadow(self, disagreements: int) -> None:
        """Count shadow predictions that differed from the answer."""
        self.disagreements.inc(disagreements)

    def feedback(self) -> None:
        """Count a feedback request."""
        self.feedbacks.inc()

    def feedback_refused(self, reason: str) -> None:
        """Count feedback refused for ``reason`` (one of ``FEEDBACK_REFUSALS``)."""
        self.refusals.labels(reason).inc()

    def flush_failed(self, kind: str) -> None:
        """Count a failed try to land a ``kind`` log micro-batch."""
        self.flush_failures.labels(kind).inc()

    def rows_spilled(self, kind: str, rows: int) -> None:
        """Count ``rows`` of the ``kind`` log written to the dead-letter folder."""
        self.spilled.labels(kind).inc(rows)

    def routing(self, split: Split, challenger: str) -> None:
        """Set the rollout gauges to ``split`` (the challenger's weight, the mode with its version)."""
        self.weight.set(split.weight)
        self.info.clear()
        self.info.labels(
            split.mode.value if split.mode is not Mode.idle else "idle", challenger
        ).set(1)

    def render(self) -> bytes:
        """Every metric in Prometheus' text format (``content_type``)."""
        return bytes(generate_latest(self.registry))
