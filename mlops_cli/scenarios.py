"""A seeded credit-risk world: a reference table and a stream of weekly batches with known events.

The schedule is data (``DEFAULT_SCHEDULE``): stable weeks, a sudden covariate shift, a gradual
covariate shift, concept drift (same inputs, a changed relation to the label), a harmless drift in
a feature the label ignores, and corrupted batches. The demo prints it so a user knows the truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import polars as pl

from mlops_core.spec import DatasetSpec, FeatureType

CREDIT_SPEC = DatasetSpec(
    name="credit",
    target="default",
    id="application_id",
    timestamp="applied_at",
    features={
        "age": FeatureType.numeric,
        "income": FeatureType.numeric,
        "employment_years": FeatureType.numeric,
        "credit_score": FeatureType.numeric,
        "debt_to_income": FeatureType.numeric,
        "loan_amount": FeatureType.numeric,
        "open_accounts": FeatureType.numeric,
        "loan_term": FeatureType.categorical,
        "purpose": FeatureType.categorical,
        "home_ownership": FeatureType.categorical,
        "channel": FeatureType.categorical,
    },
)

PURPOSES = {
    "debt_consolidation": 0.35,
    "credit_card": 0.20,
    "home_improvement": 0.12,
    "car": 0.10,
    "business": 0.08,
    "medical": 0.07,
    "education": 0.08,
}
HOME_OWNERSHIP = {"rent": 0.40, "mortgage": 0.45, "own": 0.15}
CHANNELS = {"web": 0.55, "branch": 0.25, "partner": 0.15, "phone": 0.05}
SHIFTED_CHANNELS = {"web": 0.20, "branch": 0.10, "partner": 0.60, "phone": 0.10}
START = datetime(2026, 1, 5)


class PhaseKind(StrEnum):
    """What a phase does to the stream: nothing, a shift, concept drift, harmless drift or bad files."""

    stable = "stable"
    sudden_shift = "sudden_shift"
    gradual_shift = "gradual_shift"
    concept_drift = "concept_drift"
    harmless_drift = "harmless_drift"
    corrupted = "corrupted"


class Corruption(StrEnum):
    """How a corrupted batch is broken, the way real exports break."""

    missing_column = "missing_column"
    nulls = "nulls"
    out_of_bounds = "out_of_bounds"
    unseen_category = "unseen_category"
    wrong_type = "wrong_type"
    not_a_table = "not_a_table"
    empty_file = "empty_file"


@dataclass(frozen=True)
class Phase:
    """A named stretch of the stream: what happens, for how many weekly batches."""

    name: str
    kind: PhaseKind
    batches: int
    truth: str
    corruptions: tuple[Corruption, ...] = ()


DEFAULT_SCHEDULE: tuple[Phase, ...] = (
    Phase("stable", PhaseKind.stable, 3, "same population as the reference; nothing should happen"),
    Phase(
        "bad-files-1",
        PhaseKind.corrupted,
        3,
        "broken exports: a dropped column, 30% nulls, bytes that are no table",
        (Corruption.missing_column, Corruption.nulls, Corruption.not_a_table),
    ),
    Phase(
        "partner-campaign",
        PhaseKind.harmless_drift,
        2,
        "a marketing campaign moves the channel mix; the label does not depend on channel",
    ),
    Phase(
        "recession-shock",
        PhaseKind.sudden_shift,
        2,
        "sudden covariate shift: lower incomes and credit scores, higher debt-to-income",
    ),
    Phase(
        "loan-growth",
        PhaseKind.gradual_shift,
        3,
        "gradual covariate shift: loan amounts grow and applicants get younger, week by week",
    ),
    Phase(
        "new-regime",
        PhaseKind.concept_drift,
        3,
        "concept drift: same applicants, but mid-range credit scores and high debt now default far more",
    ),
    Phase(
        "bad-files-2",
        PhaseKind.corrupted,
        4,
        "broken exports: impossible values, an unseen category, text in a numeric column, an empty file",
        (
            Corruption.out_of_bounds,
            Corruption.unseen_category,
            Corruption.wrong_type,
            Corruption.empty_file,
        ),
    ),
)


@dataclass(frozen=True)
class StreamBatch:
    """One file of the stream, with the truth about it."""

    index: int
    week: int
    phase: str
    kind: PhaseKind
    truth: str
    path: Path
    rows: int
    corruption: Corruption | None = None


@dataclass(frozen=True)
class Stream:
    """A written stream: its spec, the reference's path, every batch with its truth, and the schedule."""

    spec: DatasetSpec
    reference_path: Path
    batches: tuple[StreamBatch, ...]
    schedule: tuple[Phase, ...] = field(default=DEFAULT_SCHEDULE)


