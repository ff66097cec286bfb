"""The demo shows the stream's truth: corrupted batches quarantined, every other batch processed."""

from pathlib import Path

import pytest
from rich.console import Console

from mlops_cli.demo import MARKER, fresh_home, run_demo
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings


@pytest.mark.usefixtures("prefect_api")
def test_demo_quarantines_exactly_the_corrupted_batches(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(settings.home))  # run_demo repoints these; restore after
    monkeypatch.setenv("MLOPS_GX_DIR", str(settings.gx_dir))
    console = Console(record=True, width=200)
    rows = run_demo(settings, seed=3, batch_rows=300, reference_rows=2_000, console=console)
    assert rows, "the demo processed batches"
    for row in rows:
        expected = "quarantined" if row["corruption"] else "processed"
        assert row["state"] == expected, row
        assert Path(row["location"]).exists()
        assert Path(row["location"]).with_name(Path(row["location"]).stem + ".report.json").exists()
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    assert all(r["drift"] is False for r in by_kind["stable"]), (
        "seeded: stable weeks raise no alarm"
    )
    assert all(r["drift"] and r["drivers"] == ["channel"] for r in by_kind["harmless_drift"])
    assert all(r["drift"] and "credit_score" in r["drivers"] for r in by_kind["sudden_shift"])
    assert all(r["drift"] is None for r in rows if r["corruption"]), "quarantined: no drift test"
    text = console.export_text()
    assert "new-regime" in text and "quarantine/" in text and "Data Docs" in text


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "demo"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(MlopsError, match="not made by `mlops demo`"):
        fresh_home(precious)
    assert (precious / "keep.txt").exists()
    (precious / MARKER).write_text("")
    fresh_home(precious)
    assert not (precious / "keep.txt").exists()
