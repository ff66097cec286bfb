"""Great Expectations validation: a suite learned from spec + reference, and a typed report per batch.

This module computes: the suite's expectations from the spec and a profile of the reference, and
the typed verdict from GX's results. Where the suites are stored and validations run (the GX
project, Data Docs) is ``mlops_core.adapters.gx_project``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mlops_core.data import event_times
from mlops_core.errors import SpecError
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec

if TYPE_CHECKING:  # GX takes about 2 s to import: only commands that validate pay for it.
    import great_expectations as gx

_NUMERIC_DTYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "Int8", "Int16", "Int32", "Int64", "Float32", "Float64",
]  # fmt: skip

TIMESTAMP_KIND = "implausible timestamp"
"""The kind of the timestamp range expectation, which validation completes with ingestion time."""
_MAX_FROM_INGESTION = "max_value_from"


class ExpectationFailure(BaseModel):
    """One failed expectation: which column, what kind of problem, what was seen and expected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str | None
    kind: str
    expectation: str
    observed: str
    expected: str
    hint: str | None = None  # what to do, where the kind alone does not say it

    def describe(self) -> str:
        """One phrase for a person: where, what kind of problem, what was seen and what was expected."""
        where = f"column {self.column!r}" if self.column else "table"
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}: {self.kind}: {self.observed} (expected {self.expected}){hint}"


class ValidationReport(BaseModel):
    """The verdict on one batch: usable or not, passed or not, and every failure with evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    source: str
    usable: bool
    success: bool
    rows: int = 0
    evaluated: int = 0
    failures: tuple[ExpectationFailure, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None
    data_docs: str | None = None
    docs_pending: tuple[str, ...] | None = Field(default=None, exclude=True)
    """With Data Docs deferred: the stored result's key, for ``build_data_docs`` to render later."""

    @property
    def exit_code(self) -> int:
        """0 passed, 1 failed expectations, 2 unusable input."""
        if not self.usable:
            return 2
        return 0 if self.success else 1

    @property
    def verdict(self) -> str:
        """The verdict in one word: ``passed``, ``failed`` or ``unusable``."""
        if not self.usable:
            return "unusable"
        return "passed" if self.success else "failed"

    def reasons(self) -> list[str]:
        """One phrase per problem, most important first."""
        if self.error:
            return [self.error]
        return [failure.describe() for failure in self.failures]

    def summary(self) -> str:
        """One line: the file, the verdict and the first reasons."""
        head = f"{self.source}: {self.verdict}"
        if self.usable:
            head += f" ({self.rows:,} rows, {self.evaluated} expectations"
            head += f", {len(self.failures)} failed)" if self.failures else ")"
        reasons = self.reasons()
        if reasons:
            more = f" (+{len(reasons) - 2} more)" if len(reasons) > 2 else ""
            head += ": " + "; ".join(reasons[:2]) + more
        return head

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values, with its verdict."""
        data = self.model_dump(mode="json")
        data["verdict"] = self.verdict
        return data


# --------------------------------------------------------------------------- suite building


def build_suite(
    spec: DatasetSpec, reference: pl.DataFrame, settings: Settings
) -> gx.ExpectationSuite:
    """An expectation suite for ``spec``, with bounds, null tolerances and categories from ``reference``."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    check_reference(spec, reference, source="reference")
    expectations: list[Any] = []

    def add(expectation: Any, kind: str, **meta: Any) -> None:
        expectation.meta = {"kind": kind, **meta}
        expectations.append(expectation)

    add(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=settings.min_batch_rows, max_value=settings.max_batch_rows
        ),
        "row count",
    )
    for column in spec.required_columns:
        add(gxe.ExpectColumnToExist(column=column), "missing column")
    for column in spec.features:
        null_fraction = reference[column].null_count() / max(reference.height, 1)
        allowed = min(1.0, null_fraction * settings.null_factor + settings.null_margin)
        add(gxe.ExpectColumnValuesToNotBeNull(column=column, mostly=round(1 - allowed, 6)), "nulls")
    for column in spec.numeric:
        add(
            gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=_NUMERIC_DTYPES),
            "wrong type",
        )
        low, high = _numeric_bounds(reference[column], settings)
        add(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=low, max_value=high, mostly=1 - settings.bounds_tolerance
            ),
            "out of bounds",
        )
    for column in spec.categorical:
        categories = _categories(reference[column])
        add(
            gxe.ExpectColumnValuesToBeInSet(
                column=column, value_set=categories, mostly=1 - settings.category_tolerance
            ),
            "unseen category",
        )
    if spec.target is not None:
        # Batches may arrive without labels: a missing label column is filled with nulls before
        # validation, and nulls pass this expectation, so only wrong label values fail it.
        add(
            gxe.ExpectColumnValuesToBeInSet(
                column=spec.target, value_set=_categories(reference[spec.target])
            ),
            "unseen label",
        )
    if spec.id is not None:
        add(gxe.ExpectColumnValuesToNotBeNull(column=spec.id), "missing ids")
        add(gxe.ExpectColumnValuesToBeUnique(column=spec.id), "duplicate ids")
    if spec.timestamp is not None:
        add(
            gxe.ExpectColumnValuesToNotBeNull(column=spec.timestamp, mostly=0.99),
            "missing timestamps",
        )
        earliest = _earliest_plausible(spec, reference, settings)
        if earliest is not None:
            # No `mostly`, unlike the numeric bounds (MLOPS_BOUNDS_TOLERANCE): those are learnt
            # from quantiles and a rare tail is expected; an event after its batch landed is
            # impossible, and a single one becomes the newest event time, the data clock of the
            # retrain cooldown. The upper bound moves with ingestion time, so the stored suite
            # holds the lower one and validation adds the upper (``bind_ingestion_time``).
            add(
                gxe.ExpectColumnValuesToBeBetween(column=spec.timestamp, min_value=earliest),
                TIMESTAMP_KIND,
                **{
                    _MAX_FROM_INGESTION: "ingestion time + MLOPS_TIMESTAMP_FUTURE_TOLERANCE_HOURS",
                    "min_value_from": f"the reference's earliest - {settings.timestamp_past_days} "
                    "days (MLOPS_TIMESTAMP_PAST_DAYS)",
                },
            )
    return gx.ExpectationSuite(
        name=spec.name,
        expectations=expectations,
        meta={
            "mlops": {"built_from": "spec + reference profile", "reference_rows": reference.height}
        },
    )


