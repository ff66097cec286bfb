"""``mlops_core`` never reaches up to flows, tasks, deployments or the CLI, not even lazily."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UPPER = {"flows", "tasks", "deployments", "mlops_cli"}


def upward_imports(source: str) -> list[str]:
    """Every import (anywhere in the module, functions included) of an upper layer."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (
                called in {"import_module", "__import__"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = [str(node.args[0].value)]
        found += [n for n in names if n.split(".")[0] in UPPER]
    return found


def test_checker_catches_lazy_and_dynamic_imports() -> None:
    source = (
        "def f():\n    from flows.process_batch import process_batch\n"
        "def g():\n    import importlib\n    importlib.import_module('tasks.landing')\n"
        "import mlops_cli.main\n"
    )
    assert sorted(upward_imports(source)) == [
        "flows.process_batch",
        "mlops_cli.main",
        "tasks.landing",
    ]
    assert upward_imports("import polars\nfrom mlops_core import spec\n") == []


def test_mlops_core_imports_no_upper_layer() -> None:
    offenders = {
        str(path.relative_to(REPO)): found
        for path in (REPO / "mlops_core").rglob("*.py")
        if (found := upward_imports(path.read_text()))
    }
    assert offenders == {}


def test_tasks_and_flows_stay_below_the_cli() -> None:
    for folder in ("tasks", "flows"):
        for path in (REPO / folder).rglob("*.py"):
            assert not [
                n
                for n in upward_imports(path.read_text())
                if n.startswith(("mlops_cli", "deployments"))
            ], path
