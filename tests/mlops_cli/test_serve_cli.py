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


def test_mlops_serve_answers_over_http(settings: Settings, registered: RegisteredDataset) -> None:
    first_champion(settings)
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlops"), "serve", "--port", str(port)],
        env={**os.environ},
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
