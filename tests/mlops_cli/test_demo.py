"""The demo shows the stream's truth: corrupted batches quarantined, every other batch processed."""

from pathlib import Path

import pytest
from rich.console import Console

from mlops_cli.demo import MARKER, fresh_home, run_demo
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings


@pytest.mark.usefixtures("prefect_api")
def test_demo_shows_the_streams_truth(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same stream and sizes as `make demo`: what it prints is what this test checks."""
    monkeypatch.setenv("MLOPS_HOME", str(settings.home))  # run_demo repoints these; restore after
    monkeypatch.setenv("MLOPS_GX_DIR", str(settings.gx_dir))
    console = Console(record=True, width=250)
    rows = run_demo(settings, console=console)
    assert rows, "the demo processed batches"
    for row in rows:
        expected = "quarantined" if row["corruption"] else "processed"
        assert row["state"] == expected, row
        assert Path(row["location"]).exists()
        assert Path(row["location"]).with_name(Path(row["location"]).stem + ".report.json").exists()
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    stable = [r for r in by_kind["stable"] if not r["corruption"]]
    assert all(r["drift"] is False and r["decision"] == "none" for r in stable), stable
    harmless = by_kind["harmless_drift"]
    assert all(r["drivers"] == ["channel"] and r["decision"] == "watch" for r in harmless)
    assert all(r["drift"] and "credit_score" in r["drivers"] for r in by_kind["sudden_shift"])
    assert all(r["drift"] is None for r in rows if r["corruption"]), "quarantined: no drift test"
    assert all(r["decision"] in ("none", "-") for r in rows if r["corruption"])
    concept = by_kind["concept_drift"]
    assert concept[0]["decision"] == "retrain" and concept[0]["retrain"] == "promoted", concept[0]
    promoted = [r for r in rows if r["retrain"] == "promoted"]
    assert promoted and all(r["kind"] in ("concept_drift", "sudden_shift") for r in promoted)
    assert rows[-1]["champion"] != "1", "the champion changed during the stream"
    text = console.export_text()
    assert "new-regime" in text and "Data Docs" in text and "mlflow ui" in text


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
