"""The rollout flow against real uvicorn model servers under live load (real MLflow registry):
a good challenger is promoted step by step (through one server, and through two replicas whose
evidence adds up); a failing one and a much worse one are rolled back, and no user request fails
on the way. A replica that cannot be read holds a step rather than promote it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from live import Load, Server, register

from flows.rollout import rollout
from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.rollout import RolloutConfig, Verdict
from mlops_core.serving import create_app
from mlops_core.serving.records import Seen, Traffic
from mlops_core.settings import Settings
from tasks.rollout import await_replicas, look, set_step

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def champion(settings: Settings, registered: RegisteredDataset) -> str:
    smaller = generate_applications(np.random.default_rng(1), 1_500)
    version = register(settings, smaller, max_iter=60)
    ModelRegistry(settings, "credit").promote(version)
    return version


@pytest.fixture
def patient_steps(fast_rollout: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps that may run long enough to show a good challenger acceptable on a busy machine
    (the closed-loop load sends fewer requests there): a step ends as soon as its evidence is
    conclusive, so this costs time only when it is not; an inconclusive step is rolled back."""
    monkeypatch.setenv("MLOPS_ROLLOUT_STEP_SECONDS", "120")


def test_a_good_challenger_is_promoted_step_by_step(
    settings: Settings, champion: str, patient_steps: None
) -> None:
    good = register(Settings(), generate_applications(np.random.default_rng(2), 6_000))
    current = Settings()
    with Server(create_app(current, log_traffic=False)) as server, Load(server.url) as load:
        state = rollout(dataset="credit", version=good, server_url=server.url, return_state=True)
    result = state.result()
    assert result.status == "promoted", result
    assert state.name == "Promoted"
    assert [s.weight for s in result.steps] == [0.5, 1.0]
    assert all(s.verdict == "promote" for s in result.steps)
    assert ModelRegistry(current, "credit").aliases() == {"champion": good, "previous": champion}
    assert load.status[200] > 0 and set(load.status) == {200}, load.status
    assert load.variants["challenger"] > 0
    run = ModelRegistry(current, "credit").client.get_run(result.steps[0].run_id)
    assert run.data.tags["mlops.run_type"] == "rollout"
    flow_run, logs = run_and_logs(state)
    assert flow_run.name == f"credit · rollout v{good}" and "promoted" in flow_run.tags
    assert any(m.startswith("step 0 (canary 0.5): promote") for m in logs), logs
    assert any(m.startswith("step 1 (canary 1): promote") for m in logs), logs
    # The polling stays out of the run's logs: a few task lines a step, not one a poll.
    assert sum("Finished in state" in m for m in logs) <= 4 * len(result.steps) + 7, logs


