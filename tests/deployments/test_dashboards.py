"""The Grafana dashboard and the Prometheus config name what the server and the pipeline exporter
really export (tests/deployments/test_stack.py runs a real Prometheus on them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlops_core.pipeline_metrics import PIPELINE_METRIC_NAMES
from mlops_core.routing import Mode, Split
from mlops_core.serving.metrics import METRIC_NAMES, ServerMetrics

ROOT = Path(__file__).resolve().parents[2] / "deployments"


def exported_series() -> set[str]:
    """Every series name the server's registry produces (counters' _total, histograms' _bucket…)."""
    metrics = ServerMetrics()
    metrics.request("champion", "1", 0.01)
    metrics.error("challenger", "2")
    metrics.loaded("champion", "1")
    metrics.routing(Split(mode=Mode.canary, weight=0.25), "2")
    text = metrics.render().decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((ROOT / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    series = exported_series() | set(PIPELINE_METRIC_NAMES)
    series |= {f"mlops_submit_to_decision_seconds_{s}" for s in ("bucket", "sum", "count")}
    used = {name for expr in exprs for name in re.findall(r"\bmlops_[a-z_]+", expr)}
    assert used, "the dashboard queries our metrics"
    missing = used - series
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    assert {n for n in METRIC_NAMES} <= {re.sub(r"_(bucket|count|sum)$", "", s) for s in series}


def test_prometheus_scrapes_the_server_and_the_exporter_with_the_alert_rules() -> None:
    from mlops_cli.prometheus import stack_config

    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["mlops-model-server"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert jobs["mlops-pipeline"]["static_configs"][0]["targets"] == ["127.0.0.1:9108"]
    assert {job["metrics_path"] for job in jobs.values()} == {"/metrics"}
    assert config["rule_files"] == ["alerts.yml"] and (ROOT / "alerts.yml").is_file()
    # `mlops up --prometheus` runs the same file, its targets found in the announced files.
    stacked = stack_config(config)
    assert stacked["rule_files"] == config["rule_files"]
    for job in stacked["scrape_configs"]:
        assert "static_configs" not in job
        assert job["file_sd_configs"][0]["files"] == [f"targets/{job['job_name']}-*.json"]
