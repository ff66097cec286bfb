"""The Great Expectations project: its config, the stored expectation suites, and validation runs.

The suites live as GX JSON in the GX project folder (``settings.gx_dir``), where a person can read
and edit them. Validation runs GX for real on a pandas copy of the batch; its results and Data Docs
are runtime state under ``MLOPS_HOME``. What a suite holds and what a result means are computed in
``mlops_core.validation``; this module is where GX meets the disk.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from mlops_core.data import read_table
from mlops_core.errors import MlopsError, UnusableInputError
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec
from mlops_core.validation import ValidationReport, bind_ingestion_time, failures_of, gx_frame

if TYPE_CHECKING:  # GX takes about 2 s to import: only commands that validate pay for it.
    import great_expectations as gx

DataDocs = bool | Literal["deferred"]
"""Whether a validation renders its Data Docs: now (true), later (``build_data_docs``), never."""

GX_PROJECT_YML = """\
# The Great Expectations project of this MLOps installation.
# Expectation suites live in expectations/<dataset>.json: `mlops dataset add` writes them from the
# dataset spec and a profile of its reference; edit them by hand when the learned bounds are wrong.
# Validation results and Data Docs are runtime state: `mlops` writes them under $MLOPS_HOME
# (validations in gx/validations/, the HTML site in data_docs/); set MLOPS_HOME (an absolute
# path) before opening this project with GX directly.
config_version: 4
analytics_enabled: false
progress_bars:
  globally: false
stores:
  expectations_store:
    class_name: ExpectationsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: expectations/
  validation_results_store:
    class_name: ValidationResultsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${MLOPS_HOME}/gx/validations/
  checkpoint_store:
    class_name: CheckpointStore
    store_backend:
      class_name: InMemoryStoreBackend
  validation_definition_store:
    class_name: ValidationDefinitionStore
    store_backend:
      class_name: InMemoryStoreBackend
expectations_store_name: expectations_store
validation_results_store_name: validation_results_store
checkpoint_store_name: checkpoint_store
data_docs_sites:
  local_site:
    class_name: SiteBuilder
    show_how_to_buttons: false
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${MLOPS_HOME}/data_docs/
    site_index_builder:
      class_name: DefaultSiteIndexBuilder
