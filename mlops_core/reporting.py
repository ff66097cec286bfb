"""What a person reads in the Prefect UI for each batch: one markdown report, built here (pure)."""

from __future__ import annotations

from typing import Any


def mlflow_run_url(mlflow_ui: str | None, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI; None when no UI is known."""
    if not mlflow_ui:
        return None
    return f"{mlflow_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def batch_markdown(
    *,
    dataset: str,
    sha256: str,
    validation: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    links: dict[str, str | None],
    title: str = "Batch",
) -> str:
    """Validation verdict, the drift table, the decision and its reasons, links to MLflow."""
    lines = [f"# {title} `{sha256[:12]}` of dataset `{dataset}`", ""]
    if validation is not None:
        verdict = validation.get("verdict", "-")
        lines += [f"**Validation:** {verdict}", ""]
        for failure in validation.get("failures", [])[:10]:
            lines.append(
                f"- `{failure.get('column')}`: {failure.get('kind')} -- {failure.get('observed')}"
                f" (expected {failure.get('expected')})"
            )
        if validation.get("error"):
            lines.append(f"- {validation['error']}")
        lines.append("")
    if drift is not None:
        lines += [
            f"**Drift:** {'yes' if drift['is_drift'] else 'no'} -- combined p = "
            f"{drift['p_value']:.3g} at false-alarm rate {drift['false_alarm_rate']:g}",
            "",
            "| test | statistic | p-value | drift |",
            "|---|---:|---:|---|",
        ]
        for test in drift.get("tests", []):
            lines.append(
                f"| {test['name']} | {test['statistic']:.4g} | {test['p_value']:.3g} | "
                f"{'yes' if test['is_drift'] else 'no'} |"
            )
        lines += [
            "",
            "| feature | test | p-value (Bonferroni) | effect size | missing share change | drift |",
            "|---|---|---:|---:|---:|---|",
        ]
        features = sorted(drift.get("features", []), key=lambda f: f.get("adjusted_p_value", 1))
        for feature in features:
            lines.append(
                f"| {feature['feature']} | {feature['test']} | "
                f"{feature.get('adjusted_p_value', feature['p_value']):.3g} | "
                f"{feature.get('effect_size', float('nan')):.3f} "
                f"({feature.get('effect_metric', '')}) | "
                f"{100 * feature.get('missing_change', 0.0):+.1f} pts | "
                f"{'yes' if feature['is_drift'] else 'no'} |"
            )
        lines.append("")
    if decision is not None:
        lines += [f"**Decision:** `{decision['action']}`", ""]
        lines += [f"- {reason}" for reason in decision["reasons"]]
        lines.append("")
    shown = [(name, url) for name, url in links.items() if url]
    if shown:
        lines += ["**Links:** " + " · ".join(f"[{name}]({url})" for name, url in shown), ""]
    return "\n".join(lines)
