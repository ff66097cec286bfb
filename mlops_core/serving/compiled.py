"""A compiled scoring path: records straight to numpy, every tree of the booster walked at once.

scikit-learn's ``predict_proba`` on our default pipeline (``training.build_pipeline``: a
``ColumnTransformer`` of passed-through numerics and ordinal-encoded categoricals, then a binary
``HistGradientBoostingClassifier``) costs about as much for one row as for a thousand: a pandas
frame per call, the column transformer's checks, and a Python call per tree (200 of them). Here
the same model is read once into flat arrays:

* the records are encoded straight into a float array: numerics as floats (a missing value is
  NaN), categoricals through the fitted encoders' category tables composed into one (as in
  scikit-learn, NaN is the missing value and None an ordinary category; unseen -> the
  ``unknown_value``);
* the trees become one node table, and every row descends every tree together, one level per
  numpy step, with the booster's own rules (NaN and negative categories follow the node's
  missing direction, categories outside the node's bitset go right when known at fit time and
  follow the missing direction when not);
* the leaves' values are summed onto the baseline and passed through the logistic function.

It reads the booster's private fitted state (``_predictors``, ``_baseline_prediction``,
``_bin_mapper``), which a scikit-learn release may change. So a compiled model never serves
unchecked: ``compile_model`` returns it only after it reproduced the pipeline's probabilities
within ``TOLERANCE`` and the same labels on the rows it is given (the version's holdout, plus
copies with missing values and unseen categories); anything else -- another model type, another
transformer, a mismatch -- serves through the plain pipeline, and says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_core.spec import DatasetSpec

TOLERANCE = 1e-6
"""Largest difference in probability the check accepts between the compiled path and the model."""

WALK_ROWS = 4
"""Up to this many rows a call walks all trees in numpy; beyond it, one compiled call per tree
(measured: the walk is faster for 1-4 rows, a call per tree from about 8)."""
Rows = Sequence[dict[str, Any]]
Scores = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Column:
    """How one model input column is read from a record."""

    name: str
    codes: dict[Any, float] | None  # None: numeric; else category -> the booster's code
    missing: float = math.nan  # a categorical's code for NaN
    unknown: float = math.nan  # a categorical's code for a category unseen at fit time


class CompiledModel:
    """A binary ``HistGradientBoostingClassifier`` pipeline as arrays (see the module docstring)."""

    def __init__(self, columns: list[_Column], booster: Any) -> None:
        self.columns = columns
        self.predictors = [predictor for (predictor,) in booster._predictors]
        known_bitsets, feature_map = booster._bin_mapper.make_known_categories_bitsets()
        nodes, raw_bitsets, roots = [], [], []
        offset, bitset_offset = 0, 0
        for (predictor,) in booster._predictors:  # one tree per iteration: binary
            tree = predictor.nodes
            roots.append(offset)
            nodes.append((tree, offset, bitset_offset))
            raw_bitsets.append(predictor.raw_left_cat_bitsets)
            offset += len(tree)
            bitset_offset += len(predictor.raw_left_cat_bitsets)
        table = np.concatenate([tree for tree, _, _ in nodes])
        shift = np.concatenate([np.full(len(tree), o) for tree, o, _ in nodes])
        bit_shift = np.concatenate([np.full(len(tree), b) for tree, _, b in nodes])
        self.roots = np.asarray(roots, dtype=np.intp)
        self.leaf = table["is_leaf"].astype(bool)
        self.value = table["value"].astype(np.float64)
        self.feature = table["feature_idx"].astype(np.intp)
        self.threshold = table["num_threshold"].astype(np.float64)
        self.missing_left = table["missing_go_to_left"].astype(bool)
        self.left = table["left"].astype(np.intp) + shift
        self.right = table["right"].astype(np.intp) + shift
        self.categorical = table["is_categorical"].astype(bool)
        self.bitset = table["bitset_idx"].astype(np.intp) + bit_shift
        self.raw_bitsets = (
            np.concatenate(raw_bitsets) if any(len(b) for b in raw_bitsets) else np.zeros((1, 8))
        ).astype(np.uint32)
        self.known_bitsets = known_bitsets  # the predictors' own types: passed to them as they are
        self.feature_map = feature_map
        self.known_array = np.asarray(known_bitsets, dtype=np.uint32)  # the walk's copies
        self.feature_map_array = np.asarray(feature_map, dtype=np.intp)
        self.baseline = float(np.asarray(booster._baseline_prediction).ravel()[0])
        self.has_categorical = bool(self.categorical.any())

    def encode(self, rows: Rows) -> npt.NDArray[np.float64]:
        """The model's input array for ``rows`` (the pipeline's column transformer, in numpy)."""
        out = np.empty((len(rows), len(self.columns)), dtype=np.float64)
        for j, column in enumerate(self.columns):
            name, codes = column.name, column.codes
            if codes is None:
                out[:, j] = [math.nan if (v := row.get(name)) is None else v for row in rows]
                continue
            for i, row in enumerate(rows):
                value = row.get(name)
                if isinstance(value, float) and math.isnan(value):
                    out[i, j] = column.missing
                else:
                    code = codes.get(value)  # None is a category like any other, as in sklearn
                    out[i, j] = column.unknown if code is None else code
        return out

    def raw(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The booster's raw score (log-odds) of each row of ``x``.

        Up to ``WALK_ROWS`` rows, every tree is walked at once in numpy; more rows amortise a
        call per tree, and the booster's own compiled tree predictors (fed the encoded array,
        so still no pandas and no transformer) are faster.
        """
        if x.shape[0] > WALK_ROWS:
            return self.raw_by_tree(x)
        return self.raw_walk(x)

    def raw_by_tree(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The raw score through the booster's tree predictors, one call per tree."""
        out = np.full(x.shape[0], self.baseline)
        data = np.ascontiguousarray(x)
        for predictor in self.predictors:
            out += predictor.predict(data, self.known_bitsets, self.feature_map, 1)
        return out

    def raw_walk(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The raw score with every row descending every tree together, one level per step."""
        n = x.shape[0]
        node = np.repeat(self.roots[:, None], n, axis=1)  # (trees, rows)
        row = np.arange(n)[None, :]
        active = ~self.leaf[node]
        while active.any():
            feature = self.feature[node]
            value = x[row, feature]
            nan = np.isnan(value)
            left = np.where(nan, self.missing_left[node], value <= self.threshold[node])
            if self.has_categorical:
                categorical = self.categorical[node] & ~nan
                if categorical.any():
                    left = self._categorical(node, feature, value, categorical, left)
            step = np.where(left, self.left[node], self.right[node])
            node = np.where(active, step, node)
            active = ~self.leaf[node]
        return np.asarray(self.baseline + self.value[node].sum(axis=0))

    def _categorical(
        self,
        node: npt.NDArray[np.intp],
        feature: npt.NDArray[np.intp],
        value: npt.NDArray[np.float64],
        categorical: npt.NDArray[np.bool_],
        left: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.bool_]:
        """``left`` with the categorical nodes' directions put in (the booster's rules)."""
        negative = value < 0
        code = np.where(categorical & ~negative, value, 0).astype(np.intp)
        word, bit = code // 32, (code % 32).astype(np.uint32)
        word = np.minimum(word, self.raw_bitsets.shape[1] - 1)
        in_left = (self.raw_bitsets[self.bitset[node], word] >> bit) & 1 == 1
        known_row = self.feature_map_array[feature]
        known = (self.known_array[known_row, word] >> bit) & 1 == 1
        missing = negative | ~(in_left | known)
        direction = np.where(missing, self.missing_left[node], in_left)
        return np.where(categorical, direction, left)

    def scores(self, rows: Rows) -> Scores:
        """The positive class's probability of each record."""
        from scipy.special import expit

        return np.asarray(expit(self.raw(self.encode(rows))), dtype=np.float64)


def _columns(transformer: Any, spec: DatasetSpec) -> list[_Column] | str:
    """The input columns a fitted ``ColumnTransformer`` produces, or why it cannot be compiled."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    if not isinstance(transformer, ColumnTransformer):
        return f"its first step is a {type(transformer).__name__}, not a ColumnTransformer"
    columns: list[_Column] = []
    for name, step, selected in transformer.transformers_:
        if step == "drop" or len(selected) == 0:
            continue
        if not all(isinstance(c, str) for c in selected):
            return f"transformer {name!r} selects columns by position"
        if step == "passthrough" or (isinstance(step, FunctionTransformer) and step.func is None):
            if any(c not in spec.numeric for c in selected):
                return f"transformer {name!r} passes through non-numeric columns"
            columns.extend(_Column(c, None) for c in selected)
        elif isinstance(step, OrdinalEncoder):
            missing, unknown = step.encoded_missing_value, step.unknown_value
            if step.handle_unknown != "use_encoded_value" or unknown is None:
                return f"transformer {name!r} raises on unseen categories"
            if getattr(step, "_infrequent_enabled", False):
                return f"transformer {name!r} groups infrequent categories"
            for column, categories in zip(selected, step.categories_, strict=True):
                # As sklearn's OrdinalEncoder: only NaN is missing (seen at fit: the encoded
                # missing value; unseen: unknown); None is an ordinary category.
                codes = {c: float(i) for i, c in enumerate(categories) if not _nan(c)}
                seen_nan = len(categories) > 0 and _nan(categories[-1])
                nan_code = float(missing) if seen_nan else float(unknown)
                columns.append(_Column(column, codes, nan_code, float(unknown)))
        else:
            return f"transformer {name!r} is a {type(step).__name__}"
    return columns


def _through_booster_encoder(columns: list[_Column], preprocessor: Any) -> list[_Column] | str:
    """The columns as the booster sees them after its own encoder of categorical features.

    Given categorical features, the booster ordinal-encodes them again (the codes our encoder
    made become its categories; anything else is NaN, its missing value) and puts them first.
    The two tables are composed into one, in the booster's column order.
    """
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    out: list[_Column] = []
    for name, step, selected in preprocessor.transformers_:
        chosen = np.asarray(selected)
        indices = np.flatnonzero(chosen) if chosen.dtype == bool else chosen.astype(np.intp)
        if step == "drop" or len(indices) == 0:
            continue
        if isinstance(step, FunctionTransformer):
            out.extend(columns[i] for i in indices)
        elif isinstance(step, OrdinalEncoder):
            for i, categories in zip(indices, step.categories_, strict=True):
                column = columns[i]
                if column.codes is None:
                    return f"the booster treats numeric column {column.name!r} as categorical"
                position = {float(c): k for k, c in enumerate(categories) if not _nan(c)}

                def inner(code: float, position: dict[float, int] = position) -> float:
                    return math.nan if math.isnan(code) else position.get(code, math.nan)

                codes = {raw: inner(float(code)) for raw, code in column.codes.items()}
                out.append(
                    _Column(column.name, codes, inner(column.missing), inner(column.unknown))
                )
        else:
            return f"the booster's own preprocessing step {name!r} is a {type(step).__name__}"
    return out


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _unfit_reason(model: Any, spec: DatasetSpec) -> tuple[list[_Column], Any] | str:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return f"the model is a {type(model).__name__}, not a two-step Pipeline"
    transformer, booster = model.steps[0][1], model.steps[1][1]
    if not isinstance(booster, HistGradientBoostingClassifier):
        return f"its model is a {type(booster).__name__}, not a HistGradientBoostingClassifier"
    if len(booster.classes_) != 2 or booster.n_trees_per_iteration_ != 1:
        return "it is not a binary classifier"
    columns = _columns(transformer, spec)
    if isinstance(columns, str):
        return columns
    if getattr(booster, "_preprocessor", None) is not None:
        columns = _through_booster_encoder(columns, booster._preprocessor)
        if isinstance(columns, str):
            return columns
    if len(columns) != booster.n_features_in_:
        return f"its transformer makes {len(columns)} columns, the booster takes {booster.n_features_in_}"
    return columns, booster


def probe_rows(rows: Rows, spec: DatasetSpec) -> list[dict[str, Any]]:
    """``rows`` and copies that exercise the rare branches: missing values and unseen categories.

    In the copies, each feature in turn is missing (None, or NaN for a categorical) in every other
    row, and each categorical holds a category no model saw in every third.
    """
    probes = [dict(row) for row in rows]
    features = list(spec.features)
    for k, row in enumerate(rows):
        missing = dict(row)
        for j, feature in enumerate(features):
            if (k + j) % 2 == 0:  # None; a categorical's is NaN in every fourth copy
                nan = feature in spec.categorical and k % 4 == 0
                missing[feature] = math.nan if nan else None
        probes.append(missing)
        if k % 3 == 0 and spec.categorical:
            probes.append({**row, **dict.fromkeys(spec.categorical, "\x00unseen")})
    return probes


def compile_model(
    model: Any,
    spec: DatasetSpec,
    rows: Rows,
    reference: Callable[[Rows], Scores],
) -> tuple[CompiledModel | None, str]:
    """The compiled model, checked against ``reference`` (the pipeline's scores) on ``rows``.

    Returns ``(compiled, "compiled")`` when every probability agrees within ``TOLERANCE`` and
    every label (at 0.5) is the same; otherwise ``(None, why)``.
    """
    if not rows:
        return None, "no rows to check a compiled model against"
    found = _unfit_reason(model, spec)
    if isinstance(found, str):
        return None, found
    columns, booster = found
    try:
        compiled = CompiledModel(columns, booster)
        probes = probe_rows(rows, spec)
        theirs = np.asarray(reference(probes), dtype=np.float64)
        encoded = compiled.encode(probes)
        by_tree = compiled.raw_by_tree(encoded)
        walked = np.concatenate(
            [
                compiled.raw_walk(encoded[i : i + WALK_ROWS])
                for i in range(0, len(probes), WALK_ROWS)
            ]
        )
        from scipy.special import expit

        ours = np.concatenate([expit(by_tree), expit(walked)])
        theirs = np.concatenate([theirs, theirs])
    except Exception as exc:  # noqa: BLE001 -- any failure means: serve the plain pipeline
        return None, f"compiling failed: {type(exc).__name__}: {exc}"
    gap = float(np.max(np.abs(ours - theirs)))
    if not gap <= TOLERANCE:
        return None, f"its probabilities differ from the pipeline's by up to {gap:.2g}"
    if np.any((ours >= 0.5) != (theirs >= 0.5)):
        return None, "its labels differ from the pipeline's"
    return compiled, "compiled"


def model_frame(rows: Rows, spec: DatasetSpec) -> Any:
    """``rows`` as the pandas frame the models were trained on (the spec's columns and types)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(spec.features))
    for feature in spec.numeric:
        frame[feature] = frame[feature].astype("float64")
    for feature in spec.categorical:
        frame[feature] = frame[feature].astype("object")
    return frame


@dataclass(frozen=True)
class Scorer:
    """How a loaded model scores records: ``path`` is "compiled" or "pipeline", ``reason`` why."""

    score: Callable[[Rows], Scores]
    path: str
    reason: str


def pipeline_scores(model: Any, spec: DatasetSpec) -> Callable[[Rows], Scores]:
    """The plain path: a pandas frame of the records through the model's ``predict_proba``."""

    def score(rows: Rows) -> Scores:
        probabilities = np.asarray(model.predict_proba(model_frame(rows, spec)), dtype=np.float64)
        return np.asarray(probabilities[:, 1])

    return score


def scorer(model: Any, spec: DatasetSpec, rows: Rows) -> Scorer:
    """The compiled path when ``model`` compiles and matches itself on ``rows``; else the plain one."""
    plain = pipeline_scores(model, spec)
    compiled, reason = compile_model(model, spec, rows, plain)
    if compiled is None:
        return Scorer(plain, "pipeline", reason)
    return Scorer(compiled.scores, "compiled", reason)
