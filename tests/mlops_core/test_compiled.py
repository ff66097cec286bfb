"""The compiled scoring path: equal to the pipeline it compiles, or not used at all."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mlops_core.serving.compiled import (
    TOLERANCE,
    compile_model,
    model_frame,
    pipeline_scores,
    probe_rows,
    scorer,
)
from mlops_core.spec import DatasetSpec, FeatureType
from mlops_core.training import TrainingConfig, build_pipeline

SPEC = DatasetSpec(
    name="mixed",
    features={
        "a": FeatureType.numeric,
        "b": FeatureType.numeric,
        "colour": FeatureType.categorical,
        "size": FeatureType.categorical,
    },
    target="y",
)


def table(n: int, seed: int) -> pl.DataFrame:
    """Numerics and categoricals, each with missing values; a label that depends on all four."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue", "black", "white"], n)
    size = rng.choice(["S", "M", "L"], n)
    logit = a - 0.5 * b + (colour == "red") * 1.5 - (size == "L") * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pl.DataFrame({"a": a, "b": b, "colour": colour, "size": size, "y": y})
    gaps = rng.random((n, 4)) < 0.1
    return frame.with_columns(
        pl.when(pl.Series(gaps[:, 0])).then(None).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.Series(gaps[:, 1])).then(None).otherwise(pl.col("b")).alias("b"),
        pl.when(pl.Series(gaps[:, 2])).then(None).otherwise(pl.col("colour")).alias("colour"),
        pl.when(pl.Series(gaps[:, 3])).then(None).otherwise(pl.col("size")).alias("size"),
    )


@pytest.fixture(scope="module")
def pipeline():
    frame = table(3_000, seed=0)
    model = build_pipeline(SPEC, TrainingConfig(max_iter=60))
    return model.fit(model_frame(frame.to_dicts(), SPEC), frame["y"].to_numpy())


def records(n: int, seed: int) -> list[dict]:
    return table(n, seed).drop("y").to_dicts()


def test_the_compiled_path_gives_the_pipelines_probabilities_with_missing_and_unseen_values(
    pipeline,
) -> None:
    compiled, reason = compile_model(
        pipeline, SPEC, records(300, 1), pipeline_scores(pipeline, SPEC)
    )
    assert compiled is not None, reason
    fresh = probe_rows(records(400, 2), SPEC)  # with missing values and unseen categories
    assert any(row["colour"] is None for row in fresh) and any(
        row["colour"] == "\x00unseen" for row in fresh
    )
    expected = pipeline.predict_proba(model_frame(fresh, SPEC))[:, 1]
    encoded = compiled.encode(fresh)
    from scipy.special import expit

    by_tree = expit(compiled.raw_by_tree(encoded))
    walked = np.concatenate(
        [expit(compiled.raw_walk(encoded[i : i + 3])) for i in range(0, len(fresh), 3)]
    )
    for ours in (by_tree, walked, compiled.scores(fresh)):
        assert np.max(np.abs(ours - expected)) <= TOLERANCE
        assert np.array_equal(ours >= 0.5, expected >= 0.5)
    one = compiled.scores([fresh[0]])  # a single record, the common request
    assert abs(one[0] - expected[0]) <= TOLERANCE


def test_a_model_it_cannot_compile_serves_through_its_pipeline(pipeline) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = table(500, seed=3).drop_nulls()
    linear = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        frame.select("a", "b").to_pandas(), frame["y"].to_numpy()
    )
    numeric = DatasetSpec(
        name="n", features={"a": FeatureType.numeric, "b": FeatureType.numeric}, target="y"
    )
    chosen = scorer(linear, numeric, frame.select("a", "b").to_dicts())
    assert chosen.path == "pipeline" and "not a HistGradientBoostingClassifier" in chosen.reason
    assert np.allclose(
        chosen.score(frame.select("a", "b").head(5).to_dicts()),
        linear.predict_proba(frame.select("a", "b").head(5).to_pandas())[:, 1],
    )


def test_a_compiled_model_that_disagrees_with_its_pipeline_never_serves(pipeline) -> None:
    plain = pipeline_scores(pipeline, SPEC)
    compiled, reason = compile_model(
        pipeline, SPEC, records(100, 4), lambda rows: plain(rows) + 1e-4
    )
    assert compiled is None and "differ from the pipeline's by up to 0.0001" in reason
    compiled, reason = compile_model(pipeline, SPEC, [], plain)
    assert compiled is None and "no rows" in reason
