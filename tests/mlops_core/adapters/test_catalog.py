from pathlib import Path

import polars as pl
import pytest

from mlops_cli.scenarios import Stream
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.errors import BadNameError, SpecError, UnknownDatasetError
from mlops_core.settings import Settings


def test_add_stores_spec_reference_and_suite(settings: Settings, stream: Stream) -> None:
    registered = DatasetCatalog(settings).add(stream.spec, stream.reference_path)
    assert registered.spec_path.is_file() and registered.reference_path.is_file()
    assert registered.suite_path.is_file()
    assert registered.reference().height == 3_000
    assert DatasetCatalog(settings).names() == ["credit"]
    assert DatasetCatalog(settings).get("credit").spec == stream.spec


def test_unknown_dataset_lists_known_ones(settings: Settings, stream: Stream) -> None:
    DatasetCatalog(settings).add(stream.spec, stream.reference_path)
    with pytest.raises(
        UnknownDatasetError, match=r"'fraud' is not registered \(registered: credit\)"
    ):
        DatasetCatalog(settings).get("fraud")
    with pytest.raises(BadNameError):
        DatasetCatalog(settings).get("../credit")


def test_reference_missing_a_spec_column_is_refused(
    settings: Settings, stream: Stream, tmp_path: Path
) -> None:
    broken = tmp_path / "ref.parquet"
    pl.read_parquet(stream.reference_path).drop("income").write_parquet(broken)
    with pytest.raises(SpecError, match="lacks column.*income"):
        DatasetCatalog(settings).add(stream.spec, broken)
    assert DatasetCatalog(settings).names() == []


def test_reference_with_text_in_a_numeric_feature_is_refused(
    settings: Settings, stream: Stream, tmp_path: Path
) -> None:
    broken = tmp_path / "ref.parquet"
    pl.read_parquet(stream.reference_path).with_columns(
        pl.col("age").cast(pl.String)
    ).write_parquet(broken)
    with pytest.raises(SpecError, match="'age' is declared numeric"):
        DatasetCatalog(settings).add(stream.spec, broken)


def test_unreadable_reference_is_refused(
    settings: Settings, stream: Stream, tmp_path: Path
) -> None:
    empty = tmp_path / "ref.csv"
    empty.write_bytes(b"")
    with pytest.raises(SpecError, match="reference .*empty"):
        DatasetCatalog(settings).add(stream.spec, empty)


def test_resolve_by_spec_registers_once(settings: Settings, stream: Stream, tmp_path: Path) -> None:
    spec_file = tmp_path / "credit.yaml"
    spec_file.write_text(stream.spec.to_yaml())
    catalog = DatasetCatalog(settings)
    with pytest.raises(SpecError, match="--reference FILE is needed"):
        catalog.resolve(None, spec_file, None)
    assert catalog.resolve(None, spec_file, stream.reference_path).name == "credit"
    assert catalog.resolve(None, spec_file, None).name == "credit"
    assert catalog.resolve("credit", None, None).name == "credit"
    with pytest.raises(SpecError, match="exactly one"):
        catalog.resolve("credit", spec_file, None)
    spec_file.write_text(stream.spec.to_yaml().replace("channel: categorical", "channel: numeric"))
    with pytest.raises(SpecError, match="differs from the registered"):
        catalog.resolve(None, spec_file, None)
