"""The warm runner on a real Prefect server (Prefect's test harness): served deployments show as
Ready in the Prefect UI, and their runs execute in the runner's process."""

from __future__ import annotations

import threading

from prefect import flow

from deployments.runner import WarmRunner, wait_until


@flow(name="mlops-test-ready")
def hello(who: str = "world") -> str:
    return f"hello {who}"


def test_served_deployments_are_ready_and_run(prefect_api: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import DeploymentStatus

    runner = WarmRunner([hello.to_deployment(name="warm")], {hello.name: hello}, poll_seconds=0.1)
    deployment_id = runner.register()["mlops-test-ready/warm"]
    with get_client(sync_client=True) as client:

        def status() -> DeploymentStatus | None:
            return client.read_deployment(deployment_id).status

        assert status() == DeploymentStatus.NOT_READY, "nothing serves it yet"
        serving = threading.Thread(target=runner.serve, daemon=True)
        serving.start()
        try:
            assert wait_until(lambda: status() == DeploymentStatus.READY, timeout=30), status()
            run = client.create_flow_run_from_deployment(deployment_id, parameters={"who": "x"})
            done = wait_until(
                lambda: (s := client.read_flow_run(run.id).state) is not None and s.is_final(),
                timeout=60,
            )
            state = client.read_flow_run(run.id).state
            assert done and state is not None and state.is_completed(), state
        finally:
            runner.stop()
            serving.join(timeout=30)
        assert not serving.is_alive(), "stop() ends the runner"
