"""The life of a batch from the command line: submit, labels, reconcile, validate, process, and
the way out of the dead-letter state: retry or drop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops_cli.options import (
    DatasetOpt,
    JsonOpt,
    ReferenceOpt,
    SpecOpt,
    emit_json,
    err,
    out,
    reports_errors,
    required_dataset,
    settings,
)
from mlops_cli.render import (
    ledger_entry_json,
    print_batch_outcome,
    print_gc,
    print_reconciled,
    print_validation,
)
from mlops_core import events
from mlops_core.batches import Receipt

if TYPE_CHECKING:
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.batches import LedgerEntry
    from mlops_core.settings import Settings

BatchFileArg = Annotated[Path, typer.Argument(help="The batch file (parquet or CSV).")]
ShaArg = Annotated[
    str,
    typer.Argument(
        help="The batch's sha256, or its start (at least 8 characters, as `mlops status` shows)."
    ),
]
LookInOpt = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="The batch's dataset (default: look in every dataset)."),
]
SHORTEST_SHA = 8


@reports_errors
def submit(
    file: BatchFileArg,
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    reference: ReferenceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land a batch in the landing zone under its sha256 (a duplicate is recognised, not landed twice)."""
    from mlops_core.adapters.landing import QuarantinedOnArrival

    try:
        receipt = _land_batch(settings(), file, dataset, spec, reference)
    except QuarantinedOnArrival as unusable:
        # Not a table at all, and quarantined already: still announced, so the Prefect UI shows
        # its arrival, a run that ends "Quarantined" and the quarantine event with the reason.
        announced = _announce(Receipt(entry=unusable.entry, duplicate=False), "batch")
        if announced and not as_json:
            out.print(
                f"announced {events.BATCH_ARRIVED} to {announced}: its run records the quarantine",
                highlight=False,
                soft_wrap=True,
            )
        raise
    _report_arrival(receipt, "batch", as_json)


