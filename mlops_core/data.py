"""Reading batch files: format sniffing, lazy polars scans, content hashes."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from pathlib import Path

import polars as pl

from mlops_core.errors import UnusableInputError
from mlops_core.spec import DatasetSpec

_SNIFF_BYTES = 64 * 1024
_PARQUET_MAGIC = b"PAR1"
_DATE = re.compile(r"\d{4}[-/]\d{2}[-/]\d{2}|\d{2}[-/]\d{2}[-/]\d{4}")  # then a time, or not


class FileFormat(StrEnum):
    """The table formats a batch may come in."""

    parquet = "parquet"
    csv = "csv"


def sniff_format(path: Path, *, max_bytes: int | None = None) -> FileFormat:
    """Return the file's table format from its bytes, or raise ``UnusableInputError`` saying why."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise UnusableInputError(f"{path}: not a regular file")
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            if size >= 8:
                handle.seek(-4, 2)
                tail = handle.read(4)
            else:
                tail = b""
    except FileNotFoundError:
        raise UnusableInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnusableInputError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise UnusableInputError(f"{path}: permission denied") from None
    if size == 0:
        raise UnusableInputError(f"{path}: the file is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise UnusableInputError(
            f"{path}: {size:,} bytes is over the limit of {max_bytes:,}",
            hint="split the batch, or raise MLOPS_MAX_BATCH_BYTES",
        )
    if head.startswith(_PARQUET_MAGIC):
        if tail != _PARQUET_MAGIC:
            raise UnusableInputError(f"{path}: a truncated or damaged parquet file")
        return FileFormat.parquet
    if b"\x00" in head:
        raise UnusableInputError(f"{path}: binary content that is neither parquet nor CSV")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is fine; anything earlier is not text.
        if exc.start < len(head) - 4:
            raise UnusableInputError(
                f"{path}: not UTF-8 text at byte {exc.start}, so neither parquet nor CSV"
            ) from None
    first_line = head.split(b"\n", 1)[0].strip()
    if not first_line:
        raise UnusableInputError(f"{path}: CSV without a header line")
    return FileFormat.csv


def scan_table(path: Path, *, max_bytes: int | None = None) -> pl.LazyFrame:
    """A lazy polars scan of a parquet or CSV batch; its schema is checked but no rows are read."""
    fmt = sniff_format(path, max_bytes=max_bytes)
    try:
        if fmt is FileFormat.parquet:
            frame = pl.scan_parquet(path)
        else:
            frame = pl.scan_csv(path, infer_schema_length=10_000)  # dates: see read_table
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UnusableInputError(
            f"{path}: cannot be read as {fmt.value} ({_first_line(exc)})"
        ) from None
    if not schema:
        raise UnusableInputError(f"{path}: the table has no columns")
    return frame


def read_table(path: Path, *, max_bytes: int | None = None) -> pl.DataFrame:
    """Read a whole batch into memory, turning parser failures into ``UnusableInputError``; a
    CSV's text columns that hold dates or date-times throughout become ``Date``/``Datetime``."""
    frame = scan_table(path, max_bytes=max_bytes)
    try:
        table = frame.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UnusableInputError(f"{path}: cannot be read ({_first_line(exc)})") from None
    return parse_dates(table)


def parse_dates(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each text column whose every value is a date (or every one a date-time, in
    the format of the first) parsed: what polars' ``try_parse_dates`` does, without its cost of
    about 45 us a row, whatever the columns (0.9 s for a 20,000-row CSV, against 0.04 s to read
    it; polars 2.1). A column with one value that does not parse stays text."""
    parsed = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        column = frame[name]
        present = column.drop_nulls()
        if not present.len():
            continue
        first = str(present[0]).strip()
        match = _DATE.match(first)
        if match is None:
            continue
        try:
            if match.end() == len(first):
                values = column.str.strip_chars().str.to_date(strict=False)
            else:
                values = column.str.strip_chars().str.to_datetime(strict=False, time_unit="us")
        except pl.exceptions.PolarsError:
            continue
        if values.null_count() == column.null_count():
            parsed.append(values.alias(name))
    return frame.with_columns(parsed) if parsed else frame


def event_times(frame: pl.DataFrame, spec: DatasetSpec) -> pl.Series | None:
    """The rows' event times in UTC (naive ones taken as UTC), when the spec names a timestamp
    column and it holds date-times (text is parsed); None otherwise."""
    if spec.timestamp is None or spec.timestamp not in frame.columns:
        return None
    column = frame[spec.timestamp]
    try:
        if column.dtype == pl.String:
            column = column.str.to_datetime(strict=False)
        if not isinstance(column.dtype, pl.Datetime):
            return None
        if column.dtype.time_zone is None:
            column = column.dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC")
    except Exception:  # noqa: BLE001 -- unparseable timestamps: no event times
        return None


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
