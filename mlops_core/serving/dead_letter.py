"""The dead-letter folder: logged rows the server could not land, kept on local disk until
``mlops logs resubmit`` lands them.

A file is ``<home>/logs/dead-letter/<kind>-<UTC time>-<pid>.jsonl`` (``kind``: ``batch`` for the
prediction log, ``labels`` for the feedback log), one JSON object a line::

    {"dataset": "credit", "kind": "batch", "reason": "...", "row": {...}, "datetimes": ["served_at"]}

Each line stands alone, so a file can be cut, merged or read with ``grep``. The row is kept as it
was, mixed types and all: JSON keeps strings, numbers, booleans and nulls as they are, and the
datetimes are written as ISO 8601 and named in ``datetimes`` so they are read back as datetimes.
It is local disk even when the store is S3: the store may be what failed. A file appears whole
(written aside, then renamed), so ``resubmit`` never reads half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_core.settings import Settings

SUFFIX = ".jsonl"


def dead_letter_dir(settings: Settings) -> Path:
    """The dead-letter folder (``<home>/logs/dead-letter``)."""
    return settings.home / "logs" / "dead-letter"


def done_dir(settings: Settings) -> Path:
    """Where resubmitted files go once their rows have landed (``<dead-letter>/done``)."""
    return dead_letter_dir(settings) / "done"


@dataclass(frozen=True)
class DeadLetter:
    """One line of a dead-letter file: a row of ``kind`` for ``dataset`` and why it waits.

    ``row`` is None for a line that is not a row at all (edited by hand, cut short); ``raw`` is
    then its text, kept as it was.
    """

    dataset: str | None
    kind: str | None
    row: dict[str, Any] | None
    reason: str
    raw: str | None = None

    def with_reason(self, reason: str) -> DeadLetter:
        """This line waiting for another ``reason``."""
        return DeadLetter(self.dataset, self.kind, self.row, reason, self.raw)

    def text(self) -> str:
        """The line as a dead-letter file holds it (no newline)."""
        if self.row is None:
            return json.dumps({"reason": self.reason, "line": self.raw})
        return encode(self.dataset or "", self.kind or "", self.row, self.reason)


def encode(dataset: str, kind: str, row: dict[str, Any], reason: str) -> str:
    """One dead-letter line (no newline) for ``row``."""
    datetimes = [key for key, value in row.items() if isinstance(value, datetime)]
    return json.dumps(
        {"dataset": dataset, "kind": kind, "reason": reason, "row": row, "datetimes": datetimes},
        default=_json_value,
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # nothing else reaches the logs; better its text than no line at all


def decode(line: str) -> DeadLetter:
    """The dead letter in ``line``; one with ``row`` None (and the line kept) when it is not a row."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        return DeadLetter(None, None, None, f"not a JSON line ({exc})", line)
    if not isinstance(data, dict):
        return DeadLetter(None, None, None, "not a JSON object", line)
    reason = str(data.get("reason") or "")
    row, dataset, kind = data.get("row"), data.get("dataset"), data.get("kind")
    if row is None and isinstance(data.get("line"), str):  # a line kept earlier, with its reason
        return DeadLetter(None, None, None, reason, data["line"])
    datetimes = data.get("datetimes") or []
    if not (
        isinstance(row, dict)
        and isinstance(dataset, str)
        and isinstance(kind, str)
        and isinstance(datetimes, list)
    ):
        return DeadLetter(None, None, None, "not a dead-letter row (dataset, kind, row)", line)
    for key in datetimes:
        if isinstance(key, str) and isinstance(row.get(key), str):
            try:
                row[key] = datetime.fromisoformat(row[key])
            except ValueError:
                return DeadLetter(None, None, None, f"{key}: not an ISO 8601 datetime", line)
    return DeadLetter(dataset, kind, row, reason)


def read(path: Path) -> list[DeadLetter]:
    """The lines of the dead-letter file ``path`` (blank lines skipped)."""
    text = path.read_text(encoding="utf-8", errors="replace")  # ours are ASCII; edits may not be
    return [decode(line) for line in text.splitlines() if line.strip()]


def files(settings: Settings) -> list[Path]:
    """The dead-letter files waiting, oldest first (their names begin with the UTC time)."""
    folder = dead_letter_dir(settings)
    if not folder.is_dir():
        return []
    waiting = (p for p in folder.glob(f"*{SUFFIX}") if p.is_file())
    return sorted(waiting, key=lambda p: (p.name.partition("-")[2], p.name))


def spill(
    settings: Settings, dataset: str, kind: str, rows: Sequence[tuple[dict[str, Any], str]]
) -> Path:
    """Write ``rows`` (each with the reason it could not land) as a new dead-letter file; its path.

    Raises ``OSError`` when the local disk cannot take it either.
    """
    folder = dead_letter_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{kind}-{stamp}-{os.getpid()}{SUFFIX}"
    for n in range(1, 1000):  # two spills of one kind in one microsecond: never overwrite
        if not target.exists():
            break
        target = folder / f"{kind}-{stamp}-{os.getpid()}-{n}{SUFFIX}"
    write(target, (encode(dataset, kind, row, reason) for row, reason in rows))
    return target


def write(path: Path, lines: Iterable[str]) -> None:
    """``lines`` as the file ``path``, whole or not at all (written aside, synced, renamed)."""
    aside = path.with_name(f".{path.name}.tmp")
    try:
        with aside.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(aside, path)
    except BaseException:
        with contextlib.suppress(OSError):
            aside.unlink()
        raise


def free_name(folder: Path, name: str) -> Path:
    """``folder / name``, or ``<stem>-<n><suffix>`` there when that is taken."""
    target = folder / name
    stem, suffix = target.stem, target.suffix
    n = 1
    while target.exists():
        target = folder / f"{stem}-{n}{suffix}"
        n += 1
    return target
