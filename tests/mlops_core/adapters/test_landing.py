"""The landing zone: atomic landing by sha256, duplicates, one claim, settling with a report."""

import json
import threading
from pathlib import Path

import polars as pl
import pytest

from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.data import sha256_file
from mlops_core.errors import BadNameError, LandingError, UnusableInputError
from mlops_core.settings import Settings


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    path = tmp_path / "batch.csv"
    pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}).write_csv(path)
    return path


def leftovers(settings: Settings) -> list[Path]:
    return [
        p for p in settings.home.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")
    ]


def test_submit_lands_a_copy_named_by_sha256(settings: Settings, batch: Path) -> None:
    receipt = LandingZone(settings).submit(batch, "credit")
    digest = sha256_file(batch)
    assert not receipt.duplicate
    assert receipt.entry.state is BatchState.landed
    assert (
        Path(receipt.entry.location)
        == (settings.landing_dir / "credit" / f"{digest}.csv").resolve()
    )
    assert Path(receipt.entry.location).read_bytes() == batch.read_bytes()
    assert batch.exists(), "the user's file is copied, never moved"
    assert leftovers(settings) == []


def test_same_content_twice_is_a_duplicate(settings: Settings, batch: Path, tmp_path: Path) -> None:
    zone = LandingZone(settings)
    first = zone.submit(batch, "credit")
    renamed = tmp_path / "renamed.csv"
    renamed.write_bytes(batch.read_bytes())
    second = zone.submit(renamed, "credit")
    assert second.duplicate and second.entry.sha256 == first.entry.sha256
    assert "duplicate" in second.describe()
    assert len(zone.entries("credit")) == 1
    assert len(list((settings.landing_dir / "credit").iterdir())) == 1
    assert leftovers(settings) == []


def test_concurrent_submits_of_one_file_land_it_once(settings: Settings, batch: Path) -> None:
    zone = LandingZone(settings)
    receipts = []
    threads = [
        threading.Thread(target=lambda: receipts.append(zone.submit(batch, "credit")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.duplicate for r in receipts) == [False] + [True] * 7
    assert len(zone.entries()) == 1


def test_unreadable_file_is_quarantined_at_submit_with_a_report(
    settings: Settings, tmp_path: Path
) -> None:
    garbage = tmp_path / "export.parquet"
    garbage.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UnusableInputError, match="quarantined") as caught:
        LandingZone(settings).submit(garbage, "credit")
    assert str(garbage) in str(caught.value)
    (entry,) = LandingZone(settings).entries("credit")
    assert entry.state is BatchState.quarantined
    assert Path(entry.location).parent == (settings.quarantine_dir / "credit").resolve()
    report = json.loads(Path(entry.report_location).read_text())
    assert report["stage"] == "submit" and "neither parquet nor CSV" in report["reason"]


def test_missing_file_is_refused_and_nothing_lands(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(UnusableInputError, match="no such file"):
        LandingZone(settings).submit(tmp_path / "absent.csv", "credit")
    assert LandingZone(settings).entries() == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_bad_dataset_names_touch_nothing(settings: Settings, batch: Path, name: str) -> None:
    with pytest.raises(BadNameError):
        LandingZone(settings).submit(batch, name)
    assert not settings.home.exists()


def test_claim_is_granted_once_then_settle_moves_with_report(
    settings: Settings, batch: Path
) -> None:
    zone = LandingZone(settings)
    sha = zone.submit(batch, "credit").entry.sha256
    assert zone.claim("credit", sha) is not None
    assert zone.claim("credit", sha) is None, "a second claim must fail"
    settled = zone.settle(
        "credit", sha, BatchState.quarantined, {"verdict": "failed"}, "nulls in income"
    )
    assert Path(settled.location).parent == (settings.quarantine_dir / "credit").resolve()
    assert Path(settled.location).exists()
    assert not (settings.landing_dir / "credit" / f"{sha}.csv").exists()
    report = json.loads(Path(settled.report_location).read_text())
    assert report["reason"] == "nulls in income" and report["detail"] == {"verdict": "failed"}
    assert zone.get("credit", sha).state is BatchState.quarantined
    assert zone.claim("credit", sha) is None
    with pytest.raises(LandingError, match="quarantined, not processing"):
        zone.settle("credit", sha, BatchState.processed, {}, None)


def test_every_file_ends_in_exactly_one_place(settings: Settings, tmp_path: Path) -> None:
    zone = LandingZone(settings)
    shas = []
    for i in range(4):
        path = tmp_path / f"b{i}.csv"
        pl.DataFrame({"a": [i]}).write_csv(path)
        shas.append(zone.submit(path, "credit").entry.sha256)
    for i, sha in enumerate(shas):
        zone.claim("credit", sha)
        zone.settle(
            "credit", sha, BatchState.processed if i % 2 else BatchState.quarantined, {}, None
        )
    for sha in shas:
        places = [p for p in settings.home.rglob(f"{sha}.csv")]
        assert len(places) == 1
    assert not any((settings.landing_dir / "credit").iterdir())


def test_failed_copy_leaves_no_partial_file(settings: Settings, tmp_path: Path) -> None:
    # A landing folder we cannot write to stands in for a full disk: the copy fails cleanly.
    (settings.landing_dir).mkdir(parents=True)
    (settings.landing_dir / "credit").write_text("not a folder")
    path = tmp_path / "b.csv"
    pl.DataFrame({"a": [1]}).write_csv(path)
    with pytest.raises(LandingError, match="nothing was landed"):
        LandingZone(settings).submit(path, "credit")
    assert LandingZone(settings).entries() == []


def test_a_failed_run_leaves_the_batch_in_landing_for_a_second_claim(
    settings: Settings, batch: Path
) -> None:
    zone = LandingZone(settings)
    entry = zone.submit(batch, "credit").entry
    assert zone.fail("credit", entry.sha256, "not claimed yet") is None  # only a claim fails
    zone.claim("credit", entry.sha256)
    failed = zone.fail("credit", entry.sha256, "MLflow unreachable")
    assert failed is not None and failed.state is BatchState.failed
    assert failed.reason == "MLflow unreachable" and Path(failed.location) == Path(entry.location)
    assert Path(entry.location).exists()
    assert [e.sha256 for e in zone.pending("credit", stale_after_seconds=3600)] == [entry.sha256]
    again = zone.claim("credit", entry.sha256)
    assert again is not None and again.state is BatchState.processing
    settled = zone.settle("credit", entry.sha256, BatchState.processed, {})
    assert settled.reason is None and not Path(entry.location).exists()
    assert zone.pending("credit", stale_after_seconds=0) == []
