"""``mlops demo``: the whole loop, live, through real events, on the built-in credit-risk stream.

It starts the stack (``mlops up``'s parts: a Prefect server, the served deployments with their
triggers and automations, the MLflow UI), trains the first champion through the gated subflow,
then submits every weekly batch *without its labels* (``mlops.batch.arrived`` -> trigger ->
``process_batch``) and, one batch later, that batch's labels (``mlops.labels.arrived`` ->
``process_labels``). A row is printed as each batch's and each labels file's outcome comes back
(the ledger settles, the decision run in MLflow records what the retrain did).

``run_demo`` is the phases in order: a fresh home and the stream, the stack, the first champion,
the weeks streamed under live traffic, the summary.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from mlops_cli.demo_report import print_schedule, summary_table
from mlops_cli.options import use_home
from mlops_cli.scenarios import Stream, write_stream
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings

if TYPE_CHECKING:
    from mlops_cli.demo_report import Row
    from mlops_cli.demo_weeks import WeeklyStream
    from mlops_cli.stack import Stack
    from mlops_core.adapters.stack_state import StackState
    from mlops_core.outcomes import RetrainOutcome

MARKER = ".mlops-demo"
# The stack's flows roll challengers out through the demo's model server, in short steps.
ROLLOUT_ENVIRONMENT = {
    # A first step of 25%: within its minute the canary gets the ~350 labelled rows that can show
    # a new-concept challenger not worse than the champion (at 10% it got ~140, too few).
    "MLOPS_ROLLOUT_STEPS": "25,50,100",
    "MLOPS_ROLLOUT_MIN_REQUESTS": "60",
    "MLOPS_ROLLOUT_MIN_FEEDBACK": "60",
    "MLOPS_ROLLOUT_STEP_SECONDS": "60",
    "MLOPS_ROLLOUT_MAX_P99_MS": "1000",
    # Limits a step can show within a minute of the demo's traffic (about 100 clean requests and
    # 150 labelled rows); the defaults (1% errors, 2 points of accuracy) need several thousand.
    "MLOPS_ROLLOUT_MAX_ERROR_RATE": "0.05",
    "MLOPS_ROLLOUT_ACCURACY_TOLERANCE": "0.05",
    "MLOPS_SERVE_POLL_SECONDS": "0.5",
}


def demo_settings(settings: Settings) -> Settings:
    """The demo's own installation under ``<home>/demo``, so it never touches real datasets."""
    home = (settings.home / "demo").resolve()
    return settings.model_copy(update={"home": home, "gx_dir": home / "great_expectations"})


def fresh_home(home: Path) -> None:
    """Empty the demo's home from an earlier run; refuse to delete a folder the demo did not make."""
    if home.exists():
        if not (home / MARKER).exists():
            raise MlopsError(
                f"{home} exists but was not made by `mlops demo`; not deleting it",
                hint="move it away or set MLOPS_HOME elsewhere",
            )
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `mlops demo`; deleted by the next demo run\n")


@dataclass
class RunningStack:
    """The demo's stack once started, the port its model server will take, and when it began."""

    stack: Stack
    state: StackState
    serve_port: int
    started: float


def prepare(
    settings: Settings, *, seed: int, batch_rows: int, reference_rows: int, console: Console
) -> tuple[Settings, Stream, str]:
    """A fresh demo home, the scenario stream written and its dataset registered: (settings, stream, name)."""
    demo = demo_settings(settings).model_copy(update={"prefect_port": 0, "mlflow_port": 0})
    fresh_home(demo.home)
    os.environ["MLOPS_HOME"] = str(demo.home)
    os.environ["MLOPS_GX_DIR"] = str(demo.gx_dir)
    use_home(demo)  # Prefect's home and database too: the demo's state is all under its home

    stream = write_stream(
        demo.home / "stream", seed=seed, reference_rows=reference_rows, batch_rows=batch_rows
    )
    console.print(f"demo state: {demo.home}  (seed {seed}, {len(stream.batches)} weekly batches)")
    print_schedule(stream, console)
    registered = DatasetCatalog(demo).add(stream.spec, stream.reference_path)
    console.print(
        f"registered dataset [bold]{registered.name}[/bold]: {len(registered.spec.features)} "
        f"features, reference {reference_rows:,} rows, suite {registered.suite_path}",
        highlight=False,
    )
    return demo, stream, registered.name


def start_stack(
    demo: Settings, *, mlflow_ui: bool, console: Console
) -> tuple[Settings, RunningStack]:
    """The stack started, its flows pointed at the demo's model server: (settings, stack)."""
    from mlops_cli.stack import Stack, free_port

    serve_port = free_port()
    serve_url = f"http://127.0.0.1:{serve_port}"
    os.environ.update({"MLOPS_SERVE_URL": serve_url, **ROLLOUT_ENVIRONMENT})
    demo = demo.model_copy(update={"serve_url": serve_url, "serve_poll_seconds": 0.5})
    stack = Stack(
        demo,
        mlflow_ui=mlflow_ui,
        log=lambda text: console.print(text, highlight=False, soft_wrap=True),
    )
    started = time.perf_counter()
    state = stack.start()
    console.print(
        f"stack ready in {time.perf_counter() - started:.0f} s: Prefect UI {state.prefect_ui_url}"
        + (f", MLflow UI {_mlflow_link(state.mlflow_ui_url)}" if state.mlflow_ui_url else ""),
        highlight=False,
    )
    return demo, RunningStack(stack, state, serve_port, started)


