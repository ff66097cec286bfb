"""The MLflow model registry, and the only module that talks to it.

One registered model per dataset (named like the dataset), one experiment per dataset. Aliases
carry the roles: ``champion`` serves, ``challenger`` waits for its rollout, ``previous`` is the
champion before the last promotion, so a rollback is one alias move. Rollout state lives in tags
on the registered model, so every model-server replica converges on the same truth.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mlops_core.adapters.alias_lock import alias_lock
from mlops_core.errors import MlopsError
from mlops_core.performance import PerformanceEstimator, model_input
from mlops_core.ports import LoadedModel, RegisteredVersion, TrainingInput, TrainingRecord
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec, check_dataset_name
from mlops_core.tags import (
    BATCH_SHA256,
    CHALLENGER,
    CHAMPION,
    CHAMPION_VERSION,
    CONCEPT_SINCE,
    DATA_UNTIL,
    GATE_ONLY,
    PARENT_RUN,
    PREVIOUS,
    RUN_TYPE,
    TAG_VALUE_LIMIT,
    TRAIN_RUN,
    TRAINING_BATCHES,
)

# MLflow 3 saves scikit-learn models with skops, which refuses types it cannot vouch for. These
# are the ones our own pipeline (histogram gradient boosting behind a column transformer) holds;
# the models are built by this product, not loaded from strangers.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


HOLDOUT_ARTIFACT = "holdout.parquet"

# MLflow's own experiment tag: which kind of work the experiment holds. Its UI (3.x) reads
# ``custom_model_development`` as classic machine learning (runs, models) rather than GenAI
# (traces, token usage). Links into the UI also ask for that mode: ``reporting.mlflow_ui_link``.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
RUN_NAME = "mlflow.runName"  # MLflow's own: the name its UI lists a run under
NOTE = "mlflow.note.content"  # MLflow's own: the run's description, markdown
NAME_SEPARATOR = (
    " · "  # between what a run is about and what happened: "week19.csv · drift, retrain"
)


def _lineage_dataset(item: TrainingInput) -> Any:
    """A training input as an MLflow dataset (source, name and digest), for ``log_input``."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # two equivalent local-file source classes: either is right
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(Path(item.path).resolve().as_uri())
    return MetaDataset(  # type: ignore[abstract]
        source, name=f"batch-{item.sha256[:12]}", digest=item.sha256[:36]
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    import mlflow.sklearn

    pinned = mlflow.sklearn.get_default_pip_requirements(include_skops=True)
    return [*pinned, *(f"{name}=={version(name)}" for name in ("numpy", "pandas", "mlflow"))]


class RunWriter:
    """One open MLflow run the project is writing: params, metrics, texts, files, tags."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def param(self, key: str, value: str) -> None:
        """Log one param."""
        self.client.log_param(self.run_id, key, value)

    def metric(self, key: str, value: float) -> None:
        """Log one metric."""
        self.client.log_metric(self.run_id, key, float(value))

    def text(self, text: str, name: str) -> None:
        """Log ``text`` as the artifact ``name``."""
        self.client.log_text(self.run_id, text, name)

    def file(self, path: Path, folder: str) -> None:
        """Log a file as an artifact under ``folder``."""
        self.client.log_artifact(self.run_id, str(path), folder)


# A version's model, holdout and fitted estimator, loaded once per process (tracking URI, name,
# version): the batch flow judges every batch with the champion, and loading takes ~1 s.
_LOADED: dict[tuple[str, str, str], LoadedModel] = {}


class ModelRegistry:
    """Registers, promotes and rolls back a dataset's models by moving aliases."""

    def __init__(self, settings: Settings, dataset: str) -> None:
        from mlflow.tracking import MlflowClient

        self.settings = settings
        self.name = check_dataset_name(dataset)
        self.client = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
        )

    def experiment_id(self) -> str:
        """The dataset's experiment, created when missing: with artifacts under ``MLOPS_HOME``, or
        -- on a tracking server, unless ``MLOPS_MLFLOW_ARTIFACTS_DIR`` is set -- wherever the
        server keeps them (its proxied object store: clients need no storage credentials).

        The experiment is marked as model development (``mlflow.experimentKind``), also when an
        older installation created it unmarked: MLflow 3 otherwise offers it as a GenAI one."""
        experiment = self.client.get_experiment_by_name(self.name)
        if experiment is not None:
            if (experiment.tags or {}).get(EXPERIMENT_KIND) != MODEL_DEVELOPMENT:
                self.client.set_experiment_tag(
                    experiment.experiment_id, EXPERIMENT_KIND, MODEL_DEVELOPMENT
                )
            return str(experiment.experiment_id)
        kind = {EXPERIMENT_KIND: MODEL_DEVELOPMENT}
        remote = self.settings.tracking_uri.startswith(("http://", "https://"))
        if remote and self.settings.mlflow_artifacts_dir is None:
            return str(self.client.create_experiment(self.name, tags=kind))
        self.settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        location = (self.settings.artifacts_dir.resolve() / self.name).as_uri()
        return str(self.client.create_experiment(self.name, artifact_location=location, tags=kind))

    def log_model(
        self,
        pipeline: Any,
        spec: DatasetSpec,
        example: pl.DataFrame,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        holdout: pl.DataFrame | None = None,
        lineage: tuple[TrainingInput, ...] | list[TrainingInput] | None = None,
        parent_run_id: str | None = None,
    ) -> RegisteredVersion:
        """Log a fitted pipeline in a ``train`` run and register it as a new version.

        The run holds the signature and an input example, the holdout the model was measured on
        (``holdout.parquet``: the performance estimator calibrates on it), and the training data's
        lineage as MLflow dataset inputs, one per batch, named by its sha256.
        """
        import mlflow
        from mlflow.models import infer_signature

        mlflow.set_tracking_uri(self.settings.tracking_uri)
        mlflow.set_registry_uri(self.settings.tracking_uri)
        sample = model_input(example.head(5), spec)
        signature = infer_signature(sample, pipeline.predict_proba(sample))
        run_tags = {RUN_TYPE: "train", **(tags or {})}
        if parent_run_id:
            run_tags[PARENT_RUN] = parent_run_id
        if lineage:
            run_tags[TRAINING_BATCHES] = ",".join(i.sha256[:12] for i in lineage)[:TAG_VALUE_LIMIT]
        # The fluent run MLflow's model logging needs, opened on a run our context manager owns.
        trigger = self.trigger_of(run_tags.get(BATCH_SHA256, ""), parent_run_id)
        with (
            self.run(run_tags, name=f"train-{self.name}{NAME_SEPARATOR}{trigger}") as writer,
            mlflow.start_run(run_id=writer.run_id) as run,
        ):
            mlflow.log_params(params or {})
            mlflow.log_metrics(metrics or {})
            for item in lineage or []:
                mlflow.log_input(
                    _lineage_dataset(item), context="training", tags={"rows": str(item.rows)}
                )
            if holdout is not None:
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / HOLDOUT_ARTIFACT
                    holdout.write_parquet(path)
                    mlflow.log_artifact(str(path))
            # MLflow prints its registration chatter straight to stderr; errors still raise.
            with contextlib.redirect_stderr(io.StringIO()):
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name="model",
                    signature=signature,
                    input_example=sample,
                    registered_model_name=self.name,
                    pyfunc_predict_fn="predict_proba",
                    skops_trusted_types=SKOPS_TRUSTED_TYPES,
                    # Stated, not inferred: inference imports every loaded package (torch included)
                    # and takes seconds per model.
                    pip_requirements=_requirements(),
                )
        version = str(info.registered_model_version)
        # The version exists only now: the run is renamed after it ("train-credit-v7 · week19.csv").
        self.client.set_tag(
            run.info.run_id, RUN_NAME, f"train-{self.name}-v{version}{NAME_SEPARATOR}{trigger}"
        )
        self.client.set_model_version_tag(self.name, version, TRAIN_RUN, run.info.run_id)
        for key, value in (tags or {}).items():
            self.client.set_model_version_tag(self.name, version, key, value)
        return RegisteredVersion(self.name, version, run.info.run_id)

    def trigger_of(self, batch_sha256: str, parent_run_id: str | None) -> str:
        """What a train run was started by, as a person names it: the batch file of the decision
        run above it (its name's first part), else the batch's sha256[:12], else ``reference``
        (a first model) or ``manual`` (``mlops train``)."""
        parent = ""
        if parent_run_id:
            from mlflow.exceptions import MlflowException

            with contextlib.suppress(MlflowException):
                parent = str(self.client.get_run(parent_run_id).info.run_name or "")
        if parent.startswith("manual-"):
            return "manual"
        if NAME_SEPARATOR in parent:
            return parent.split(NAME_SEPARATOR)[0]
        return batch_sha256[:12] or "reference"

    @contextlib.contextmanager
    def run(
        self, tags: dict[str, str], *, name: str | None, parent_run_id: str | None = None
    ) -> Iterator[RunWriter]:
        """An MLflow run in the dataset's experiment: FINISHED when the block ends, FAILED if it
        raises. Every run the project writes goes through here (``name=None``: MLflow names it)."""
        if parent_run_id:
            tags = {**tags, PARENT_RUN: parent_run_id}
        run = self.client.create_run(self.experiment_id(), tags=tags, run_name=name)
        status = "FAILED"
        try:
            yield RunWriter(self.client, run.info.run_id)
            status = "FINISHED"
        finally:
            self.client.set_terminated(run.info.run_id, status=status)

    def load_version(self, version: str) -> Any:
        """The scikit-learn model of one registered version."""
        import mlflow

        _point_mlflow_at(self.settings.tracking_uri)
        return mlflow.sklearn.load_model(f"models:/{self.name}/{version}")

    def loaded(self, version: RegisteredVersion, spec: DatasetSpec) -> LoadedModel:
        """The version's model, its holdout and its fitted estimator, loaded once per process."""
        key = (self.settings.tracking_uri, self.name, version.version)
        if key not in _LOADED:
            model = self.load_version(version.version)
            holdout = self.holdout(version.run_id)
            if len(_LOADED) >= 8:
                _LOADED.pop(next(iter(_LOADED)))
            estimator = PerformanceEstimator(spec).fit(model, holdout)
            trained = _training_record(self.client.get_run(version.run_id))
            _LOADED[key] = LoadedModel(version, model, holdout, estimator, trained)
        return _LOADED[key]

    def last_training(self) -> TrainingRecord | None:
        """When the newest finished training run started, and the newest event time it saw."""
        runs = self.training_runs(limit=1)
        if not runs:
            return None
        return _training_record(runs[0])

    def moves(self) -> contextlib.AbstractContextManager[None]:
        """Hold the lock on this dataset's aliases (``alias_lock``): a check of the aliases and
        the writes that follow it, made inside, are not interleaved with another move."""
        return alias_lock(self.settings.ledger_database_url, self.name)

    def drop_challenger(self, version: str) -> None:
        """Take ``version`` out of the challenger role (nothing when another version holds it)."""
        with self.moves():
            if self.aliases().get(CHALLENGER) == version:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)

    def version_of(self, alias: str) -> RegisteredVersion | None:
        """The version a role points at, with the run that trained it; None when the role is empty."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None
        return RegisteredVersion(self.name, str(found.version), str(found.run_id))

    def has_version(self, version: str) -> bool:
        """Whether ``version`` of the dataset's model is registered."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_model_version(self.name, version)
        except MlflowException:
            return False
        return True

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        """Lineage tags on a model version (decision run, gate report, drift run...)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def version_tags(self, version: str) -> dict[str, str]:
        """The tags on one model version (its lineage)."""
        return dict(self.client.get_model_version(self.name, version).tags or {})

    def holdout(self, run_id: str) -> pl.DataFrame:
        """The labelled holdout a model was measured on, from the train run that logged it."""
        with tempfile.TemporaryDirectory() as folder:
            path = self.client.download_artifacts(run_id, HOLDOUT_ARTIFACT, folder)
            return pl.read_parquet(path)

    def version_holdout(self, version: str) -> pl.DataFrame:
        """The holdout of the train run that registered ``version``."""
        run_id = self.client.get_model_version(self.name, version).run_id
        return self.holdout(str(run_id))

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The metrics run ``run_id`` logged, by name."""
        return dict(self.client.get_run(run_id).data.metrics)

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of run ``run_id``."""
        return dict(self.client.get_run(run_id).data.tags)

    def training_runs(self, limit: int = 20) -> list[Any]:
        """The newest ``train`` runs of the dataset that finished, newest first; a gate check's
        (``mlops train --gate-only``, a CI job) is not a retrain and is left out."""
        experiment = self.client.get_experiment_by_name(self.name)
        if experiment is None:
            return []
        runs = self.client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`mlops.run_type` = 'train' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=limit * 2,
        )
        return [r for r in runs if r.data.tags.get(GATE_ONLY) != "true"][:limit]

    def degraded_streak(self, champion_version: str, limit: int = 50) -> int:
        """How many labelled decisions in a row, newest first, found ``champion_version`` below
        the retrain line (decision runs without labels are passed over)."""
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{RUN_TYPE}` = 'decision'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
        streak = 0
        for run in runs:
            degraded = run.data.params.get("observed_degraded", "null")
            if degraded == "null":
                continue
            if run.data.tags.get(CHAMPION_VERSION) != champion_version or degraded != "true":
                break
            streak += 1
        return streak

    def past_recoveries(self, limit: int = 20) -> tuple[float, ...]:
        """Shares of the drop the newest ``limit`` retrains recovered (decision runs carrying
        ``retrain_accuracy_gain``): the gain over the drop that called for it, in [0, 1]."""
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string="metrics.retrain_accuracy_gain >= -1",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
        shares = []
        for run in runs:
            metrics = run.data.metrics
            reference = metrics.get("reference_accuracy")
            seen = metrics.get("observed_accuracy", metrics.get("estimated_accuracy"))
            if reference is None or seen is None or reference - seen <= 0:
                continue
            gain = metrics["retrain_accuracy_gain"]
            shares.append(min(max(gain / (reference - seen), 0.0), 1.0))
        return tuple(shares)

    def median_training_seconds(self) -> float | None:
        """Median fit time of past training runs (the retrain cost's basis); None without any."""
        seconds = [
            run.data.metrics["training_seconds"]
            for run in self.training_runs()
            if "training_seconds" in run.data.metrics
        ]
        return float(statistics.median(seconds)) if seconds else None

    def aliases(self) -> dict[str, str]:
        """The version each role points at (missing roles are absent)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException:
            return {}
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def set_challenger(self, version: str) -> None:
        """Make ``version`` the challenger."""
        with self.moves():
            self.client.set_registered_model_alias(self.name, CHALLENGER, version)

    def promote(self, version: str) -> dict[str, str]:
        """Make ``version`` the champion; the old champion becomes ``previous``."""
        with self.moves():
            current = self.aliases()
            old = current.get(CHAMPION)
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            if old is not None and old != version:
                self.client.set_registered_model_alias(self.name, PREVIOUS, old)
            if current.get(CHALLENGER) == version:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)
            return self.aliases()

    def rollback(self) -> dict[str, str]:
        """Swap ``champion`` and ``previous``: one alias move, and a second rollback undoes it."""
        with self.moves():
            current = self.aliases()
            if PREVIOUS not in current:
                raise MlopsError(
                    f"dataset {self.name!r} has no previous champion to roll back to",
                    hint="a rollback needs at least one promotion after the first champion",
                )
            self.client.set_registered_model_alias(self.name, CHAMPION, current[PREVIOUS])
            if CHAMPION in current:
                self.client.set_registered_model_alias(self.name, PREVIOUS, current[CHAMPION])
            return self.aliases()

    def load(self, alias: str = CHAMPION) -> Any:
        """The scikit-learn model a role points at."""
        import mlflow

        if alias not in self.aliases():
            raise MlopsError(
                f"dataset {self.name!r} has no {alias} model yet", hint="run `mlops train`"
            )
        _point_mlflow_at(self.settings.tracking_uri)
        return mlflow.sklearn.load_model(f"models:/{self.name}@{alias}")

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the registered model (the rollout state lives here)."""
        for key, value in tags.items():
            self.client.set_registered_model_tag(self.name, key, value)

    def tags(self) -> dict[str, str]:
        """The tags on the registered model (the rollout state lives here)."""
        return dict(self.client.get_registered_model(self.name).tags or {})


def _training_record(run: Any) -> TrainingRecord:
    """When a ``train`` run started and the newest event time it trained on."""
    until = run.data.tags.get(DATA_UNTIL)
    since = run.data.tags.get(CONCEPT_SINCE)
    rows = run.data.metrics.get("concept_rows")
    return TrainingRecord(
        started_at=datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
        data_until=datetime.fromisoformat(until) if until else None,
        concept_since=datetime.fromisoformat(since) if since else None,
        concept_rows=int(rows) if rows is not None else None,
    )


def _point_mlflow_at(uri: str) -> None:
    """MLflow's fluent API at ``uri`` for both the registry and tracking: loading a model resolves
    its run's artifacts through the tracking store, and an unset tracking URI would make MLflow
    create ``mlflow.db`` in the current folder."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
