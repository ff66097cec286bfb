"""How the ``mlops`` commands show their results to a person: lines and rich tables on ``out``.

The reports' own types are imported for type checking only: importing them for real would load
polars and pydantic models at start-up, and the CLI must start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from mlops_cli.options import out
from mlops_core.tags import ALIASES

if TYPE_CHECKING:
    from mlops_core.batches import LedgerEntry
    from mlops_core.drift import DriftReport
    from mlops_core.outcomes import BatchOutcome
    from mlops_core.validation import ValidationReport


def ledger_entry_json(entry: LedgerEntry) -> dict[str, Any]:
    """The JSON form of a ledger entry that ``submit``, ``labels`` and ``status`` print."""
    return {
        "dataset": entry.dataset,
        "sha256": entry.sha256,
        "state": entry.state.value,
        "location": str(entry.location),
        "original_name": entry.original_name,
        "reason": entry.reason,
        "attempts": entry.attempts,
    }


def print_validation(report: ValidationReport) -> None:
    """Nothing returned: prints the verdict line, a table of the failures, warnings, Data Docs."""
    colour = {"passed": "green", "failed": "red", "unusable": "red"}[report.verdict]
    if report.usable:
        line = f"[{colour}]{report.verdict}[/{colour}] {report.source}: {report.rows:,} rows, "
        line += f"{report.evaluated} expectations, {len(report.failures)} failed"
    else:
        line = f"[{colour}]{report.verdict}[/{colour}]: {report.error}"
    out.print(line, highlight=False, soft_wrap=True)
    if report.failures:
        table = Table("column", "problem", "observed", "expected", show_lines=False)
        for failure in report.failures:
            table.add_row(
                failure.column or "(table)", failure.kind, failure.observed, failure.expected
            )
        out.print(table)
    for warning in report.warnings:
        out.print(
            f"[yellow]warning:[/yellow] {escape(str(warning))}", highlight=False, soft_wrap=True
        )
    if report.data_docs:
        out.print(f"Data Docs: {report.data_docs}", highlight=False, soft_wrap=True)


def drift_line(report: DriftReport) -> str:
    """The drift verdict in one line: yes or no, the combined p-value, the first drivers."""
    verdict = "yes" if report.is_drift else "no"
    drivers = ", ".join(report.drivers[:4])
    return f"{verdict} (combined p={report.p_value:.3g})" + (
        f", drivers: {drivers}" if drivers else ""
    )


def print_drift(report: DriftReport) -> None:
    """Nothing returned: prints the verdict, a table of the tests, and the ten largest features."""
    colour = "red" if report.is_drift else "green"
    verdict = "drift" if report.is_drift else "no drift"
    out.print(
        f"[{colour}]{verdict}[/{colour}]: combined p = {report.p_value:.3g} at a family-wise "
        f"false-alarm rate of {report.false_alarm_rate:g} (Holm over {len(report.tests)} tests); "
        f"reference {report.reference_rows:,} rows, batch {report.current_rows:,} rows",
        highlight=False,
        soft_wrap=True,
    )
    tests = Table("test", "p", "Holm p", "effect", "rows ref/batch", "drift")
    for test in report.tests:
        effect = (
            f"{test.effect_size:.3g} {test.effect_metric}" if test.effect_size is not None else ""
        )
        tests.add_row(
            test.name,
            f"{test.p_value:.3g}",
            f"{test.adjusted_p_value:.3g}",
            effect,
            f"{test.reference_rows:,}/{test.current_rows:,}",
            "yes" if test.is_drift else "no",
        )
    out.print(tests)
    if report.features:
        features = Table(
            "feature", "test", "Bonferroni p", "effect", "metric", "missing Δ", "drift"
        )
        ranked = sorted(report.features, key=lambda f: -f.effect_size)
        for feature in ranked[:10]:
            features.add_row(
                feature.feature,
                feature.test,
                f"{feature.adjusted_p_value:.3g}",
                f"{feature.effect_size:.3f}",
                feature.effect_metric,
                f"{100 * feature.missing_change:+.1f} pts",
                "yes" if feature.is_drift else "no",
            )
        out.print(features)


def print_retrain(outcome: dict[str, Any]) -> None:
    """Nothing returned: prints a retrain outcome (its JSON form), its gates, the champion move.

    A gate-only check (``"gate_only": true``) is headed by the gates' verdict, not by a status."""
    gates_report = outcome.get("gates") or {}
    what, status = "retrain", outcome["status"]
    if outcome.get("gate_only"):
        what = "gate check"
        if status != "failed":
            status = "passed" if gates_report.get("passed") else "refused"
    colour = {"promoted": "green", "passed": "green", "refused": "yellow"}.get(status, "red")
    version = f" v{outcome['version']}" if outcome.get("version") else ""
    out.print(
        f"{what}: [{colour}]{status}[/{colour}]{version} -- {escape(outcome['reason'])}",
        highlight=False,
        soft_wrap=True,
    )
    gates = gates_report.get("gates") or []
    if gates:
        table = Table(title="gates", title_justify="left")
        for column in ("gate", "threshold", "observed", "result"):
            table.add_column(column)
        for gate in gates:
            table.add_row(
                gate["name"],
                gate["threshold"],
                gate["observed"],
                "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]",
            )
        out.print(table)
    before, after = outcome.get("champion_before"), outcome.get("champion_after")
    out.print(
        f"champion: {'v' + before if before else 'none'} -> {'v' + after if after else 'none'}",
        highlight=False,
    )


