"""The alert when a champion stays below the retrain line, read back from a real Prefect server."""

from __future__ import annotations

import pytest
from live import alerts_about

from mlops_core.adapters.audit import record_decision
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.assessment import Assessment
from mlops_core.policy import Action, Decision, Evidence
from mlops_core.settings import Settings
from mlops_core.tags import CHAMPION_VERSION
from tasks.decision import alert_if_stuck

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_a_champion_below_the_line_for_more_labelled_batches_than_allowed_raises_an_alert(
    settings: Settings, registered: RegisteredDataset
) -> None:
    ctx = DatasetContext.open(settings, "credit")
    below = Evidence(
        validation_passed=True,
        observed_accuracy=0.60,
        observed_degraded=True,
        reference_accuracy=0.84,
    )
    assessment = Assessment(below, "1")

    def decided(sha: str) -> int:
        record_decision(
            ctx.registry,
            Decision(action=Action.retrain, reasons=("test",), evidence=below),
            batch_sha256=sha,
            extra_tags={CHAMPION_VERSION: "1"},
        )
        return alert_if_stuck(ctx, sha, assessment)

    # The default allows 2 labelled batches below the line; the third raises the alert.
    assert decided("a" * 64) == 1 and decided("b" * 64) == 2
    assert not alerts_about("b" * 64, timeout=3)
    assert decided("c" * 64) == 3
    [alert] = alerts_about("c" * 64)
    assert alert["payload"]["what"] == "champion below the retrain line"
    assert "below the retrain line for 3 labelled batches in a row" in alert["payload"]["reason"]
    assert alert["payload"]["batches"] == 3
