"""The one settings object: every knob of the product, read from ``MLOPS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_core.errors import SettingsError

if TYPE_CHECKING:
    from mlops_core.evaluation import GateConfig
    from mlops_core.policy import PolicyConfig
    from mlops_core.rollout import RolloutConfig
    from mlops_core.training import TrainingConfig


class Settings(BaseSettings):
    """Settings for one installation; build it at an entry point and pass it down.

    Every path is derived from ``home`` unless set explicitly, so ``MLOPS_HOME=/data/mlops``
    moves all runtime state at once.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".mlops"), description="Root of all runtime state.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db."
    )
    mlflow_artifacts_dir: Path | None = Field(
        default=None, description="Where MLflow stores artifacts; default <home>/mlartifacts."
    )
    ledger_url: str | None = Field(
        default=None,
        description="The ledger's SQLAlchemy URL: default sqlite:///<home>/ledger.db; "
        "postgresql+psycopg2://user@host:port/db for several workers on several machines.",
    )
    store_url: str | None = Field(
        default=None,
        description="Where batches, reports, quarantine and the server's logs are kept: default "
        "the folder <home>; s3://bucket/prefix to share them between machines.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="The S3 endpoint of an s3:// store (MinIO, moto); default boto3's own "
        "(AWS_ENDPOINT_URL, or AWS itself).",
    )
    gx_dir: Path = Field(
        default=Path("great_expectations"),
        description="The Great Expectations project folder holding the expectation suites.",
    )

    # Validation thresholds (used when a dataset's expectation suite is built).
    bounds_quantile: float = Field(
        default=0.001,
        gt=0,
        lt=0.5,
        description="Reference quantiles q and 1-q give numeric bounds.",
    )
    bounds_margin: float = Field(
        default=0.5, ge=0, description="Bounds widen by this fraction of the quantile span."
    )
    bounds_tolerance: float = Field(
        default=0.001, ge=0, lt=1, description="Fraction of rows allowed outside numeric bounds."
    )
    null_factor: float = Field(
        default=2.0,
        ge=1,
        description="Allowed null fraction = reference fraction x factor + margin.",
    )
    null_margin: float = Field(default=0.01, ge=0, lt=1, description="See null_factor.")
    category_tolerance: float = Field(
        default=0.0, ge=0, lt=1, description="Fraction of rows allowed an unseen category."
    )
    timestamp_past_days: int = Field(
        default=3650,
        ge=1,
        description="Event times may be at most this many days before the reference's earliest "
        "(the suite's lower bound); older ones (1900, 1970: default dates, unit slips) fail.",
    )
    timestamp_future_tolerance_hours: float = Field(
        default=24.0,
        ge=0,
        description="Event times may be at most this far after the batch's ingestion time "
        "(applied when a batch is validated: clock skew, any time zone); later ones fail.",
    )
    min_batch_rows: int = Field(default=10, ge=1, description="Fewest rows a batch may have.")
    max_batch_rows: int = Field(default=20_000_000, ge=1, description="Most rows a batch may have.")
    max_batch_bytes: int = Field(
        default=4 * 1024**3, ge=1, description="Largest batch file accepted, in bytes."
    )
    history_cache_mib: float = Field(
        default=256.0,
        ge=0,
        description="Processed batches a flow run keeps in memory once read, in MiB (its history "
        "is walked several times per batch; 0 reads every file each time).",
    )

    drift_false_alarm_rate: float = Field(
        default=0.05, gt=0, lt=1, description="Family-wise false-alarm rate of the drift verdict."
    )
    drift_backend: Literal["alibi-detect", "native"] = Field(
        default="alibi-detect",
        description="Who runs the drift tests: alibi-detect (Business Source License 1.1; "
        "production use needs its owner's licence) or native (scikit-learn, SciPy, PyTorch; "
        "the same statistics).",
    )
    drift_permutations: int = Field(
        default=1_000,
        ge=100,
        description="Permutations of the kernel (MMD) test: its p-value's resolution is "
        "1/(permutations + 1); the test's cost grows with them.",
    )

    # Decision policy (see mlops_core/policy.py and the README's policy table).
    retrain_accuracy_drop: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Retrain when accuracy falls this far below the reference.",
    )
    retrain_cooldown_hours: float = Field(
        default=24.0,
        ge=0,
        description="No retrain sooner than this after the last one (data time).",
    )
    min_labelled_rows: int = Field(
        default=1_000, ge=0, description="Fewest labelled rows since the last training to retrain."
    )
    alert_after_degraded_batches: int = Field(
        default=2,
        ge=1,
        description="Alert when the champion stays below the retrain line for more labelled "
        "batches in a row than this.",
    )
    expected_batch_interval_hours: float = Field(
        default=24.0,
        gt=0,
        description="The longest gap expected between two batches of a dataset; longer raises "
        "the MlopsNoRecentBatch alert (exported as mlops_batch_expected_interval_seconds).",
    )
    min_rows_since_change: int = Field(
        default=1_000,
        ge=0,
        description="Fewest labelled rows since a change point in accuracy to retrain on it.",
    )
    predictions_per_day: float = Field(
        default=10_000, ge=0, description="Traffic, for the expected benefit of a retrain."
    )
    benefit_horizon_days: float = Field(
        default=30, ge=0, description="How long a retrain's benefit is counted."
    )
    value_per_correct_prediction: float = Field(
        default=0.05, ge=0, description="What one more correct prediction is worth."
    )
    compute_cost_per_hour: float = Field(
        default=2.0, ge=0, description="Price of an hour of training compute."
    )
    fixed_cost_per_retrain: float = Field(
        default=200.0,
        ge=0,
        description="Fixed cost of a retrain and its rollout (review, exposure, people), in the "
        "currency of value_per_correct_prediction.",
    )
    rollback_min_effect: float = Field(
        default=0.01,
        ge=0,
        description="Roll back only when the champion is shown worse than the previous by this.",
    )
    recovery_prior_mean: float = Field(
        default=0.5, ge=0, le=1, description="Share of a drop a retrain recovers, before history."
    )
    recovery_prior_weight: float = Field(
        default=2.0, gt=0, description="How many past retrains the prior is worth."
    )

    # Training window and model.
    train_recent_rows: int = Field(
        default=2_000, ge=1, description="Newest labelled rows, all in the training window."
    )
    train_older_rows: int = Field(
        default=2_000, ge=0, description="Seeded sample of older labelled rows added to the window."
    )
    train_max_iter: int = Field(default=200, ge=10, description="Boosting iterations.")
    gate_holdout_fraction: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Share of the newest labelled batch held out for the gates.",
    )

    window_selection: bool = Field(
        default=True,
        description="Choose the training window among candidates (since the change point, newest, "
        "recency-weighted, recent+older) on validation rows; false: recent+older only.",
    )
    window_validation_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of the newest labelled batch that chooses among candidate training "
        "windows (never gated; the chosen window is then refit with it).",
    )

    # Evaluation gates (see mlops_core/evaluation.py).
    gate_margin: float = Field(
        default=0.005, ge=0, description="Challenger accuracy must beat the champion's by this."
    )
    gate_alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Level of the one-sided McNemar test."
    )
    gate_auc_tolerance: float = Field(default=0.01, ge=0, description="Largest AUC drop allowed.")
    gate_log_loss_tolerance: float = Field(
        default=0.02, ge=0, description="Largest log-loss rise allowed."
    )
    gate_calibration_tolerance: float = Field(
        default=0.02, ge=0, description="Largest expected-calibration-error rise allowed."
    )
    gate_slice_feature: str | None = Field(
        default=None, description="Categorical feature whose slices are gated (default: the first)."
    )
    gate_slice_tolerance: float = Field(
        default=0.03, ge=0, description="Largest accuracy drop allowed in any slice."
    )
    gate_accuracy_floor: float = Field(
        default=0.55, ge=0, le=1, description="Absolute floor on the challenger's accuracy."
    )
    gate_latency_budget_ms: float = Field(
        default=50.0, gt=0, description="Budget for p95 single-row prediction time."
    )

    # The event-driven stack.
    reconcile_stale_seconds: float = Field(
        default=600,
        ge=0,
        description="A claim older than this is a crashed run's; reconcile frees it.",
    )
    max_batch_attempts: int = Field(
        default=3,
        ge=1,
        description="Claims of one batch before a failure dead-letters it (state dead_letter, "
        "an mlops.alert, no more sweeps) until `mlops retry` or `mlops drop`.",
    )
    reconcile_interval_seconds: float = Field(
        default=300, gt=0, description="How often the served reconcile deployment sweeps."
    )
    retention_days: float = Field(
        default=90,
        gt=0,
        description="mlops gc deletes settled batch and labels files (with their reports and "
        "ledger rows) and resubmitted server logs older than this, except what a registered "
        "model's training data or an open rollout references.",
    )
    gc_interval_hours: float = Field(
        default=24, gt=0, description="How often the served gc deployment runs."
    )
    runner_poll_seconds: float = Field(
        default=0.25, gt=0, description="How often the warm runner looks for triggered runs."
    )
    runner_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads for numeric work (PyTorch, OpenMP, BLAS) in the warm runner; "
        "default: half the cores, at least 1 (it shares the machine with the Prefect server "
        "and runs two flows at once; more threads than free cores made drift tests 2x slower).",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="Where the Prefect automation 'mlops: notify' POSTs alerts, drift, "
        "quarantines and rollbacks (JSON: text, subject, body; Slack's and Mattermost's "
        "incoming webhooks read text); unset: no notifications. A secret: such URLs carry "
        "their token.",
    )
    prefect_port: int = Field(
        default=4200,
        ge=0,
        le=65535,
        description="Port of the embedded Prefect server (0: any free one).",
    )
    mlflow_port: int = Field(
        default=5000,
        ge=0,
        le=65535,
        description="Port of the MLflow UI started by `mlops up --mlflow-ui`.",
    )
    inbox_dir: Path | None = Field(
        default=None,
        description="Folder the watcher reads: <inbox>/<dataset>/ (default <home>/inbox).",
    )

    # The model server and rollouts.
    serve_host: str = Field(default="127.0.0.1", description="Where `mlops serve` listens.")
    serve_port: int = Field(default=8000, ge=0, le=65535, description="Port of `mlops serve`.")
    serve_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often the server follows the registry."
    )
    serve_workers: int = Field(
        default=1,
        ge=0,
        description="Worker processes of `mlops serve` behind its one address (0: one per core).",
    )
    serve_max_records: int = Field(default=1_000, ge=1, description="Records per /predict call.")
    serve_traffic_keep: int = Field(
        default=100_000,
        ge=1_000,
        description="Recent requests the server keeps for rollout analysis (~370 bytes each).",
    )
    serve_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted."
    )
    serve_log_rows: int = Field(
        default=2_000, ge=1, description="Predictions per logged micro-batch."
    )
    serve_log_seconds: float = Field(
        default=60.0, gt=0, description="Longest wait before a logged micro-batch is written."
    )
    serve_log_attempts: int = Field(
        default=3,
        ge=1,
        description="Tries to land a logged micro-batch before its rows are written to "
        "<home>/logs/dead-letter/ (`mlops logs resubmit` lands them later).",
    )
    serve_log_retry_seconds: float = Field(
        default=0.5, ge=0, description="First pause between those tries; each pause doubles."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin routes (unset: admin disabled)."
    )
    feedback_key: SecretStr | None = Field(
        default=None,
        description="Key the model server signs its request ids with, so /feedback accepts "
        "labels only for predictions it made; replicas on several machines must share it "
        "(unset: <home>/secrets/feedback.key, made once).",
    )
    labels_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of a trusted labelling service: /feedback by a record's own "
        "id needs it (unset: feedback only by request_id).",
    )
    serve_url: str | None = Field(
        default=None,
        description="The model server the rollout flow watches (comma-separated: every replica, "
        "whose evidence the rollout adds up); unset: promote directly.",
    )
    rollout_mode: str = Field(
        default="canary", description="canary, blue-green or shadow (see the rollout flow)."
    )
    rollout_steps: str = Field(
        default="5,25,50,100", description="Canary weights in percent, comma-separated."
    )
    rollout_min_requests: int = Field(
        default=200, ge=1, description="Challenger requests each step needs before a verdict."
    )
    rollout_step_seconds: float = Field(
        default=120.0, gt=0, description="Deadline of each step's analysis."
    )
    rollout_max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Largest challenger error rate allowed."
    )
    rollout_max_p99_ms: float = Field(default=100.0, gt=0, description="p99 latency budget.")
    rollout_max_divergence: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Largest JS divergence from the champion's predictions.",
    )
    rollout_accuracy_tolerance: float = Field(
        default=0.02, ge=0, description="Largest feedback-accuracy drop against the champion."
    )
    rollout_min_feedback: int = Field(
        default=100, ge=1, description="Feedback rows needed before accuracy is judged."
    )
    rollout_on_inconclusive: str = Field(
        default="rollback", description="rollback, or approve: wait for a person in the Prefect UI."
    )
    rollout_feedback: Literal["required", "delayed", "optional"] = Field(
        default="required",
        description="required: a step promotes only on feedback evidence; delayed: labels come "
        "late, the first step holds until they do; optional: promote on the other checks.",
    )
    rollout_feedback_wait_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="With delayed feedback, how long the first step waits for it.",
    )

    def __init__(self, **values: Any) -> None:
        # pydantic's own error text quotes every input (the admin token too): say what is wrong
        # from the structured errors, without their inputs.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_input=False, include_url=False):
                where = ".".join(str(part) for part in error["loc"])
                variable = f"MLOPS_{where.upper()}: " if where else ""
                problems.append(f"{variable}{error['msg']}")
            raise SettingsError(
                "; ".join(problems), hint="fix the MLOPS_* environment variable or .env entry"
            ) from None

    @model_validator(mode="after")
    def _rows_ordered(self) -> Settings:
        if self.min_batch_rows > self.max_batch_rows:
            raise ValueError("MLOPS_MIN_BATCH_ROWS must not exceed MLOPS_MAX_BATCH_ROWS")
        return self

    def policy_config(self) -> PolicyConfig:
        """The retrain policy's thresholds, cooldown and costs, as these settings set them."""
        from datetime import timedelta

        from mlops_core.policy import PolicyConfig

        return PolicyConfig(
            retrain_accuracy_drop=self.retrain_accuracy_drop,
            cooldown=timedelta(hours=self.retrain_cooldown_hours),
            min_labelled_rows=self.min_labelled_rows,
            min_rows_since_change=self.min_rows_since_change,
            predictions_per_day=self.predictions_per_day,
            benefit_horizon_days=self.benefit_horizon_days,
            value_per_correct_prediction=self.value_per_correct_prediction,
            compute_cost_per_hour=self.compute_cost_per_hour,
            fixed_cost_per_retrain=self.fixed_cost_per_retrain,
            recovery_prior_mean=self.recovery_prior_mean,
            recovery_prior_weight=self.recovery_prior_weight,
            rollback_min_effect=self.rollback_min_effect,
        )

    def training_config(self) -> TrainingConfig:
        """How much recent and older data a retrain uses and its iteration limit, as set here."""
        from mlops_core.training import TrainingConfig

        return TrainingConfig(
            recent_rows=self.train_recent_rows,
            older_rows=self.train_older_rows,
            max_iter=self.train_max_iter,
        )

    def gate_config(self) -> GateConfig:
        """The evaluation gates' margin, significance level and tolerances, as these settings set them."""
        from mlops_core.evaluation import GateConfig

        return GateConfig(
            margin=self.gate_margin,
            alpha=self.gate_alpha,
            auc_tolerance=self.gate_auc_tolerance,
            log_loss_tolerance=self.gate_log_loss_tolerance,
            calibration_tolerance=self.gate_calibration_tolerance,
            slice_feature=self.gate_slice_feature,
            slice_tolerance=self.gate_slice_tolerance,
            accuracy_floor=self.gate_accuracy_floor,
            latency_budget_ms=self.gate_latency_budget_ms,
        )

    def rollout_config(self) -> RolloutConfig:
        """The rollout's mode, traffic steps (as fractions) and health limits, as these settings set them."""
        from mlops_core.rollout import RolloutConfig

        return RolloutConfig(
            mode=self.rollout_mode,
            steps=tuple(float(s) / 100 for s in self.rollout_steps.split(",") if s.strip()),
            min_requests=self.rollout_min_requests,
            step_seconds=self.rollout_step_seconds,
            max_error_rate=self.rollout_max_error_rate,
            max_p99_ms=self.rollout_max_p99_ms,
            max_divergence=self.rollout_max_divergence,
            accuracy_tolerance=self.rollout_accuracy_tolerance,
            min_feedback=self.rollout_min_feedback,
            on_inconclusive=self.rollout_on_inconclusive,
            feedback=self.rollout_feedback,
            feedback_wait_seconds=self.rollout_feedback_wait_seconds,
        )

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (SQLite under ``home`` by default)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        """Where MLflow stores artifacts (``<home>/mlartifacts`` by default)."""
        return self.mlflow_artifacts_dir or self.home / "mlartifacts"

    @property
    def landing_dir(self) -> Path:
        """Where batches land before they are settled."""
        return self.home / "landing"

    @property
    def processed_dir(self) -> Path:
        """Where processed batches end, with their reports."""
        return self.home / "processed"

    @property
    def quarantine_dir(self) -> Path:
        """Where batches that failed validation or could not be read end, with their reports."""
        return self.home / "quarantine"

    @property
    def datasets_dir(self) -> Path:
        """Where registered datasets keep their specs and references."""
        return self.home / "datasets"

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger that accounts for every landed file."""
        return self.home / "ledger.db"

    @property
    def ledger_database_url(self) -> str:
        """The ledger's SQLAlchemy URL in force (SQLite under ``home`` by default)."""
        if self.ledger_url:
            return self.ledger_url
        return f"sqlite:///{self.ledger_path.resolve()}"

    @property
    def serve_urls(self) -> tuple[str, ...]:
        """Every model-server replica in ``serve_url`` (comma-separated), in order."""
        return tuple(u.strip().rstrip("/") for u in (self.serve_url or "").split(",") if u.strip())

    @property
    def data_docs_dir(self) -> Path:
        """Where the Great Expectations Data Docs are built."""
        return self.home / "data_docs"

    @property
    def gx_state_dir(self) -> Path:
        """Validation results that Data Docs render; runtime state, so under ``home``."""
        return self.home / "gx"

    @property
    def inbox(self) -> Path:
        """The folder the watcher reads (``<home>/inbox`` by default)."""
        return self.inbox_dir or self.home / "inbox"

    @property
    def stack_file(self) -> Path:
        """What `mlops up` is running (URLs, process ids), for the other commands to find it."""
        return self.home / "stack.json"

    @property
    def prefect_home(self) -> Path:
        """Prefect's home for the embedded server (``PREFECT_HOME``)."""
        return self.home / "prefect"


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Environment defaults for the embedded tools: Prefect's home under ours, no telemetry, quiet
    consoles (Prefect, GX, MLflow's logs and progress bars).

    The embedded Prefect server records task runs from their events in batches of up to 100, at
    least every second, instead of one transaction per event (Prefect's default): on its SQLite
    database those writes queued the next batch's trigger behind the previous flow's events,
    2.2 s of a 4.2 s submit-to-decision (``benchmarks/batch_profile.py``). Task runs show in the
    UI up to a second later.
    """
    return {
        "PREFECT_HOME": str((settings.prefect_home).resolve()),
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    }
