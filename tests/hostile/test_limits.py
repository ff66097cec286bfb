"""Limits a hostile or careless caller meets: sizes, names and paths, tokens, bind addresses, secrets.

What tests/mlops_core/test_server.py, test_landing.py and tests/mlops_cli/test_cli.py already
prove (413 on a declared oversized /predict body, 422 for too many records, the 401/403 of
/admin/refresh, ``../credit`` and ``a/b`` refused by submit and validate) is not repeated here.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mlops_cli import stack as stack_module
from mlops_cli.main import app as cli
from mlops_cli.scenarios import Stream
from mlops_core.adapters.catalog import DatasetCatalog, RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.errors import BadNameError, MlopsError, UnusableInputError
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec, check_dataset_name

runner = CliRunner()
# Distinctive, so a leak anywhere is found by search; the same one conftest's server is built with.
ADMIN_TOKEN = "hostile-admin-token-7f3a9c"

HOSTILE_NAMES = [
    "../x",
    "a/b",
    "..",
    ".",
    "/etc/passwd",
    "/tmp/escape",
    "C:\\temp",
    "a\\b",
    "x\x00y",
    "credit\x00",
    "credit\n",
    "credit/",
    "~root",
    "-rf",
    "_hidden",
    "crédit",
    "ｃredit",  # fullwidth letter that normalises to "credit"
    "x" * 65,
    "y" * 10_000,
    "%2e%2e",
]


def leaks(text: str) -> bool:
    """Whether ``text`` shows the token or any 8 characters of it (a truncated repr shows a tail)."""
    return any(ADMIN_TOKEN[i : i + 8] in text for i in range(len(ADMIN_TOKEN) - 7))


def mlops(*args: Any) -> Any:
    return runner.invoke(cli, [str(a) for a in args])


def outside(tmp_path: Path, home: Path) -> set[Path]:
    """Every path under ``tmp_path`` that is not MLOPS_HOME or inside it."""
    return {p for p in tmp_path.rglob("*") if p != home and home not in p.parents}


def record(spec: DatasetSpec) -> dict[str, Any]:
    return {f: (1.0 if f in spec.numeric else "car") for f in spec.features}


# ----------------------------------------------------------------------------- payload sizes


def test_a_body_without_content_length_is_still_limited(server: FastAPI) -> None:
    """Leaving out Content-Length (a chunked upload) must not lift the 413."""
    limit = server.state.settings.serve_max_body_bytes
    spec = DatasetCatalog(server.state.settings).get("credit").spec
    body = json.dumps({"records": [record(spec)] * 200}).encode()
    big = json.dumps({"records": [record(spec)] * 200, "pad": "x" * limit}).encode()

    def chunks(data: bytes) -> Any:
        for i in range(0, len(data), 65_536):
            yield data[i : i + 65_536]

    with TestClient(server) as client:
        answer = client.post(
            "/predict", content=chunks(big), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413, answer.text[:300]
        assert "at most" in answer.json()["detail"]
        fine = client.post(
            "/predict", content=chunks(body), headers={"content-type": "application/json"}
        )
        assert fine.status_code == 200, fine.text[:300]
        feedback = client.post(
            "/feedback",
            content=chunks(json.dumps({"request_id": "x", "labels": [1] * limit}).encode()),
            headers={"content-type": "application/json"},
        )
        assert feedback.status_code == 413


def test_oversized_feedback_is_a_413_naming_the_limit(server: FastAPI) -> None:
    limit = server.state.settings.serve_max_body_bytes
    with TestClient(server) as client:
        answer = client.post("/feedback", json={"request_id": "x", "labels": [1] * limit})
    assert answer.status_code == 413
    assert f"{limit:,}" in answer.json()["detail"]


def test_hostile_numbers_and_query_values_are_4xx_not_5xx(server: FastAPI) -> None:
    spec = DatasetCatalog(server.state.settings).get("credit").spec
    feature = spec.numeric[0]
    with TestClient(server) as client:
        # JSON integers have no size limit; a float does (10**400 cannot be one).
        huge = json.dumps({"record": {**record(spec), feature: 10**400}})
        answer = client.post("/predict", content=huge, headers={"content-type": "application/json"})
        assert answer.status_code == 422, answer.text
        (problem,) = answer.json()["detail"]
        assert problem["loc"] == ["body", "records", 0, feature] and "finite" in problem["msg"]
        # A lone surrogate is valid JSON but not a string: a 422 naming the field, whose body
        # (it quotes the input) is still valid UTF-8, not a 500 while rendering it.
        for path, body, field in (
            ("/predict", {"record": record(spec), "routing_key": "\ud800user"}, "routing_key"),
            ("/feedback", {"request_id": "\udfff", "label": 1}, "request_id"),
        ):
            answer = client.post(
                path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert answer.status_code == 422, answer.text
            (problem,) = answer.json()["detail"]
            assert problem["loc"] == ["body", field] and "\\ud" in problem["input"]
        # NaN and infinity are not a point in time: refused, not echoed into invalid JSON.
        for since in ("nan", "inf", "-inf", "1e999", "abc"):
            answer = client.get("/rollout/stats", params={"since": since})
            assert answer.status_code == 422, (since, answer.status_code, answer.text)
        assert client.get("/rollout/stats", params={"since": "0"}).status_code == 200


@pytest.fixture
def small_batches(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """MLOPS_MAX_BATCH_BYTES=2048 and a batch file of about 10 kB."""
    monkeypatch.setenv("MLOPS_MAX_BATCH_BYTES", "2048")
    path = tmp_path / "inputs" / "big.csv"
    path.parent.mkdir()
    pl.DataFrame({"a": list(range(2_000)), "b": ["x"] * 2_000}).write_csv(path)
    assert path.stat().st_size > 2048
    return path


def test_submit_refuses_a_file_over_max_batch_bytes(
    settings: Settings, small_batches: Path
) -> None:
    before = small_batches.read_bytes()
    with pytest.raises(UnusableInputError) as caught:
        LandingZone(Settings()).submit(small_batches, "credit")
    message = str(caught.value)
    assert str(small_batches) in message and "over the limit of 2,048" in message
    assert "MLOPS_MAX_BATCH_BYTES" in message, "it says what to do"
    landing = settings.landing_dir / "credit"
    assert not landing.exists() or not any(landing.iterdir()), "nothing is landed"
    assert small_batches.read_bytes() == before, "the user's file is left as it was"


def test_an_oversized_file_is_not_copied_anywhere(settings: Settings, small_batches: Path) -> None:
    with pytest.raises(UnusableInputError):
        LandingZone(Settings()).submit(small_batches, "credit")
    copies = [p for p in settings.home.rglob("*") if p.is_file() and p.stat().st_size > 2048]
    assert copies == [] and LandingZone(Settings()).entries() == []


def test_mlops_submit_refuses_a_file_over_max_batch_bytes(
    registered: RegisteredDataset, settings: Settings, small_batches: Path
) -> None:
    result = mlops("submit", small_batches, "--dataset", "credit")
    assert result.exit_code == 2, result.output
    assert "over the limit of 2,048" in result.output and "Traceback" not in result.output
    landing = settings.landing_dir / "credit"
    assert not landing.exists() or not any(landing.iterdir())


# ----------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_check_dataset_name_refuses_traversal_and_oddities(name: str) -> None:
    with pytest.raises(BadNameError) as caught:
        check_dataset_name(name)
    assert "not allowed" in str(caught.value) and "use 1-64 letters" in str(caught.value)
    assert len(str(caught.value)) < 200 + 4 * len(name)


@pytest.mark.parametrize("name", [None, 3, b"credit", ["credit"]])
def test_check_dataset_name_refuses_what_is_not_a_string(name: Any) -> None:
    with pytest.raises(BadNameError):
        check_dataset_name(name)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_catalog_and_landing_zone_refuse_bad_names_and_touch_nothing(
    settings: Settings, stream: Stream, tmp_path: Path, name: str
) -> None:
    batch = tmp_path / "in" / "batch.csv"
    batch.parent.mkdir()
    pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}).write_csv(batch)
    before = outside(tmp_path, settings.home)
    catalog = DatasetCatalog(settings)
    for call in (
        lambda: catalog.get(name),
        lambda: catalog.folder(name),
        lambda: catalog.resolve(name, None, None),
        lambda: LandingZone(settings).submit(batch, name),
        lambda: LandingZone(settings, "labels").submit(batch, name),
    ):
        with pytest.raises(BadNameError, match="not allowed"):
            call()
    with pytest.raises(MlopsError, match="name"):
        catalog.add(stream.spec.model_copy(update={"name": name}), stream.reference_path)
    assert outside(tmp_path, settings.home) == before, "nothing created outside MLOPS_HOME"
    assert not (settings.datasets_dir.exists() and any(settings.datasets_dir.iterdir()))
    assert not settings.landing_dir.exists()


CLI_NAMES = ["../x", "..", "/etc/passwd", "x\x00y", "x" * 300, "a/../../b"]
CLI_COMMANDS: list[tuple[str, ...]] = [
    ("submit", "{batch}"),
    ("validate", "{batch}"),
    ("process", "{batch}"),
    ("labels", "{batch}"),
    ("reconcile",),
    ("gc",),
    ("train",),
    ("promote",),
    ("rollback",),
    ("status",),
    ("serve",),
    ("drift", "{batch}", "{batch}"),
]


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_a_hostile_dataset_name(
    registered: RegisteredDataset, settings: Settings, tmp_path: Path, command: tuple[str, ...]
) -> None:
    batch = tmp_path / "in" / "batch.csv"
    batch.parent.mkdir()
    pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}).write_csv(batch)
    before = outside(tmp_path, settings.home)
    for name in CLI_NAMES:
        args = [a.format(batch=batch) for a in command]
        result = mlops(*args, "--dataset", name)
        assert result.exit_code == 2, (command, name, result.output)
        assert "not allowed" in result.output, (command, name, result.output)
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            command,
            name,
            result.exception,
        )
    assert outside(tmp_path, settings.home) == before, "nothing created outside MLOPS_HOME"
    assert LandingZone(settings).entries() == []


def test_dataset_add_refuses_a_spec_whose_name_escapes(
    settings: Settings, stream: Stream, tmp_path: Path
) -> None:
    for name in ("../../escape", "/abs", ".."):
        spec = tmp_path / "bad.yaml"
        spec.write_text(stream.spec.to_yaml().replace("name: credit", f"name: {name!r}"))
        result = mlops("dataset", "add", spec, "--reference", stream.reference_path)
        assert result.exit_code == 2 and "name" in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "escape").exists() and DatasetCatalog(settings).names() == []


# ----------------------------------------------------------------------------- admin routes


def test_admin_compares_tokens_in_constant_time(
    server: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.state.settings.admin_token.get_secret_value() == ADMIN_TOKEN
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with TestClient(server) as client:
        assert (
            client.post("/admin/refresh", headers={"Authorization": "Bearer no"}).status_code == 401
        )
        right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.post("/admin/refresh", headers=right).status_code == 200
    assert len(compared) == 2, "every token check goes through hmac.compare_digest"


NEAR_MISSES = [
    f"Basic {ADMIN_TOKEN}",
    f"Bearer {ADMIN_TOKEN}x",
    f"Bearer {ADMIN_TOKEN[:-1]}",
    f"Bearer {ADMIN_TOKEN.upper()}",
    "Bearer ",
    "Bearer \u00e9\u00e9",
    f"Bearer {ADMIN_TOKEN}\x00",
    "Bearer " + "x" * 8_000,
]


def test_admin_refuses_near_misses(server: FastAPI) -> None:
    with TestClient(server) as client:
        for header in NEAR_MISSES:
            answer = client.post(
                "/admin/refresh", headers={"Authorization": header.encode("latin-1")}
            )
            assert answer.status_code == 401, (header[:40], answer.status_code)
            assert ADMIN_TOKEN not in answer.text


def test_admin_routes_are_all_guarded(server: FastAPI) -> None:
    admin = [r for r in server.routes if getattr(r, "path", "").startswith("/admin")]
    assert admin, "the server has admin routes"
    with TestClient(server) as client:
        for route in admin:
            for method in route.methods or ():
                answer = client.request(method, route.path)
                assert answer.status_code == 401, (method, route.path, answer.status_code)


# Here rather than in a module of their own: the module's server is the slow part (training).
def test_admin_refuses_a_bare_token_without_the_bearer_scheme(server: FastAPI) -> None:
    with TestClient(server) as client:
        answer = client.post("/admin/refresh", headers={"Authorization": ADMIN_TOKEN})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "Bearer <MLOPS_ADMIN_TOKEN>" in answer.json()["detail"], "it says what to send"
    assert ADMIN_TOKEN not in answer.text


def test_admin_refuses_other_schemes(server: FastAPI) -> None:
    with TestClient(server) as client:
        for header in ("Basic xyz", f"Token {ADMIN_TOKEN}", "Bearer", "", f" {ADMIN_TOKEN}"):
            answer = client.post("/admin/refresh", headers={"Authorization": header})
            assert answer.status_code == 401, (header[:10], answer.text)
            assert answer.headers["www-authenticate"] == "Bearer", header[:10]
            assert ADMIN_TOKEN not in answer.text
        answer = client.post("/admin/refresh")
        assert (answer.status_code, answer.headers["www-authenticate"]) == (401, "Bearer")


def test_admin_wrong_bearer_token_is_an_invalid_token(server: FastAPI) -> None:
    with TestClient(server) as client:
        answer = client.post("/admin/refresh", headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_admin_accepts_the_bearer_scheme_in_any_case(server: FastAPI) -> None:
    with TestClient(server) as client:
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = client.post(
                "/admin/refresh", headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"}
            )
            assert answer.status_code == 200, (scheme, answer.text)
            assert answer.json()["changed"] is False


# ----------------------------------------------------------------------------- loopback


def test_settings_serve_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_SERVE_HOST", raising=False)
    assert Settings().serve_host == "127.0.0.1"


def test_mlops_serve_binds_loopback_by_default(
    registered: RegisteredDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.delenv("MLOPS_SERVE_HOST", raising=False)
    bound: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: bound.update(kwargs))
    result = mlops("serve")
    assert result.exit_code == 0, result.output
    assert bound["host"] == "127.0.0.1" and bound["port"] == 8000
    assert "http://127.0.0.1:8000" in result.output


def test_mlops_up_starts_prefect_and_mlflow_on_loopback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command lines `mlops up` builds, captured instead of started."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(stack_module, "healthy", lambda url: False)
    monkeypatch.setattr(stack_module, "_http_ok", lambda url: False)
    commands: dict[str, list[str]] = {}

    def spawn(self: Any, name: str, command: list[str]) -> Any:
        commands[name] = command
        return None

    monkeypatch.setattr(stack_module.Stack, "_spawn", spawn)
    monkeypatch.setattr(stack_module.Stack, "_wait", lambda *args, **kwargs: None)
    up = stack_module.Stack(settings, mlflow_ui=True)
    up._start_prefect()
    up._start_mlflow()
    for name in ("prefect-server", "mlflow-ui"):
        command = commands[name]
        assert command[command.index("--host") + 1] == "127.0.0.1", (name, command)
        assert "0.0.0.0" not in command
    assert up.api_url.startswith("http://127.0.0.1:") and up.mlflow_url.startswith(
        "http://127.0.0.1:"
    )


# ----------------------------------------------------------------------------- secrets


@pytest.fixture
def secret_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", ADMIN_TOKEN)
    return Settings()


def test_settings_never_show_the_admin_token(secret_settings: Settings) -> None:
    shown = [
        repr(secret_settings),
        str(secret_settings),
        secret_settings.model_dump_json(),
        json.dumps(secret_settings.model_dump(mode="json")),
        str(secret_settings.model_dump()),
        repr(secret_settings.admin_token),
        f"{secret_settings.admin_token}",
    ]
    for text in shown:
        assert not leaks(text), text
    assert secret_settings.admin_token is not None
    assert secret_settings.admin_token.get_secret_value() == ADMIN_TOKEN


def test_the_server_never_logs_or_answers_with_the_token(
    server: FastAPI, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = DatasetCatalog(server.state.settings).get("credit").spec
    answers = []
    with TestClient(server) as client:
        answers.append(client.post("/admin/refresh"))
        answers.append(client.post("/admin/refresh", headers={"Authorization": "Bearer wrong"}))
        answers.append(
            client.post("/admin/refresh", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        )
        answers.append(client.post("/predict", json={"record": record(spec)}))
        for path in ("/routing", "/ready", "/metrics", "/rollout/stats", "/openapi.json"):
            answers.append(client.get(path))
    assert [a.status_code for a in answers[:3]] == [401, 401, 200]
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err, *(a.text for a in answers)):
        assert not leaks(text)


def test_mlflow_holds_no_setting_secret(server: FastAPI) -> None:
    """The server fixture trained and registered two models with the token set: no run's params,
    tags or the registered model's tags carry it."""
    from mlflow import MlflowClient

    current = server.state.settings
    client = MlflowClient(tracking_uri=current.tracking_uri, registry_uri=current.tracking_uri)
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    assert runs, "the fixture logged runs"
    for run in runs:
        assert ADMIN_TOKEN not in json.dumps(run.data.params)
        assert ADMIN_TOKEN not in json.dumps(run.data.tags)
    for model in client.search_registered_models():
        assert ADMIN_TOKEN not in json.dumps(model.tags)
    logged = [p for p in current.home.rglob("*") if p.is_file() and p.suffix in {".json", ".yaml"}]
    for path in logged:
        assert ADMIN_TOKEN not in path.read_text(encoding="utf-8", errors="replace"), path


