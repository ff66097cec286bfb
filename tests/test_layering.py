"""The layers, checked on the source: ``mlops_core`` never reaches up to flows, tasks, deployments or
the CLI, not even lazily; the core (what computes and decides) never imports an adapter (what talks
to the world); adapters never reach up either; alibi-detect stays behind ``mlops_core/drift.py``."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UPPER = {"flows", "tasks", "deployments", "mlops_cli"}
CORE = [path for path in (REPO / "mlops_core").glob("*.py") if path.name != "__init__.py"]
ADAPTERS = list((REPO / "mlops_core" / "adapters").rglob("*.py"))


def imported_modules(source: str) -> list[str]:
    """Every module imported anywhere in ``source`` (functions included, dynamic imports too)."""
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
        found += names
    return found


def upward_imports(source: str) -> list[str]:
    """Every import (anywhere in the module, functions included) of an upper layer."""
    return [n for n in imported_modules(source) if n.split(".")[0] in UPPER]


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


def test_core_modules_import_no_adapter() -> None:
    assert CORE, "the core's modules were not found"
    offenders = {
        path.name: found
        for path in CORE
        if (
            found := [
                n
                for n in imported_modules(path.read_text())
                if n.startswith(("mlops_core.adapters", "mlops_core.serving"))
            ]
        )
    }
    assert offenders == {}


def test_adapters_stay_below_flows_tasks_and_the_cli() -> None:
    assert ADAPTERS, "the adapters' modules were not found"
    offenders = {
        path.name: found for path in ADAPTERS if (found := upward_imports(path.read_text()))
    }
    assert offenders == {}


def test_alibi_detect_stays_behind_the_drift_module() -> None:
    sources = [
        path
        for folder in ("mlops_core", "flows", "tasks", "deployments", "mlops_cli")
        for path in (REPO / folder).rglob("*.py")
    ]
    users = sorted(
        str(path.relative_to(REPO))
        for path in sources
        if any(n.split(".")[0] == "alibi_detect" for n in imported_modules(path.read_text()))
    )
    assert users == ["mlops_core/drift.py"]


def test_only_the_registry_adapter_builds_an_mlflow_client() -> None:
    builders = sorted(
        str(path.relative_to(REPO))
        for folder in ("mlops_core", "flows", "tasks", "deployments", "mlops_cli")
        for path in (REPO / folder).rglob("*.py")
        if "MlflowClient(" in path.read_text()
    )
    assert builders == ["mlops_core/adapters/registry.py"]
