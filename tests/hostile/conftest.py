"""A model server with a real champion and challenger, shared by the hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from schemathesis.python import asgi

from mlops_cli.scenarios import Stream
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.serving import create_app
from mlops_core.serving.follower import ROLLOUT_MODE, ROLLOUT_VERSION, ROLLOUT_WEIGHT
from mlops_core.settings import Settings

ADMIN_TOKEN = "hostile-admin-token-7f3a9c"  # test_limits searches every log and answer for it


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, stream: Stream) -> Iterator[FastAPI]:
    """A server with a champion and a challenger in a 50% canary (so both variants answer),
    built with ``MLOPS_ADMIN_TOKEN`` set: everything it trains and logs is done knowing it.

    One for the whole session (training and registering is the slow part: 40-100 s a copy); its
    settings are ``app.state.settings``, its home a temporary folder of its own. Tests read it
    and may add apps on its home; none moves its aliases or rollout tags. Its environment
    (``app.state.environment``) is set only while a test that uses it runs (``_server_environment``),
    never for the rest of the session.
    """
    root = tmp_path_factory.mktemp("hostile-server")
    environment = {
        "MLOPS_HOME": str(root / "home"),
        "MLOPS_GX_DIR": str(root / "great_expectations"),
        "MLOPS_TRAIN_MAX_ITER": "20",  # a quick model is enough to be called
        "MLOPS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in environment.items():
            env.setenv(name, value)
        current = Settings()
        DatasetCatalog(current).add(stream.spec, stream.reference_path)
        ctx = DatasetContext.open(current, "credit")
        data = gather_training_data(ctx, first_model=True)
        registry = ModelRegistry(current, "credit")
        registry.promote(train_challenger(ctx, data).version)
        second = train_challenger(ctx, data).version
        registry.set_challenger(second)
        registry.set_tags({ROLLOUT_MODE: "canary", ROLLOUT_WEIGHT: "0.5", ROLLOUT_VERSION: second})
        app = create_app(current, follow=False, log_traffic=False)
        app.state.settings = current
        app.state.environment = environment
    yield app
    asgi.shutdown_lifespans()  # when schemathesis started the app's lifespan, stop it here


@pytest.fixture(autouse=True)
def _server_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared server's environment, for the duration of a test that uses the server."""
    if "server" in request.fixturenames:
        app: FastAPI = request.getfixturevalue("server")
        for name, value in app.state.environment.items():
            monkeypatch.setenv(name, value)