def run_and_logs(state) -> tuple:
    """The flow run of ``state`` and its log messages as the Prefect server stored them."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return flow_run, [log.message for log in logs]


class Raising:
    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def predict_proba(self, frame):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("challenger blew up")
        return self.model.predict_proba(frame)


def test_a_failing_challenger_is_rolled_back_and_no_user_sees_it(
    settings: Settings, champion: str, fast_rollout: None
) -> None:
    import mlflow

    bad = register(Settings(), generate_applications(np.random.default_rng(3), 2_000))
    current = Settings()
    mlflow.set_registry_uri(current.tracking_uri)

    def loader(version: str):
        model = mlflow.sklearn.load_model(f"models:/credit/{version}")
        return Raising(model) if version == bad else model

    with (
        Server(create_app(current, log_traffic=False, loader=loader)) as server,
        Load(server.url) as load,
    ):
        result = rollout(dataset="credit", version=bad, server_url=server.url)
    assert result.status == "rolled back", result
    assert "error_rate failed" in result.steps[-1].reasons[0]
    assert ModelRegistry(current, "credit").aliases() == {"champion": champion}
    assert set(load.status) == {200}, f"user-facing failures: {load.status}"


def test_a_much_worse_challenger_is_rolled_back_on_feedback(
    settings: Settings, champion: str, fast_rollout: None
) -> None:
    flipped = generate_applications(np.random.default_rng(4), 3_000)
    flipped = flipped.with_columns((1 - flipped["default"]).alias("default"))
    worse = register(Settings(), flipped)
    current = Settings()
    with Server(create_app(current, log_traffic=False)) as server, Load(server.url) as load:
        result = rollout(dataset="credit", version=worse, server_url=server.url)
    assert result.status == "rolled back", result
    reasons = " ".join(result.steps[-1].reasons)
    assert "feedback_accuracy failed" in reasons or "prediction_divergence failed" in reasons
    assert ModelRegistry(current, "credit").aliases() == {"champion": champion}
    assert set(load.status) == {200}


@pytest.mark.parametrize(
    ("mode", "status", "weights"),
    [("blue-green", "promoted", [0.0, 1.0]), ("shadow", "shadow judged", [0.0])],
)
def test_blue_green_and_shadow(
    settings: Settings,
    champion: str,
    fast_rollout: None,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    status: str,
    weights: list[float],
) -> None:
    monkeypatch.setenv("MLOPS_ROLLOUT_MODE", mode)
    if status == "promoted":  # as patient_steps (the shadow case keeps the shorter steps)
        monkeypatch.setenv("MLOPS_ROLLOUT_STEP_SECONDS", "120")
    good = register(Settings(), generate_applications(np.random.default_rng(2), 6_000))
    current = Settings()
    with Server(create_app(current, log_traffic=False)) as server, Load(server.url) as load:
        result = rollout(dataset="credit", version=good, server_url=server.url)
    assert result.status == status, result
    assert [s.weight for s in result.steps] == weights
    assert result.steps[0].mode == mode and result.steps[0].requests >= 60
    expected = (
        {"champion": good, "previous": champion} if status == "promoted" else {"champion": champion}
    )
    assert ModelRegistry(current, "credit").aliases() == expected
    assert set(load.status) == {200}
    if mode == "shadow":
        assert load.variants["challenger"] == 0, "a shadow never answers"


def test_two_replicas_roll_out_together_and_both_serve_the_new_champion(
    settings: Settings, champion: str, patient_steps: None
) -> None:
    good = register(Settings(), generate_applications(np.random.default_rng(2), 6_000))
    current = Settings()
    with (
        Server(create_app(current, log_traffic=False)) as a,
        Server(create_app(current, log_traffic=False)) as b,
        Load(a.url) as load_a,
        Load(b.url, seed=1) as load_b,
    ):
        result = rollout(dataset="credit", version=good, server_url=f"{a.url},{b.url}")
        # Users keep coming while each replica picks the promotion up from the registry.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            httpx.get(f"{s.url}/routing").json()["champion"] != good for s in (a, b)
        ):
            time.sleep(0.2)
        served = [httpx.get(f"{s.url}/routing").json() for s in (a, b)]
    assert result.status == "promoted", result
    assert [s.weight for s in result.steps] == [0.5, 1.0]
    assert ModelRegistry(current, "credit").aliases() == {"champion": good, "previous": champion}
    assert [(r["champion"], r["challenger"]) for r in served] == [(good, None), (good, None)]
    for load in (load_a, load_b):
        assert set(load.status) == {200}, f"user-facing failures: {load.status}"
        assert load.variants["challenger"] > 0, "each replica gave the challenger traffic"
    # Each step's record holds every replica's evidence, added up and in brief.
    client = ModelRegistry(current, "credit").client
    stats = json.loads(
        Path(client.download_artifacts(result.steps[-1].run_id, "stats.json")).read_text()
    )
    assert stats["replicas"] == 2 and stats["missing"] == []
    assert [r["replica"] for r in stats["per_replica"]] == [a.url, b.url]


def dead_url() -> str:
    """A local URL where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_step_with_a_replica_unreachable_holds_rather_than_promotes() -> None:
    traffic = Traffic()
    for i in range(2_400):
        variant = "challenger" if i % 2 else "champion"
        traffic.add(Seen(10.0 + i, f"r{i}", variant, "v", 0.01, False, (0.3,), (0.3,)))
        traffic.feedback(f"r{i}", (0,))
    live, down = "http://replica-a", "http://replica-b"

    def transport(request: httpx.Request) -> httpx.Response:
        if request.url.host == "replica-b":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=traffic.stats(float(request.url.params["since"])))

    config = RolloutConfig(min_requests=100, min_feedback=100)
    started = {live: 0.0, down: 0.0}
    mock = httpx.MockTransport(transport)
    verdict, stats = look([live], {live: 0.0}, config, past_deadline=False, transport=mock)
    assert verdict.verdict is Verdict.promote, "the live replica's evidence alone would promote"
    verdict, stats = look([live, down], started, config, past_deadline=False, transport=mock)
    assert verdict.verdict is Verdict.hold
    assert down in verdict.reasons[0] and "ConnectError" in verdict.reasons[0]
    assert stats["replicas"] == 2 and stats["missing"] == [down]
    assert stats["variants"]["challenger"]["requests"] == 1_200
    late, _ = look([live, down], started, config, past_deadline=True, transport=mock)
    assert late.verdict is Verdict.rollback and down in late.reasons[0]


def test_waiting_for_the_replicas_names_the_one_that_does_not_follow(
    settings: Settings, champion: str, fast_rollout: None
) -> None:
    other = register(
        Settings(), generate_applications(np.random.default_rng(5), 1_500), max_iter=60
    )
    ctx = DatasetContext.open(Settings(), "credit")
    assert not set_step.fn(ctx, other, "canary", 0.5, 0, champion).moved
    down = dead_url()
    with (
        Server(create_app(Settings(), log_traffic=False)) as a,
        pytest.raises(TimeoutError) as failed,
    ):
        await_replicas(ctx, [a.url, down], other, 0.5, champion, 0, time.monotonic() + 3)
    assert "1 of 2 model-server replicas did not follow step 0" in str(failed.value)
    assert f"{down} (ConnectError" in str(failed.value) and f"{a.url} (" not in str(failed.value)
