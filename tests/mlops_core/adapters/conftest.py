"""Fixtures of the adapter tests: a real PostgreSQL for the ledger's tests, and fresh ledgers."""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest

from mlops_cli.services import Postgres
from mlops_core.settings import Settings


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One real PostgreSQL per test module (each ledger gets its own database in it)."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        reason = "PostgreSQL is not installed: run bash .ci/system-packages as root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("postgres")
    server = Postgres(root).start()
    try:
        yield server
    finally:
        server.stop()
        if root not in server.folder.parents:  # as root it lives in a /tmp folder of its own
            shutil.rmtree(server.folder.parent, ignore_errors=True)


@pytest.fixture
def new_ledger_url(request: pytest.FixtureRequest, settings: Settings) -> Callable[[str], str]:
    """A fresh ledger's URL for a backend: a new SQLite file under the test's home, or a new
    database in the module's PostgreSQL (started on first use)."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            settings.home.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{settings.home / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
        server: Postgres = request.getfixturevalue("postgres")
        database = f"ledger_{uuid.uuid4().hex[:12]}"
        server.create_database(database)
        return server.url(database)

    return make
