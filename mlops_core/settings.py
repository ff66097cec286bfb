"""The one settings object: every knob of the product, read from ``MLOPS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    min_batch_rows: int = Field(default=10, ge=1, description="Fewest rows a batch may have.")
    max_batch_rows: int = Field(default=20_000_000, ge=1, description="Most rows a batch may have.")
    max_batch_bytes: int = Field(
        default=4 * 1024**3, ge=1, description="Largest batch file accepted, in bytes."
    )

    drift_false_alarm_rate: float = Field(
        default=0.05, gt=0, lt=1, description="Family-wise false-alarm rate of the drift verdict."
    )

    @model_validator(mode="after")
    def _rows_ordered(self) -> Settings:
        if self.min_batch_rows > self.max_batch_rows:
            raise ValueError("MLOPS_MIN_BATCH_ROWS must not exceed MLOPS_MAX_BATCH_ROWS")
        return self

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (SQLite under ``home`` by default)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.mlflow_artifacts_dir or self.home / "mlartifacts"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def processed_dir(self) -> Path:
        return self.home / "processed"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.db"

    @property
    def data_docs_dir(self) -> Path:
        return self.home / "data_docs"

    @property
    def gx_state_dir(self) -> Path:
        """Validation results that Data Docs render; runtime state, so under ``home``."""
        return self.home / "gx"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Environment defaults for an embedded Prefect: its home under ours, no telemetry, quiet console."""
    return {
        "PREFECT_HOME": str((settings.prefect_home).resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
    }