def check_reference(spec: DatasetSpec, reference: pl.DataFrame, *, source: str) -> None:
    """Raise ``SpecError`` when a reference table cannot serve as the dataset's reference."""
    needed = spec.known_columns
    missing = [c for c in needed if c not in reference.columns]
    if missing:
        raise SpecError(
            f"{source}: lacks column(s) {', '.join(missing)} named in spec {spec.name!r}",
            hint="the reference must carry every feature, the id, the timestamp and the label",
        )
    if reference.height == 0:
        raise SpecError(f"{source}: has no rows")
    for column in spec.numeric:
        if not reference[column].dtype.is_numeric():
            raise SpecError(
                f"{source}: feature {column!r} is declared numeric but holds {reference[column].dtype}",
                hint="fix the column or declare it categorical in the spec",
            )
        if reference[column].null_count() == reference.height:
            raise SpecError(f"{source}: feature {column!r} is entirely null")


def _earliest_plausible(
    spec: DatasetSpec, reference: pl.DataFrame, settings: Settings
) -> datetime | None:
    """The oldest event time a batch may hold: the reference's earliest minus
    ``timestamp_past_days``; None when the reference's timestamps are not date-times. A
    reference with event times after now (plus the tolerance) is refused: a model trained on it
    would carry a data clock in the future."""
    times = event_times(reference, spec)
    earliest, newest = (times.min(), times.max()) if times is not None else (None, None)
    if not isinstance(earliest, datetime) or not isinstance(newest, datetime):
        return None
    limit = datetime.now(UTC) + timedelta(hours=settings.timestamp_future_tolerance_hours)
    if newest > limit:
        late = int((times > limit).sum()) if times is not None else 0
        raise SpecError(
            f"reference: column {spec.timestamp!r} holds {late:,} event time(s) after now "
            f"(up to {_when(newest)}, allowed until {_when(limit)})",
            hint="fix those timestamps (a default date, a time zone, seconds read as "
            "milliseconds) and add the reference again",
        )
    try:
        return earliest - timedelta(days=settings.timestamp_past_days)
    except OverflowError:  # a reference from the first years of the calendar
        return datetime.min.replace(tzinfo=UTC)


