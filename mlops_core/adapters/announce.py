"""Announcing arrivals as Prefect events: ``mlops.batch.arrived`` and ``mlops.labels.arrived``.

Used by ``mlops submit``, ``mlops labels`` and the landing-zone watcher. The payload carries what
the deployments' triggers map to flow parameters: dataset, sha256, path, rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from mlops_core import events
from mlops_core.batches import LedgerEntry
from mlops_core.data import scan_table


def arrival_payload(entry: LedgerEntry, local_file: Path | None = None) -> dict[str, Any]:
    """The arrival event's payload: dataset, sha256, path, rows (-1 if unknown), original name.

    ``local_file`` is the file itself when the submitter still has it (an ``s3://`` location is
    not read again only to count rows); without it the row count is -1 for a remote file.
    """
    try:
        source = local_file or (None if "://" in entry.location else Path(entry.location))
        if source is None:
            raise FileNotFoundError(entry.location)
        rows = int(scan_table(source).select(pl.len()).collect().item())
    except Exception:  # noqa: BLE001 -- the row count is informative only
        rows = -1
    return {
        "dataset": entry.dataset,
        "sha256": entry.sha256,
        "path": entry.location,
        "rows": rows,
        "original_name": entry.original_name,
    }


def announce(entry: LedgerEntry, kind: str = "batch") -> dict[str, Any]:
    """Send the arrival event for a landed file to the Prefect API now; return the payload.

    Sent over Prefect's events client directly (not the background worker), so the event has
    left when this returns -- a short-lived ``mlops submit`` never exits with it still queued.
    """
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.events.schemas.events import Resource

    payload = arrival_payload(entry)
    name = events.BATCH_ARRIVED if kind == "batch" else events.LABELS_ARRIVED
    event = Event(
        event=name, resource=Resource(events.dataset_resource(entry.dataset)), payload=payload
    )

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(send())
    else:  # called from async code (the model server's shutdown flush): send from a thread
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="mlops-announce") as pool:
            pool.submit(lambda: asyncio.run(send())).result(timeout=60)
    return payload
