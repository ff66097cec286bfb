"""Shared fixtures: a temporary MLOPS_HOME, a small seeded stream, a registered dataset, Prefect,
rollout settings fast enough for tests."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: its home in a temporary folder, no telemetry, quiet console.
_PREFECT_HOME = tempfile.mkdtemp(prefix="mlops-test-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)  # one per test process
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
os.environ["GX_ANALYTICS_ENABLED"] = "false"

from mlops_cli.scenarios import Stream, write_stream  # noqa: E402
from mlops_cli.services import ObjectStore  # noqa: E402
from mlops_core.adapters.catalog import DatasetCatalog, RegisteredDataset  # noqa: E402
from mlops_core.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _mlflow_global_uris_end_with_the_test() -> Iterator[None]:
    """MLflow's fluent tracking and registry URIs are process-wide and copied into
    ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``: code under test sets them (registering a
    model does), and a later test's ``MlflowClient(tracking_uri=...)`` would then resolve its
    registry to the earlier test's database. Each test leaves them unset."""
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets (and its variable)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(autouse=True)
def _prefect_events_to_the_current_api(request: pytest.FixtureRequest) -> None:
    """Prefect's events worker (which records task runs) is one per process, bound to the API
    URL in force when it was made: a test that pointed PREFECT_API_URL at a server of its own
    (``temporary_settings``) and stopped it would leave later flow calls' task runs sent to a dead
    server. A test on the shared Prefect server starts with a fresh worker."""
    if "prefect_api" in request.fixturenames:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5, at_exit=False)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing every path into this test's temporary folder (also via the environment)."""
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_GX_DIR", str(tmp_path / "great_expectations"))
    return Settings()


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """The demo stream, small: 3,000 reference rows and 500-row batches."""
    return write_stream(
        tmp_path_factory.mktemp("stream"), seed=11, reference_rows=3_000, batch_rows=500
    )


@pytest.fixture
def registered(settings: Settings, stream: Stream) -> RegisteredDataset:
    return DatasetCatalog(settings).add(stream.spec, stream.reference_path)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real, temporary Prefect server for the flow tests (Prefect's own test harness)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def fast_rollout(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "MLOPS_ROLLOUT_STEPS": "50,100",
        "MLOPS_ROLLOUT_MIN_REQUESTS": "60",
        "MLOPS_ROLLOUT_MIN_FEEDBACK": "60",
        "MLOPS_ROLLOUT_STEP_SECONDS": "40",
        "MLOPS_ROLLOUT_MAX_P99_MS": "1000",
        # Limits a step can show within seconds of test traffic (~100 clean requests, ~150
        # labelled rows); the defaults (1%, 2 points) need ~550 and ~1,000-3,000.
        "MLOPS_ROLLOUT_MAX_ERROR_RATE": "0.05",
        "MLOPS_ROLLOUT_ACCURACY_TOLERANCE": "0.05",
        "MLOPS_SERVE_POLL_SECONDS": "0.3",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """moto's S3 server (an HTTP server on a loopback port) with the bucket ``mlops-test``."""
    server = ObjectStore(tmp_path_factory.mktemp("s3")).start(("mlops-test",))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_settings(
    settings: Settings, s3_server: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    """``settings`` with the store at ``s3://mlops-test/<this test>`` (also via the environment)."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOPS_STORE_URL", f"s3://mlops-test/{tmp_path.name}")
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", s3_server.endpoint)
    return Settings()


# The longest test files, longest first (their time in a two-process `make test`). pytest-xdist
# hands out files in collection order (`--dist loadfile --no-loadscope-reorder`); started first,
# the long ones run beside the many short ones instead of leaving one process alone at the end.
LONGEST_FIRST = (
    "tests/mlops_cli/test_demo.py",
    "tests/faults/test_burst.py",
    "tests/cluster/test_cluster.py",
    "tests/faults/test_worker_killed.py",
    "tests/browser/test_pages.py",
    "tests/deployments/test_stack.py",
    "tests/faults/test_mlflow_outage.py",
    "tests/mlops_cli/test_report.py",
    "tests/flows/test_rollout.py",
    "tests/deployments/test_alert_webhook.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the longest files first (a stable sort: the rest keep their collection order)."""
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        path = Path(str(item.fspath)).relative_to(REPO).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=key)