def test_an_invalid_setting_does_not_print_the_token(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_MIN_BATCH_ROWS", "100")
    monkeypatch.setenv("MLOPS_MAX_BATCH_ROWS", "10")
    result = mlops("dataset", "list")
    assert result.exit_code == 2 and "MLOPS_MIN_BATCH_ROWS" in result.output
    assert not leaks(result.output) and "Traceback" not in result.output


def test_the_error_of_an_invalid_setting_never_carries_the_token(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_MIN_BATCH_ROWS", "100")
    monkeypatch.setenv("MLOPS_MAX_BATCH_ROWS", "10")
    with pytest.raises(ValueError) as caught:
        Settings()
    assert "MLOPS_MIN_BATCH_ROWS" in str(caught.value)
    for text in (str(caught.value), repr(caught.value)):
        assert not leaks(text), text


def test_an_invalid_field_setting_does_not_print_the_token(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVE_PORT", "not-a-port")
    result = mlops("dataset", "list")
    assert result.exit_code == 2 and "MLOPS_SERVE_PORT" in result.output
    assert ADMIN_TOKEN not in result.output and "Traceback" not in result.output


def test_the_stack_state_file_holds_no_secret(secret_settings: Settings) -> None:
    from mlops_core.adapters.stack_state import StackState, write_state

    write_state(
        secret_settings,
        StackState(
            prefect_api_url="http://127.0.0.1:1/api",
            prefect_ui_url="http://127.0.0.1:1",
            mlflow_ui_url=None,
            pids={"prefect-server": 1},
            owner_pid=os.getpid(),
        ),
    )
    assert ADMIN_TOKEN not in secret_settings.stack_file.read_text(encoding="utf-8")
