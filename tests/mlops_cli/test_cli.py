"""The ``mlops`` command as a user meets it: exit codes, one-line errors, every bad input accounted for."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mlops_cli.main import app
from mlops_cli.scenarios import Corruption, Stream, corrupt, generate_applications
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.settings import Settings

runner = CliRunner()


def mlops(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def added(settings: Settings, stream: Stream, tmp_path: Path) -> Path:
    spec = tmp_path / "credit.yaml"
    spec.write_text(stream.spec.to_yaml())
    result = mlops("dataset", "add", spec, "--reference", stream.reference_path)
    assert result.exit_code == 0, result.output
    assert "registered dataset credit" in result.output
    return spec


def batch_file(
    tmp_path: Path, corruption: Corruption | None = None, *, csv: bool = False, extra: bool = False
) -> Path:
    frame = generate_applications(np.random.default_rng(5), 400, week=2)
    if corruption is not None:
        frame = corrupt(frame, corruption, np.random.default_rng(1))
    if extra:
        frame = frame.with_columns(pl.lit("x").alias("browser"))
    stem = (corruption.value if corruption else "clean") + ("-extra" if extra else "")
    suffix = "csv" if csv or corruption is Corruption.wrong_type else "parquet"
    name = f"{stem}.{suffix}"
    path = tmp_path / name
    frame.write_csv(path) if path.suffix == ".csv" else frame.write_parquet(path)
    return path


def test_help_lists_the_commands() -> None:
    result = mlops("--help")
    assert result.exit_code == 0
    for command in ("demo", "dataset", "submit", "validate", "process"):
        assert command in result.output


def command_paths() -> list[list[str]]:
    """Every command as a person types it: ``submit``, ``dataset add``..."""
    import typer.main

    root = typer.main.get_command(app)
    paths = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        paths += [[name, sub] for sub in subcommands] if subcommands else [[name]]
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_every_help_page_shows_examples_and_flags_as_flags(path: list[str]) -> None:
    """Each command's help ends with examples that start with ``mlops <command>``, and a flag
    is shown as ``--json``, not as an option wanting a ``<bool>``."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<bool>" not in text, text
    assert "Examples:" in text and f"$ mlops {' '.join(path)}" in text, text


