"""Looking without changing anything: the status of each dataset, and the drift between tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlops_cli.options import (
    DatasetOpt,
    JsonOpt,
    SpecOpt,
    emit_json,
    err,
    out,
    reports_errors,
    settings,
)
from mlops_cli.render import ledger_entry_json, print_drift, print_status

if TYPE_CHECKING:
    from mlops_core.settings import Settings


@reports_errors
def status(
    dataset: DatasetOpt = None,
    limit: Annotated[int, typer.Option(help="How many recent batches to show.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Champion, challenger and previous model versions (each accuracy with the rows it was
    measured on), rollout tags, and the latest batches: each once, with its file, outcome and time.
    """
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.spec import check_dataset_name

    current = settings()
    names = [check_dataset_name(dataset)] if dataset else DatasetCatalog(current).names()
    if dataset:
        DatasetCatalog(current).get(dataset)  # an unknown dataset is an error, not an empty status
    result = [_dataset_status(current, name, limit) for name in names]
    if as_json:
        emit_json(result)
    else:
        print_status(result)


def _dataset_status(current: Settings, name: str, limit: int) -> dict[str, Any]:
    """One dataset's models (each accuracy with the rows it was measured on), rollout tags, its
    recent batches (each once: file, outcome, time), recent decisions, unsettled files."""
    from mlops_core.adapters.audit import recent_decisions
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.batches import FINAL_STATES

    registry = ModelRegistry(current, name)
    aliases = registry.aliases()
    tags = registry.tags() if aliases else {}
    # Enough decision runs to find each recent batch's own and its labels' (several per batch).
    decisions = recent_decisions(registry, max(limit * 6, 30))
    metrics = {}
    for role in aliases:
        found = registry.version_of(role)
        if found is not None:
            metrics[role] = _model_metrics(registry, found.version, found.run_id)
    settled = [e for e in LandingZone(current, "batch").entries(name) if e.state in FINAL_STATES]
    return {
        "dataset": name,
        "models": aliases,
        "metrics": metrics,
        "rollout": {k: v for k, v in tags.items() if k.startswith("mlops.rollout")},
        "batches": [_batch_row(entry, decisions) for entry in reversed(settled[-limit:])],
        "decisions": [d.__dict__ for d in decisions[:limit]],
        "unfinished": [
            {"kind": kind, **ledger_entry_json(entry)}
            for kind in ("batch", "labels")
            for entry in LandingZone(current, kind).entries(name)
            if entry.state not in FINAL_STATES
        ],
    }


def _model_metrics(registry: Any, version: str, run_id: str) -> dict[str, Any]:
    """A version's accuracy with the rows it was measured on: its own holdout (recent rows held
    out when it was trained, different for every version), and its gates' shared rows."""
    from mlops_core.tags import GATE_RUN

    values = registry.run_metrics(run_id)
    found: dict[str, Any] = {
        k: values[k] for k in ("holdout_accuracy", "training_seconds") if k in values
    }
    if "holdout_rows" in values:
        found["holdout_rows"] = int(values["holdout_rows"])
    found["measured_on"] = f"the holdout of v{version}'s own train run"
    gate_run = registry.version_tags(version).get(GATE_RUN)
    if gate_run:
        gates = registry.run_metrics(gate_run)
        found["gates"] = {
            k: (int(gates[k]) if k == "rows" else gates[k])
            for k in ("challenger_accuracy", "champion_accuracy", "rows")
            if k in gates
        }
    return found


def _batch_row(entry: Any, decisions: list[Any]) -> dict[str, Any]:
    """One settled batch, once: its file, state, time, what its decision did, and what the
    decision on its labels found later (observed accuracy replaces the estimate)."""
    from mlops_core.adapters.registry import NAME_SEPARATOR

    own = next(
        (
            d
            for d in decisions
            if d.key == f"batch:{entry.sha256}"
            or (not d.key and not d.labels_for and d.batch_sha256 == entry.sha256)
        ),
        None,
    )
    labels = next((d for d in decisions if entry.sha256[:12] in d.labels_for), None)
    if own is not None and NAME_SEPARATOR in own.name:
        outcome = own.name.split(NAME_SEPARATOR, 1)[1]
    elif entry.state.value == "quarantined":
        outcome = "quarantined"
    else:
        outcome = own.action if own is not None else entry.state.value
    return {
        "file": entry.original_name,
        "sha256": entry.sha256,
        "state": entry.state.value,
        "time": entry.updated_at,
        "outcome": outcome,
        "decision": own.action if own else None,
        "retrain": own.retrain if own else "",
        "estimated_accuracy": own.estimated_accuracy if own else None,
        "observed_accuracy": labels.observed_accuracy if labels else None,
        "labelled_rows": labels.labelled_rows if labels else None,
        "labels_decision": labels.action if labels else None,
        "labels_retrain": labels.retrain if labels else "",
        "run_id": own.run_id if own else None,
        "reason": entry.reason,
    }


@reports_errors
def drift(
    reference: Annotated[Path, typer.Argument(help="The reference table (parquet or CSV).")],
    current: Annotated[Path, typer.Argument(help="The batch to test (parquet or CSV).")],
    dataset: DatasetOpt = None,
    spec: SpecOpt = None,
    as_json: JsonOpt = False,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when drift is found.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write PNG plots into this folder.")
    ] = None,
    false_alarm_rate: Annotated[
        float, typer.Option("--false-alarm-rate", min=0.0001, max=0.5, help="Family-wise rate.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the samples and permutations.")] = 0,
) -> None:
    """Test CURRENT against REFERENCE for drift: MMD, classifier and per-feature tests, one verdict.

    Exit 0 whether or not drift is found (1 with --fail-on-drift and drift), 2 for unusable input.
    """
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.data import read_table
    from mlops_core.errors import SpecError
    from mlops_core.spec import DatasetSpec, check_dataset_name

    current_settings = settings()
    if (dataset is None) == (spec is None):
        raise SpecError("give exactly one of --dataset NAME or --spec FILE")
    if dataset is not None:
        data_spec = DatasetCatalog(current_settings).get(check_dataset_name(dataset)).spec
    else:
        assert spec is not None
        data_spec = DatasetSpec.from_yaml(spec)
    limit = current_settings.max_batch_bytes
    reference_table = read_table(reference, max_bytes=limit)
    current_table = read_table(current, max_bytes=limit)

    from mlops_core.drift import DriftConfig, detect_drift

    config = DriftConfig(
        false_alarm_rate=false_alarm_rate, seed=seed, backend=current_settings.drift_backend
    )
    with err.status("testing for drift (MMD, classifier, per-feature) ..."):
        report = detect_drift(reference_table, current_table, data_spec, config)
    plots: list[Path] = []
    if plot is not None:
        from mlops_core.plots import plot_drift

        plots = plot_drift(report, reference_table, current_table, data_spec, plot, config=config)
    if as_json:
        emit_json({**report.to_dict(), "plots": [str(p) for p in plots]})
    else:
        print_drift(report)
        for path in plots:
            out.print(f"plot: {path}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if fail_on_drift and report.is_drift else 0)
