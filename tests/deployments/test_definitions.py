"""The Python deployments and the work-pool prefect.yaml describe the same loop."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from deployments.definitions import build
from mlops_core import events
from mlops_core.settings import Settings

YAML = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"


def test_prefect_yaml_matches_the_python_deployments(settings: Settings) -> None:
    python = {(d.flow_name, d.name): d for d in build(settings)}
    declared = yaml.safe_load(YAML.read_text())["deployments"]
    from_yaml = {}
    for item in declared:
        path, function = item["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        flow = getattr(importlib.import_module(module), function)
        from_yaml[(flow.name, item["name"])] = item
    assert set(from_yaml) == set(python)
    for key, item in from_yaml.items():
        deployment = python[key]
        assert set(item.get("tags", [])) == set(deployment.tags), key
        yaml_events = {e for t in item.get("triggers", []) for e in t["expect"]}
        python_events = {e for t in deployment.triggers for e in t.expect}
        assert yaml_events == python_events, key
        for trigger in item.get("triggers", []):
            assert trigger["parameters"] == {
                "dataset": "{{ event.payload.dataset }}",
                "sha256": "{{ event.payload.sha256 }}",
            }


def test_arrivals_trigger_the_batch_and_labels_flows(settings: Settings) -> None:
    by_event = {
        event: d.flow_name for d in build(settings) for t in d.triggers for event in t.expect
    }
    assert by_event == {
        events.BATCH_ARRIVED: "process-batch",
        events.LABELS_ARRIVED: "process-labels",
    }
    reconcile = next(d for d in build(settings) if d.flow_name == "reconcile")
    assert reconcile.schedules, "reconcile runs on a schedule"
    gc = next(d for d in build(settings) if d.flow_name == "gc")
    assert gc.schedules and gc.parameters == {"dataset": "all"}, "retention runs on a schedule"
