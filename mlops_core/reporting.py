"""What a person reads in the Prefect UI for each batch, built here (pure): the run's name, the
name of its final state and its tags, the domain log lines, and one markdown report.

The report links only what a browser can open from the Prefect page: MLflow pages and the drift
plots through the MLflow server's own routes (``/#/experiments/...`` and ``/get-artifact``), and,
when no MLflow UI is known, the run id and tracking URI as text instead of a dead link.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mlops_core.outcomes import (
    BatchOutcome,
    RetrainOutcome,
    RetrainStatus,
    RolloutOutcome,
    RolloutStatus,
)
from mlops_core.policy import Decision, PolicyConfig
from mlops_core.validation import ValidationReport

# Below this a p-value is shown as "< 0.001": the permutation tests cannot resolve smaller ones,
# and "p = 0" reads as certainty no test gives.
P_FLOOR = 0.001


def p_text(p_value: float) -> str:
    """A p-value as a person reads it: ``< 0.001`` below the floor, else three digits."""
    return f"< {P_FLOOR:g}" if p_value < P_FLOOR else f"{p_value:.3g}"


def p_phrase(p_value: float) -> str:
    """``p < 0.001`` or ``p = 0.0123``."""
    shown = p_text(p_value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~-])")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def md_text(text: object) -> str:
    """Text from a file or a user (a file name, an observed value) as inert markdown: one line,
    every markdown character escaped, so it can add no link, image or heading to a page."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _one_line(text))


def md_code(text: object) -> str:
    """``text`` as an inline code span that no backtick inside it can close early."""
    line = _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", line)), default=0) + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def run_title(dataset: str, name: str) -> str:
    """A run's name from its dataset and what it is about: ``credit · batch-19-week19.csv``."""
    return f"{dataset} · {name}"


# MLflow 3.17's UI keeps a global "workflow type" that starts as GenAI (traces, token usage) and
# ignores the experiment's kind tag; a link opens in machine-learning mode with this query.
ML_WORKFLOW_QUERY = "workflowType=machine_learning"


def mlflow_ui_link(ui: str, fragment: str = "experiments") -> str:
    """A link into the MLflow UI at ``ui`` (its base URL) that opens in machine-learning mode:
    ``fragment`` is the route after ``#/`` (``experiments/3/runs/abc``)."""
    sep = "&" if "?" in fragment else "?"
    return f"{ui.rstrip('/')}/#/{fragment.lstrip('/')}{sep}{ML_WORKFLOW_QUERY}"


