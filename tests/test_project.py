"""The repository is what the owner's layout and a fresh machine need."""

import tomllib
from pathlib import Path

from mlops_core.adapters.gx_project import GX_PROJECT_YML

REPO = Path(__file__).resolve().parents[1]


def test_gx_project_is_real_and_does_not_shadow_the_library() -> None:
    assert (REPO / "great_expectations" / "great_expectations.yml").read_text() == GX_PROJECT_YML
    assert not (REPO / "great_expectations" / "__init__.py").exists()


def test_layout_of_the_owner() -> None:
    for folder in (
        "mlops_core",
        "tasks",
        "flows",
        "deployments",
        "mlops_cli",
        "great_expectations",
        "tests",
    ):
        assert (REPO / folder).is_dir(), folder
    for file in ("pyproject.toml", "README.md", "Makefile", ".ci/run", "constraints.txt"):
        assert (REPO / file).is_file(), file


def test_torch_is_pinned_to_the_cpu_build_and_setup_uses_it() -> None:
    constraints = (REPO / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints.splitlines()
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def test_console_script_and_python_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["mlops"] == "mlops_cli.main:app"
    assert project["requires-python"].startswith(">=3.11")
    assert any(d.startswith("alibi-detect[torch]") for d in project["dependencies"])


def test_readme_opens_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text()[:600]
    assert "make demo" in head and "make test" in head
