"""``mlops demo``: the loop on the built-in credit-risk stream, one line per batch."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlops_core.catalog import DatasetCatalog
from mlops_core.errors import MlopsError, UnusableInputError
from mlops_core.landing import BatchState, LandingZone
from mlops_core.scenarios import Stream, write_stream
from mlops_core.settings import Settings

MARKER = ".mlops-demo"


def demo_settings(settings: Settings) -> Settings:
    """The demo's own installation under ``<home>/demo``, so it never touches real datasets."""
    home = (settings.home / "demo").resolve()
    return settings.model_copy(update={"home": home, "gx_dir": home / "great_expectations"})


def fresh_home(home: Path) -> None:
    """Empty the demo's home from an earlier run; refuse to delete a folder the demo did not make."""
    if home.exists():
        if not (home / MARKER).exists():
            raise MlopsError(
                f"{home} exists but was not made by `mlops demo`; not deleting it",
                hint="move it away or set MLOPS_HOME elsewhere",
            )
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `mlops demo`; deleted by the next demo run\n")


def print_schedule(stream: Stream, console: Console) -> None:
    table = Table(title="The stream's truth (schedule)", title_justify="left")
    table.add_column("weeks")
    table.add_column("phase")
    table.add_column("what happens")
    for phase in stream.schedule:
        weeks = [b.week for b in stream.batches if b.phase == phase.name]
        table.add_row(
            f"{weeks[0]}-{weeks[-1]}" if len(weeks) > 1 else str(weeks[0]), phase.name, phase.truth
        )
    console.print(table)


def _percent(value: object) -> str:
    return f"{float(value):.1%}" if value is not None else "-"  # type: ignore[arg-type]


def batch_line(
    index: int,
    week: int,
    phase: str,
    verdict: str,
    state: BatchState,
    drift: dict[str, object] | None,
    evidence: dict[str, object] | None,
    action: str,
    champion: str,
) -> str:
    """One row of the demo's table, with rich colour markup."""
    colour = "green" if state is BatchState.processed else "red"
    if drift is None:
        drift_text, drift_colour = "-", "dim"
    else:
        p_value = float(drift["p_value"])  # type: ignore[arg-type]
        shown = "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"
        drift_text = f"{'yes' if drift['is_drift'] else 'no'} ({shown})"
        drift_colour = "yellow" if drift["is_drift"] else "green"
    evidence = evidence or {}
    estimated = _percent(evidence.get("estimated_accuracy"))
    observed = _percent(evidence.get("observed_accuracy"))
    action_colour = {"none": "green", "watch": "yellow", "retrain": "magenta"}.get(action, "red")
    return (
        f"{index:>2}  {week:>4}  {phase:<17} [{colour}]{verdict:<10}[/{colour}]  "
        f"[{drift_colour}]{drift_text:<15}[/{drift_colour}] {estimated:>6}  {observed:>6}  "
        f"[{action_colour}]{action:<8}[/{action_colour}] {champion:>4}"
    )


def drift_drivers(drift: dict[str, object] | None) -> str:
    if not drift or not drift["is_drift"]:
        return ""
    drivers = list(drift["drivers"])  # type: ignore[call-overload]
    return "drifted: " + (
        ", ".join(drivers[:4]) if drivers else "joint distribution (no single feature)"
    )


def why(decision: dict[str, object] | None, retrain: dict[str, object] | None) -> str:
    """The decision's main reason, and what the gated subflow did."""
    if decision is None:
        return ""
    reasons = list(decision["reasons"])  # type: ignore[call-overload]
    text = str(reasons[0]) if reasons else ""
    if retrain is not None:
        version = f" v{retrain['version']}" if retrain.get("version") else ""
        text += f" -> challenger{version} {retrain['status']}: {retrain['reason']}"
    return text


