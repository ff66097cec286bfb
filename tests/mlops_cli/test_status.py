"""``mlops status``: registered datasets, their model roles and latest decisions."""

import json

from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_core.adapters.audit import record_decision
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import failure_reason
from mlops_core.policy import Evidence, decide
from mlops_core.settings import Settings

runner = CliRunner()


def test_status_lists_datasets_models_and_decisions(
    settings: Settings, registered: RegisteredDataset
) -> None:
    empty = runner.invoke(app, ["status", "--json"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == [
        {
            "dataset": "credit",
            "models": {},
            "metrics": {},
            "rollout": {},
            "decisions": [],
            "unfinished": [],
        }
    ]
    record_decision(
        ModelRegistry(settings, "credit"),
        decide(Evidence(validation_passed=True, drift=True)),
        batch_sha256="d" * 64,
    )
    text = runner.invoke(app, ["status", "--dataset", "credit"])
    assert text.exit_code == 0, text.output
    assert (
        "credit: no model yet" in text.output
        and "watch" in text.output
        and "dddddddddddd" in text.output
    )


def test_status_of_an_unknown_dataset_is_an_error(
    settings: Settings, registered: RegisteredDataset
) -> None:
    result = runner.invoke(app, ["status", "--dataset", "fraud"])
    assert result.exit_code == 2 and "not registered" in result.output


def test_status_lists_unfinished_batches_with_the_failure_reason(
    settings: Settings, registered: RegisteredDataset, stream
) -> None:
    zone = LandingZone(settings)
    sha = zone.submit(stream.batches[0].path, "credit").entry.sha256
    zone.claim("credit", sha)
    zone.fail("credit", sha, failure_reason(ConnectionError("MLflow at 127.0.0.1:5000 refused")))
    text = runner.invoke(app, ["status", "--dataset", "credit"])
    assert text.exit_code == 0, text.output
    assert f"failed   batch {sha[:12]}" in text.output
    assert "MLflow at 127.0.0.1:5000 refused" in text.output
    assert "mlops reconcile" in text.output
