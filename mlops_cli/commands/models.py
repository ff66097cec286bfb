"""The models of a dataset from the command line: train, promote, rollback, and serve them."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops_cli.options import (
    DatasetOpt,
    JsonOpt,
    emit_json,
    out,
    reports_errors,
    required_dataset,
    settings,
)
from mlops_cli.render import print_retrain
from mlops_core.errors import MlopsError
from mlops_core.tags import CHALLENGER, CHAMPION, PREVIOUS


@reports_errors
def train(dataset: DatasetOpt = None, as_json: JsonOpt = False) -> None:
    """Train the first champion on the reference, or a challenger that must pass the gates.

    Runs the gated subflow ``retrain_evaluate_deploy`` right here (a plain Prefect flow call).
    Exit 0 when the new model became champion, 1 when a gate refused it or training failed.
    """
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = required_dataset(dataset)
    DatasetCatalog(current).get(name)
    registry = ModelRegistry(current, name)
    before = registry.aliases()
    reason = (
        "requested by `mlops train`: first champion from the reference"
        if CHAMPION not in before
        else "requested by `mlops train`: a challenger through the gates"
    )
    run_id = record_manual(registry, "retrain", reason=reason, before=before)
    if not as_json:
        out.print(f"{reason} (decision run {run_id})", highlight=False, soft_wrap=True)

    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
    from mlops_core.outcomes import RetrainStatus

    outcome = retrain_evaluate_deploy(dataset=name, decision_run_id=run_id)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        print_retrain(outcome.to_dict())
    raise typer.Exit(0 if outcome.status == RetrainStatus.promoted else 1)


@reports_errors
def promote(
    dataset: DatasetOpt = None,
    version: Annotated[
        str | None, typer.Option(help="The version to promote (default: the challenger).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a version champion by hand (the old champion becomes previous); recorded as a decision."""
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = required_dataset(dataset)
    registry = ModelRegistry(current, name)
    before = registry.aliases()
    target = version or before.get(CHALLENGER)
    if target is None:
        raise MlopsError(
            f"dataset {name!r} has no challenger to promote",
            hint="name one with --version, or train one with `mlops train`",
        )
    if not target.isdigit() or not registry.has_version(target):
        raise MlopsError(f"dataset {name!r} has no model version {target!r}")
    after = registry.promote(target)
    run_id = record_manual(
        registry, "promote", reason=f"v{target} promoted by hand", before=before, after=after
    )
    _report_move("promote", name, before, after, run_id, as_json)


@reports_errors
def rollback(dataset: DatasetOpt = None, as_json: JsonOpt = False) -> None:
    """Swap champion and previous by hand (one alias move); recorded as a decision."""
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.registry import ModelRegistry

    current = settings()
    name = required_dataset(dataset)
    registry = ModelRegistry(current, name)
    before = registry.aliases()
    after = registry.rollback()
    run_id = record_manual(
        registry,
        "rollback",
        reason=f"rolled back by hand from v{before.get(CHAMPION)} to v{after.get(CHAMPION)}",
        before=before,
        after=after,
    )
    _report_move("rollback", name, before, after, run_id, as_json)


@reports_errors
def serve(
    dataset: DatasetOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Worker processes behind the one address (default 1; 0: one per core)."
        ),
    ] = None,
) -> None:
    """The model server alone: follows the registry's champion (and challenger during a rollout)."""
    import os

    from mlops_core.serving.state import ServerState

    current = settings()
    bind, listen = host or current.serve_host, port or current.serve_port
    count = current.serve_workers if workers is None else workers
    count = count or os.cpu_count() or 1
    name = ServerState.for_dataset(current, dataset, follow=False, log_traffic=False).dataset
    many = f", {count} workers" if count > 1 else ""
    out.print(
        f"serving {name} on http://{bind}:{listen}{many} (docs at /docs, metrics at /metrics)",
        highlight=False,
    )
    if count > 1:
        from mlops_core.serving.workers import Supervisor

        try:
            code = Supervisor(count, bind, listen, name, log=lambda line: out.print(line)).run()
        except OSError as exc:
            raise MlopsError(
                f"cannot listen on {bind}:{listen}: {exc.strerror or exc}",
                hint="stop what uses that port, or choose another with --port",
            ) from exc
        if code:
            raise typer.Exit(code)
        return
    import uvicorn

    from mlops_core.serving import create_app

    uvicorn.run(create_app(current, name), host=bind, port=listen, log_level="warning")


def _report_move(
    action: str,
    name: str,
    before: dict[str, str],
    after: dict[str, str],
    run_id: str,
    as_json: bool,
) -> None:
    """Nothing returned: announces a manual alias move as a Prefect event and prints it."""
    _announce_move(action, name, before, after)
    if as_json:
        emit_json({"dataset": name, "before": before, "after": after, "decision_run_id": run_id})
        return
    out.print(
        f"{name}: champion v{before.get(CHAMPION)} -> v{after.get(CHAMPION)}, "
        f"previous v{after.get(PREVIOUS)} (recorded as decision run {run_id})",
        highlight=False,
    )


def _announce_move(action: str, name: str, before: dict[str, str], after: dict[str, str]) -> None:
    """Nothing returned: emits mlops.model.promoted or mlops.model.rolled_back, when it can."""
    from mlops_core import events
    from mlops_core.events import dataset_resource

    try:
        from prefect.events import emit_event

        event = events.MODEL_PROMOTED if action == "promote" else events.MODEL_ROLLED_BACK
        emit_event(
            event=event,
            resource=dataset_resource(name),
            payload={"before": before, "after": after, "manual": True},
        )
    except Exception:  # noqa: BLE001 -- no Prefect server: the MLflow record is the audit trail
        pass