def run_demo(
    settings: Settings,
    *,
    seed: int = 7,
    batch_rows: int = 2_000,
    reference_rows: int = 10_000,
    console: Console | None = None,
) -> list[dict[str, object]]:
    """Generate the stream, register the dataset, submit and process every batch; return the rows."""
    console = console or Console()
    demo = demo_settings(settings)
    fresh_home(demo.home)
    # The batch flow reads its settings from the environment, like a deployed flow would.
    os.environ["MLOPS_HOME"] = str(demo.home)
    os.environ["MLOPS_GX_DIR"] = str(demo.gx_dir)

    stream = write_stream(
        demo.home / "stream", seed=seed, reference_rows=reference_rows, batch_rows=batch_rows
    )
    console.print(f"demo state: {demo.home}  (seed {seed}, {len(stream.batches)} weekly batches)")
    print_schedule(stream, console)
    registered = DatasetCatalog(demo).add(stream.spec, stream.reference_path)
    console.print(
        f"registered dataset [bold]{registered.name}[/bold]: {len(registered.spec.features)} features, "
        f"reference {reference_rows:,} rows, suite {registered.suite_path}",
        highlight=False,
    )
    console.print("starting Prefect (a local temporary server, about 15 s on first use)...")

    from flows.process_batch import process_batch
    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
    from mlops_core.audit import record_manual

    run_id = record_manual(
        demo,
        stream.spec.name,
        "retrain",
        reason="demo: first champion from the reference",
        before={},
    )
    first = retrain_evaluate_deploy(dataset=stream.spec.name, decision_run_id=run_id)
    if first.status != "promoted":
        raise MlopsError(f"the demo could not train its first champion: {first.reason}")
    console.print(
        f"first champion: v{first.version} trained on the reference -- {first.reason}",
        highlight=False,
        soft_wrap=True,
    )
    champion = first.version or "-"

    zone = LandingZone(demo)
    rows: list[dict[str, object]] = []
    header = (
        f"{'#':>2}  {'week':>4}  {'phase':<17} {'validation':<10}  {'drift':<15} "
        f"{'est.':>6}  {'obs.':>6}  {'decision':<8} {'champ':>4}  why"
    )
    console.print(header, style="bold", highlight=False, soft_wrap=True)
    for batch in stream.batches:
        started = time.perf_counter()
        drift: dict[str, object] | None = None
        decision: dict[str, object] | None = None
        retrain: dict[str, object] | None = None
        try:
            receipt = zone.submit(batch.path, stream.spec.name)
        except UnusableInputError:
            entry = next(
                e for e in zone.entries(stream.spec.name) if e.original_name == batch.path.name
            )
            verdict, state, location, reason = "unusable", entry.state, entry.location, entry.reason
        else:
            outcome = process_batch(dataset=stream.spec.name, sha256=receipt.entry.sha256)
            report = outcome.validation or {}
            verdict = str(report.get("verdict", "-"))
            state, location, reason, drift = (
                outcome.state,
                outcome.location,
                outcome.reason,
                outcome.drift,
            )
            decision, retrain = outcome.decision, outcome.retrain
            if retrain and retrain.get("champion_after"):
                champion = str(retrain["champion_after"])
        seconds = time.perf_counter() - started
        evidence = dict(decision["evidence"]) if decision else None  # type: ignore[call-overload]
        action = str(decision["action"]) if decision else "-"
        line = batch_line(
            batch.index,
            batch.week,
            batch.phase,
            verdict,
            state,
            drift,
            evidence,
            action,
            f"v{champion}",
        )
        explanation = reason.removeprefix(f"{batch.path}: ") if reason else why(decision, retrain)
        console.print(f"{line}  [dim]{explanation}[/dim]", highlight=False, soft_wrap=True)
        rows.append(
            {
                "index": batch.index,
                "phase": batch.phase,
                "kind": batch.kind.value,
                "corruption": batch.corruption.value if batch.corruption else None,
                "rows": batch.rows,
                "verdict": verdict,
                "state": state.value,
                "location": str(location),
                "reason": reason,
                "drift": bool(drift["is_drift"]) if drift else None,
                "drift_p_value": drift["p_value"] if drift else None,
                "drivers": list(drift["drivers"]) if drift else [],  # type: ignore[call-overload]
                "decision": action,
                "estimated_accuracy": (evidence or {}).get("estimated_accuracy"),
                "observed_accuracy": (evidence or {}).get("observed_accuracy"),
                "retrain": retrain["status"] if retrain else None,
                "champion": champion,
                "seconds": round(seconds, 2),
            }
        )
    processed = sum(r["state"] == "processed" for r in rows)
    console.print(
        f"\n{processed} batches processed, {len(rows) - processed} quarantined with their reports "
        f"(JSON beside each file).",
        highlight=False,
    )
    console.print(f"processed:  {demo.processed_dir / stream.spec.name}", highlight=False)
    console.print(f"quarantine: {demo.quarantine_dir / stream.spec.name}", highlight=False)
    console.print(f"Data Docs:  {demo.data_docs_dir / 'index.html'}", highlight=False)
    console.print(
        f"MLflow:     mlflow ui --backend-store-uri {demo.tracking_uri}  "
        f"(experiment {stream.spec.name!r}: decision, train and evaluate runs)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"champion now v{champion}; promotions: "
        + (", ".join(f"batch {r['index']}" for r in rows if r["retrain"] == "promoted") or "none"),
        highlight=False,
    )
    console.print(
        f"explore with other commands: export MLOPS_HOME={demo.home} MLOPS_GX_DIR={demo.gx_dir}",
        highlight=False,
    )
    return rows
