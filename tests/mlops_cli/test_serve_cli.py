"""`mlops serve` as a real uvicorn process on loopback: ready, predicting, stopped by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from live import first_champion

from mlops_cli.scenarios import generate_applications
from mlops_cli.stack import free_port
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.settings import Settings


def test_mlops_serve_answers_over_http(
    settings: Settings, registered: RegisteredDataset, tmp_path: Path
) -> None:
    """...and leaves nothing in the folder it runs from (MLflow 3 would create ``mlflow.db``
    there if any call reached it without our tracking URI)."""
    first_champion(settings)
    port = free_port()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlops"), "serve", "--port", str(port)],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("mlops serve did not become ready")
        record = (
            generate_applications(np.random.default_rng(0), 1)
            .drop("default", "application_id", "applied_at")
            .to_dicts()[0]
        )
        answer = httpx.post(f"{url}/predict", json={"record": record}, timeout=10)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        assert httpx.get(f"{url}/metrics").text.count("mlops_requests_total") >= 1
        bad = httpx.post(f"{url}/predict", json={"record": {"age": 30}}, timeout=10)
        assert bad.status_code == 422 and "missing feature" in bad.text
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert f"serving credit on http://127.0.0.1:{port}" in output
    assert list(elsewhere.iterdir()) == [], "mlops serve wrote to the current folder"


def test_mlops_serve_with_two_workers_is_one_server_to_its_callers(
    settings: Settings, registered: RegisteredDataset
) -> None:
    """Two worker processes on one port: every request and every feedback counted once in the
    merged window, metrics from both, and a killed worker restarted while stats say 503."""
    first_champion(settings)
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlops"),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    pids: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:
            try:  # a fresh connection each time: the kernel spreads them over the workers
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    health = httpx.get(f"{url}/health", timeout=1).json()
                    pids[health["worker"]] = health["pid"]
            except httpx.HTTPError:
                time.sleep(0.3)
        assert set(pids) == {0, 1}, f"both workers answer: {pids}"

        records = (
            generate_applications(np.random.default_rng(0), 40)
            .drop("default", "application_id", "applied_at")
            .to_dicts()
        )
        ids = []
        for record in records:
            answer = httpx.post(f"{url}/predict", json={"record": record}, timeout=10)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])
        assert {i[30:32] for i in ids} == {"00", "01"}, "both workers answered predictions"
        # Feedback lands on either worker; the one that answered the request must get it.
        for request_id in ids:
            fed = httpx.post(f"{url}/feedback", json={"request_id": request_id, "label": 1})
            assert fed.status_code == 200 and fed.json()["matched_request"] is True, fed.text
        stats = httpx.get(f"{url}/rollout/stats", params={"since": 0}, timeout=10).json()
        champion = stats["variants"]["champion"]
        assert stats["workers"] == 2
        assert champion["requests"] == 40 and champion["feedback_rows"] == 40
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'worker="0"' in metrics and 'worker="1"' in metrics
        assert metrics.count("# TYPE mlops_requests_total counter") == 1

        os.kill(pids[1], signal.SIGKILL)  # the supervisor starts it again
        refused = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{url}/rollout/stats", timeout=10)
            except httpx.TransportError:  # a connection the kernel had queued on the killed one
                continue
            if answer.status_code == 503:
                refused += 1
                assert "worker 1" in answer.text
            elif answer.json()["workers"] == 2 and refused:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the killed worker was not restarted, or its absence not said")
        # Its memory went with it: the merged window now holds the survivor's requests only.
        after = httpx.get(f"{url}/rollout/stats", timeout=10).json()
        assert after["variants"]["champion"]["requests"] == sum(i[30:32] == "00" for i in ids)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert f"serving credit on http://127.0.0.1:{port}, 2 workers" in output
    assert "worker 1" in output and "starting it again" in output
    assert not Path(f"/proc/{pids[0]}").exists(), "the workers stop with the supervisor"
