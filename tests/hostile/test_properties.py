"""Properties over generated input: the spec parser, the router and the policy never misbehave.

Hypothesis' ``settings`` is imported as ``hsettings``: the conftest has a fixture named ``settings``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mlops_core.errors import BadNameError, MlopsError, SpecError
from mlops_core.policy import Action, Evidence, PolicyConfig, decide
from mlops_core.routing import CHALLENGER, CHAMPION, Mode, Split, bucket, route
from mlops_core.spec import NAME_PATTERN, DatasetSpec, FeatureType, check_dataset_name

FAST = hsettings(max_examples=200, deadline=None)
FILES = hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ----------------------------------------------------------------------------- the spec parser

ROLES = ("name", "target", "id", "timestamp", "features")
FEATURE_TYPES = [t.value for t in FeatureType]

# Everything YAML or JSON can hand the parser, including what a typo or a hostile file brings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["../etc", "a/b", "..", "/abs", "x\x00y", "é🙂", "x" * 70, " ", "", *ROLES]),
    st.sampled_from(FEATURE_TYPES + ["Numeric", "integer", "categorical "]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)
feature_maps = st.dictionaries(
    st.one_of(st.text(max_size=12), st.integers(), st.none(), st.booleans()),
    st.one_of(st.sampled_from(FEATURE_TYPES), values),
    max_size=5,
)
column_names = st.one_of(st.none(), st.text(max_size=12), values)
# A mapping that is sometimes right, often nearly right: role keys present or absent, extra keys.
spec_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.from_regex(NAME_PATTERN, fullmatch=True), values),
        "target": column_names,
        "id": column_names,
        "timestamp": column_names,
        "features": st.one_of(feature_maps, values),
    },
).flatmap(
    lambda known: st.dictionaries(
        st.one_of(st.text(max_size=10), st.integers()), values, max_size=2
    ).map(lambda extra: {**extra, **known})
)
anything = st.one_of(spec_like, values)


def _parses_or_refuses(call: Any) -> DatasetSpec | None:
    """The spec ``call`` returns, or None after a ``SpecError`` that says something."""
    try:
        spec = call()
    except SpecError as exc:
        assert str(exc).strip(), "a SpecError must carry a message"
        assert len(str(exc)) < 4_000, "the message quotes, it does not dump the input"
        assert "Traceback" not in str(exc) and "pydantic" not in str(exc).lower()
        return None
    # Whatever passed is a spec the rest of the product can rely on.
    assert isinstance(spec, DatasetSpec)
    assert NAME_PATTERN.fullmatch(spec.name)
    assert spec.features and all(isinstance(t, FeatureType) for t in spec.features.values())
    roles = [r for r in (spec.target, spec.id, spec.timestamp) if r is not None]
    assert len(roles) == len(set(roles)) and not set(roles) & set(spec.features)
    return spec


@FAST
@given(raw=anything)
def test_a_mapping_parses_to_a_valid_spec_or_a_spec_error(raw: Any) -> None:
    _parses_or_refuses(lambda: DatasetSpec.from_mapping(raw, source="generated"))


yaml_text = st.one_of(
    # Well-formed YAML of generated mappings (dumped by PyYAML, so every value survives).
    anything.map(lambda raw: yaml.safe_dump(raw, allow_unicode=True)),
    # Raw text: broken YAML, tags, anchors, control characters, deep nesting.
    st.text(max_size=200),
    st.sampled_from(
        [
            "? [a, b]\n: x\n",
            "{a: 1}: x\n",
            "name: c\nfeatures: {[1]: numeric}\n",
            "[" * 3_000,
            "{" * 3_000,
            "name: c\nfeatures: !!python/object:os.system {}\n",
            "name: !!binary aGVsbG8=\nfeatures: {a: numeric}\n",
            "a: &a [1, 2]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\n"
            "name: c\nfeatures: {x: *c}\n",
            "name: c\nname: d\nfeatures: {a: numeric}\n",
            "name: 2024-01-01\nfeatures: {a: numeric}\n",
            "name: c\nfeatures: {a: numeric}\ntarget: 1e400\n",
            "\ufeffname: c\nfeatures: {a: numeric}\n",
            "name: c\x00\nfeatures: {a: numeric}\n",
            "--- !!set {a, b}\n",
            "",
            "~\n",
        ]
    ),
)


@FILES
@given(text=yaml_text)
def test_a_yaml_file_parses_to_a_valid_spec_or_a_spec_error_naming_it(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    if _parses_or_refuses(lambda: DatasetSpec.from_yaml(path)) is None:
        with pytest.raises(SpecError) as caught:
            DatasetSpec.from_yaml(path)
        assert str(path) in str(caught.value), "the message names the file at fault"


@FILES
@given(data=st.binary(max_size=200))
def test_undecodable_bytes_are_a_spec_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    _parses_or_refuses(lambda: DatasetSpec.from_yaml(path))


column = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20).filter(
    lambda c: c.strip() != ""
)


@st.composite
def valid_specs(draw: st.DrawFn) -> DatasetSpec:
    features = draw(
        st.dictionaries(column, st.sampled_from(list(FeatureType)), min_size=1, max_size=6)
    )
    spare = st.one_of(st.none(), column.filter(lambda c: c not in features))
    target, id_, timestamp = draw(spare), draw(spare), draw(spare)
    roles = [r for r in (target, id_, timestamp) if r is not None]
    assume(len(roles) == len(set(roles)))
    return DatasetSpec(
        name=draw(st.from_regex(NAME_PATTERN, fullmatch=True)),
        target=target,
        id=id_,
        timestamp=timestamp,
        features=features,
    )


@FILES
@given(spec=valid_specs())
def test_valid_specs_round_trip_through_yaml(tmp_path: Path, spec: DatasetSpec) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml(), encoding="utf-8")
    again = DatasetSpec.from_yaml(path)
    assert again == spec
    assert list(again.features) == list(spec.features), "feature order is kept"
    assert DatasetSpec.from_mapping(yaml.safe_load(spec.to_yaml())) == spec


@FAST
@given(name=st.one_of(st.text(max_size=80), values))
def test_a_dataset_name_is_safe_or_refused(name: Any) -> None:
    try:
        checked = check_dataset_name(name)
    except BadNameError as exc:
        assert "not allowed" in str(exc)
        return
    # Accepted names cannot leave their folder or hide: one plain path part.
    assert checked == name and isinstance(name, str)
    assert Path(name).name == name and not Path(name).is_absolute()
    assert name not in (".", "..") and not name.startswith((".", "-", "_"))
    assert "\x00" not in name and "/" not in name and "\\" not in name and len(name) <= 64


# ----------------------------------------------------------------------------- routing

weights = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# Any unicode, lone surrogates included: JSON can carry "\ud800" in a routing key.
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
keys = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.tuples(st.text(max_size=10), st.text(surrogates, min_size=1, max_size=3)).map("".join),
)


@FAST
@given(key=keys, weight=weights, mode=st.sampled_from(list(Mode)), shadow=st.booleans())
def test_routing_is_sticky_and_pure(key: str, weight: float, mode: Mode, shadow: bool) -> None:
    split = Split(mode=mode, weight=weight, shadow=shadow)
    first = route(key, split)
    assert first in (CHAMPION, CHALLENGER)
    assert all(
        route(key, Split(mode=mode, weight=weight, shadow=shadow)) == first for _ in range(3)
    )
    assert 0.0 <= bucket(key) < 1.0


@FAST
@given(key=keys, low=weights, high=weights)
def test_raising_the_weight_never_moves_a_key_back_to_the_champion(
    key: str, low: float, high: float
) -> None:
    low, high = sorted((low, high))
    if route(key, Split(Mode.canary, low)) == CHALLENGER:
        assert route(key, Split(Mode.canary, high)) == CHALLENGER


@FAST
@given(key=keys, weight=weights, shadow=st.booleans())
def test_without_a_challenger_or_at_weight_zero_the_champion_answers(
    key: str, weight: float, shadow: bool
) -> None:
    assert route(key, Split(Mode.canary, weight, shadow), has_challenger=False) == CHAMPION
    assert route(key, Split(Mode.canary, 0.0, shadow)) == CHAMPION
    assert route(key, Split(Mode.canary, 1.0, shadow)) == CHALLENGER


@FAST
@given(key=keys)
def test_shadow_mode_never_answers_with_the_challenger(key: str) -> None:
    # Shadow: the challenger computes beside the champion, at weight 0; the champion answers.
    assert route(key, Split(Mode.shadow, 0.0, shadow=True)) == CHAMPION


@hsettings(max_examples=25, deadline=None)
@given(weight=weights, salt=st.text(max_size=8))
def test_the_challenger_gets_its_weight_of_traffic(weight: float, salt: str) -> None:
    n = 4_000
    split = Split(Mode.canary, weight)
    share = sum(route(f"{salt}user-{i}", split) == CHALLENGER for i in range(n))
    # Five standard deviations of a binomial, plus one key for the rounding at the edges.
    tolerance = 5 * math.sqrt(n * weight * (1 - weight)) + 1
    assert abs(share - n * weight) <= tolerance, (share, n * weight, tolerance)


@FAST
@given(weight=st.one_of(st.floats(allow_nan=True), st.just(-0.1), st.just(1.0000001)))
def test_a_weight_outside_zero_to_one_is_refused(weight: float) -> None:
    if 0.0 <= weight <= 1.0:
        assert Split(Mode.canary, weight).weight == weight
    else:
        with pytest.raises(ValueError, match="between 0 and 1"):
            Split(Mode.canary, weight)


# ----------------------------------------------------------------------------- the policy

rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
maybe = st.one_of(st.none(), rates)
differences = st.one_of(st.none(), st.floats(min_value=-1.0, max_value=1.0, allow_nan=False))


@st.composite
def evidence(draw: st.DrawFn, validation_passed: bool | None = None) -> Evidence:
    passed = draw(st.booleans()) if validation_passed is None else validation_passed
    return Evidence(
        validation_passed=passed,
        drift=draw(st.one_of(st.none(), st.booleans())),
        drift_p_value=draw(maybe),
        drift_drivers=tuple(draw(st.lists(st.text(max_size=8), max_size=6))),
        reference_accuracy=draw(maybe),
        observed_accuracy=draw(maybe),
        observed_degraded=draw(st.one_of(st.none(), st.booleans())),
        estimated_accuracy=draw(maybe),
        estimated_ci_high=draw(maybe),
        champion_minus_previous=draw(differences),
        champion_minus_previous_ci_high=draw(differences),
        labelled_rows=draw(st.integers(min_value=0, max_value=10**9)),
        since_last_retrain=draw(
            st.one_of(
                st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))
            )
        ),
        median_training_seconds=draw(
            st.one_of(st.none(), st.floats(min_value=0, max_value=1e7, allow_nan=False))
        ),
        past_recoveries=tuple(draw(st.lists(st.floats(min_value=0, max_value=1), max_size=6))),
    )


configs = st.builds(
    PolicyConfig,
    retrain_accuracy_drop=st.floats(min_value=0.001, max_value=0.999),
    cooldown=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    min_labelled_rows=st.integers(min_value=0, max_value=10**6),
    compute_cost_per_hour=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)


@FAST
@given(seen=evidence(validation_passed=False), config=configs)
def test_a_batch_that_failed_validation_is_never_acted_on(
    seen: Evidence, config: PolicyConfig
) -> None:
    # Rule 1 of the policy: no retrain (a quarantined batch never trains) and no rollback either.
    decision = decide(seen, config)
    assert decision.action is Action.none
    assert decision.action not in (Action.retrain, Action.rollback)
    assert "failed validation" in decision.reasons[0]


@FAST
@given(seen=evidence(), config=configs)
def test_every_decision_is_explained_and_serialisable(seen: Evidence, config: PolicyConfig) -> None:
    decision = decide(seen, config)
    assert decision.reasons and all(r.strip() for r in decision.reasons)
    assert decision.to_dict()["action"] == decision.action.value
    if decision.action is Action.retrain:
        # Rule 3: never inside the cooldown, never short of labelled rows.
        assert seen.since_last_retrain is None or seen.since_last_retrain >= config.cooldown
        assert seen.labelled_rows >= config.min_labelled_rows
    if decision.action is Action.rollback:
        assert seen.champion_minus_previous_ci_high is not None
        assert seen.champion_minus_previous_ci_high < 0


def test_the_package_error_base_is_what_the_cli_catches() -> None:
    # The properties above accept SpecError / BadNameError only because the CLI turns every
    # MlopsError into one line and an exit code; keep that link explicit.
    assert issubclass(SpecError, MlopsError) and issubclass(BadNameError, MlopsError)
