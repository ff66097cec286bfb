"""``mlops drift`` as a user meets it: a readable table, JSON, exit codes, plots."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {
        "spec": tmp_path / "credit.yaml",
        "reference": tmp_path / "reference.parquet",
        "stable": tmp_path / "stable.csv",
        "shifted": tmp_path / "shifted.parquet",
    }
    paths["spec"].write_text(CREDIT_SPEC.to_yaml())
    generate_applications(rng, 1500).write_parquet(paths["reference"])
    generate_applications(rng, 600).write_csv(paths["stable"])
    generate_applications(rng, 600, kind=PhaseKind.sudden_shift).write_parquet(paths["shifted"])
    return paths


def drift(*args: object):
    return runner.invoke(app, ["drift", *[str(a) for a in args]])


def test_no_drift_prints_the_table_and_exits_0(settings, files) -> None:
    result = drift(files["reference"], files["stable"], "--spec", files["spec"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("no drift")
    for name in ("mmd", "classifier", "features", "correlation", "Holm"):
        assert name in result.output


def test_drift_json_names_the_drivers_and_exit_code_policy(settings, files) -> None:
    result = drift(files["reference"], files["shifted"], "--spec", files["spec"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["is_drift"] and "credit_score" in report["drivers"]
    assert {t["name"] for t in report["tests"]} == {"mmd", "classifier", "features", "correlation"}
    failing = drift(
        files["reference"], files["shifted"], "--spec", files["spec"], "--fail-on-drift"
    )
    assert failing.exit_code == 1
    quiet = drift(files["reference"], files["stable"], "--spec", files["spec"], "--fail-on-drift")
    assert quiet.exit_code == 0


def test_plots_are_written(settings, files, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    result = drift(files["reference"], files["shifted"], "--spec", files["spec"], "--plot", out)
    assert result.exit_code == 0, result.output
    for name in ("effect_sizes.png", "distributions.png"):
        path = out / name
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG")
        assert str(path) in result.output


def test_unusable_input_exits_2(settings, files, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = drift(files["reference"], empty, "--spec", files["spec"])
    assert result.exit_code == 2 and "empty" in result.output
    result = drift(files["reference"], files["stable"], "--dataset", "nope")
    assert result.exit_code == 2 and "not registered" in result.output
    result = drift(files["reference"], files["stable"])
    assert result.exit_code == 2 and "--dataset NAME or --spec FILE" in result.output


def test_registered_dataset_works_too(settings, files) -> None:
    added = runner.invoke(
        app, ["dataset", "add", str(files["spec"]), "--reference", str(files["reference"])]
    )
    assert added.exit_code == 0, added.output
    result = drift(files["reference"], files["stable"], "--dataset", "credit", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["is_drift"] is False