def mlflow_run_url(mlflow_ui: str | None, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI (machine-learning mode); None when no UI is known."""
    if not mlflow_ui:
        return None
    return mlflow_ui_link(mlflow_ui, f"experiments/{experiment_id}/runs/{run_id}")


def mlflow_artifact_url(mlflow_ui: str | None, run_id: str, path: str) -> str | None:
    """One artifact of a run, served over HTTP by the MLflow server (its ``/get-artifact``
    route, which the MLflow UI itself uses for images); None when no UI is known."""
    if not mlflow_ui:
        return None
    return f"{mlflow_ui.rstrip('/')}/get-artifact?path={quote(path)}&run_uuid={quote(run_id)}"


@dataclass(frozen=True)
class MlflowPlace:
    """Where a batch's decision run lives: the UI (when one is known) or the tracking URI."""

    tracking_uri: str
    ui: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None


# ---------------------------------------------------------------------- outcomes in the runs list


@dataclass(frozen=True)
class RunLabel:
    """How a run shows in the Prefect runs list: its final state's name, message and tags."""

    state_name: str
    message: str
    tags: tuple[str, ...] = ()


_RETRAIN_LABELS = {
    RetrainStatus.promoted: ("Promoted", "promoted"),
    RetrainStatus.refused: ("Retrain refused", "retrain-refused"),
    RetrainStatus.failed: ("Retrain failed", "retrain-failed"),
    RetrainStatus.rolled_back: ("Rolled back", "rolled-back"),
    RetrainStatus.interrupted: ("Interrupted", "interrupted"),
    RetrainStatus.shadow_judged: ("Shadow judged", "shadow-judged"),
    RetrainStatus.gates_passed: ("Gates passed", "gates-passed"),
}

_ROLLOUT_LABELS = {
    RolloutStatus.promoted: ("Promoted", "promoted"),
    RolloutStatus.rolled_back: ("Rolled back", "rolled-back"),
    RolloutStatus.interrupted: ("Interrupted", "interrupted"),
    RolloutStatus.shadow_judged: ("Shadow judged", "shadow-judged"),
}


def batch_run_label(outcome: BatchOutcome) -> RunLabel:
    """A batch run's label: the most telling of quarantined, retrain outcome, rollback, drift.

    Tags name every outcome that applies (a drifted batch whose retrain was refused carries
    ``drift`` and ``retrain-refused``), so the runs list filters on any of them.
    """
    tags: list[str] = []
    drifted = outcome.drift is not None and outcome.drift.is_drift
    if outcome.state.value == "quarantined":
        tags.append("quarantined")
    if drifted:
        tags.append("drift")
    action = outcome.decision.action.value if outcome.decision is not None else None
    if action in ("retrain", "rollback"):
        tags.append(action)
    retrain = outcome.retrain
    if retrain is not None:
        tags.append(_RETRAIN_LABELS[retrain.status][1])
    elif action == "rollback":
        tags.append("rolled-back")
    if outcome.state.value == "quarantined":
        return RunLabel("Quarantined", outcome.reason or "quarantined", tuple(tags))
    if retrain is not None:
        return RunLabel(_RETRAIN_LABELS[retrain.status][0], retrain.reason, tuple(tags))
    if action == "rollback":
        return RunLabel("Rolled back", decision_line(outcome.decision), tuple(tags))
    if outcome.already_settled:
        return RunLabel("Completed", f"already {outcome.state.value} by another run", tuple(tags))
    if drifted and outcome.drift is not None:
        return RunLabel("Drift", drift_line(outcome.drift), tuple(tags))
    message = decision_line(outcome.decision) if outcome.decision else outcome.state.value
    return RunLabel("Completed", message, tuple(tags))


def retrain_run_label(outcome: RetrainOutcome) -> RunLabel:
    """A retrain run's label: promoted, refused by the gates, failed, or its rollout's end."""
    name, tag = _RETRAIN_LABELS[outcome.status]
    return RunLabel(name, outcome.reason, (tag,))


def rollout_run_label(outcome: RolloutOutcome) -> RunLabel:
    """A rollout run's label: promoted, rolled back, interrupted or shadow judged."""
    name, tag = _ROLLOUT_LABELS[outcome.status]
    reasons = "; ".join(outcome.last_reasons)
    message = f"v{outcome.version} {outcome.status.value}" + (f": {reasons}" if reasons else "")
    return RunLabel(name, message, (tag,))


# ---------------------------------------------------------------------- domain log lines


def validation_line(report: ValidationReport) -> str:
    """The validation verdict in one line: passed, or failed with its first reasons."""
    if report.success:
        return f"validation passed: {report.rows:,} rows"
    reasons = "; ".join(report.reasons()[:5])
    return f"validation {report.verdict}: {reasons}"


def drift_line(drift: Any) -> str:
    """The drift verdict in one line: yes or no, the combined p-value and rate, the drivers.

    ``drift`` is a ``DriftReport`` or its JSON form."""
    data = drift if isinstance(drift, dict) else drift.to_dict()
    verdict = "drift" if data["is_drift"] else "no drift"
    line = (
        f"{verdict}: combined {p_phrase(data['p_value'])} at false-alarm rate "
        f"{data['false_alarm_rate']:g} (Holm over {len(data.get('tests', []))} tests)"
    )
    drivers = list(data.get("drivers", []))
    return line + (f"; drivers: {', '.join(drivers[:5])}" if drivers else "")


def decision_line(decision: Decision | None) -> str:
    """The decision and its reasons in one line."""
    if decision is None:
        return "no decision"
    return f"decision {decision.action.value}: " + "; ".join(decision.reasons)


def retrain_line(outcome: RetrainOutcome) -> str:
    """The retrain outcome in one line: status, version, champion before and after, reason."""
    version = f" v{outcome.version}" if outcome.version else ""
    champion = (
        f" (champion v{outcome.champion_before} -> v{outcome.champion_after})"
        if outcome.champion_before != outcome.champion_after
        else (f" (champion stays v{outcome.champion_after})" if outcome.champion_after else "")
    )
    return f"retrain {outcome.status.value}{version}{champion}: {outcome.reason}"


# ---------------------------------------------------------------------- the batch's markdown


def cost_benefit(decision: Decision, policy: PolicyConfig) -> list[str]:
    """The decision's cost-benefit in words, with its units (empty when the policy weighed none).

    Both numbers are in the currency of ``value_per_correct_prediction``; the benefit is also
    given as the correct predictions it stands for, over the horizon's predictions.
    """
    benefit, cost = decision.expected_benefit, decision.retrain_cost
    if benefit is None or cost is None:
        return []
    money = "(in the currency of MLOPS_VALUE_PER_CORRECT_PREDICTION)"
    horizon = policy.predictions_per_day * policy.benefit_horizon_days
    value = policy.value_per_correct_prediction
    lines = [f"Expected benefit {benefit:,.2f} {money}"]
    if value > 0:
        correct = benefit / value
        share = f", {correct / horizon:.2%} of them" if horizon > 0 else ""
        lines[0] += (
            f": {correct:,.0f} more correct predictions over the {policy.benefit_horizon_days:g}-day "
            f"horizon ({horizon:,.0f} predictions at {policy.predictions_per_day:,.0f} a day"
            f"{share}) at {value:g} each."
        )
    seconds = decision.evidence.median_training_seconds
    compute = cost - policy.fixed_cost_per_retrain
    lines.append(
        f"Retrain cost {cost:,.2f} in the same currency: fixed {policy.fixed_cost_per_retrain:,.2f} "
        f"(review, rollout exposure, people) + compute {compute:,.4g}"
        + (
            f" (median training {seconds:,.0f} s at {policy.compute_cost_per_hour:g} an hour)."
            if seconds
            else " (no past training time)."
        )
    )
    lines.append(
        "The benefit covers the cost." if benefit >= cost else "The benefit is below the cost."
    )
    return lines


def cost_benefit_lines(decision: dict[str, Any], policy: PolicyConfig) -> list[str]:
    """``cost_benefit`` as markdown bullets (the Prefect artifact's); empty when none was weighed."""
    try:
        parsed = Decision.model_validate(decision)
    except ValueError:  # an older report's shape: the artifact still shows the rest
        return []
    weighed = cost_benefit(parsed, policy)
    if not weighed:
        return []
    return ["**Cost–benefit:**", "", *[f"- {line}" for line in weighed], ""]


def _validation_lines(validation: dict[str, Any]) -> list[str]:
    lines = [f"**Validation:** {validation.get('verdict', '-')}", ""]
    for failure in validation.get("failures", [])[:10]:
        lines.append(
            f"- {md_code(failure.get('column'))}: {md_text(failure.get('kind'))} -- "
            f"{md_text(failure.get('observed'))} (expected {md_text(failure.get('expected'))})"
        )
    if validation.get("error"):
        lines.append(f"- {md_text(validation['error'])}")
    return lines + ([""] if len(lines) > 2 else [])


def _drift_lines(drift: dict[str, Any]) -> list[str]:
    lines = [
        f"**Drift:** {'yes' if drift['is_drift'] else 'no'} -- combined "
        f"{p_phrase(drift['p_value'])} at false-alarm rate {drift['false_alarm_rate']:g} "
        f"(Holm's correction over the {len(drift.get('tests', []))} tests)",
        "",
        "| test | statistic | p-value | p-value (Holm) | drift |",
        "|---|---:|---:|---:|---|",
    ]
    for test in drift.get("tests", []):
        lines.append(
            f"| {test['name']} | {test['statistic']:.4g} | {p_text(test['p_value'])} | "
            f"{p_text(test.get('adjusted_p_value', test['p_value']))} | "
            f"{'yes' if test['is_drift'] else 'no'} |"
        )
    features = sorted(drift.get("features", []), key=lambda f: f.get("adjusted_p_value", 1))
    if features:
        lines += [
            "",
            "| feature | test | p-value (Bonferroni over the features) | effect size "
            "| missing share change | drift |",
            "|---|---|---:|---:|---:|---|",
        ]
    for feature in features:
        lines.append(
            f"| {feature['feature']} | {feature['test']} | "
            f"{p_text(feature.get('adjusted_p_value', feature['p_value']))} | "
            f"{feature.get('effect_size', float('nan')):.3f} "
            f"({feature.get('effect_metric', '')}) | "
            f"{100 * feature.get('missing_change', 0.0):+.1f} pts | "
            f"{'yes' if feature['is_drift'] else 'no'} |"
        )
    return lines + [""]


def _retrain_lines(retrain: RetrainOutcome) -> list[str]:
    heading = {
        RetrainStatus.promoted: "promoted",
        RetrainStatus.refused: "**refused** by the gates",
        RetrainStatus.failed: "**failed**",
        RetrainStatus.rolled_back: "**rolled back** by its rollout",
        RetrainStatus.interrupted: "interrupted (a person moved the registry)",
        RetrainStatus.shadow_judged: "judged in shadow (not promoted)",
        RetrainStatus.gates_passed: "passed every gate (a gate check: no alias moved)",
    }[retrain.status]
    version = f" (challenger v{retrain.version})" if retrain.version else ""
    lines = [f"**Retrain:** {heading}{version}", "", f"- {retrain.reason}"]
    if retrain.champion_after is not None or retrain.champion_before is not None:
        lines.append(
            f"- champion before v{retrain.champion_before or '-'}, "
            f"after v{retrain.champion_after or '-'}"
        )
    lines.append("")
    if retrain.gates is not None:
        lines += [retrain.gates.markdown(), ""]
    return lines


def _mlflow_lines(place: MlflowPlace, plots: Sequence[str], batch_page: bool) -> list[str]:
    if place.run_id is None:
        return []
    page = (
        mlflow_run_url(place.ui, place.experiment_id, place.run_id) if place.experiment_id else None
    )
    if page is None:
        lines = [
            f"**MLflow:** decision run `{place.run_id}` in `{place.tracking_uri}` "
            "(no MLflow UI is running: `mlops up` serves one)",
            "",
        ]
        if plots:
            lines += ["Drift plots in that run: " + ", ".join(f"`{p}`" for p in plots), ""]
        return lines
    # The timeline task logs both pages to a batch's decision run, the timeline alone to a
    # labels file's (a labels file has no page of its own).
    pages = {"this batch's page": "report/batch.html"} if batch_page else {}
    pages["the dataset's timeline"] = "report/timeline.html"
    shown = " · ".join(
        f"[{what}]({mlflow_ui_link(place.ui or '', route)})"
        for what, path in pages.items()
        for route in [f"experiments/{place.experiment_id}/runs/{place.run_id}/artifacts/{path}"]
    )
    lines = [f"**MLflow:** [decision run {place.run_id[:12]}]({page}) · {shown}", ""]
    for plot in plots:
        url = mlflow_artifact_url(place.ui, place.run_id, plot)
        name = plot.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("_", " ")
        lines += [f"![{name}]({url})", ""]
    return lines


def batch_markdown(
    *,
    dataset: str,
    sha256: str,
    validation: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    original_name: str | None = None,
    retrain: RetrainOutcome | None = None,
    policy: PolicyConfig | None = None,
    mlflow: MlflowPlace | None = None,
    plots: Sequence[str] = (),
    title: str = "Batch",
) -> str:
    """Validation verdict, the drift tables, the decision and its reasons, its cost and benefit,
    the retrain's outcome, and the decision run with its drift plots (``plots``: artifact paths
    in that run, embedded from the MLflow server)."""
    named = f" {md_code(original_name)}" if original_name else ""
    lines = [f"# {title}{named} of dataset {md_code(dataset)}", "", f"sha256 `{sha256[:12]}`", ""]
    if validation is not None:
        lines += _validation_lines(validation)
    if drift is not None:
        lines += _drift_lines(drift)
    if decision is not None:
        lines += [f"**Decision:** `{decision['action']}`", ""]
        lines += [f"- {reason}" for reason in decision["reasons"]]
        lines.append("")
        if policy is not None:
            lines += cost_benefit_lines(decision, policy)
    if retrain is not None:
        lines += _retrain_lines(retrain)
    elif decision is not None and decision.get("action") == "retrain":
        lines += ["**Retrain:** not carried out by this run", ""]
    if mlflow is not None:
        lines += _mlflow_lines(mlflow, plots, batch_page=title == "Batch")
    return "\n".join(lines)