def bind_ingestion_time(
    suite: dict[str, Any], ingested_at: datetime, settings: Settings
) -> dict[str, Any]:
    """The suite (GX JSON) with its timestamp range closed at ``ingested_at`` plus
    ``timestamp_future_tolerance_hours``: no event happens after its batch landed."""
    if ingested_at.tzinfo is None:
        ingested_at = ingested_at.replace(tzinfo=UTC)
    latest = ingested_at + timedelta(hours=settings.timestamp_future_tolerance_hours)
    expectations = []
    for expectation in suite.get("expectations", []):
        meta = expectation.get("meta") or {}
        if meta.get("kind") == TIMESTAMP_KIND and _MAX_FROM_INGESTION in meta:
            expectation = {
                **expectation,
                "kwargs": {**expectation["kwargs"], "max_value": latest.isoformat()},
                "meta": {
                    **meta,
                    "ingested_at": ingested_at.isoformat(timespec="seconds"),
                    "future_tolerance_hours": settings.timestamp_future_tolerance_hours,
                },
            }
        expectations.append(expectation)
    return {**suite, "expectations": expectations}


def _when(moment: Any) -> str:
    """A moment as a person reads it: ``2026-01-05 10:00 UTC``."""
    try:  # a hand-edited suite may hold any text
        when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    except ValueError:
        return str(moment)
    if not isinstance(when, datetime):
        return str(moment)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M") + " UTC"


def _numeric_bounds(values: pl.Series, settings: Settings) -> tuple[float, float]:
    finite = (
        values.cast(pl.Float64)
        .drop_nulls()
        .filter(values.cast(pl.Float64).drop_nulls().is_finite())
    )
    q = settings.bounds_quantile
    low = float(finite.quantile(q, interpolation="linear") or 0.0)
    high = float(finite.quantile(1 - q, interpolation="linear") or 0.0)
    span = high - low
    if span <= 0:  # a constant column: allow a small relative band instead of nothing
        span = max(abs(high), 1.0) * 0.1
    margin = span * settings.bounds_margin
    lower = low - margin
    # A non-negative quantity (an age, an amount) stays non-negative.
    if low >= 0 and float(finite.min() or 0.0) >= 0:  # type: ignore[arg-type]
        lower = max(lower, 0.0)
    return _round_sig(lower), _round_sig(high + margin)


def _round_sig(value: float, digits: int = 6) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def _categories(values: pl.Series) -> list[str]:
    return sorted(str(v) for v in values.cast(pl.String).drop_nulls().unique().to_list())


# --------------------------------------------------------------------------- GX results


def gx_frame(frame: pl.DataFrame, spec: DatasetSpec) -> Any:
    """The batch as pandas for GX: categoricals as pandas categories, a missing label as nulls,
    event times as UTC date-times (text parsed, naive taken as UTC; an unreadable one null)."""
    casts: list[Any] = [
        pl.col(c).cast(pl.String).cast(pl.Categorical)
        for c in spec.categorical
        if c in frame.columns
    ]
    times = event_times(frame, spec)
    if times is not None:  # compared with the suite's bounds as instants, not as text
        casts.append(times.alias(str(spec.timestamp)))
    if spec.target is not None:
        if spec.target in frame.columns:
            casts.append(pl.col(spec.target).cast(pl.String).cast(pl.Categorical))
        else:
            casts.append(pl.lit(None, dtype=pl.Categorical).alias(spec.target))
    table = frame.with_columns(casts).to_pandas()
    # One consolidated block per dtype: GX copies the frame per metric, and a frame of many
    # blocks is re-consolidated on each copy (several times slower on 1M rows).
    table._consolidate_inplace()
    return table


def failures_of(results: Sequence[Any], *, dtypes: dict[str, str]) -> list[ExpectationFailure]:
    """Failed expectations as typed failures; a missing or mistyped column is reported once."""
    mistyped = {
        item.expectation_config.kwargs.get("column")
        for item in results
        if not item.success
        and item.expectation_config.type == "expect_column_values_to_be_in_type_list"
    }
    missing = {
        item.expectation_config.kwargs.get("column")
        for item in results
        if not item.success and item.expectation_config.type == "expect_column_to_exist"
    }
    mistyped -= missing
    failures: list[ExpectationFailure] = []
    for item in results:
        config = item.expectation_config
        column = config.kwargs.get("column")
        if item.success:
            continue
        if column in missing and config.type != "expect_column_to_exist":
            continue
        if column in mistyped and config.type != "expect_column_values_to_be_in_type_list":
            continue
        kind = (config.meta or {}).get("kind") or config.type.removeprefix("expect_")
        hint = None
        if kind == TIMESTAMP_KIND:
            observed, expected, hint = _timestamp_evidence(
                config.kwargs, config.meta or {}, item.result or {}, item
            )
        else:
            observed, expected = _evidence(config.type, config.kwargs, item.result or {}, item)
        if config.type == "expect_column_values_to_be_in_type_list":
            observed = f"type {dtypes.get(column, '?')}"
        failures.append(
            ExpectationFailure(
                column=column,
                kind=kind,
                expectation=config.type,
                observed=observed,
                expected=expected,
                hint=hint,
            )
        )
    order = {"row count": 0, "missing column": 1, "wrong type": 2}
    return sorted(failures, key=lambda f: order.get(f.kind, 3))