def test_down_is_a_documented_command() -> None:
    listed = mlops("--help").output
    assert "down" in listed and "mlops down" in listed
    assert "Stop the cluster stack" in mlops("down", "--help").output


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("mlops")
    result = subprocess.run(
        [script, "validate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--dataset" in result.stdout


def test_validate_clean_file_exits_0_with_data_docs(
    added: Path, tmp_path: Path, settings: Settings
) -> None:
    result = mlops("validate", batch_file(tmp_path), "--dataset", "credit")
    assert result.exit_code == 0, result.output
    assert "passed" in result.output
    assert "Data Docs:" in result.output and (settings.data_docs_dir / "index.html").is_file()


@pytest.mark.parametrize(
    ("corruption", "column", "kind"),
    [
        (Corruption.missing_column, "credit_score", "missing column"),
        (Corruption.wrong_type, "credit_score", "wrong type"),
        (Corruption.nulls, "income", "nulls"),
        (Corruption.out_of_bounds, "age", "out of bounds"),
        (Corruption.unseen_category, "purpose", "unseen category"),
    ],
)
def test_validate_failed_expectations_exit_1(
    added: Path, tmp_path: Path, corruption: Corruption, column: str, kind: str
) -> None:
    path = batch_file(tmp_path, corruption)
    before = path.read_bytes()
    result = mlops("validate", path, "--dataset", "credit", "--json", "--no-docs")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "failed"
    assert [(f["column"], f["kind"]) for f in report["failures"]] == [(column, kind)]
    assert path.read_bytes() == before, "validate leaves the user's file as it was"


def test_validate_extra_column_is_allowed_and_reported(added: Path, tmp_path: Path) -> None:
    result = mlops("validate", batch_file(tmp_path, extra=True), "--dataset", "credit", "--no-docs")
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "browser" in result.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00junk", "neither parquet nor CSV")],
)
def test_validate_unusable_file_exits_2(
    added: Path, tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    result = mlops("validate", path, "--dataset", "credit")
    assert result.exit_code == 2
    assert problem in result.output and str(path) in result.output
    assert "Traceback" not in result.output


def test_validate_with_spec_and_reference_registers_nothing(
    settings: Settings, stream: Stream, tmp_path: Path
) -> None:
    spec = tmp_path / "credit.yaml"
    spec.write_text(stream.spec.to_yaml())
    result = mlops(
        "validate",
        batch_file(tmp_path, Corruption.nulls),
        "--spec",
        spec,
        "--reference",
        stream.reference_path,
        "--no-docs",
    )
    assert result.exit_code == 1 and "income" in result.output
    assert mlops("dataset", "list", "--json").stdout.strip() == "[]"


def test_submit_then_duplicate(added: Path, tmp_path: Path, settings: Settings) -> None:
    path = batch_file(tmp_path)
    first = mlops("submit", path, "--dataset", "credit", "--json")
    assert first.exit_code == 0, first.output
    landed = json.loads(first.stdout)
    assert landed["state"] == "landed" and not landed["duplicate"]
    again = mlops("submit", path, "--dataset", "credit")
    assert again.exit_code == 0
    assert "duplicate" in again.output and path.name in again.output
    assert len(LandingZone(settings).entries("credit")) == 1


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty"), (b"\x00\x01\x02 not a table", "neither parquet nor CSV")],
)
def test_submit_unreadable_file_is_quarantined(
    added: Path, tmp_path: Path, settings: Settings, content: bytes, problem: str
) -> None:
    path = tmp_path / "export.parquet"
    path.write_bytes(content)
    result = mlops("submit", path, "--dataset", "credit")
    assert result.exit_code == 2
    assert (
        problem in result.output and "quarantined" in result.output and str(path) in result.output
    )
    (entry,) = LandingZone(settings).entries("credit")
    assert entry.state is BatchState.quarantined and Path(entry.report_location).is_file()


def test_a_file_name_that_looks_like_markup_is_printed_as_it_is(
    added: Path, tmp_path: Path, settings: Settings
) -> None:
    # rich would read "[bold]" as a style and print "week07.csv", another file's name.
    path = tmp_path / "week[bold]07[red].csv"
    path.write_bytes(b"")
    result = mlops("submit", path, "--dataset", "credit")
    assert result.exit_code == 2, result.output
    assert "week[bold]07[red].csv" in result.output and "Traceback" not in result.output
    status = mlops("status", "--dataset", "credit")
    assert status.exit_code == 0, status.output
    assert "week[bold]07[red].csv" in status.output


@pytest.mark.parametrize("command", ["submit", "validate", "process"])
def test_unregistered_dataset_is_refused(
    added: Path, tmp_path: Path, settings: Settings, command: str
) -> None:
    result = mlops(command, batch_file(tmp_path), "--dataset", "fraud")
    assert result.exit_code == 2
    assert "'fraud' is not registered" in result.output and "mlops dataset add" in result.output
    assert LandingZone(settings).entries() == []


@pytest.mark.parametrize("name", ["../credit", "credit/../../etc", "a/b"])
@pytest.mark.parametrize("command", ["submit", "validate"])
def test_dataset_name_with_path_parts_is_refused(
    added: Path, tmp_path: Path, settings: Settings, command: str, name: str
) -> None:
    result = mlops(command, batch_file(tmp_path), "--dataset", name)
    assert result.exit_code == 2
    assert "is not allowed" in result.output
    assert LandingZone(settings).entries() == []


def test_dataset_add_with_a_bad_spec_names_the_field(
    settings: Settings, stream: Stream, tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(stream.spec.to_yaml().replace("age: numeric", "age: integer"))
    result = mlops("dataset", "add", spec, "--reference", stream.reference_path)
    assert result.exit_code == 2
    assert "features.age" in result.output and "unknown feature type 'integer'" in result.output


def test_missing_input_file(added: Path, tmp_path: Path) -> None:
    result = mlops("submit", tmp_path / "nope.csv", "--dataset", "credit")
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.usefixtures("prefect_api")
def test_process_runs_the_flow_here(added: Path, tmp_path: Path, settings: Settings) -> None:
    result = mlops(
        "process", batch_file(tmp_path, Corruption.unseen_category), "--dataset", "credit"
    )
    assert result.exit_code == 1, result.output
    assert "quarantined" in result.output and "crypto" in result.output
    good = mlops("process", batch_file(tmp_path, csv=True), "--dataset", "credit", "--json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["state"] == "processed"
