"""Alerts reach people without Prometheus: with MLOPS_ALERT_WEBHOOK_URL, the automation
"mlops: notify" POSTs each alert-worthy event to that URL; without it, there is no such automation.

Event-driven automations need the Prefect server's trigger and action services, which Prefect's
test harness does not run: these tests start a real ``prefect server start`` (one per module, by
its process id) and an HTTP receiver on a loopback port standing in for Slack or a pager.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployments import automations
from mlops_cli.services import free_port, http_ok, stop_process_group
from mlops_core import events
from mlops_core.settings import Settings

DATASET = "credit"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every POST it gets (path, headers, body)."""

    def __init__(self) -> None:
        self.posts: queue.Queue[dict[str, Any]] = queue.Queue()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                posts.put(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type", ""),
                        "body": self.rfile.read(length).decode(),
                    }
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mlops-token-123"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The first ``count`` POSTs, waiting up to ``timeout`` seconds in all."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got.append(self.posts.get(timeout=left))
            except queue.Empty:
                break
        return got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``prefect server start`` (SQLite in a temporary home, no UI); its API URL, in force."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while not http_ok(f"{api}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the Prefect server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        with temporary_settings(updates={PREFECT_API_URL: api}):
            yield api
    finally:
        stop_process_group(process)


def emit(event: str, payload: dict[str, Any], dataset: str = DATASET) -> None:
    """Send one event about ``dataset`` to the server now (as ``mlops submit`` announces)."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.events.schemas.events import Resource

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(
                Event(
                    event=event,
                    resource=Resource(events.dataset_resource(dataset)),
                    payload=payload,
                )
            )

    asyncio.run(send())


def ensure(monkeypatch: pytest.MonkeyPatch, webhook_url: str | None) -> set[str]:
    """What `python -m deployments.serve` does at start, with or without the webhook URL set."""
    if webhook_url is None:
        monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)
    else:
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", webhook_url)
    # The other two automations run deployments; any id serves, none of them runs here.
    done = automations.ensure(uuid.uuid4(), uuid.uuid4(), Settings())
    return {automation.name for automation in done}


def test_an_alert_and_a_drift_alarm_reach_the_webhook_and_a_routine_event_does_not(
    prefect_server: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert automations.NOTIFY in ensure(monkeypatch, receiver.url)

    emit(events.BATCH_VALIDATED, {"sha256": "a" * 64, "rows": 500})
    emit(
        events.ALERT,
        {"what": "champion below the retrain line", "detail": "3 labelled batches in a row"},
    )
    emit(events.DRIFT_DETECTED, {"sha256": "b" * 64, "p_value": 0.0, "drivers": ["income"]})

    posts = receiver.wait_for(2, timeout=60)
    assert len(posts) == 2, f"the webhook got {len(posts)} of 2 notifications in 60 s: {posts}"
    time.sleep(1)  # a notification for the routine event would have come with the others
    assert receiver.posts.empty(), "a routine event (mlops.batch.validated) was notified"
    assert {p["path"] for p in posts} == {"/hooks/mlops-token-123"}
    assert all(p["content_type"] == "application/json" for p in posts)
    by_event = {}
    for post in posts:
        message = json.loads(post["body"])
        by_event[message["body"].split(" ", 1)[0]] = message

    alert = by_event[events.ALERT]
    assert alert["subject"] == "[mlops] credit: champion below the retrain line"
    assert "mlops.alert for dataset credit at " in alert["body"]
    assert "what: champion below the retrain line\n" in alert["body"]
    assert "detail: 3 labelled batches in a row\n" in alert["body"]
    assert alert["text"] == f"{alert['subject']}\n{alert['body']}"

    drift = by_event[events.DRIFT_DETECTED]
    assert drift["subject"] == "[mlops] credit: mlops.drift.detected"
    assert "drift p-value: 0.0, drivers: income\n" in drift["body"]
    assert f"batch: {'b' * 64}" in drift["body"]
    assert "what:" not in drift["body"], "lines of fields the event lacks are left out"


def test_the_webhook_url_is_kept_as_a_secret_and_unsetting_it_removes_the_automation(
    prefect_server: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    ensure(monkeypatch, receiver.url)
    with get_client(sync_client=True) as client:
        shown = client.read_block_document_by_name(
            automations.WEBHOOK_BLOCK, "custom-webhook", include_secrets=False
        )
    assert "mlops-token-123" not in json.dumps(shown.data, default=str)
    assert Automation.read(name=automations.NOTIFY).actions[0].block_document_id == shown.id

    assert automations.NOTIFY not in ensure(monkeypatch, None)
    with pytest.raises(ValueError):
        Automation.read(name=automations.NOTIFY)
    with pytest.raises(ValueError):
        CustomWebhookNotificationBlock.load(automations.WEBHOOK_BLOCK)
    # The other automations stay, and a second start without the URL is just as quiet.
    assert ensure(monkeypatch, None) == {automations.REPEATED_DRIFT, automations.FLOW_RUN_FAILED}


def test_settings_never_show_the_webhook_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", "https://hooks.example/T000/secret-token")
    settings = Settings()
    assert "secret-token" not in repr(settings) and "secret-token" not in str(settings)
    assert settings.alert_webhook_url is not None
    assert settings.alert_webhook_url.get_secret_value().endswith("/secret-token")