def _evidence(
    kind: str, kwargs: dict[str, Any], result: dict[str, Any], item: Any
) -> tuple[str, str]:
    mostly = kwargs.get("mostly")
    share = f" for at least {100 * mostly:g}% of rows" if mostly not in (None, 1, 1.0) else ""
    pct = result.get("unexpected_percent")
    examples = _examples(result.get("partial_unexpected_list") or [])
    if item.exception_info.get("raised_exception"):
        message = str(item.exception_info.get("exception_message", "")).splitlines()[0:1]
        return f"could not be evaluated: {' '.join(message)}", "an evaluable column"
    if kind == "expect_column_to_exist":
        return "column absent", "column present"
    if kind == "expect_table_row_count_to_be_between":
        return (
            f"{result.get('observed_value')} rows",
            f"{kwargs['min_value']:,} to {kwargs['max_value']:,} rows",
        )
    if kind == "expect_column_values_to_be_in_type_list":
        return f"type {result.get('observed_value')}", "a numeric type"
    if kind == "expect_column_values_to_not_be_null":
        allowed = 100 * (1 - (mostly if mostly is not None else 1.0))
        return f"{pct:.1f}% null" if pct is not None else "nulls", f"at most {allowed:.1f}% null"
    if kind == "expect_column_values_to_be_between":
        return (
            f"{pct:.2f}% of values outside, e.g. {examples}",
            f"values in [{kwargs['min_value']}, {kwargs['max_value']}]{share}",
        )
    if kind == "expect_column_values_to_be_in_set":
        allowed = kwargs.get("value_set") or []
        shown = ", ".join(map(str, allowed[:8])) + (", ..." if len(allowed) > 8 else "")
        return f"{pct:.2f}% of values unseen, e.g. {examples}", f"one of {shown}{share}"
    if kind == "expect_column_values_to_be_unique":
        return (
            f"{result.get('unexpected_count', '?')} repeated values, e.g. {examples}",
            "unique values",
        )
    return f"{result}", f"{kwargs}"


def _timestamp_evidence(
    kwargs: dict[str, Any], meta: dict[str, Any], result: dict[str, Any], item: Any
) -> tuple[str, str, str]:
    """What was seen, the plausible range and where its ends come from, and what to do."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    origin = [str(meta["min_value_from"])] if "min_value_from" in meta else []
    if "ingested_at" in meta:
        origin.append(
            f"ingested {_when(meta['ingested_at'])} + {meta['future_tolerance_hours']:g} h "
            "(MLOPS_TIMESTAMP_FUTURE_TOLERANCE_HOURS)"
        )
    ends = f" ({'; '.join(origin)})" if origin else ""
    allowed = f"event times from {_when(low) if low else 'any time'} to "
    allowed += f"{_when(high) if high else 'any time'}{ends}"
    hint = (
        "fix the event times at the source (a default date such as 1900 or 1970, a time zone, "
        "seconds read as milliseconds, a mistyped year) and submit the batch again; the batch "
        "is not used until then"
    )
    if item.exception_info.get("raised_exception"):
        return "the event times could not be read as date-times", allowed, hint
    count = result.get("unexpected_count")
    seen = list(dict.fromkeys(map(_when, result.get("partial_unexpected_list") or [])))
    shown = ", ".join(seen[:3]) or "none shown"
    many = f"{count:,}" if isinstance(count, int) else "some"
    return f"{many} event time(s) outside the plausible range, e.g. {shown}", allowed, hint


def _examples(values: list[Any], limit: int = 3) -> str:
    distinct: list[str] = []
    for value in values:
        text = (
            repr(value)
            if isinstance(value, str)
            else f"{value:g}"
            if isinstance(value, float)
            else str(value)
        )
        if text not in distinct:
            distinct.append(text)
        if len(distinct) == limit:
            break
    return ", ".join(distinct) if distinct else "none shown"
