"""The Grafana dashboard and the Prometheus config name what the server really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlops_core.routing import Mode, Split
from mlops_core.serving.metrics import METRIC_NAMES, ServerMetrics

ROOT = Path(__file__).resolve().parents[2] / "deployments"


def exported_series() -> set[str]:
    """Every series name the server's registry produces (counters' _total, histograms' _bucket…)."""
    metrics = ServerMetrics()
    metrics.request("champion", "1", 0.01)
    metrics.error("challenger", "2")
    metrics.loaded("champion", "1")
    metrics.drift.labels("credit").set(0.5)
    metrics.routing(Split(mode=Mode.canary, weight=0.25), "2")
    text = metrics.render().decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((ROOT / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    series = exported_series()
    used = {name for expr in exprs for name in re.findall(r"\bmlops_[a-z_]+", expr)}
    assert used, "the dashboard queries our metrics"
    missing = used - series
    assert not missing, f"the dashboard queries metrics the server does not export: {missing}"
    assert {n for n in METRIC_NAMES} <= {re.sub(r"_(bucket|count|sum)$", "", s) for s in series}


def test_prometheus_scrapes_the_server_metrics_path() -> None:
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
