"""What the flows hand each other and their callers: frozen values, not dicts and tuples.

* ``BatchJudgement``: one claimed batch judged (validated, tested for drift, decided, settled).
* ``RetrainOutcome``: what the gated subflow did, with a ``RetrainStatus``.
* ``RolloutOutcome``: how a rollout ended, with each judged step.
* ``BatchOutcome``: where a batch (or labels file) ended, and what was decided and done.

Each has ``to_dict()``, the JSON form the command line prints and the audit trail stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import polars as pl

from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.drift import DriftReport
from mlops_core.evaluation import GateReport
from mlops_core.policy import Decision
from mlops_core.rollout import RolloutVerdict
from mlops_core.validation import ValidationReport


class RolloutStatus(StrEnum):
    """How a rollout ended."""

    promoted = "promoted"
    rolled_back = "rolled back"
    interrupted = "interrupted"  # a person moved the registry; the rollout stood down
    shadow_judged = "shadow judged"


class RetrainStatus(StrEnum):
    """How the gated subflow ended: the gates' verdict, or the rollout's when one ran."""

    promoted = "promoted"
    refused = "refused"
    failed = "failed"
    rolled_back = "rolled back"
    interrupted = "interrupted"
    shadow_judged = "shadow judged"
    gates_passed = "gates passed"  # `mlops train --gate-only`: judged, nothing delivered


@dataclass(frozen=True)
class RolloutStep:
    """One judged step of a rollout."""

    step: int
    mode: str
    weight: float
    verdict: str
    reasons: tuple[str, ...]
    requests: int
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON."""
        return {**self.__dict__, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class StepWatch:
    """How watching a rollout step ended: a verdict on its window, or a person's registry move."""

    verdict: RolloutVerdict | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    moved: dict[str, str] | None = None


@dataclass(frozen=True)
class RegistryWrite:
    """A rollout's write to the registry, made under the alias lock after checking that nobody
    moved the aliases: the aliases after it, or -- ``moved`` -- a person's, and nothing written."""

    aliases: dict[str, str]
    moved: bool = False


@dataclass(frozen=True)
class RolloutOutcome:
    """How a rollout ended, the registry's aliases after it, and every judged step."""

    status: RolloutStatus
    version: str
    aliases: dict[str, str]
    steps: tuple[RolloutStep, ...] = ()

    @property
    def last_reasons(self) -> tuple[str, ...]:
        """The reasons of the last judged step (none when no step was judged)."""
        return self.steps[-1].reasons if self.steps else ()

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON."""
        return {
            "status": self.status.value,
            "version": self.version,
            "aliases": dict(self.aliases),
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclass(frozen=True)
class RetrainOutcome:
    """What the gated subflow did: promoted, refused by a gate, failed, or the rollout's end."""

    status: RetrainStatus
    reason: str
    version: str | None = None
    gates: GateReport | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    train_run_id: str | None = None
    evaluate_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON (the gate report in its own JSON form)."""
        return {
            **self.__dict__,
            "status": self.status.value,
            "gates": self.gates.to_dict() if self.gates is not None else None,
        }


@dataclass(frozen=True)
class LabelledRows:
    """The processed rows a labels file belongs to, labels joined in, and their batches."""

    frame: pl.DataFrame | None  # None when no processed row carries these ids (yet)
    batches: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedDecision:
    """A decision and the MLflow run that records it."""

    decision: Decision
    run_id: str


@dataclass(frozen=True)
class BatchJudgement:
    """One claimed batch, judged and settled: what the batch flow learned before acting."""

    settled: LedgerEntry
    rows: int
    reason: str | None
    validation: ValidationReport
    drift: DriftReport | None
    decision: Decision
    decision_run_id: str


@dataclass(frozen=True)
class BatchOutcome:
    """Where a batch ended and why, what was decided about it, and what the retrain did."""

    dataset: str
    sha256: str
    state: BatchState
    location: str
    reason: str | None
    validation: ValidationReport | None
    already_settled: bool = False
    drift: DriftReport | None = None
    decision: Decision | None = None
    decision_run_id: str | None = None
    retrain: RetrainOutcome | None = None

    @classmethod
    def settled_before(cls, entry: LedgerEntry) -> BatchOutcome:
        """A batch some other run already settled (or is settling): nothing was done here."""
        return cls(
            entry.dataset,
            entry.sha256,
            entry.state,
            entry.location,
            entry.reason,
            None,
            already_settled=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON: each report in its own JSON form."""
        return {
            "dataset": self.dataset,
            "sha256": self.sha256,
            "state": self.state.value,
            "location": self.location,
            "reason": self.reason,
            "validation": self.validation.to_dict() if self.validation else None,
            "already_settled": self.already_settled,
            "drift": self.drift.to_dict() if self.drift else None,
            "decision": self.decision.to_dict() if self.decision else None,
            "decision_run_id": self.decision_run_id,
            "retrain": self.retrain.to_dict() if self.retrain else None,
        }


def retrain_gain(outcome: RetrainOutcome) -> float | None:
    """What a retrain recovered, as accuracy on its gate rows: a promoted challenger's gain over
    the champion it replaced; 0 when the gates refused it or its rollout rolled it back; None when
    the outcome says nothing about recovery (a first model, a failure, an interrupted rollout)."""
    if outcome.status in (RetrainStatus.refused, RetrainStatus.rolled_back):
        return 0.0
    gates = outcome.gates
    if outcome.status is RetrainStatus.promoted and gates and gates.champion_accuracy is not None:
        return gates.challenger_accuracy - gates.champion_accuracy
    return None
