"""The storage adapter: the same contract on a local folder and on S3 (moto's server), and the
landing zone on S3 keeping nothing under ``MLOPS_HOME``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_cli.scenarios import generate_applications
from mlops_cli.services import ObjectStore
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.store import LocalStore, S3Store, Store, open_store, read_json, write_json
from mlops_core.batches import BatchState
from mlops_core.errors import LandingError, UnknownDatasetError, UnusableInputError
from mlops_core.settings import Settings


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: ObjectStore = request.getfixturevalue("s3_server")
    for name, value in server.environment().items():
        request.getfixturevalue("monkeypatch").setenv(name, value)
    return S3Store(f"s3://mlops-test/contract-{tmp_path.name}", server.endpoint)


def test_bytes_round_trip_and_keys_map_to_locations_and_back(store: Store) -> None:
    store.put_bytes("processed/credit/a.report.json", b'{"ok": true}')
    assert store.get_bytes("processed/credit/a.report.json") == b'{"ok": true}'
    assert store.exists("processed/credit/a.report.json")
    assert not store.exists("processed/credit/b.report.json")
    location = store.location("processed/credit/a.report.json")
    assert store.key(location) == "processed/credit/a.report.json"
    assert read_json(store, location) == {"ok": True}
    with pytest.raises(FileNotFoundError):
        store.get_bytes("processed/credit/missing.json")
    with pytest.raises(LandingError, match="outside the store"):
        store.key("/somewhere/else.csv" if isinstance(store, LocalStore) else "s3://other/x.csv")


def test_staged_files_commit_whole_move_list_and_delete(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "batch.csv"
    source.write_bytes(b"a,b\n1,2\n" * 1000)
    staged = store.stage(source, "landing/credit")
    assert staged.size == source.stat().st_size and len(staged.sha256) == 64
    assert store.list("landing") == []  # nothing is visible before the commit
    store.commit(staged, f"landing/credit/{staged.sha256}.csv")
    store.discard(staged)  # after a commit: nothing left to remove, and no error
    key = f"landing/credit/{staged.sha256}.csv"
    assert store.list("landing") == [key]
    store.move(key, f"processed/credit/{staged.sha256}.csv")
    assert store.list("landing") == []
    assert store.list("processed/credit") == [f"processed/credit/{staged.sha256}.csv"]
    local = store.local_path(store.location(f"processed/credit/{staged.sha256}.csv"))
    assert local.read_bytes() == source.read_bytes()
    write_json(store, "processed/credit/r.report.json", {"n": 1})
    store.delete(f"processed/credit/{staged.sha256}.csv")
    assert store.list("processed") == ["processed/credit/r.report.json"]


def test_a_store_url_with_an_unknown_scheme_is_refused(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_STORE_URL", "ftp://files.example.com/mlops")
    with pytest.raises(LandingError, match="scheme 'ftp' is not supported"):
        open_store(Settings())


def test_the_landing_zone_on_s3_keeps_batches_and_reports_in_the_bucket(
    s3_settings: Settings, s3_server: ObjectStore, tmp_path: Path
) -> None:
    good = tmp_path / "week1.parquet"
    generate_applications(np.random.default_rng(3), 200, week=1).write_parquet(good)
    zone = LandingZone(s3_settings)
    receipt = zone.submit(good, "credit")
    prefix = f"{tmp_path.name}/landing/credit/"
    assert receipt.entry.location == f"s3://mlops-test/{prefix}{receipt.entry.sha256}.parquet"
    assert zone.submit(good, "credit").duplicate

    claimed = zone.claim("credit", receipt.entry.sha256)
    assert claimed is not None
    assert zone.local_file(claimed).read_bytes() == good.read_bytes()
    settled = zone.settle("credit", claimed.sha256, BatchState.processed, {"rows": 200})
    assert settled.location.startswith(f"s3://mlops-test/{tmp_path.name}/processed/credit/")
    assert zone.read_report(settled)["detail"] == {"rows": 200}

    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\x00\x01 not a table")
    with pytest.raises(UnusableInputError, match="quarantined as s3://mlops-test/"):
        zone.submit(broken, "credit")
    keys = s3_server.keys("mlops-test", tmp_path.name)
    assert sorted(k.split("/", 1)[1].split("/")[0] for k in keys) == [
        "processed",
        "processed",
        "quarantine",
        "quarantine",
    ]
    quarantined = [e for e in zone.entries("credit") if e.state is BatchState.quarantined]
    assert "binary content" in json.dumps(zone.read_report(quarantined[0]))
    home = s3_settings.home
    assert not any((home / part).exists() for part in ("landing", "processed", "quarantine"))


def test_the_catalog_on_s3_registers_in_the_bucket_and_rereads_a_changed_reference(
    s3_settings: Settings, stream, tmp_path: Path
) -> None:
    catalog = DatasetCatalog(s3_settings)
    with pytest.raises(UnknownDatasetError, match="none yet"):
        catalog.get("credit")
    registered = catalog.add(stream.spec, stream.reference_path)
    assert catalog.names() == ["credit"]
    assert DatasetCatalog(s3_settings).get("credit").spec == stream.spec
    first = registered.reference()
    assert first.height == pl.read_parquet(stream.reference_path).height
    assert not (s3_settings.home / "datasets").exists()

    # Registered again with another reference: the cached copy of the old one is not used.
    smaller = tmp_path / "smaller.parquet"
    first.head(500).write_parquet(smaller)
    DatasetCatalog(s3_settings).add(stream.spec, smaller)
    assert DatasetCatalog(s3_settings).get("credit").reference().height == 500
