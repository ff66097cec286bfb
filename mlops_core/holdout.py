"""Which labelled rows decide and which judge: one fixed split of every row, by a hash (pure).

The batch whose accuracy fell triggers a retrain; if the same rows then judged the challenger,
the champion would be measured on exactly the rows where it looked bad -- a winner's-curse bias
that favours any challenger. So every labelled row belongs, once and for all, to one part:

* ``decide`` rows feed the decisions (observed accuracy, the rollback rule) and training;
* ``gate`` rows (a ``gate_fraction`` share) are never decided on: the gates judge challengers on
  the newest labelled batch's gate rows, which the challenger does not train on (once a newer
  batch has arrived, older gate rows join the training window like any labelled row).

The part is a function of the row alone -- the BLAKE2b hash of its id (``spec.id``), or of its
values when the spec names no id -- so it is the same in every process, on every machine, for
every later look at the same row, and about ``gate_fraction`` of any batch falls in ``gate``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import polars as pl

from mlops_core.spec import DatasetSpec

_SEPARATOR = "\x1f"


def _keys(frame: pl.DataFrame, spec: DatasetSpec) -> list[str]:
    if spec.id and spec.id in frame.columns:
        return frame[spec.id].cast(pl.String).fill_null("").to_list()
    columns = [c for c in spec.features if c in frame.columns]
    if not columns:
        return [str(i) for i in range(frame.height)]
    joined = frame.select(
        pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("\x00") for c in columns], separator=_SEPARATOR
        )
    )
    return joined.to_series().to_list()


def position(frame: pl.DataFrame, spec: DatasetSpec) -> npt.NDArray[np.float64]:
    """Each row's place in [0, 1), uniform over rows and fixed for the row."""
    out = np.empty(frame.height, dtype=np.float64)
    for i, key in enumerate(_keys(frame, spec)):
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2**64
    return out


def labelled(frame: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """The rows of ``frame`` that carry a label (none when the label column is absent)."""
    if spec.target is None or spec.target not in frame.columns:
        return frame.head(0)
    return frame.filter(pl.col(spec.target).is_not_null())


def gate_rows(frame: pl.DataFrame, spec: DatasetSpec, gate_fraction: float) -> pl.Series:
    """True for the rows kept for the gates (never decided on)."""
    return pl.Series("gate", position(frame, spec) < gate_fraction)


def decision_rows(frame: pl.DataFrame, spec: DatasetSpec, gate_fraction: float) -> pl.DataFrame:
    """The rows that decisions may use: every row not kept for the gates."""
    if not frame.height:
        return frame
    return frame.filter(~gate_rows(frame, spec, gate_fraction))
