"""Feedback writes training labels, so the model server takes it only for predictions it made:
a request id must carry the tag the server signed it with, and a record's own id needs the
labelling token. Everything else is refused with a 4xx saying what to send, counted, and never
logged as a label."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.serving import create_app
from mlops_core.serving.signing import KEY_FILE, feedback_key
from mlops_core.serving.workers import RequestIds, Workers
from mlops_core.settings import Settings

LABELS_TOKEN = "labelling-service-token-51c2"


@pytest.fixture(scope="session")
def settings_of(server: FastAPI) -> Settings:
    """The hostile server's settings, logging every feedback row at once."""
    settings: Settings = server.state.settings
    return settings.model_copy(update={"serve_log_rows": 1})


def a_request(client: TestClient, settings: Settings) -> dict[str, Any]:
    spec = DatasetCatalog(settings).get("credit").spec
    frame = pl.read_parquet(DatasetCatalog(settings).get("credit").reference_path)
    row = frame.select([*spec.features]).row(0, named=True)
    answer = client.post("/predict", json={"record": row})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def refused(client: TestClient) -> dict[str, float]:
    """``mlops_feedback_refused_total`` by reason, as /metrics reads now."""
    families = text_string_to_metric_families(client.get("/metrics").text)
    (family,) = (f for f in families if f.name == "mlops_feedback_refused")
    return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}


def labelled_ids(settings: Settings) -> list[str]:
    """Every id the feedback log has landed as a label."""
    spec = DatasetCatalog(settings).get("credit").spec
    return [
        str(value)
        for entry in LandingZone(settings, "labels").entries("credit")
        for value in pl.read_parquet(Path(entry.location))[str(spec.id)].to_list()
    ]


def test_feedback_is_taken_only_for_request_ids_a_server_sharing_the_key_issued(
    settings_of: Settings,
) -> None:
    before = labelled_ids(settings_of)
    # A server on the hostile server's home (its registry, its key file), logging labels.
    with TestClient(create_app(settings_of, follow=False)) as client:
        request_id = check_forgeries_are_refused(settings_of, client)
    landed = [i for i in labelled_ids(settings_of) if i not in before]
    assert landed == [f"{request_id}-0"], "only the accepted label is logged"


def check_forgeries_are_refused(settings_of: Settings, client: TestClient) -> str:
    """One accepted feedback and the forgeries refused; the accepted request's id."""
    request_id = a_request(client, settings_of)["request_id"]
    assert len(request_id) == 48, request_id

    fine = client.post("/feedback", json={"request_id": request_id, "label": 1})
    assert fine.status_code == 200, fine.text
    assert fine.json() == {"accepted": 1, "matched_request": True}

    other_server = RequestIds(0, b"a key this server does not hold")()
    forged = [
        request_id[:-1] + ("0" if request_id[-1] != "0" else "1"),  # its tag altered
        request_id[:32],  # its body alone
        "x",
        "0" * 48,
        other_server,  # well formed, signed by a server with another key
    ]
    counts = refused(client)
    for wrong in forged:
        answer = client.post("/feedback", json={"request_id": wrong, "label": 1})
        assert answer.status_code == 403, (wrong, answer.text)
        (problem,) = answer.json()["detail"]
        assert problem["loc"] == ["body", "request_id"]
        assert "MLOPS_FEEDBACK_KEY" in problem["msg"] and "/predict" in problem["msg"]
    after = refused(client)
    assert after["unissued_request_id"] - counts["unissued_request_id"] == len(forged)

    # A replica sharing the home shares the key: the first server's id is taken there too; a
    # replica given another MLOPS_FEEDBACK_KEY is another server's replica and refuses it.
    with TestClient(create_app(settings_of, follow=False, log_traffic=False)) as replica:
        assert replica.post("/feedback", json={"request_id": request_id, "label": 0}).is_success
    stranger = settings_of.model_copy(update={"feedback_key": SecretStr("another key")})
    with TestClient(create_app(stranger, follow=False, log_traffic=False)) as replica:
        answer = replica.post("/feedback", json={"request_id": request_id, "label": 0})
        assert answer.status_code == 403
    return str(request_id)


def test_feedback_by_a_record_id_needs_the_labelling_token(settings_of: Settings) -> None:
    before = labelled_ids(settings_of)
    with TestClient(create_app(settings_of, follow=False)) as client:
        counts = refused(client)
        answer = client.post("/feedback", json={"id": "app-1", "label": 1})
        assert answer.status_code == 403, answer.text
        (problem,) = answer.json()["detail"]
        assert problem["loc"] == ["body", "id"] and "MLOPS_LABELS_TOKEN" in problem["msg"]
        # A request id of its own does not let a caller label somebody else's record.
        own = a_request(client, settings_of)["request_id"]
        both = client.post("/feedback", json={"request_id": own, "id": "app-2", "label": 1})
        assert both.status_code == 403
        assert refused(client)["no_labels_token"] - counts["no_labels_token"] == 2

    trusted = settings_of.model_copy(update={"labels_token": SecretStr(LABELS_TOKEN)})
    with TestClient(create_app(trusted, follow=False)) as client:
        counts = refused(client)
        body = {"id": "app-3", "label": 0}
        bare = client.post("/feedback", json=body)
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert "MLOPS_LABELS_TOKEN" in bare.json()["detail"]
        wrong = client.post("/feedback", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
        assert refused(client)["bad_labels_token"] - counts["bad_labels_token"] == 2
        good = client.post(
            "/feedback", json=body, headers={"Authorization": f"Bearer {LABELS_TOKEN}"}
        )
        assert good.status_code == 200 and good.json()["accepted"] == 1
    landed = [i for i in labelled_ids(trusted) if i not in before]
    assert landed == ["app-3"], "only the labelling service's label is logged"


def test_the_key_is_made_once_per_home_private_and_the_setting_overrides_it(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    key = feedback_key(settings)
    path = settings.home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and feedback_key(settings) == key, "made once, then read"
    ids = RequestIds(3, key)
    issued = ids()
    assert ids.issued(issued) and RequestIds(0, feedback_key(settings)).issued(issued)
    assert Workers(0, ("a", "b", "c", "d")).owner(issued) == 3
    given = settings.model_copy(update={"feedback_key": SecretStr("shared by every replica")})
    assert feedback_key(given) == b"shared by every replica"
    assert not RequestIds(0, feedback_key(given)).issued(issued)
