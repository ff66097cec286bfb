"""The Prometheus alerting rules load, pass their promtool unit tests (each alert fires on a bad
series and stays quiet on a good one), and query only metrics that something exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_core.pipeline_metrics import PIPELINE_METRIC_NAMES
from mlops_core.serving.metrics import METRIC_NAMES

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"
RULES = DEPLOYMENTS / "alerts.yml"
RULE_TESTS = DEPLOYMENTS / "alerts_test.yml"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package prometheus; .ci/system-packages installs it)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """promtool run in deployments/, where the test file's rule_files are relative to."""
    return subprocess.run(
        ["promtool", *args], cwd=DEPLOYMENTS, capture_output=True, text=True, timeout=60
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_every_alert_passes_its_promtool_unit_tests() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_case_and_a_quiet_case() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert len(names) == len(alert_rules()), "alert names are unique"
    assert names - firing == set(), "alerts without a case where they fire"
    assert names - quiet == set(), "alerts without a case where they stay quiet"
    assert (firing | quiet) - names == set(), "cases for alerts that alerts.yml does not define"


def test_every_alert_is_labelled_and_says_what_to_do() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("for"), f"{name} has no `for:`"
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["description"]) > 80, f"{name} says too little"


def test_every_metric_an_alert_names_is_exported() -> None:
    contract = {*METRIC_NAMES, *PIPELINE_METRIC_NAMES}
    used: set[str] = set()
    for rule in alert_rules():
        # Its query, and the metrics its description points a person to.
        text = " ".join([rule["expr"], *rule["annotations"].values()])
        used |= set(re.findall(r"\bmlops_[a-z_]+", text))
    # A histogram is queried through its series (_bucket, _count, _sum).
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert {"mlops_drift_detected", "mlops_requests_total"} <= used, used
    assert used - contract == set(), "alerts name metrics nothing exports"
    # Besides ours, only the `up` series Prometheus records for each scraped target.
    scraped = {r["expr"].split("{")[0] for r in alert_rules() if r["expr"].startswith("up{")}
    assert scraped == {"up"}
