"""Fault 3: training or evaluation raises in the middle of a retrain.

A retrain decision starts the gated subflow; a fail point makes training (or the gates) raise.
The champion must be the one it was, the decision run must say the retrain failed and why, and
an ``mlops.alert`` event must reach the Prefect server.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from live import alerts_about
from mlflow.tracking import MlflowClient

from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core.adapters.audit import record_manual
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


@pytest.mark.parametrize(
    ("point", "stage"), [("retrain-training", "training"), ("retrain-evaluating", "evaluating")]
)
def test_a_retrain_that_raises_leaves_the_champion_and_says_so(
    settings: Settings,
    registered: RegisteredDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    stage: str,
) -> None:
    champion = retrain_evaluate_deploy(dataset="credit").version
    registry = ModelRegistry(settings, "credit")
    versions_before = len(registry.client.search_model_versions("name='credit'"))
    sha = hashlib.sha256(f"{tmp_path}/{point}".encode()).hexdigest()
    decision = record_manual(
        ModelRegistry(settings, "credit"), "retrain", reason="fault drill", before={}
    )

    monkeypatch.setenv("MLOPS_FAILPOINTS", f"{point}=raise")
    outcome = retrain_evaluate_deploy(dataset="credit", batch_sha256=sha, decision_run_id=decision)

    assert outcome.status == "failed"
    assert outcome.reason.startswith(f"{stage} failed: FaultInjected"), outcome.reason
    assert registry.aliases() == {"champion": champion}
    new_versions = len(registry.client.search_model_versions("name='credit'")) - versions_before
    assert new_versions == (0 if stage == "training" else 1)  # registered, never promoted
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(decision)
    assert run.data.tags["mlops.retrain"] == "failed"
    assert f"{stage} failed" in run.data.tags["mlops.retrain_reason"]
    alerts = alerts_about(sha)
    assert alerts, "no mlops.alert event reached the Prefect server"
    assert alerts[0]["payload"]["what"] == "retrain failed"
    assert f"{stage} failed" in alerts[0]["payload"]["reason"]
    assert alerts[0]["resource"]["prefect.resource.id"] == "mlops.dataset.credit"
