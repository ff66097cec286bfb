"""The server's view of the registry: which model answers, swapped atomically when MLflow changes.

``ModelFollower.refresh()`` reads the aliases (``champion``, ``challenger``) and the rollout tags
on the registered model; when they changed, it loads what is new (a version already in memory is
reused), builds a new immutable ``Snapshot`` and replaces the old one with a single assignment.
A request takes the snapshot once, at its start, and finishes on those models, so a swap never
fails a request in flight. A background thread refreshes every ``serve_poll_seconds``; a failed
refresh (MLflow unreachable) keeps the current snapshot and is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops_core.adapters.registry import ModelRegistry
from mlops_core.routing import Mode, Split
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec
from mlops_core.tags import (
    CHALLENGER,
    CHAMPION,
    ROLLOUT_MODE,
    ROLLOUT_STEP,
    ROLLOUT_TAGS,
    ROLLOUT_VERSION,
    ROLLOUT_WEIGHT,
)

# The rollout tag names stay importable from here, where the rollout flow and tests find them.
__all__ = [
    "ROLLOUT_MODE",
    "ROLLOUT_STEP",
    "ROLLOUT_TAGS",
    "ROLLOUT_VERSION",
    "ROLLOUT_WEIGHT",
    "Loaded",
    "ModelFollower",
    "Snapshot",
    "split_from_tags",
]

logger = logging.getLogger("mlops.serving")

CHECK_ROWS = 1_000
"""Holdout rows a compiled model must reproduce (with their probes) before it serves."""


@dataclass(frozen=True)
class Loaded:
    """A model version in memory, with the micro-batcher its requests are scored through."""

    version: str
    model: Any
    batcher: Any = None  # mlops_core.serving.batcher.Batcher: concurrent requests scored together
    score: Callable[[Any], Any] | None = None  # records -> positive-class probabilities
    path: str = "pipeline"  # "compiled" when the compiled path serves (mlops_core.serving.compiled)
    reason: str = ""  # why that path


@dataclass(frozen=True)
class Snapshot:
    """What answers right now; never mutated, only replaced."""

    champion: Loaded | None = None
    challenger: Loaded | None = None
    split: Split = field(default_factory=Split)
    loaded_at: float = 0.0

    def key(self) -> tuple[Any, ...]:
        """What identifies this snapshot: the two versions and the split (equal keys, same models)."""
        return (
            self.champion.version if self.champion else None,
            self.challenger.version if self.challenger else None,
            self.split,
        )


def split_from_tags(tags: dict[str, str], challenger_version: str | None) -> Split:
    """The rollout split the registry's tags describe (idle when they are absent or stale)."""
    try:
        mode = Mode(tags.get(ROLLOUT_MODE, Mode.idle.value))
        weight = float(tags.get(ROLLOUT_WEIGHT, "0") or 0)
    except ValueError:
        return Split()
    if mode is Mode.idle or challenger_version is None:
        return Split()
    if tags.get(ROLLOUT_VERSION) not in (None, "", challenger_version):
        return Split()  # the tags describe a rollout of another version
    weight = min(max(weight, 0.0), 1.0)
    return Split(mode=mode, weight=weight, shadow=mode in (Mode.shadow, Mode.blue_green))


