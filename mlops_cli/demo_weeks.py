"""The weeks of ``mlops demo``: each batch lands without its labels, its labels one batch later.

Each file is landed and announced as ``mlops submit`` / ``mlops labels`` do, and the demo waits
until the ledger shows it settled and, when the decision asked for a retrain or a rollback, until
the decision run records what was done: then a live line is printed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console

from mlops_cli.demo_live import Outcomes, Traffic, wait_for
from mlops_cli.demo_report import Row, batch_line, change_line
from mlops_core.adapters.landing import LandingZone, QuarantinedOnArrival
from mlops_core.errors import UnusableInputError
from mlops_core.settings import Settings

if TYPE_CHECKING:
    from mlops_cli.scenarios import StreamBatch
    from mlops_core.batches import Receipt


def read_table(path: Path) -> pl.DataFrame:
    """A stream file as a frame (the stream writes Parquet and CSV)."""
    return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)


def without_labels(source: Path, target: Path) -> pl.DataFrame:
    """Write ``source`` to ``target`` without its label column; the full frame, labels included."""
    frame = read_table(source)
    if target.suffix == ".parquet":
        frame.drop("default").write_parquet(target)
    else:
        frame.drop("default").write_csv(target)
    return frame


class WeeklyStream:
    """Submits every week's batch, then the week before's labels; a ``Row`` per batch."""

    def __init__(self, settings: Settings, dataset: str, traffic: Traffic, console: Console):
        self.dataset = dataset
        self.traffic = traffic
        self.console = console
        self.outcomes = Outcomes(settings, dataset)
        self.zone, self.labels_zone = LandingZone(settings), LandingZone(settings, "labels")
        self.unlabelled_dir = settings.home / "stream" / "unlabelled"
        self.unlabelled_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []

    def run(self, batches: tuple[StreamBatch, ...]) -> list[Row]:
        """Every batch in order; after each, the labels of the one before it (when processed)."""
        waiting: list[tuple[Row, Path]] = []
        for batch in batches:
            row = self.submit_batch(batch)
            for earlier, source in waiting:
                self.send_labels(earlier, source)
            waiting = [(row, batch.path)] if row.state == "processed" else []
        for earlier, source in waiting:
            self.send_labels(earlier, source)
        return self.rows

    def submit_batch(self, batch: StreamBatch) -> Row:
        """Land one week's batch (without labels), wait for what the flows did, print its line."""
        row = Row(
            batch.index,
            batch.week,
            batch.phase,
            batch.kind.value,
            batch.corruption.value if batch.corruption else None,
            batch.rows,
        )
        self.rows.append(row)
        began = time.perf_counter()
        path = batch.path
        if batch.rows and batch.corruption is None:
            path = self.unlabelled_dir / path.name
            # This week's applicants are now the live traffic.
            self.traffic.world = without_labels(batch.path, path)
        try:
            receipt = self.zone.submit(path, self.dataset)
        except UnusableInputError as exc:
            entry = next(e for e in self.zone.entries(self.dataset) if e.original_name == path.name)
            if isinstance(exc, QuarantinedOnArrival):
                # Announced like any arrival: its run ends "Quarantined" with the reason. The
                # demo waits for that run, so the Prefect history it leaves holds every file.
                from mlops_core.adapters.announce import announce

                unusable = exc.entry
                announce(unusable, "batch")
                wait_for(lambda: _run_finished(unusable.sha256), 60, "the unusable file's run")
            row.state, row.verdict, row.reason = entry.state.value, "unusable", entry.reason
            row.location, row.decision = str(entry.location), "-"
        else:
            self._settle_batch(row, receipt)
        row.champion = self.outcomes.champion()
        row.seconds = time.perf_counter() - began
        line = batch_line(row)
        why = (row.reason or "").removeprefix(f"{path}: ")
        self.console.print(
            f"{line}  [dim]{why[:110]}[/dim]" if why else line, highlight=False, soft_wrap=True
        )
        return row

    def _settle_batch(self, row: Row, receipt: Receipt) -> None:
        from mlops_core.adapters.announce import announce

        announce(receipt.entry, "batch")
        settled = wait_for(
            lambda: self.outcomes.settled(receipt.entry.sha256, "batch"), 180, "a batch"
        )
        entry, detail = settled["entry"], settled["detail"]
        self._wait_for_action(detail)
        row.sha256, row.state, row.location = entry.sha256, entry.state.value, str(entry.location)
        row.reason = entry.reason
        row.verdict = (detail.get("validation") or {}).get("verdict", "-")
        row.drift = detail.get("drift")
        decision = detail.get("decision") or {}
        row.decision = decision.get("action", "-")
        row.estimated = (decision.get("evidence") or {}).get("estimated_accuracy")
        row.retrain = self.outcomes.retrain(detail)

    def _wait_for_action(self, detail: dict[str, Any]) -> None:
        wait_for(lambda: self.outcomes.acted(detail) is not None, 300, "the retrain")

    def send_labels(self, row: Row, source: Path) -> None:
        """Land a processed batch's labels, wait for what the labels flow did, print its line."""
        from mlops_core.adapters.announce import announce

        labels_path = self.unlabelled_dir / f"labels-{row.index:02d}.parquet"
        read_table(source).select("application_id", "default").write_parquet(labels_path)
        began = time.perf_counter()
        receipt = self.labels_zone.submit(labels_path, self.dataset)
        announce(receipt.entry, "labels")
        settled = wait_for(
            lambda: self.outcomes.settled(receipt.entry.sha256, "labels"), 180, "labels"
        )
        detail = settled["detail"]
        self._wait_for_action(detail)
        decision = detail.get("decision") or {}
        evidence = decision.get("evidence") or {}
        row.observed = evidence.get("observed_accuracy")
        row.labels_decision = decision.get("action", "-")
        row.labels_retrain = self.outcomes.retrain(detail)
        row.champion = self.outcomes.champion()
        row.labels_seconds = time.perf_counter() - began
        self.console.print(batch_line(row, labels=True), highlight=False, soft_wrap=True)
        change = change_line(evidence)
        if change:
            self.console.print(change, highlight=False, soft_wrap=True)


def _run_finished(sha256: str) -> bool:
    """Whether the process-batch run of ``sha256`` reached a final state in Prefect."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=20)
    return any(
        r.parameters.get("sha256") == sha256 and r.state is not None and r.state.is_final()
        for r in runs
    )
