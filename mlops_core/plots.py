"""Pictures a person would rather look at than read: drift effect sizes and distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mlops_core.drift import DriftConfig, DriftReport
from mlops_core.spec import DatasetSpec


def plot_drift(
    report: DriftReport,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    spec: DatasetSpec,
    out_dir: Path,
    *,
    config: DriftConfig | None = None,
    top: int = 4,
) -> list[Path]:
    """Write ``effect_sizes.png`` and ``distributions.png`` into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    config = config or DriftConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    features = sorted(report.features, key=lambda f: f.effect_size)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(features) + 1.5))
    rows = np.arange(len(features))
    colours = ["#d62728" if f.is_drift else "#7f7f7f" for f in features]
    ax.barh(rows, [f.effect_size for f in features], color=colours)
    for row, feature in zip(rows, features, strict=True):
        limit = (
            config.min_effect_categorical if feature.test == "chi2" else config.min_effect_numeric
        )
        ax.plot([limit, limit], [row - 0.4, row + 0.4], color="black", linewidth=1.5)
    ax.set_yticks(rows, [f"{f.feature} ({f.test})" for f in features])
    ax.set_xlabel(
        "effect size: Wasserstein / reference std (numeric), Jensen-Shannon (categorical)"
    )
    verdict = "drift" if report.is_drift else "no drift"
    ax.set_title(
        f"{spec.name}: {verdict}, p = {report.p_value:.3g}  (red: drifted; bar: minimum effect)"
    )
    fig.tight_layout()
    effect_path = out_dir / "effect_sizes.png"
    fig.savefig(effect_path, dpi=110)
    plt.close(fig)

    chosen = [f for f in sorted(report.features, key=lambda f: -f.effect_size)][:top]
    fig, axes = plt.subplots(1, max(len(chosen), 1), figsize=(4 * max(len(chosen), 1), 3.4))
    axes = np.atleast_1d(axes)
    for ax, feature in zip(axes, chosen, strict=False):
        name = feature.feature
        if feature.test == "chi2":
            ref = reference[name].cast(pl.String).value_counts(normalize=True, name="share")
            cur = current[name].cast(pl.String).value_counts(normalize=True, name="share")
            levels = sorted(set(ref[name].drop_nulls()) | set(cur[name].drop_nulls()))
            ref_share = dict(zip(ref[name], ref["share"], strict=True))
            cur_share = dict(zip(cur[name], cur["share"], strict=True))
            x = np.arange(len(levels))
            ax.bar(x - 0.2, [ref_share.get(v, 0) for v in levels], 0.4, label="reference")
            ax.bar(x + 0.2, [cur_share.get(v, 0) for v in levels], 0.4, label="batch")
            ax.set_xticks(x, levels, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel("share of rows")
        else:
            ref_values = reference[name].cast(pl.Float64).drop_nulls().to_numpy()
            cur_values = current[name].cast(pl.Float64).drop_nulls().to_numpy()
            both = np.concatenate([ref_values, cur_values])
            low, high = np.quantile(both, [0.005, 0.995]) if both.size else (0.0, 1.0)
            bins = np.linspace(float(low), float(high), 40)
            ax.hist(ref_values, bins=bins, density=True, alpha=0.5, label="reference")
            ax.hist(cur_values, bins=bins, density=True, alpha=0.5, label="batch")
            ax.set_ylabel("density")
        ax.set_title(f"{name}: effect {feature.effect_size:.2f}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    distribution_path = out_dir / "distributions.png"
    fig.savefig(distribution_path, dpi=110)
    plt.close(fig)
    return [effect_path, distribution_path]