class ModelFollower:
    """Follows one dataset's registered model; ``snapshot`` is always safe to read."""

    def __init__(
        self,
        settings: Settings,
        dataset: str,
        *,
        loader: Callable[[str], Any] | None = None,
        on_load: Callable[[str, str, str], None] | None = None,
        spec: DatasetSpec | None = None,
        check_rows: Callable[[str], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.settings = settings
        self.dataset = dataset
        self.spec = spec
        self.registry = ModelRegistry(settings, dataset)
        self.loader = loader or self.registry.load_version
        self.check_rows = check_rows or self._holdout_rows
        self.on_load = on_load or (lambda role, version, path: None)
        self.snapshot = Snapshot()
        self.refresh_failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Follow the registry now; true when the snapshot changed."""
        with self._lock:  # one refresh at a time (poller and /admin/refresh)
            try:
                aliases = self.registry.aliases()
                tags = self.registry.tags() if aliases else {}
            except Exception as exc:  # noqa: BLE001 -- keep serving what we have
                self.refresh_failures += 1
                logger.warning("registry unreachable, still serving the current models: %s", exc)
                return False
            champion_version = aliases.get(CHAMPION)
            challenger_version = aliases.get(CHALLENGER)
            split = split_from_tags(tags, challenger_version)
            if split.mode is Mode.idle:
                challenger_version = None
            current = self.snapshot
            wanted = (champion_version, challenger_version, split)
            if wanted == current.key():
                return False
            in_memory = {
                loaded.version: loaded
                for loaded in (current.champion, current.challenger)
                if loaded is not None
            }

            def get(role: str, version: str | None) -> Loaded | None:
                if version is None:
                    return None
                if version in in_memory:
                    return in_memory[version]
                model = self.loader(version)
                loaded = self._prepare(version, model)
                self.on_load(role, version, loaded.path)
                return loaded

            try:
                champion = get(CHAMPION, champion_version)
                challenger = get(CHALLENGER, challenger_version)
            except Exception as exc:  # noqa: BLE001 -- a model that will not load is not served
                self.refresh_failures += 1
                logger.error("could not load a model, still serving the current ones: %s", exc)
                return False
            self.snapshot = Snapshot(champion, challenger, split, time.time())  # the swap
            kept = {x.version for x in (champion, challenger) if x is not None}
            for old in in_memory.values():  # requests in flight hold their own futures
                if old.version not in kept and old.batcher is not None:
                    old.batcher.close()
            logger.info("now serving %s", self.describe())
            return True

    def _prepare(self, version: str, model: Any) -> Loaded:
        """The loaded version with its scorer: compiled when it compiles and matches the model
        on the version's holdout (``serving.compiled``), else the model's own ``predict_proba``."""
        from mlops_core.serving.batcher import Batcher
        from mlops_core.serving.compiled import Scorer, pipeline_scores, scorer

        if self.spec is None:  # a follower without a spec cannot build records' frames
            raise ValueError("the model follower needs the dataset's spec to score records")
        try:
            rows = self.check_rows(version)
        except Exception as exc:  # noqa: BLE001 -- no rows to check against: the plain path
            chosen = Scorer(pipeline_scores(model, self.spec), "pipeline", f"no check rows: {exc}")
        else:
            chosen = scorer(model, self.spec, rows)
        if chosen.path != "compiled":
            logger.info("version %s scores through its pipeline: %s", version, chosen.reason)
        return Loaded(
            version, model, Batcher(chosen.score), chosen.score, chosen.path, chosen.reason
        )

    def _holdout_rows(self, version: str) -> list[dict[str, Any]]:
        """Up to ``CHECK_ROWS`` rows, features only, for the compiled path's check: the version's
        holdout, or the dataset's reference for a version registered without one."""
        try:
            rows = self.registry.version_holdout(version)
        except Exception:  # noqa: BLE001 -- logged by hand, without a holdout
            from mlops_core.adapters.catalog import DatasetCatalog

            rows = DatasetCatalog(self.settings).get(self.dataset).reference()
        features = [c for c in rows.columns if self.spec is not None and c in self.spec.features]
        return rows.select(features).head(CHECK_ROWS).to_dicts()

    def describe(self) -> dict[str, Any]:
        """The dataset, the champion and challenger versions served, and the split (JSON-ready)."""
        snap = self.snapshot
        return {
            "dataset": self.dataset,
            "champion": snap.champion.version if snap.champion else None,
            "challenger": snap.challenger.version if snap.challenger else None,
            **snap.split.to_dict(),
        }

    def start(self) -> None:
        """Refresh from a background thread every ``serve_poll_seconds`` (a second call does nothing)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.settings.serve_poll_seconds):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="mlops-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refreshes, waiting up to 5 seconds for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
