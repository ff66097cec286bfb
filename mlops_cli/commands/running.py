"""What keeps running: ``mlops up`` (the whole stack) and ``mlops demo`` (the loop, live)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mlops_cli.options import out, reports_errors, settings
from mlops_core.errors import MlopsError


@reports_errors
def up(
    mlflow_ui: Annotated[
        bool, typer.Option("--mlflow-ui", help="Also start the MLflow UI on the same store.")
    ] = False,
    default_runner: Annotated[
        bool,
        typer.Option("--default-runner", help="Serve with prefect.serve's defaults (slower)."),
    ] = False,
    prometheus: Annotated[
        bool,
        typer.Option(
            "--prometheus",
            help="Also run Prometheus (Debian's package) on the pipeline exporter and every "
            "`mlops serve`, with the alert rules of deployments/alerts.yml.",
        ),
    ] = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Start the distributed stack in the background instead: PostgreSQL, Redis, an S3 "
            "stand-in, the MLflow server, 2 Prefect APIs + services, a work pool with workers, "
            "model-server replicas (`mlops down` stops it).",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(help="--cluster: Prefect workers.", min=1)] = 2,
    replicas: Annotated[int, typer.Option(help="--cluster: model-server replicas.", min=0)] = 2,
    serve: Annotated[
        str | None,
        typer.Option(help="--cluster: the dataset the model servers serve (needs a champion)."),
    ] = None,
) -> None:
    """Start the stack: Prefect server, served deployments + automations, watcher (Ctrl-C stops)."""
    import signal
    import threading

    if cluster:
        _up_cluster(workers=workers, replicas=replicas, serve=serve)
        return

    from mlops_cli.stack import Stack
    from mlops_core.adapters.stack_state import healthy, read_state

    current = settings()
    running = read_state(current)
    if running is not None and healthy(running.prefect_api_url):
        raise MlopsError(
            f"a stack is already running for {current.home} (Prefect UI {running.prefect_ui_url}, "
            f"started by process {running.owner_pid})",
            hint="use it, or stop it with Ctrl-C in its terminal",
        )
    stack = Stack(
        current,
        mlflow_ui=mlflow_ui,
        default_runner=default_runner,
        prometheus=prometheus,
        log=lambda text: out.print(text, highlight=False, soft_wrap=True),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        state = stack.start()
        out.print("[bold green]ready[/bold green]", highlight=False)
        out.print(f"Prefect UI:  {state.prefect_ui_url}", highlight=False)
        out.print(f"Prefect API: {state.prefect_api_url}", highlight=False)
        if state.mlflow_ui_url:
            from mlops_core.reporting import mlflow_ui_link

            out.print(f"MLflow UI:   {mlflow_ui_link(state.mlflow_ui_url)}", highlight=False)
        if state.metrics_url:
            out.print(f"metrics:     {state.metrics_url}", highlight=False)
        if state.prometheus_url:
            out.print(f"Prometheus:  {state.prometheus_url}/alerts", highlight=False)
        out.print(f"inbox:       {current.inbox}/<dataset>/  (labels: .../<dataset>/labels/)")
        out.print("stop with Ctrl-C", highlight=False)
        while not stopping.wait(0.5):
            for child in stack.dead():
                raise MlopsError(
                    f"{child.name} stopped unexpectedly (exit code {child.process.returncode})",
                    hint=f"see its log: {child.log}; the rest of the stack is stopped too",
                )
    except KeyboardInterrupt:
        pass
    finally:
        out.print("stopping...", highlight=False)
        stack.stop()
        out.print("stopped: no process left behind", highlight=False)


def _up_cluster(*, workers: int, replicas: int, serve: str | None) -> None:
    """Start the cluster stack in the background; print its URLs once every part answers."""
    import time

    from mlops_cli.cluster import Cluster, read_cluster
    from mlops_cli.services import http_ok

    current = settings()
    running = read_cluster(current.home)
    if running is not None and any(http_ok(f"{u}/health") for u in running["prefect_api_urls"]):
        raise MlopsError(
            f"a cluster is already running for {current.home} (Prefect API "
            f"{running['prefect_api_urls'][0]})",
            hint="use it (source its env.sh), or stop it with `mlops down`",
        )
    if serve is None:
        from mlops_core.adapters.catalog import DatasetCatalog

        names = DatasetCatalog(current).names()
        serve = names[0] if len(names) == 1 else None
    started = time.monotonic()
    out.print(f"starting the cluster stack under {current.home.resolve() / 'cluster'} ...")
    stack = Cluster(
        current,
        workers=workers,
        replicas=replicas,
        serve=serve,
        log=lambda text: out.print(text, highlight=False, soft_wrap=True),
    )
    state = stack.start()
    out.print(
        f"[bold green]ready[/bold green] in {time.monotonic() - started:.0f} s", highlight=False
    )
    out.print(f"Prefect UI:      {state['prefect_ui_url']}", highlight=False)
    for url in state["prefect_api_urls"]:
        out.print(f"Prefect API:     {url}", highlight=False)
    out.print(f"MLflow server:   {state['mlflow_url']}", highlight=False)
    out.print(f"ledger:          {stack.client_environment()['MLOPS_LEDGER_URL']}", highlight=False)
    out.print(
        f"object store:    {state['s3']['endpoint']} (bucket {state['s3']['bucket']})",
        highlight=False,
    )
    out.print(f"redis:           redis://127.0.0.1:{state['redis']['port']}", highlight=False)
    for url in state["serve_urls"]:
        out.print(f"model server:    {url}", highlight=False)
    if not state["serve_urls"]:
        out.print(
            "model servers:   none (register a dataset, train it, then `mlops up --cluster "
            "--serve <dataset>` after `mlops down`)",
            highlight=False,
        )
    out.print(f"workers:         {workers} on work pool 'mlops'", highlight=False)
    out.print(f"client settings: source {stack.root / 'env.sh'}", highlight=False)
    out.print("stop with: mlops down", highlight=False)


@reports_errors
def down() -> None:
    """Stop the cluster stack `mlops up --cluster` started (each part by its process id)."""
    from mlops_cli.cluster import stop_recorded

    stopped = stop_recorded(settings().home)
    out.print(f"stopped: {', '.join(stopped)}", highlight=False)


@reports_errors
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the scenario stream.")] = 7,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch.")] = 2_000,
    reference_rows: Annotated[int, typer.Option(help="Rows of the reference table.")] = 10_000,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the stack up to explore (Ctrl-C stops).")
    ] = False,
    rows_json: Annotated[
        Path | None, typer.Option("--rows-json", help="Also write the per-batch rows as JSON.")
    ] = None,
) -> None:
    """The whole loop, live, through real Prefect events, on the built-in credit-risk stream."""
    from mlops_cli.demo import run_demo

    rows = run_demo(
        settings(),
        seed=seed,
        batch_rows=batch_rows,
        reference_rows=reference_rows,
        console=out,
        keep_running=keep_running,
    )
    if rows_json is not None:
        rows_json.write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