def train_first_champion(demo: Settings, dataset: str, console: Console) -> RetrainOutcome:
    """The first champion, trained from the reference through the gated subflow and promoted."""
    from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
    from mlops_core.adapters.audit import record_manual
    from mlops_core.adapters.registry import ModelRegistry

    run_id = record_manual(
        ModelRegistry(demo, dataset),
        "retrain",
        reason="demo: first champion from the reference",
        before={},
    )
    first = retrain_evaluate_deploy(dataset=dataset, decision_run_id=run_id)
    if first.status != "promoted":
        raise MlopsError(f"the demo could not train its first champion: {first.reason}")
    console.print(
        f"first champion: v{first.version} -- {first.reason}", highlight=False, soft_wrap=True
    )
    return first


def stream_weeks(
    demo: Settings,
    dataset: str,
    stream: Stream,
    *,
    serve_port: int,
    champion: str,
    console: Console,
) -> WeeklyStream:
    """The weeks streamed, with their rows: every batch and its labels through the stack, while
    the model server answers steady traffic and the rollout watcher prints each step."""
    import polars as pl

    from mlops_cli.demo_live import RolloutWatcher, ServerThread, Traffic
    from mlops_cli.demo_weeks import WeeklyStream
    from mlops_cli.loops import Loops
    from mlops_core.serving import create_app

    server = ServerThread(create_app(demo, dataset, log_traffic=False), serve_port)
    server.start()
    traffic = Traffic(server.url, pl.read_parquet(stream.reference_path))
    watcher = RolloutWatcher(demo, dataset, console)
    loops = Loops([traffic.loop, watcher.loop])
    loops.start()
    console.print(
        f"model server: {server.url} (champion v{champion}; steady traffic with "
        f"feedback from the current week's applicants)",
        highlight=False,
    )
    console.print(
        "batches arrive without labels (mlops.batch.arrived); each batch's labels arrive "
        "one batch later (mlops.labels.arrived):",
        highlight=False,
    )
    weeks = WeeklyStream(demo, dataset, traffic, console)
    weeks.run(stream.batches)
    routing = server.routing()
    console.print(
        f"model server now serves champion v{routing.get('champion')} "
        f"({traffic.answered:,} requests answered, {traffic.failed} failed)",
        highlight=False,
    )
    loops.stop()
    server.stop()
    return weeks


def summarise(
    weeks: WeeklyStream, demo: Settings, dataset: str, running: RunningStack, console: Console
) -> None:
    """Print the summary table, the counts, and where to look next (UIs, quarantine, Data Docs)."""
    rows = weeks.rows
    console.print(summary_table(rows), width=max(console.width, 130))
    processed = sum(r.state == "processed" for r in rows)
    console.print(
        f"{processed} batches processed, {len(rows) - processed} quarantined with their "
        f"reports; champion now v{weeks.outcomes.champion()}; the whole demo took "
        f"{time.perf_counter() - running.started:.0f} s after the stack started.",
        highlight=False,
    )
    console.print(f"Prefect UI: {running.state.prefect_ui_url}", highlight=False)
    if running.state.mlflow_ui_url:
        console.print(f"MLflow UI:  {_mlflow_link(running.state.mlflow_ui_url)}", highlight=False)
    console.print(f"quarantine: {demo.quarantine_dir / dataset}", highlight=False)
    console.print(f"Data Docs:  {demo.data_docs_dir / 'index.html'}", highlight=False)


def keep_running_until_interrupted(stack: Stack, console: Console) -> None:
    """Leave the stack up until Ctrl-C (or until one of its parts dies)."""
    console.print("the stack keeps running; stop it with Ctrl-C", highlight=False)
    try:
        while not stack.dead():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def run_demo(
    settings: Settings,
    *,
    seed: int = 7,
    batch_rows: int = 2_000,
    reference_rows: int = 10_000,
    console: Console | None = None,
    keep_running: bool = False,
    mlflow_ui: bool = True,
) -> list[dict[str, object]]:
    """The whole loop through real events (see the module docstring); return one dict per batch."""
    console = console or Console()
    demo, stream, dataset = prepare(
        settings,
        seed=seed,
        batch_rows=batch_rows,
        reference_rows=reference_rows,
        console=console,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    demo, running = start_stack(demo, mlflow_ui=mlflow_ui, console=console)
    rows: list[Row] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: running.state.prefect_api_url}):
            first = train_first_champion(demo, dataset, console)
            weeks = stream_weeks(
                demo,
                dataset,
                stream,
                serve_port=running.serve_port,
                champion=str(first.version),
                console=console,
            )
        rows = weeks.rows
        summarise(weeks, demo, dataset, running, console)
        if keep_running:
            keep_running_until_interrupted(running.stack, console)
    finally:
        running.stack.stop()
        console.print("stack stopped", highlight=False)
    return [row.as_dict() for row in rows]


def _mlflow_link(url: str) -> str:
    """The MLflow UI's experiments page, opened in machine-learning mode (not GenAI)."""
    from mlops_core.reporting import mlflow_ui_link

    return mlflow_ui_link(url)
