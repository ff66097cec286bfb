from pathlib import Path

import polars as pl
import pytest

from mlops_core.data import FileFormat, read_table, scan_table, sha256_file, sniff_format
from mlops_core.errors import UnusableInputError


@pytest.fixture
def table() -> pl.DataFrame:
    return pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


def test_parquet_and_csv_are_recognised_and_scanned_lazily(
    tmp_path: Path, table: pl.DataFrame
) -> None:
    parquet, csv = tmp_path / "t.parquet", tmp_path / "t.txt"
    table.write_parquet(parquet)
    table.write_csv(csv)
    assert sniff_format(parquet) is FileFormat.parquet
    assert sniff_format(csv) is FileFormat.csv  # by content, not by the name's suffix
    assert isinstance(scan_table(parquet), pl.LazyFrame)
    assert read_table(csv).equals(table)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02garbage" * 10, "neither parquet nor CSV"),
        (b"PAR1" + b"\x00" * 50, "truncated or damaged parquet"),
        (b"\xff\xfe\xfa not utf8 at all" * 3, "not UTF-8"),
        (b"\n\n", "without a header"),
    ],
)
def test_unusable_bytes_are_named(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(UnusableInputError, match=problem) as caught:
        read_table(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnusableInputError, match="no such file"):
        sniff_format(tmp_path / "nope.csv")
    with pytest.raises(UnusableInputError, match="not a regular file|folder"):
        sniff_format(tmp_path)


def test_size_limit(tmp_path: Path, table: pl.DataFrame) -> None:
    path = tmp_path / "t.csv"
    table.write_csv(path)
    with pytest.raises(UnusableInputError, match="over the limit"):
        sniff_format(path, max_bytes=5)


def test_sha256_is_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


DATE_COLUMNS = {
    "date": ["2026-01-05", "2026-01-06", None],
    "date and time": ["2026-01-05 10:00:00", "2026-01-06 11:00:00", None],
    "ISO with fractions": ["2026-01-05T10:00:00.000000", "2026-01-06T11:00:00.123456", None],
    "an empty text among them": ["2026-01-05T10:00:00", "2026-01-06T11:00:00", ""],
    "offset": ["2026-01-05T10:00:00+02:00", "2026-01-06T11:00:00+02:00", None],
    "Z": ["2026-01-05T10:00:00Z", "2026-01-06T11:00:00Z", None],
    "slashes": ["2026/01/05", "2026/01/06", None],
    "day first": ["05/01/2026", "06/01/2026", None],
    "one not a date": ["2026-01-05", "not a date", None],
    "a date, then a date-time": ["2026-01-05", "2026-01-05T10:00:00", None],
    "no such day": ["2026-02-30", "2026-01-06", None],
    "an id that starts like a date": ["2026-01-05-A1", "2026-01-06-A2", None],
}


@pytest.mark.parametrize("values", DATE_COLUMNS.values(), ids=list(DATE_COLUMNS))
def test_a_csvs_dates_are_read_as_polars_try_parse_dates_reads_them(
    tmp_path: Path, values: list[str | None]
) -> None:
    path = tmp_path / "dates.csv"
    pl.DataFrame({"when": values, "n": [1, 2, 3], "word": ["a", "b", None]}).write_csv(path)
    expected = pl.read_csv(path, infer_schema_length=10_000, try_parse_dates=True)
    read = read_table(path)
    assert read.schema == expected.schema
    assert read.equals(expected)
