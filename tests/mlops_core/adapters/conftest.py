"""Fixtures of the adapter tests: a real PostgreSQL for the ledger's tests."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator

import pytest

from mlops_cli.services import Postgres


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
