"""A prediction request's way through the models: score, fall back, remember, log.

The route (``routes/scoring.py``) takes one snapshot of the models and hands it to these steps,
so every step of one request sees the same champion and challenger, whatever swaps meanwhile.
When the challenger fails on a request, the champion answers it and the failure is counted
against the challenger: users never see a challenger's error.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops_core.routing import CHALLENGER, CHAMPION
from mlops_core.serving.compiled import Rows, model_frame
from mlops_core.serving.follower import Loaded
from mlops_core.serving.metrics import ServerMetrics
from mlops_core.serving.records import Seen, Traffic
from mlops_core.spec import DatasetSpec

__all__ = [
    "ScoredRequest",
    "model_frame",
    "model_scores",
    "prediction_log",
    "remember",
    "score_request",
    "shadow_disagreements",
]


@dataclass(frozen=True)
class ScoredRequest:
    """Who answered a request with which scores, and what its snapshot's challenger did."""

    variant: str  # the variant that answered (the champion when the challenger failed)
    version: str  # the answering model's version
    answer: list[float]
    champion: Loaded
    champion_scores: list[float]
    challenger: Loaded | None  # the snapshot's challenger, whether or not it was asked
    challenger_scores: list[float] | None  # None: not asked, or it failed
    challenger_failed: bool
    shadow: bool  # the challenger scores every request beside the answer


async def model_scores(loaded: Loaded, rows: Rows) -> list[float]:
    """Scores through the model's micro-batcher (see ``batcher``), or its scorer directly.

    The event loop awaits the batcher's worker thread: no thread of the pool is held meanwhile.
    """
    if loaded.batcher is not None:
        scores = await asyncio.wrap_future(loaded.batcher.submit(rows))
        return [float(x) for x in scores]
    if loaded.score is None:
        raise ValueError(f"model version {loaded.version} has no way to score records")
    scores = np.asarray(loaded.score(rows), dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("the model returned non-finite probabilities")
    return [float(x) for x in scores]


async def score_request(
    champion: Loaded,
    challenger: Loaded | None,
    *,
    variant: str,
    shadow: bool,
    rows: Rows,
    metrics: ServerMetrics,
) -> ScoredRequest:
    """The answer for ``rows`` from ``variant``, the champion's when the challenger fails."""
    champion_scores = await model_scores(champion, rows)
    answer, version, failed = champion_scores, champion.version, False
    challenger_scores: list[float] | None = None
    if challenger is not None and (variant == CHALLENGER or shadow):
        try:
            challenger_scores = await model_scores(challenger, rows)
        except Exception:  # noqa: BLE001 -- the champion answers; the failure is counted
            failed = True
            metrics.error(CHALLENGER, challenger.version)
    if variant == CHALLENGER and challenger is not None:
        if challenger_scores is not None:
            answer, version = challenger_scores, challenger.version
        else:
            variant = CHAMPION  # served by the champion after the challenger failed
    return ScoredRequest(
        variant=variant,
        version=version,
        answer=answer,
        champion=champion,
        champion_scores=champion_scores,
        challenger=challenger,
        challenger_scores=challenger_scores,
        challenger_failed=failed,
        shadow=shadow,
    )


def remember(traffic: Traffic, scored: ScoredRequest, request_id: str, seconds: float) -> None:
    """Keep the request in ``traffic`` for the rollout analysis, under each variant it involved."""
    challenger = scored.challenger
    if challenger is not None and (
        scored.variant == CHALLENGER
        or scored.challenger_failed
        or (scored.shadow and scored.challenger_scores is not None)
    ):
        traffic.add(
            Seen(
                time.time(),
                request_id,
                CHALLENGER,
                challenger.version,
                seconds,
                scored.challenger_failed,
                tuple(scored.challenger_scores or ()),
                tuple(scored.champion_scores),
            )
        )
    if scored.variant == CHAMPION:
        traffic.add(
            Seen(
                time.time(),
                request_id,
                CHAMPION,
                scored.champion.version,
                seconds,
                False,
                tuple(scored.champion_scores),
                tuple(scored.champion_scores),
            )
        )


def shadow_disagreements(scored: ScoredRequest) -> int | None:
    """How many shadow predictions differ from the answer; None when nothing ran in shadow."""
    if not scored.shadow or scored.challenger_scores is None:
        return None
    return sum(
        (a >= 0.5) != (b >= 0.5)
        for a, b in zip(scored.answer, scored.challenger_scores, strict=True)
    )


def prediction_log(
    rows: list[dict[str, Any]], scored: ScoredRequest, request_id: str, spec: DatasetSpec
) -> list[dict[str, Any]]:
    """The rows of the prediction log: inputs, output, version, variant, request id and time.

    A row without the spec's id or timestamp gets ``<request id>-<row>`` and the time served,
    so feedback sent by request id joins the logged row.
    """
    now = datetime.now(UTC)
    logged = []
    for i, (row, score) in enumerate(zip(rows, scored.answer, strict=True)):
        entry = dict(row)
        if spec.id and spec.id not in entry:
            entry[spec.id] = f"{request_id}-{i}"
        if spec.timestamp and spec.timestamp not in entry:
            entry[spec.timestamp] = now
        entry.update(
            prediction=int(score >= 0.5),
            probability=score,
            model_version=scored.version,
            variant=scored.variant,
            request_id=request_id,
            served_at=now,
        )
        logged.append(entry)
    return logged
