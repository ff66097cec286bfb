"""The CI example jobs (``deployments/ci/``) run one gate command, and that very command, run here
against a temporary home with a champion, exits 0 when every gate passes, 1 when one refuses and
2 when nothing could be judged, moving no alias in any case."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.retrain_evaluate_deploy import GATES_PASSED_NOT_DELIVERED
from mlops_cli.commands.models import train_exit_code
from mlops_cli.render import print_retrain
from mlops_core.adapters.audit import recent_decisions
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.evaluation import Gate, GateReport
from mlops_core.outcomes import RetrainOutcome, RetrainStatus
from mlops_core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "deployments" / "ci"
# What a pull request that changes the training code touches: each must start the job.
TRAINING_CODE = (
    "mlops_core/training.py",
    "mlops_core/evaluation.py",
    "datasets/credit.yaml",
    "pyproject.toml",
    "constraints.txt",
)


def github_job() -> dict[str, Any]:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request"}, triggers
    assert all(_matches(triggers["pull_request"]["paths"], path) for path in TRAINING_CODE)
    (job,) = workflow["jobs"].values()
    return dict(job)


def gitlab_job() -> dict[str, Any]:
    (job,) = yaml.safe_load((CI / "gitlab-ci.yml").read_text()).values()
    (rule,) = job["rules"]
    assert rule["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert all(_matches(rule["changes"], path) for path in TRAINING_CODE)
    return dict(job)


def _matches(patterns: list[str], path: str) -> bool:
    """Whether a CI path filter lists ``path`` (itself, or a ``folder/**`` above it)."""
    return any(
        path == pattern or path.startswith(pattern.split("**")[0].rstrip("/") + "/")
        for pattern in patterns
        if pattern == path or "**" in pattern
    )


def gate_lines(commands: list[str]) -> list[str]:
    """The lines of a job's commands that run the gates."""
    return [
        line.strip()
        for command in commands
        for line in command.splitlines()
        if "mlops train" in line
    ]


def gate_command() -> str:
    """The one gate command line both example jobs run (checked to be the same)."""
    github = github_job()
    steps = [step.get("run", "") for step in github["steps"]]
    gitlab = gitlab_job()
    assert gate_lines(steps) == gate_lines(gitlab["script"]), "both jobs run the same command"
    (line,) = gate_lines(gitlab["script"])
    return line


def test_both_jobs_set_up_python_311_run_the_same_gate_command_and_keep_its_report() -> None:
    line = gate_command()
    assert "--gate-only" in line.split(), "a pull request must never move an alias"
    assert line.endswith("--json > gates.json")

    github = github_job()
    steps = github["steps"]
    python = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    runs = [s.get("run", "") for s in steps]
    assert runs.index("make setup") < next(i for i, r in enumerate(runs) if line in r)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "gates.json" and upload["if"] == "always()"
    assert "MLOPS_MLFLOW_TRACKING_URI" in github["env"]

    gitlab = gitlab_job()
    assert gitlab["image"] == "python:3.11"
    assert gitlab["script"] == ["make setup", line]
    assert gitlab["artifacts"]["paths"] == ["gates.json"]
    assert gitlab["artifacts"]["when"] == "always"


@pytest.mark.usefixtures("prefect_api")
def test_the_gate_command_passes_refuses_or_fails_and_never_moves_an_alias(
    settings: Settings,
    registered: RegisteredDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    champion = losing_champion(settings)
    registry = ModelRegistry(settings, "credit")

    passed, code = run_gate_command(tmp_path / "passing", **QUICK)
    assert code == 0, passed
    assert passed["gate_only"] is True and passed["gates"]["passed"] is True
    assert passed["status"] == GATES_PASSED_NOT_DELIVERED.value != "promoted"
    assert all(gate["passed"] for gate in passed["gates"]["gates"])
    assert {"primary", "floor", "training_data_valid"} <= gate_names(passed)
    assert passed["champion_before"] == passed["champion_after"] == champion
    assert registry.aliases() == {"champion": champion}, "a passing check promotes nothing"
    version = passed["version"]
    assert registry.version_tags(version)["mlops.gate_only"] == "true"
    assert registry.version_tags(version)["mlops.gates"] == "passed"
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    for run_id in (passed["train_run_id"], passed["evaluate_run_id"]):
        assert client.get_run(run_id).data.tags["mlops.gate_only"] == "true"
    assert recent_decisions(registry) == [], "a check is not a decision"

    # The same command, the accuracy floor out of reach: the floor gate refuses. (This one and
    # the next run the command's arguments through the CLI in this process: the same code path
    # after the interpreter's start, without a third and fourth 20 s of imports.)
    refused, code = run_gate_in_process(
        tmp_path / "refusing", **QUICK, MLOPS_GATE_ACCURACY_FLOOR="0.999"
    )
    assert code == 1, refused
    assert refused["status"] == "refused" and refused["gates"]["passed"] is False
    failing = {gate["name"] for gate in refused["gates"]["gates"] if not gate["passed"]}
    assert failing == {"floor"}, failing
    assert "floor" in refused["reason"]
    assert registry.aliases() == {"champion": champion}, "a refused check moves nothing"
    assert registry.version_tags(refused["version"])["mlops.gates"] == "failed"

    # A check that could not judge (training raised) is an error, not a refusal: exit 2.
    broken, code = run_gate_in_process(
        tmp_path / "broken", MLOPS_FAILPOINTS="retrain-training=raise"
    )
    assert code == 2, broken
    assert broken["status"] == "failed" and broken["gates"] is None
    assert broken["reason"].startswith("training failed")
    assert registry.aliases() == {"champion": champion}

    # Without --json the same outcome is a verdict line and the gate table.
    print_retrain(refused)
    text = capsys.readouterr().out
    assert "gate check: refused" in text and "FAIL" in text and "floor" in text


# Settings a CI job may set as well; here they keep the challenger's training short (one window,
# 50 boosting rounds) and its latency gate out of reach of a machine busy with other tests.
QUICK = {
    "MLOPS_WINDOW_SELECTION": "false",
    "MLOPS_TRAIN_MAX_ITER": "50",
    "MLOPS_GATE_LATENCY_BUDGET_MS": "1000",
}


def losing_champion(settings: Settings) -> str:
    """A champion trained, the way `mlops train` trains a first one, on inverted labels: wrong
    more often than not, so any sound challenger beats it at every gate. Its version."""
    ctx = DatasetContext.open(settings.model_copy(update={"train_max_iter": 10}), "credit")
    data = gather_training_data(ctx, first_model=True)
    target = str(ctx.spec.target)
    inverted = data.window.with_columns((1 - pl.col(target)).alias(target))
    version = train_challenger(ctx, dataclasses.replace(data, window=inverted)).version
    ctx.registry.promote(version)
    return version


def run_gate_command(folder: Path, **env: str) -> tuple[dict[str, Any], int]:
    """The CI jobs' gate command, run as they run it (from the repository root, stdout into
    ``gates.json``) against this test's home; its JSON and exit code."""
    from prefect.settings import PREFECT_API_URL

    *argv, redirect, target = shlex.split(gate_command())
    assert redirect == ">", "the command writes its JSON to a file"
    program = REPO / argv[0]
    argv[0] = str(program if program.exists() else Path(sys.executable).parent / program.name)
    folder.mkdir()
    report = folder / target
    with report.open("w") as stdout:
        done = subprocess.run(
            argv,
            cwd=REPO,
            env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), **env},
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    text = report.read_text()
    assert text, f"no JSON on stdout (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(text), done.returncode


def run_gate_in_process(folder: Path, **env: str) -> tuple[dict[str, Any], int]:
    """The CI jobs' gate command's arguments run through ``mlops``'s own CLI in this process,
    with ``env`` set for the call; its JSON (stdout) and exit code."""
    from typer.testing import CliRunner

    from mlops_cli.main import app

    *argv, redirect, _ = shlex.split(gate_command())
    assert redirect == ">" and Path(argv[0]).name == "mlops", argv
    folder.mkdir()
    done = CliRunner().invoke(app, argv[1:], env=env, catch_exceptions=False)
    assert done.stdout, f"no JSON on stdout (exit {done.exit_code}): {done.output[-2000:]}"
    (folder / "gates.json").write_text(done.stdout)
    return json.loads(done.stdout), done.exit_code


def gate_names(outcome: dict[str, Any]) -> set[str]:
    return {gate["name"] for gate in outcome["gates"]["gates"]}


def _report(*passed: bool) -> GateReport:
    gates = tuple(
        Gate(name=f"gate{i}", threshold="t", observed="o", passed=p) for i, p in enumerate(passed)
    )
    return GateReport(gates=gates, challenger_accuracy=0.8, champion_accuracy=0.7, rows=100)


@pytest.mark.parametrize(
    ("outcome", "gate_only", "code"),
    [
        (RetrainOutcome(RetrainStatus.promoted, "", gates=_report(True)), False, 0),
        (RetrainOutcome(RetrainStatus.refused, "", gates=_report(True, False)), False, 1),
        (RetrainOutcome(RetrainStatus.rolled_back, "", gates=_report(True)), False, 1),
        (RetrainOutcome(RetrainStatus.failed, "training failed: boom"), False, 2),
        (RetrainOutcome(GATES_PASSED_NOT_DELIVERED, "", gates=_report(True)), True, 0),
        (RetrainOutcome(RetrainStatus.refused, "", gates=_report(False)), True, 1),
        (RetrainOutcome(RetrainStatus.failed, "evaluating failed: boom"), True, 2),
    ],
)
def test_exit_codes_tell_a_refusal_from_an_error(
    outcome: RetrainOutcome, gate_only: bool, code: int
) -> None:
    assert train_exit_code(outcome, gate_only=gate_only) == code
