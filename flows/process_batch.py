"""The batch flow: claim a landed batch, validate it, test it for drift, and settle it."""

from __future__ import annotations

from prefect import flow

from mlops_core import events
from mlops_core.landing import BatchOutcome, BatchState, disposition
from mlops_core.settings import Settings
from tasks.drift import detect_batch_drift
from tasks.events import emit
from tasks.landing import claim_batch, ledger_entry, settle_batch
from tasks.validation import validate_batch


@flow(name="process-batch", flow_run_name="{dataset}-{sha256:.12}")
def process_batch(dataset: str, sha256: str) -> BatchOutcome:
    """Process one landed batch exactly once and say where it ended."""
    settings = Settings()
    claimed = claim_batch(settings, dataset, sha256)
    if claimed is None:
        known = ledger_entry(settings, dataset, sha256)
        if known is None:
            raise ValueError(f"batch {sha256[:12]} of dataset {dataset!r} was never landed")
        return BatchOutcome(
            dataset, sha256, known.state, known.location, known.reason, None, already_settled=True
        )

    report = validate_batch(settings, dataset, claimed.location, claimed.original_name)
    state = disposition(report.success)
    reason = None if report.success else "; ".join(report.reasons())
    drift = None
    if state is BatchState.processed:  # drift is only meaningful on a batch that passed validation
        drift = detect_batch_drift(settings, dataset, claimed.location).to_dict()
        if drift["is_drift"]:
            emit(
                events.DRIFT_DETECTED,
                dataset,
                {"sha256": sha256, "p_value": drift["p_value"], "drivers": drift["drivers"]},
            )
    detail = {"validation": report.to_dict(), "drift": drift}
    settled = settle_batch(settings, dataset, sha256, state, detail, reason)
    emit(
        events.BATCH_VALIDATED if state is BatchState.processed else events.BATCH_QUARANTINED,
        dataset,
        {"sha256": sha256, "path": str(settled.location), "rows": report.rows, "reason": reason},
    )
    return BatchOutcome(
        dataset, sha256, settled.state, settled.location, reason, report.to_dict(), drift=drift
    )