def _choice(rng: np.random.Generator, table: dict[str, float], n: int) -> np.ndarray:
    keys = list(table)
    weights = np.array([table[k] for k in keys])
    return rng.choice(np.array(keys, dtype=object), size=n, p=weights / weights.sum())


def generate_applications(
    rng: np.random.Generator,
    n: int,
    *,
    week: int = 0,
    kind: PhaseKind = PhaseKind.stable,
    intensity: float = 1.0,
    id_prefix: str = "A",
) -> pl.DataFrame:
    """``n`` loan applications of the given week and phase, with their true default labels.

    ``intensity`` (0..1) scales a shift, so a gradual phase ramps it up over its weeks.
    """
    shift = kind is PhaseKind.sudden_shift
    growth = kind is PhaseKind.gradual_shift
    age = np.clip(rng.normal(42 - (6 * intensity if growth else 0), 11, n), 21, 80).round()
    income = np.exp(rng.normal(np.log(56_000) - (0.3 if shift else 0.0), 0.45, n)).round(-2)
    employment_years = np.clip(rng.gamma(2.0, 3.0, n), 0, age - 18).round(1)
    blank_employment = rng.random(n) < 0.03  # self-reported and sometimes left blank
    credit_score = np.clip(rng.normal(690 - (45 if shift else 0), 55, n), 300, 850).round()
    dti = np.clip(rng.beta(2.2, 5.5, n) * 0.9 + (0.08 if shift else 0.0), 0.0, 0.95).round(3)
    loan_amount = (
        income * 0.25 * np.exp(rng.normal(0.0, 0.35, n)) * (1 + (0.3 * intensity if growth else 0))
    ).round(-2)
    open_accounts = rng.poisson(6, n).astype(np.int64)
    loan_term = np.where(rng.random(n) < 0.3, "60m", "36m").astype(object)
    purpose = _choice(rng, PURPOSES, n)
    home = _choice(rng, HOME_OWNERSHIP, n)
    channel = _choice(rng, SHIFTED_CHANNELS if kind is PhaseKind.harmless_drift else CHANNELS, n)

    concept = kind is PhaseKind.concept_drift
    score_cut = 700.0 if concept else 620.0
    logit = (
        -2.6
        + 3.2 / (1 + np.exp(-(score_cut - credit_score) / 22))  # a cliff in risk below the cut
        + (9.0 if concept else 5.0) * np.maximum(dti - (0.30 if concept else 0.38), 0)
        + 1.1 * (loan_amount / income > 0.4)
        + 0.8 * ((loan_term == "60m") & (dti > 0.3))
        + 0.0006 * (age - 45) ** 2
        - 0.05 * np.minimum(np.nan_to_num(employment_years), 10)
        + np.select(
            [purpose == "business", purpose == "medical", purpose == "education", purpose == "car"],
            [0.7, 0.4, 0.3, -0.3] if not concept else [-0.2, 0.9, 0.3, 0.5],
            0.0,
        )
        + np.select([home == "rent", home == "own"], [0.25, -0.2], 0.0)
    )
    default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    start = START + timedelta(weeks=week)
    seconds = np.sort(rng.integers(0, 7 * 24 * 3600, n))
    return pl.DataFrame(
        {
            "application_id": [f"{id_prefix}{week:03d}-{i:06d}" for i in range(n)],
            "applied_at": [start + timedelta(seconds=int(s)) for s in seconds],
            "age": age.astype(np.int64),
            "income": income,
            "employment_years": pl.Series(employment_years).scatter(
                np.flatnonzero(blank_employment), None
            ),
            "credit_score": credit_score.astype(np.int64),
            "debt_to_income": dti,
            "loan_amount": loan_amount,
            "open_accounts": open_accounts,
            "loan_term": loan_term.astype(str),
            "purpose": purpose.astype(str),
            "home_ownership": home.astype(str),
            "channel": channel.astype(str),
            "default": default,
        }
    )