def print_batch_outcome(outcome: BatchOutcome) -> None:
    """Nothing returned: prints where a batch ended, its drift, the decision and the retrain."""
    where = f"{outcome.state.value}: {outcome.location}"
    out.print(
        where + (f" ({outcome.reason})" if outcome.reason else ""),
        highlight=False,
        soft_wrap=True,
    )
    if outcome.drift is not None:
        out.print(f"drift: {drift_line(outcome.drift)}", highlight=False, soft_wrap=True)
    if outcome.decision is not None:
        out.print(
            f"decision: [bold]{outcome.decision.action.value}[/bold] -- "
            + "; ".join(outcome.decision.reasons)
            + f"  (MLflow run {outcome.decision_run_id})",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.retrain is not None:
        print_retrain(outcome.retrain.to_dict())


def print_reconciled(done: list[dict[str, Any]]) -> None:
    """Nothing returned: prints one line per file a reconcile sweep settled (or failed to)."""
    if not done:
        out.print("nothing to reconcile: every landed file is settled or being processed")
    for item in done:
        note = " (already settled by another run)" if item["already_settled"] else ""
        if item.get("error"):
            note = f" ({item['error']})"
        if item["kind"] == "retrain":  # a decision's retrain whose run died, run again
            note = f" (decision run {item['decision_run']}, attempt {item['attempt']})"
        out.print(
            f"{item['dataset']} {item['kind']} {item['sha256'][:12]}: {item['state']}"
            f"{', decision ' + item['decision'] if item['decision'] else ''}{note}",
            highlight=False,
            soft_wrap=True,
        )


def print_gc(done: dict[str, Any]) -> None:
    """Nothing returned: prints what ``mlops gc`` deleted (or would) and what it kept, and why."""
    verb = "would delete" if done["dry_run"] else "deleted"
    days = f"{done['older_than_days']:g}"
    for item in done["datasets"]:
        out.print(
            f"{item['dataset']}: {verb} {len(item['deleted'])} files ({item['bytes']:,} bytes) "
            f"settled more than {days} days ago (before {item['cutoff']}); "
            f"kept {len(item['kept'])} as old",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        for gone in item["deleted"]:
            out.print(
                f"  {verb} {gone['kind']} {gone['sha256'][:12]} ({gone['original_name']}, "
                f"{gone['state']}, settled {gone['updated_at'][:19]})",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        for kept in item["kept"]:
            out.print(
                f"  kept {kept['kind']} {kept['sha256'][:12]} ({kept['original_name']}): "
                f"{kept['reason']}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
    if done["logs"]:
        out.print(f"server logs: {verb} {len(done['logs'])} resubmitted dead-letter files")


def print_status(datasets: list[dict[str, Any]]) -> None:
    """Nothing returned: prints each dataset's models (each accuracy with the rows it was measured
    on), rollout tags, recent batches (each once), manual decisions and unfinished files."""
    if not datasets:
        out.print("no datasets registered yet (see `mlops dataset add --help`)")
    for entry in datasets:
        out.print(
            f"[bold]{escape(entry['dataset'])}[/bold]: "
            + escape(_roles(entry) or "no model yet (mlops train)"),
            highlight=False,
        )
        for line in _model_lines(entry):
            out.print(f"  {line}", highlight=False, soft_wrap=True)
        for key, value in entry["rollout"].items():
            out.print(f"  {key} = {value}", highlight=False)
        batches = entry.get("batches", [])
        if batches:
            out.print("  recent batches, newest first:", highlight=False)
        for batch in batches:
            # File names are the user's: printed as they are, never read as rich markup.
            out.print(f"    {_batch_line(batch)}", highlight=False, soft_wrap=True, markup=False)
        shown = {b["run_id"] for b in batches}
        for decision in entry["decisions"]:
            # Batch decisions are in the rows above; the others (manual, reviews) listed here.
            if decision["run_id"] in shown or decision["key"]:
                continue
            out.print(
                f"  {_time(decision['started'])}  {decision['name'] or decision['action']}  "
                f"{decision['reasons']}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        for item in entry["unfinished"]:
            tries = item.get("attempts", 0)
            out.print(
                f"  {item['state']:<8} {item['kind']} {item['sha256'][:12]} ({item['original_name']})"
                + (f", {tries} attempt{'s' if tries != 1 else ''}" if tries else "")
                + (f": {item['reason']}" if item["reason"] else ""),
                highlight=False,
                soft_wrap=True,
                markup=False,
            )


def _roles(entry: dict[str, Any]) -> str:
    """Each role's model version."""
    models = entry["models"]
    return ", ".join(f"{role} v{models[role]}" for role in ALIASES if role in models)


def _model_lines(entry: dict[str, Any]) -> list[str]:
    """Each role's accuracy and the rows it was measured on; a warning when they differ."""
    models, metrics = entry["models"], entry["metrics"]
    lines = []
    for role in ALIASES:
        known = metrics.get(role, {})
        if role not in models or "holdout_accuracy" not in known:
            continue
        rows = known.get("holdout_rows")
        on = f"{rows:,} rows, " if rows is not None else ""
        line = (
            f"{role} v{models[role]}: accuracy {known['holdout_accuracy']:.1%} on {on}"
            f"{known.get('measured_on', 'its own holdout')}"
        )
        gates = known.get("gates", {})
        if "challenger_accuracy" in gates and "champion_accuracy" in gates:
            line += (
                f"; at its gates {gates['challenger_accuracy']:.1%} vs the then champion's "
                f"{gates['champion_accuracy']:.1%} on the same {gates.get('rows', 0):,} rows"
            )
        lines.append(line)
    if len(lines) > 1:
        lines.append(
            "(each version's accuracy is measured on its own holdout -- different rows -- so "
            "compare versions by their gates, not by these numbers)"
        )
    return lines


def _batch_line(batch: dict[str, Any]) -> str:
    """One batch: time, file, outcome, the accuracy estimated then and observed once labelled."""
    parts = [f"{_time(batch['time'])}  {batch['file']:<28} {batch['outcome']}"]
    if batch["estimated_accuracy"] is not None:
        parts.append(f"estimated accuracy {batch['estimated_accuracy']:.1%}")
    if batch["observed_accuracy"] is not None:
        rows = batch.get("labelled_rows")
        on = f" on {rows:,} labelled rows" if rows else ""
        parts.append(f"observed {batch['observed_accuracy']:.1%}{on} once labelled")
    if batch["labels_decision"] not in (None, "none"):
        retrain = f" → {batch['labels_retrain']}" if batch["labels_retrain"] else ""
        parts.append(f"labels: {batch['labels_decision']}{retrain}")
    if batch["state"] == "quarantined" and batch.get("reason"):
        parts.append(str(batch["reason"])[:120])
    return "; ".join(parts)


def _time(value: Any) -> str:
    """An ISO time or epoch milliseconds as ``YYYY-MM-DD HH:MM`` (UTC)."""
    from datetime import UTC, datetime

    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, tz=UTC)
        else:
            moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)[:16]
    return moment.strftime("%Y-%m-%d %H:%M")
