"""The pipeline metrics the exporter serves, computed from ledger entries, decision tags and
the registry's rollout tags (the Prometheus test in tests/deployments/test_stack.py reads them
from a running stack)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.pipeline_metrics import (
    PIPELINE_METRIC_NAMES,
    DatasetFigures,
    RolloutState,
    families,
)
from mlops_core.timeline import Timeline


def entry(sha: str, state: BatchState, submitted: str, updated: str) -> LedgerEntry:
    return LedgerEntry(
        dataset="credit",
        sha256=sha,
        state=state,
        location=f"/x/{sha}.parquet",
        original_name=f"{sha}.parquet",
        file_format="parquet",
        size_bytes=1,
        reason=None,
        submitted_at=submitted,
        updated_at=updated,
    )


class Fixed:
    def __init__(self, found: list[DatasetFigures]) -> None:
        self.found = found

    def collect(self):  # type: ignore[no-untyped-def]
        return families(self.found)


def samples(found: list[DatasetFigures]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(Fixed(found))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def figures(**kw: object) -> DatasetFigures:
    base: dict[str, object] = {
        "timeline": Timeline(dataset="credit", rows=()),
        "entries": [
            entry(
                "a", BatchState.processed, "2026-11-30T10:00:00+00:00", "2026-11-30T10:00:40+00:00"
            ),
            entry(
                "b",
                BatchState.quarantined,
                "2026-11-30T11:00:00+00:00",
                "2026-11-30T11:00:03+00:00",
            ),
            entry("c", BatchState.failed, "2026-11-30T12:00:00+00:00", "2026-11-30T12:00:05+00:00"),
        ],
        "rollout": RolloutState(),
        "expected_interval_seconds": 7200.0,
        "decision_runs": [
            {"mlops.decision": "none"},
            {"mlops.decision": "retrain", "mlops.retrain": "promoted"},
            {"mlops.decision": "retrain", "mlops.retrain": "refused"},
            {"mlops.decision": "retrain", "mlops.retrain": "pending"},
            {"mlops.decision": "retrain", "mlops.retrain": "rolled back"},
        ],
    }
    base.update(kw)
    return DatasetFigures(**base)  # type: ignore[arg-type]


def test_batches_decisions_retrains_and_the_wait_to_a_decision() -> None:
    got = samples([figures()])
    d = (("dataset", "credit"),)
    assert got[("mlops_batches", (("dataset", "credit"), ("state", "processed")))] == 1
    assert got[("mlops_batches", (("dataset", "credit"), ("state", "failed")))] == 1
    assert got[("mlops_batches", (("dataset", "credit"), ("state", "landed")))] == 0
    assert got[("mlops_decisions_total", (("action", "retrain"), ("dataset", "credit")))] == 4
    assert got[("mlops_decisions_total", (("action", "rollback"), ("dataset", "credit")))] == 0
    retrains = {k[1][1][1]: v for k, v in got.items() if k[0] == "mlops_retrains_total"}
    assert retrains["promoted"] == 1 and retrains["refused"] == 1 and retrains["rolled_back"] == 1
    assert "pending" not in retrains and retrains["failed"] == 0
    # Settled batches only (the failed one is not settled): waits of 40 s and 3 s.
    assert got[("mlops_submit_to_decision_seconds_count", d)] == 2
    assert got[("mlops_submit_to_decision_seconds_sum", d)] == 43
    bucket = "mlops_submit_to_decision_seconds_bucket"
    assert got[(bucket, (("dataset", "credit"), ("le", "5.0")))] == 1
    assert got[(bucket, (("dataset", "credit"), ("le", "60.0")))] == 2
    assert got[("mlops_last_batch_timestamp_seconds", d)] == 1_796_040_000  # 2026-11-30 12:00 UTC
    assert got[("mlops_batch_expected_interval_seconds", d)] == 7200
    # No batch tested for drift or accuracy yet: those series are absent, not zero.
    assert ("mlops_drift_p_value", d) not in got and ("mlops_estimated_accuracy", d) not in got


def test_the_rollout_step_from_the_registry_tags() -> None:
    tags = {
        "mlops.rollout.mode": "canary",
        "mlops.rollout.step": "2",
        "mlops.rollout.weight": "0.25",
        "mlops.rollout.version": "7",
        "mlops.rollout.since": "1795953600.5",
    }
    got = samples([figures(rollout=RolloutState.from_tags(tags))])
    d = (("dataset", "credit"),)
    key = ("mlops_rollout_step", (("dataset", "credit"), ("mode", "canary"), ("version", "7")))
    assert got[key] == 2
    assert got[("mlops_rollout_step_weight", d)] == 0.25
    assert got[("mlops_rollout_step_since_timestamp_seconds", d)] == 1_795_953_600.5
    for ended in ("done", "interrupted"):
        assert RolloutState.from_tags({**tags, "mlops.rollout.step": ended}) == RolloutState()
    assert RolloutState.from_tags({**tags, "mlops.rollout.mode": "idle"}).step == 0


def test_every_family_named_in_the_contract_is_produced() -> None:
    names = {f.name for f in families([figures()])}
    wanted = {n.removesuffix("_total") for n in PIPELINE_METRIC_NAMES}
    assert wanted <= names, wanted - names
