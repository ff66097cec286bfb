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


def test_task_completion_lines_stay_out_of_a_runs_logs(prefect_api: None) -> None:
    import logging

    from prefect import get_run_logger, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from deployments.runner import quiet_task_completions

    @task
    def step(n: int) -> int:
        return n + 1

    @flow(name="mlops-test-quiet")
    def story() -> str:
        for n in range(3):
            step(n)
        get_run_logger().info("decision: none (the story line)")
        return "ok"

    task_runs = logging.getLogger("prefect.task_runs")
    before = list(task_runs.filters)
    quiet_task_completions()
    quiet_task_completions()  # idempotent
    try:
        assert len(task_runs.filters) == len(before) + 1
        state = story(return_state=True)
        run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:

            def logged() -> list[str]:
                found = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
                )
                return [log.message for log in found]

            # The log worker ships lines in order: once the story line is in, those before are.
            wait_until(lambda: "decision: none (the story line)" in logged(), timeout=30)
            lines = logged()
    finally:
        task_runs.filters[:] = before
    assert "decision: none (the story line)" in lines, lines
    # Only the flow's own ending is left of the engine's completion lines (the tasks' three are gone).
    assert sum(line.startswith("Finished in state Completed(") for line in lines) <= 1, lines
