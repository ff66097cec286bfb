"""What every ``mlops`` command shares: its options, its settings, its consoles, its error line.

Light on purpose: every command module imports this at start-up, and the CLI must start fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mlops_core.errors import MlopsError
from mlops_core.settings import Settings, prefect_environment

# Piped output (CI logs, `make demo | tee`) gets a wide page rather than rich's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
F = TypeVar("F", bound=Callable[..., Any])

DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", "-d", help="A registered dataset's name.")
]
SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="A dataset spec YAML file, instead of --dataset.")
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option("--reference", help="The reference table (parquet or CSV) for --spec."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


# The tool variables (PREFECT_HOME...) that ``use_home`` filled in, as opposed to the user's own.
_DEFAULTED: set[str] = set()


def use_home(current: Settings) -> None:
    """Point the embedded tools (Prefect's home and database, their quiet consoles) at
    ``current.home``: the variables a person set are kept, the ones an earlier call filled in
    move (``mlops demo`` keeps all its state under its own home, ``<home>/demo``)."""
    for key, value in prefect_environment(current).items():
        if key not in os.environ or key in _DEFAULTED:
            os.environ[key] = value
            _DEFAULTED.add(key)


def show_flags_as_flags() -> None:
    """Help pages list a flag as ``--json``, not ``--json <bool>``.

    Typer 0.29's rich help prints every option's type, flags included (even ``--help
    <bool>``), which reads as if the flag wanted a value. Its option class is patched once, at the
    entry point, to print no type for a flag: the one place Typer decides what that column shows.
    """
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "_flags_as_flags", False):
        return
    typed = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return typed(self, ctx)

    display_type_rich._flags_as_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def settings() -> Settings:
    """Settings for this invocation; also points an embedded Prefect at our home."""
    try:
        current = Settings()
    except Exception as exc:  # pydantic reports which MLOPS_* variable is wrong
        raise MlopsError(f"invalid MLOPS_* setting: {' '.join(str(exc).split())}") from None
    use_home(current)
    if "PREFECT_API_URL" not in os.environ:
        from mlops_core.adapters.stack_state import running_api_url

        url = running_api_url(current)  # a running `mlops up`: flows and events go to it
        if url:
            os.environ["PREFECT_API_URL"] = url
    return current


def reports_errors(command: F) -> F:
    """Turn user mistakes (``MlopsError``) into one line on stderr and an exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MlopsError as exc:
            err.print(f"[red]mlops:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    """Nothing returned: ``payload`` is written to stdout as indented JSON, one document."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def required_dataset(dataset: str | None) -> str:
    """The checked name given with ``--dataset``; a command that needs one refuses to go without."""
    from mlops_core.spec import check_dataset_name

    if dataset is None:
        raise MlopsError("say which dataset with --dataset NAME", hint="see `mlops dataset list`")
    return check_dataset_name(dataset)