def corrupt(frame: pl.DataFrame, corruption: Corruption, rng: np.random.Generator) -> pl.DataFrame:
    """Damage a clean batch the way real exports break."""
    n = frame.height
    picked = pl.Series(rng.random(n))
    if corruption is Corruption.missing_column:
        return frame.drop("credit_score")
    if corruption is Corruption.nulls:
        return frame.with_columns(
            pl.when(picked < 0.3).then(None).otherwise(pl.col("income")).alias("income")
        )
    if corruption is Corruption.out_of_bounds:
        return frame.with_columns(
            pl.when(picked < 0.05).then(pl.lit(-999)).otherwise(pl.col("age")).alias("age")
        )
    if corruption is Corruption.unseen_category:
        return frame.with_columns(
            pl.when(picked < 0.1)
            .then(pl.lit("crypto"))
            .otherwise(pl.col("purpose"))
            .alias("purpose")
        )
    if corruption is Corruption.wrong_type:
        return frame.with_columns(
            (pl.col("credit_score").cast(pl.String) + " pts").alias("credit_score")
        )
    return frame


def write_stream(
    out_dir: Path,
    *,
    seed: int = 7,
    reference_rows: int = 10_000,
    batch_rows: int = 2_000,
    schedule: tuple[Phase, ...] = DEFAULT_SCHEDULE,
) -> Stream:
    """Write the reference and every batch of ``schedule`` under ``out_dir``; same seed, same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    reference = generate_applications(rng, reference_rows, week=0, id_prefix="R")
    reference_path = out_dir / "reference.parquet"
    reference.write_parquet(reference_path)
    (out_dir / "credit.yaml").write_text(CREDIT_SPEC.to_yaml(), encoding="utf-8")

    batches: list[StreamBatch] = []
    week = 0
    for phase in schedule:
        for step in range(phase.batches):
            week += 1
            index = len(batches) + 1
            kind = PhaseKind.stable if phase.kind is PhaseKind.corrupted else phase.kind
            intensity = (step + 1) / phase.batches if phase.kind is PhaseKind.gradual_shift else 1.0
            frame = generate_applications(
                rng, batch_rows, week=week, kind=kind, intensity=intensity
            )
            corruption = phase.corruptions[step] if phase.corruptions else None
            # Alternate formats, as real exports do: even batches CSV, odd ones parquet.
            suffix = "csv" if index % 2 == 0 else "parquet"
            if corruption is Corruption.wrong_type:
                suffix = "csv"
            path = out_dir / f"batch-{index:02d}-week{week:02d}-{phase.name}.{suffix}"
            if corruption is Corruption.not_a_table:
                path = path.with_suffix(".parquet")
                path.write_bytes(rng.bytes(4096))
                rows = 0
            elif corruption is Corruption.empty_file:
                path = path.with_suffix(".csv")
                path.write_bytes(b"")
                rows = 0
            else:
                if corruption is not None:
                    frame = corrupt(frame, corruption, rng)
                if suffix == "csv":
                    frame.write_csv(path)
                else:
                    frame.write_parquet(path)
                rows = frame.height
            batches.append(
                StreamBatch(
                    index, week, phase.name, phase.kind, phase.truth, path, rows, corruption
                )
            )
    stream = Stream(CREDIT_SPEC, reference_path, tuple(batches), schedule)
    (out_dir / "schedule.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "phases": [asdict(p) for p in schedule],
                "batches": [{**asdict(b), "path": str(b.path)} for b in batches],
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )
    return stream
