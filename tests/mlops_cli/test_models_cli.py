"""``mlops train``, ``promote``, ``rollback`` and ``status``: models moved by hand, each recorded."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.settings import Settings

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("prefect_api")


def test_train_promote_rollback_restores_the_previous_version(
    settings: Settings, registered: RegisteredDataset
) -> None:
    first = runner.invoke(app, ["train", "--dataset", "credit"])
    assert first.exit_code == 0, first.output
    assert "first champion" in first.output and "promoted" in first.output
    assert "training_data_valid" in first.output, "the gate table is printed"

    second = runner.invoke(app, ["train", "--dataset", "credit", "--json"])
    outcome = json.loads(second.stdout)
    # The stream's reference is all there is: a challenger from the same data is no better.
    assert second.exit_code == 1 and outcome["status"] == "refused"
    registry = ModelRegistry(settings, "credit")
    assert registry.aliases() == {"champion": "1"}

    promoted = runner.invoke(app, ["promote", "--dataset", "credit", "--version", "2", "--json"])
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["after"] == {"champion": "2", "previous": "1"}
    rolled = runner.invoke(app, ["rollback", "--dataset", "credit"])
    assert rolled.exit_code == 0, rolled.output
    assert registry.aliases() == {"champion": "1", "previous": "2"}, "the previous is back"

    status = json.loads(runner.invoke(app, ["status", "--dataset", "credit", "--json"]).stdout)[0]
    actions = [d["action"] for d in status["decisions"]]
    assert actions[:2] == ["rollback", "promote"], actions
    assert 0.7 < status["metrics"]["champion"]["holdout_accuracy"] < 1
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(status["decisions"][0]["run_id"])
    assert run.data.tags["mlops.manual"] == "true"
    assert json.loads(run.data.params["aliases_after"]) == {"champion": "1", "previous": "2"}
    text = runner.invoke(app, ["status", "--dataset", "credit"]).output
    # Each accuracy names its rows: every version is measured on its own holdout.
    rows = status["metrics"]["champion"]["holdout_rows"]
    assert "champion v1: accuracy " in text and f"on {rows:,} rows, the holdout of v1" in text
    assert "previous v2: accuracy " in text and "different rows" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "--dataset", "credit"], "no challenger to promote"),
        (["promote", "--dataset", "credit", "--version", "7"], "no model version '7'"),
        (["rollback", "--dataset", "credit"], "no previous champion"),
        (["train"], "--dataset"),
        (["train", "--dataset", "nope"], "nope"),
    ],
)
def test_manual_moves_refuse_clearly(
    settings: Settings, registered: RegisteredDataset, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