@reports_errors
def labels(
    file: Annotated[Path, typer.Argument(help="Labels: a table with the id and label columns.")],
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land delayed labels (id + label per row) and emit mlops.labels.arrived."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.labels import label_columns

    current = settings()
    name = required_dataset(dataset)
    label_columns(DatasetCatalog(current).get(name).spec)  # a spec without id/target: refuse now
    receipt = LandingZone(current, "labels").submit(file, name)
    _report_arrival(receipt, "labels", as_json)


@reports_errors
def reconcile(
    dataset: Annotated[
        str | None, typer.Option(help="The dataset to sweep (default: every dataset).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Process, exactly once, landed batches and labels that nothing processed (or that crashed)."""
    from mlops_core.adapters.catalog import DatasetCatalog

    current = settings()
    if dataset is not None:
        required_dataset(dataset)
        DatasetCatalog(current).get(dataset)

    from flows.reconcile import reconcile as reconcile_flow

    done = reconcile_flow(dataset=dataset or "all")
    if as_json:
        emit_json(done)
    else:
        print_reconciled(done)
    if any(item.get("error") for item in done):
        raise typer.Exit(1)


@reports_errors
def retry(sha: ShaArg, dataset: LookInOpt = None, as_json: JsonOpt = False) -> None:
    """Put a dead-lettered batch back: the next sweep (or its run, when a stack runs) claims it."""
    current = settings()
    zone, entry = _find(current, sha, dataset)
    retried = zone.retry(entry.dataset, entry.sha256)
    announced = _announce(Receipt(entry=retried, duplicate=False), zone.kind)
    if as_json:
        emit_json({"announced": announced, **ledger_entry_json(retried)})
        return
    out.print(
        f"{retried.dataset} {zone.kind} {retried.sha256[:12]} ({retried.original_name}): "
        f"back to failed after {entry.attempts} attempts, its attempts counted from 0 again",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    _say_announced(announced, zone.kind)


@reports_errors
def drop(
    sha: ShaArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is given up on; kept in its report.")
    ],
    dataset: LookInOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give up on a dead-lettered batch: quarantine it with a report naming you and your reason."""
    current = settings()
    zone, entry = _find(current, sha, dataset)
    dropped = zone.drop(entry.dataset, entry.sha256, reason)
    if as_json:
        emit_json(ledger_entry_json(dropped))
        return
    out.print(
        f"{dropped.dataset} {zone.kind} {dropped.sha256[:12]} ({dropped.original_name}): "
        f"quarantined as {dropped.location} with its report; {dropped.reason}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


@reports_errors
def gc(
    dataset: Annotated[
        str | None, typer.Option(help="The dataset to clean (default: every dataset).")
    ] = None,
    older_than_days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days", min=0.0, help="Retention in days (default MLOPS_RETENTION_DAYS)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete settled batches, labels, their reports and old server logs past retention; keep
    (and say why) what a registered model's training data or an open rollout references."""
    from mlops_core.adapters.catalog import DatasetCatalog

    current = settings()
    if dataset is not None:
        required_dataset(dataset)
        DatasetCatalog(current).get(dataset)

    from flows.gc import gc as gc_flow

    done = gc_flow(dataset=dataset or "all", older_than_days=older_than_days, dry_run=dry_run)
    if as_json:
        emit_json(done)
    else:
        print_gc(done)


def _find(current: Settings, sha: str, dataset: str | None) -> tuple[LandingZone, LedgerEntry]:
    """The one batch (or labels file) whose sha256 starts with ``sha``, and its landing zone."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import KINDS, LandingZone
    from mlops_core.errors import LandingError

    if dataset is not None:
        required_dataset(dataset)
        DatasetCatalog(current).get(dataset)
    start = sha.strip().lower()
    if len(start) < SHORTEST_SHA or any(c not in "0123456789abcdef" for c in start):
        raise LandingError(
            f"{sha!r} is not a sha256 nor its first {SHORTEST_SHA}+ hex characters",
            hint="`mlops status` lists the unfinished batches with theirs",
        )
    where = f"dataset {dataset!r}" if dataset else "any dataset"
    found = [
        (zone, entry)
        for zone in (LandingZone(current, kind) for kind in KINDS)
        for entry in zone.entries(dataset)
        if entry.sha256.startswith(start)
    ]
    if not found:
        raise LandingError(
            f"no batch or labels file whose sha256 starts with {start} in {where}",
            hint="`mlops status` lists the unfinished ones with their sha256",
        )
    if len(found) > 1:
        listed = ", ".join(f"{e.dataset} {z.kind} {e.sha256[:16]}" for z, e in found)
        raise LandingError(
            f"{start} starts the sha256 of {len(found)} files in {where}: {listed}",
            hint="give more of the sha256, or --dataset",
        )
    return found[0]


@reports_errors
def validate(
    file: BatchFileArg,
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    reference: ReferenceOpt = None,
    as_json: JsonOpt = False,
    docs: Annotated[bool, typer.Option("--docs/--no-docs", help="Build Data Docs.")] = True,
) -> None:
    """Validate a file with the dataset's expectation suite. Exit 0 passed, 1 failed, 2 unusable."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.gx_project import load_suite, validate_file
    from mlops_core.errors import SpecError
    from mlops_core.spec import DatasetSpec, check_dataset_name
    from mlops_core.validation import build_suite

    current = settings()
    if dataset is not None:
        check_dataset_name(dataset)
        registered = DatasetCatalog(current).get(dataset)
        data_spec, suite = registered.spec, load_suite(current, dataset)
    elif spec is not None and reference is not None:
        # An ad-hoc check: learn the suite from the reference in memory, register nothing.
        data_spec = DatasetSpec.from_yaml(spec)
        reference_table = DatasetCatalog(current).read_reference(reference)
        suite = build_suite(data_spec, reference_table, current)
    else:
        raise SpecError("give --dataset NAME, or --spec FILE with --reference FILE")
    report = validate_file(file, data_spec, suite, current, data_docs=docs)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_validation(report)
    raise typer.Exit(report.exit_code)


@reports_errors
def process(
    file: BatchFileArg,
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    reference: ReferenceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land a batch and run the batch flow on it right here (a plain Prefect flow call, no server)."""
    from mlops_core.adapters.landing import QuarantinedOnArrival

    try:
        receipt = _land_batch(settings(), file, dataset, spec, reference)
    except QuarantinedOnArrival as unusable:
        # Not a table at all: its run still happens (it ends "Quarantined" with the reason, and
        # announces the quarantine), then the command fails as any unusable input does.
        from flows.process_batch import process_batch

        try:
            process_batch(dataset=unusable.entry.dataset, sha256=unusable.entry.sha256)
        except Exception as exc:  # noqa: BLE001 -- the user's mistake is the news, not the run
            err.print(f"its run could not record the quarantine: {exc}", markup=False)
        raise
    if not as_json:
        out.print(receipt.describe(), highlight=False, soft_wrap=True, markup=False)

    from flows.process_batch import process_batch

    outcome = process_batch(dataset=receipt.entry.dataset, sha256=receipt.entry.sha256)
    if as_json:
        emit_json({"duplicate": receipt.duplicate, **outcome.to_dict()})
    else:
        print_batch_outcome(outcome)
    raise typer.Exit(0 if outcome.state.value == "processed" else 1)


def _land_batch(
    current: Settings,
    file: Path,
    dataset: str | None,
    spec: Path | None,
    reference: Path | None,
) -> Receipt:
    """The receipt of landing ``file`` for the dataset that --dataset or --spec names."""
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.spec import check_dataset_name

    if dataset is not None:
        check_dataset_name(dataset)
    registered = DatasetCatalog(current).resolve(dataset, spec, reference)
    return LandingZone(current).submit(file, registered.name)


def _report_arrival(receipt: Receipt, kind: str, as_json: bool) -> None:
    """Nothing returned: announces a newly landed file and says what became of it."""
    announced = _announce(receipt, kind)
    if as_json:
        emit_json(
            {
                "duplicate": receipt.duplicate,
                "announced": announced,
                **ledger_entry_json(receipt.entry),
            }
        )
        return
    out.print(receipt.describe(), highlight=False, soft_wrap=True, markup=False)
    if not receipt.duplicate:
        _say_announced(announced, kind)


def _announce(receipt: Receipt, kind: str) -> str | None:
    """Emit the arrival event when a Prefect server listens; the API URL used, or None."""
    if receipt.duplicate:
        return None
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    from mlops_core.adapters.announce import announce

    announce(receipt.entry, kind)
    return url


def _say_announced(url: str | None, kind: str) -> None:
    """Nothing returned: says where the arrival event went, or why the file waits unprocessed."""
    event = events.BATCH_ARRIVED if kind == "batch" else events.LABELS_ARRIVED
    if url:
        out.print(f"announced {event} to {url}", highlight=False)
    else:
        out.print(
            "no Prefect server is listening (no `mlops up`, PREFECT_API_URL unset): the file "
            "waits in the landing zone; `mlops reconcile` or the next `mlops up` processes it",
            highlight=False,
            soft_wrap=True,
        )
