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
    limit: Annotated[int, typer.Option(help="How many recent decisions to show.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Champion, challenger and previous model versions, rollout tags, and the latest decisions."""
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
    """One dataset's models and their metrics, rollout tags, recent decisions, unsettled files."""
    from mlops_core.adapters.audit import recent_decisions
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.adapters.registry import ModelRegistry
    from mlops_core.batches import FINAL_STATES

    registry = ModelRegistry(current, name)
    aliases = registry.aliases()
    tags = registry.tags() if aliases else {}
    decisions = recent_decisions(registry, limit)
    metrics = {}
    for role in aliases:
        found = registry.version_of(role)
        if found is not None:
            values = registry.run_metrics(found.run_id)
            metrics[role] = {
                k: values[k] for k in ("holdout_accuracy", "training_seconds") if k in values
            }
    return {
        "dataset": name,
        "models": aliases,
        "metrics": metrics,
        "rollout": {k: v for k, v in tags.items() if k.startswith("mlops.rollout")},
        "decisions": [d.__dict__ for d in decisions],
        "unfinished": [
            {"kind": kind, **ledger_entry_json(entry)}
            for kind in ("batch", "labels")
            for entry in LandingZone(current, kind).entries(name)
            if entry.state not in FINAL_STATES
        ],
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