"""


# --------------------------------------------------------------------------- GX context


def ensure_gx_project(gx_dir: Path) -> Path:
    """Create the GX project folder (config and expectations/) when missing; return its path."""
    (gx_dir / "expectations").mkdir(parents=True, exist_ok=True)
    config = gx_dir / "great_expectations.yml"
    if not config.exists():
        config.write_text(GX_PROJECT_YML, encoding="utf-8")
    return gx_dir


def _context(settings: Settings, *, persist_suites: bool) -> Any:
    """A GX context: suites from the project folder (or memory), results and docs under home."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from great_expectations.data_context.types.base import DataContextConfig, ProgressBarsConfig

    import great_expectations as gx

    def files(path: Path) -> dict[str, Any]:
        # No `.ge_store_backend_id` beside the suites: it would be runtime state in the project.
        return {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(path.resolve()),
            "suppress_store_backend_id": True,
        }

    memory = {"class_name": "InMemoryStoreBackend"}
    expectations_backend = (
        files(ensure_gx_project(settings.gx_dir) / "expectations") if persist_suites else memory
    )
    config = DataContextConfig(
        config_version=4,
        stores={
            "expectations_store": {
                "class_name": "ExpectationsStore",
                "store_backend": expectations_backend,
            },
            "validation_results_store": {
                "class_name": "ValidationResultsStore",
                "store_backend": files(settings.gx_state_dir / "validations"),
            },
            "checkpoint_store": {"class_name": "CheckpointStore", "store_backend": memory},
            "validation_definition_store": {
                "class_name": "ValidationDefinitionStore",
                "store_backend": memory,
            },
        },
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store",
        data_docs_sites={
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": files(settings.data_docs_dir),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    with _quiet():
        return gx.get_context(project_config=config, mode="ephemeral")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence GX's progress bars and chatter where our own output matters."""
    gx_logger = logging.getLogger("great_expectations")
    level = gx_logger.level
    gx_logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(sink):
            yield
    finally:
        gx_logger.setLevel(level)


def suite_path(settings: Settings, dataset: str) -> Path:
    """Where the expectation suite of ``dataset`` is stored, as GX JSON."""
    return settings.gx_dir / "expectations" / f"{dataset}.json"


def save_suite(suite: gx.ExpectationSuite, settings: Settings) -> Path:
    """Write the suite as GX JSON into the GX project folder; return the file's path."""
    context = _context(settings, persist_suites=True)
    with _quiet():
        context.suites.add_or_update(suite)
    return suite_path(settings, suite.name)


def load_suite(settings: Settings, dataset: str) -> gx.ExpectationSuite:
    """The stored expectation suite of ``dataset``; an ``MlopsError`` when it is missing or unreadable."""
    path = suite_path(settings, dataset)
    if not path.exists():
        raise MlopsError(
            f"no expectation suite for dataset {dataset!r} at {path}",
            hint="run `mlops dataset add` for it again, or set MLOPS_GX_DIR to the folder holding it",
        )
    context = _context(settings, persist_suites=True)
    try:
        with _quiet():
            suite: gx.ExpectationSuite = context.suites.get(dataset)
    except Exception as exc:  # GX raises several types for a hand-edited suite that won't parse
        raise MlopsError(f"expectation suite {path} cannot be loaded ({exc})") from None
    return suite


# --------------------------------------------------------------------------- validating


def validate_file(
    path: Path,
    spec: DatasetSpec,
    suite: gx.ExpectationSuite,
    settings: Settings,
    *,
    data_docs: DataDocs = True,
    label: str | None = None,
    ingested_at: datetime | None = None,
) -> ValidationReport:
    """Validate one batch file; unusable input yields a report with ``usable=False``, not an error.

    ``ingested_at``: when the batch landed (the ledger's ``submitted_at``); now when None.
    """
    source = label or str(path)
    try:
        frame = read_table(path, max_bytes=settings.max_batch_bytes)
    except UnusableInputError as exc:
        return ValidationReport(
            dataset=spec.name, source=source, usable=False, success=False, error=str(exc)
        )
    return validate_frame(
        frame, spec, suite, settings, source=source, data_docs=data_docs, ingested_at=ingested_at
    )


def validate_frame(
    frame: pl.DataFrame,
    spec: DatasetSpec,
    suite: gx.ExpectationSuite,
    settings: Settings,
    *,
    source: str,
    data_docs: DataDocs = True,
    run_name: str | None = None,
    ingested_at: datetime | None = None,
) -> ValidationReport:
    """Run ``suite`` on ``frame`` with Great Expectations and return the typed verdict.

    ``ingested_at``: when the batch landed; no event time may be later than that plus
    ``timestamp_future_tolerance_hours`` (now when None: a batch validated as it arrives).

    ``data_docs``: true renders this result's page and the site's index now (about 0.5 s: GX
    compiles its templates on every build); ``"deferred"`` stores the result and leaves the
    rendering to ``build_data_docs(settings, report)`` -- the batch flow does that after the
    batch is settled, off the path to its decision; false renders nothing.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    import great_expectations as gx

    warnings = []
    extra = [c for c in frame.columns if c not in spec.known_columns]
    if extra:
        warnings.append(f"extra column(s) not in the spec, ignored: {', '.join(extra)}")
    table = gx_frame(frame, spec)

    context = _context(settings, persist_suites=False)
    with _quiet():
        # A copy bound to this run's context and ingestion time; the stored suite file is never
        # rewritten here.
        bound = bind_ingestion_time(
            dict(suite.to_json_dict()), ingested_at or datetime.now(UTC), settings
        )
        suite = context.suites.add(gx.ExpectationSuite(**bound))
        asset = context.data_sources.add_pandas("mlops").add_dataframe_asset(spec.name)
        batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=spec.name, data=batch_definition, suite=suite)
        )
        actions: list[Any] = (
            [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if data_docs is True else []
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=spec.name,
                validation_definitions=[definition],
                actions=actions,
                result_format="BASIC",
            )
        )
        run_id = RunIdentifier(run_name=_run_name(run_name or source))
        outcome = checkpoint.run(batch_parameters={"dataframe": table}, run_id=run_id)
    key, result = next(iter(outcome.run_results.items()))
    failures = failures_of(result.results, dtypes={c: str(t) for c, t in frame.schema.items()})
    docs = str((settings.data_docs_dir / "index.html").resolve()) if data_docs else None
    pending = tuple(str(part) for part in key.to_tuple()) if data_docs == "deferred" else None
    return ValidationReport(
        dataset=spec.name,
        source=source,
        usable=True,
        success=not failures,
        rows=frame.height,
        evaluated=len(result.results),
        failures=tuple(failures),
        warnings=tuple(warnings),
        data_docs=docs,
        docs_pending=pending,
    )


def build_data_docs(settings: Settings, report: ValidationReport) -> str | None:
    """Render a deferred report's page and the site's index; the index's path (None: nothing to do).

    The result was stored when it was validated; this renders it exactly as GX's
    ``UpdateDataDocsAction`` would have (that result's page, its suite's page, the index).
    """
    if report.docs_pending is None:
        return None
    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

    import great_expectations as gx

    result = ValidationResultIdentifier.from_tuple(report.docs_pending)  # type: ignore[no-untyped-call]
    suite_id = result.expectation_suite_identifier
    context = _context(settings, persist_suites=False)
    with _quiet():
        stored = load_suite(settings, report.dataset)
        context.suites.add(gx.ExpectationSuite(**stored.to_json_dict()))  # type: ignore[arg-type]
        context.build_data_docs(resource_identifiers=[result, suite_id])
    return str((settings.data_docs_dir / "index.html").resolve())


def _run_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name)[:80] or "batch"
