from pathlib import Path

import pytest

from mlops_core.errors import BadNameError, SpecError
from mlops_core.spec import DatasetSpec, FeatureType, check_dataset_name

GOOD = """\
name: credit
target: default
id: application_id
timestamp: applied_at
features:
  income: numeric
  purpose: categorical
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_design_example_loads(tmp_path: Path) -> None:
    spec = DatasetSpec.from_yaml(write(tmp_path, GOOD))
    assert spec.name == "credit"
    assert spec.target == "default"
    assert spec.features == {"income": FeatureType.numeric, "purpose": FeatureType.categorical}
    assert spec.numeric == ["income"] and spec.categorical == ["purpose"]
    assert spec.required_columns == ["income", "purpose", "application_id", "applied_at"]


def test_round_trips_through_yaml(tmp_path: Path) -> None:
    spec = DatasetSpec.from_yaml(write(tmp_path, GOOD))
    assert DatasetSpec.from_yaml(write(tmp_path, spec.to_yaml())) == spec


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = DatasetSpec.from_yaml(write(tmp_path, GOOD))
    with pytest.raises(Exception, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (
            GOOD.replace("income: numeric", "income: nummeric"),
            "features.income",
            "unknown feature type 'nummeric'",
        ),
        (GOOD + "  default: numeric\n", "target", "also listed under features"),
        (GOOD.replace("purpose: categorical", "income: categorical"), "income", "duplicate key"),
        ("name: credit\ntarget: default\nfeatures: {}\n", "features", "at least one feature"),
        ("name: credit\ntarget: default\n", "features", "required field is missing"),
        (GOOD.replace("name: credit", "name: ../etc"), "name", "letters, digits"),
        (GOOD + "labels: y\n", "labels", "unknown field"),
        (GOOD.replace("id: application_id", "id: applied_at"), "applied_at", "more than one role"),
    ],
)
def test_invalid_spec_names_the_field(tmp_path: Path, text: str, field: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        DatasetSpec.from_yaml(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message
    assert problem in message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        DatasetSpec.from_yaml(tmp_path / "absent.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        DatasetSpec.from_yaml(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(SpecError, match="expected a mapping"):
        DatasetSpec.from_yaml(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize("name", ["credit", "fraud_v2", "A-1"])
def test_safe_dataset_names_pass(name: str) -> None:
    assert check_dataset_name(name) == name


@pytest.mark.parametrize("name", ["../credit", "a/b", "..", ".hidden", "", "with space", "x" * 65])
def test_unsafe_dataset_names_are_refused(name: str) -> None:
    with pytest.raises(BadNameError, match="not allowed"):
        check_dataset_name(name)
