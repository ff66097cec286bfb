"""The ledger on SQLite and on a real PostgreSQL: claims exactly-once across processes, one landing
of a file submitted by several processes at once, and the same life of a batch on both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlops_cli.services import Postgres, free_port
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.errors import LandingError
from mlops_core.settings import Settings

REPO = Path(__file__).resolve().parents[3]

# One worker process: warm its engine, say it is ready and wait for the start line; then submit the
# same file as every other worker, wait until all have, and race them to claim the landed batches.
WORKER = """
import json, sys, time
from pathlib import Path
from mlops_core.adapters.landing import LandingZone
from mlops_core.settings import Settings

folder, index, workers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
source, shas = Path(sys.argv[4]), sys.argv[5:]


def line_up(step):
    (folder / f"{step}-{index}").touch()
    deadline = time.monotonic() + 60
    while len(list(folder.glob(f"{step}-*"))) < workers:
        if time.monotonic() > deadline:
            sys.exit(f"the other workers never got to {step}")
        time.sleep(0.005)


zone = LandingZone(Settings())
zone.get("credit", "warm-up")
line_up("ready")
duplicate = zone.submit(source, "credit").duplicate
line_up("submitted")
claimed = [sha for sha in shas if zone.claim("credit", sha) is not None]
print(json.dumps({"duplicate": duplicate, "claimed": claimed}))
"""
WORKERS = 8


def use_ledger(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point MLOPS_LEDGER_URL at a fresh PostgreSQL database, or leave the SQLite default."""
    if backend == "postgresql":
        server: Postgres = request.getfixturevalue("postgres")
        database = f"ledger_{uuid.uuid4().hex[:12]}"
        server.create_database(database)
        monkeypatch.setenv("MLOPS_LEDGER_URL", server.url(database))


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings whose ledger is SQLite under the test's home, or a fresh PostgreSQL database."""
    use_ledger(request.param, request, monkeypatch)
    return Settings()


def batch_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"b{i}.csv"
        pl.DataFrame({"a": [i, i + 1], "b": ["x", "y"]}).write_csv(path)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Race:
    """What the worker processes did on one backend, and the ledger they did it in."""

    settings: Settings
    source: Path  # the file every worker submitted
    shas: list[str]  # the batches landed beforehand, which every worker tried to claim
    answers: list[dict[str, Any]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def race(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Race:
    """Eight processes started together (once per backend: starting Python is the slow part)."""
    root = tmp_path_factory.mktemp(f"race-{request.param}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLOPS_HOME", str(root / "home"))
        monkeypatch.setenv("MLOPS_GX_DIR", str(root / "great_expectations"))
        use_ledger(request.param, request, monkeypatch)
        settings = Settings()
        zone = LandingZone(settings)
        *batches, source = batch_files(root / "in", 31)
        shas = [zone.submit(path, "credit").entry.sha256 for path in batches]
        folder = root / "line"
        folder.mkdir()
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(folder),
                    str(i),
                    str(WORKERS),
                    str(source),
                    *shas,
                ],
                cwd=REPO,
                env=os.environ.copy(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(WORKERS)
        ]
    try:
        answers = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            answers.append(json.loads(out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return Race(settings, source, shas, answers)


def test_eight_processes_claim_each_batch_exactly_once(race: Race) -> None:
    claims = Counter(sha for answer in race.answers for sha in answer["claimed"])
    assert claims == Counter(race.shas), "every batch is claimed by exactly one process"
    zone = LandingZone(race.settings)
    assert all(zone.get("credit", sha).state is BatchState.processing for sha in race.shas)


def test_concurrent_submits_from_processes_land_one_file(race: Race) -> None:
    duplicates = sorted(answer["duplicate"] for answer in race.answers)
    assert duplicates == [False] + [True] * (WORKERS - 1)
    landed = [e for e in LandingZone(race.settings).entries("credit") if e.sha256 not in race.shas]
    assert len(landed) == 1 and landed[0].state is BatchState.landed
    assert Path(landed[0].location).read_bytes() == race.source.read_bytes()
    landing = race.settings.landing_dir / "credit"
    assert sorted(p.name for p in landing.iterdir()) == sorted(
        f"{sha}.csv" for sha in [*race.shas, landed[0].sha256]
    ), "one file per batch, no staged copy left behind"


def test_the_life_of_a_batch_is_the_same_on_both_backends(ledger: Settings, tmp_path: Path) -> None:
    zone = LandingZone(ledger)
    first, second, third = (
        zone.submit(path, "credit").entry for path in batch_files(tmp_path / "in", 3)
    )
    assert zone.submit(Path(first.location), "credit").duplicate
    assert [e.sha256 for e in zone.entries("credit")] == [first.sha256, second.sha256, third.sha256]

    # submit -> claim -> settle processed; nothing claims it again
    claimed = zone.claim("credit", first.sha256)
    assert claimed is not None and claimed.state is BatchState.processing
    assert zone.claim("credit", first.sha256) is None
    settled = zone.settle("credit", first.sha256, BatchState.processed, {"rows": 2})
    assert Path(settled.location).parent == (ledger.processed_dir / "credit").resolve()
    assert zone.get("credit", first.sha256) == settled
    assert zone.claim("credit", first.sha256) is None
    with pytest.raises(LandingError, match="processed, not processing"):
        zone.settle("credit", first.sha256, BatchState.quarantined, {})

    # a stale claim is released once, then claimed again; a live one is kept
    assert zone.claim("credit", second.sha256) is not None
    assert not zone.release("credit", second.sha256, stale_after_seconds=3600)
    assert zone.release("credit", second.sha256, stale_after_seconds=0)
    assert not zone.release("credit", second.sha256, stale_after_seconds=0)
    assert zone.get("credit", second.sha256).state is BatchState.landed
    assert zone.claim("credit", second.sha256) is not None

    # fail only a claimed batch, then claim it again and quarantine it
    assert zone.fail("credit", third.sha256, "not claimed") is None
    assert zone.claim("credit", third.sha256) is not None
    failed = zone.fail("credit", third.sha256, "MLflow unreachable")
    assert failed is not None and failed.state is BatchState.failed
    assert failed.reason == "MLflow unreachable" and Path(failed.location) == Path(third.location)
    pending = zone.pending("credit", stale_after_seconds=0)
    assert [(e.sha256, e.state) for e in pending] == [
        (second.sha256, BatchState.processing),
        (third.sha256, BatchState.failed),
    ]
    assert zone.claim("credit", third.sha256) is not None
    quarantined = zone.settle("credit", third.sha256, BatchState.quarantined, {}, "nulls")
    assert quarantined.reason == "nulls" and Path(quarantined.location).exists()
    assert [e.state for e in zone.entries()] == [
        BatchState.processed,
        BatchState.processing,
        BatchState.quarantined,
    ]


def test_an_unreachable_ledger_is_a_clear_error_without_the_password(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg2://mlops:s3cret@127.0.0.1:{free_port()}/ledger"
    monkeypatch.setenv("MLOPS_LEDGER_URL", url)
    (source,) = batch_files(tmp_path / "in", 1)
    with pytest.raises(LandingError, match="cannot be reached") as caught:
        LandingZone(Settings()).submit(source, "credit")
    message = str(caught.value)
    assert "127.0.0.1" in message and "MLOPS_LEDGER_URL" in message
    assert "s3cret" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
