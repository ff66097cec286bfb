from pathlib import Path

import pytest

from mlops_core.settings import Settings, prefect_environment


def test_paths_follow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    settings = Settings()
    assert settings.landing_dir == tmp_path / "state" / "landing"
    assert settings.processed_dir == tmp_path / "state" / "processed"
    assert settings.quarantine_dir == tmp_path / "state" / "quarantine"
    assert settings.artifacts_dir == tmp_path / "state" / "mlartifacts"
    assert settings.tracking_uri == f"sqlite:///{(tmp_path / 'state' / 'mlflow.db').resolve()}"
    assert prefect_environment(settings)["PREFECT_HOME"] == str(
        (tmp_path / "state" / "prefect").resolve()
    )


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_HOME", raising=False)
    assert Settings().home == Path(".mlops")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MLOPS_BOUNDS_MARGIN", "0.1")
    settings = Settings()
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    assert settings.bounds_margin == 0.1


def test_inconsistent_thresholds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_MIN_BATCH_ROWS", "100")
    monkeypatch.setenv("MLOPS_MAX_BATCH_ROWS", "10")
    with pytest.raises(ValueError, match="MLOPS_MIN_BATCH_ROWS"):
        Settings()


def test_building_settings_has_no_side_effects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "never"))
    Settings()
    assert not (tmp_path / "never").exists()
