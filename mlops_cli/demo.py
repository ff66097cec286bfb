"""``mlops demo``: the whole loop, live, through real events, on the built-in credit-risk stream.

It starts the stack (``mlops up``'s parts: a Prefect server, the served deployments with their
triggers and automations, the MLflow UI), trains the first champion through the gated subflow,
then submits every weekly batch *without its labels* (``mlops.batch.arrived`` -> trigger ->
``process_batch``) and, one batch later, that batch's labels (``mlops.labels.arrived`` ->
``process_labels``). A row is printed as each batch's and each labels file's outcome comes back
(the ledger settles, the decision run in MLflow records what the retrain did).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mlops_cli.scenarios import CREDIT_SPEC, Stream, write_stream
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState
from mlops_core.errors import MlopsError, UnusableInputError
from mlops_core.settings import Settings

MARKER = ".mlops-demo"
CREDIT_FEATURES = list(CREDIT_SPEC.features)


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


def print_schedule(stream: Stream, console: Console) -> None:
    table = Table(title="The stream's truth (schedule)", title_justify="left")
    table.add_column("weeks")
    table.add_column("phase")
    table.add_column("what happens")
    for phase in stream.schedule:
        weeks = [b.week for b in stream.batches if b.phase == phase.name]
        table.add_row(
            f"{weeks[0]}-{weeks[-1]}" if len(weeks) > 1 else str(weeks[0]), phase.name, phase.truth
        )
    console.print(table)


def _percent(value: object) -> str:
    return f"{float(value):.1%}" if value is not None else "-"  # type: ignore[arg-type]


def _p_value(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "-"
    p_value = float(drift["p_value"])
    shown = "<0.001" if p_value < 0.001 else f"{p_value:.3f}"
    return f"{'yes' if drift['is_drift'] else 'no'} p{'' if shown.startswith('<') else '='}{shown}"


@dataclass
class Row:
    """What the demo knows of one weekly batch (and, later, of its labels)."""

    index: int
    week: int
    phase: str
    kind: str
    corruption: str | None
    rows: int
    sha256: str = ""
    state: str = ""
    verdict: str = "-"
    reason: str | None = None
    location: str = ""
    drift: dict[str, Any] | None = None
    estimated: float | None = None
    observed: float | None = None
    decision: str = "-"
    labels_decision: str = "-"
    retrain: str | None = None
    labels_retrain: str | None = None
    champion: str = "-"
    seconds: float = 0.0
    labels_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase": self.phase,
            "kind": self.kind,
            "corruption": self.corruption,
            "rows": self.rows,
            "verdict": self.verdict,
            "state": self.state,
            "location": self.location,
            "reason": self.reason,
            "drift": bool(self.drift["is_drift"]) if self.drift else None,
            "drift_p_value": self.drift["p_value"] if self.drift else None,
            "drivers": list(self.drift["drivers"]) if self.drift else [],
            "decision": self.decision,
            "labels_decision": self.labels_decision,
            "estimated_accuracy": self.estimated,
            "observed_accuracy": self.observed,
            "retrain": self.retrain,
            "labels_retrain": self.labels_retrain,
            "champion": self.champion,
            "seconds": round(self.seconds, 2),
            "labels_seconds": round(self.labels_seconds, 2) if self.labels_seconds else None,
        }


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; a clear error after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise MlopsError(f"the demo waited {timeout:.0f} s for {what}", hint="see <home>/logs/")


class Outcomes:
    """Reads what the event-driven flows did: the ledger, the reports, the decision runs."""

    def __init__(self, settings: Settings, dataset: str) -> None:
        from mlops_core.adapters.registry import ModelRegistry

        self.settings = settings
        self.dataset = dataset
        self.registry = ModelRegistry(settings, dataset)

    def settled(self, sha256: str, kind: str) -> dict[str, Any] | None:
        import json

        entry = LandingZone(self.settings, kind).get(self.dataset, sha256)
        if entry is None or entry.state not in (BatchState.processed, BatchState.quarantined):
            return None
        report = json.loads(entry.report_path.read_text(encoding="utf-8"))
        return {"entry": entry, "detail": report.get("detail") or {}}

    def acted(self, detail: dict[str, Any]) -> dict[str, str] | None:
        """The decision run's tags once the flow has acted on it (retrain/rollback noted)."""
        decision = detail.get("decision") or {}
        run_id = detail.get("decision_run_id")
        action = decision.get("action")
        if not run_id or action not in ("retrain", "rollback"):
            return {}
        tags = self.registry.run_tags(run_id)
        key = "mlops.retrain" if action == "retrain" else "mlops.rollback"
        return tags if key in tags else None

    def champion(self) -> str:
        return self.registry.aliases().get("champion", "-")


def batch_line(row: Row, *, labels: bool = False) -> str:
    """One live line: a batch as it settled, or its labels as they were judged."""
    if labels:
        colour = {"none": "green", "watch": "yellow", "retrain": "magenta"}.get(
            row.labels_decision, "red"
        )
        outcome = f" -> {row.labels_retrain}" if row.labels_retrain else ""
        return (
            f"{row.index:>2}  {'labels':<17} observed {_percent(row.observed):>6}  "
            f"[{colour}]{row.labels_decision:<8}[/{colour}]{outcome:<12} champion v{row.champion}"
            f"  [dim]{row.labels_seconds:.1f} s[/dim]"
        )
    colour = "green" if row.state == "processed" else "red"
    action_colour = {"none": "green", "watch": "yellow", "retrain": "magenta"}.get(
        row.decision, "red"
    )
    outcome = f" -> {row.retrain}" if row.retrain else ""
    return (
        f"{row.index:>2}  {row.phase:<17} [{colour}]{row.verdict:<8}[/{colour}] "
        f"drift {_p_value(row.drift):<12} est. {_percent(row.estimated):>6}  "
        f"[{action_colour}]{row.decision:<8}[/{action_colour}]{outcome:<12} "
        f"champion v{row.champion}  [dim]{row.seconds:.1f} s[/dim]"
    )


def summary_table(rows: list[Row]) -> Table:
    table = Table(title="Summary", title_justify="left")
    for column in (
        "#",
        "phase",
        "validation",
        "drift (p)",
        "est. acc.",
        "obs. acc.",
        "decision: batch / labels",
        "champion",
    ):
        table.add_column(column)
    for row in rows:
        retrain = row.retrain or row.labels_retrain
        decision = f"{row.decision} / {row.labels_decision}" + (f" ({retrain})" if retrain else "")
        table.add_row(
            str(row.index),
            row.phase,
            row.verdict,
            _p_value(row.drift),
            _percent(row.estimated),
            _percent(row.observed),
            decision,
            f"v{row.champion}",
        )
    return table


class ServerThread:
    """The model server (uvicorn) inside the demo's process."""

    def __init__(self, settings: Settings, dataset: str, port: int) -> None:
        import uvicorn

        from mlops_core.serving import create_app

        self.url = f"http://127.0.0.1:{port}"
        app = create_app(settings, dataset, log_traffic=False)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="mlops-server", daemon=True)

    def start(self) -> None:
        import httpx

        self.thread.start()

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the model server")

    def routing(self) -> dict[str, Any]:
        import httpx

        return dict(httpx.get(f"{self.url}/routing", timeout=5).json())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Traffic:
    """Steady users: one application per request from the current week, then its true label."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.world: Any = None
        self.answered = self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="mlops-traffic", daemon=True)

    def run(self) -> None:
        import httpx

        i = 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopping.is_set():
                world = self.world
                k = i % world.height
                row = world.row(k, named=True)
                label = row.pop("default")
                record = {f: row[f] for f in CREDIT_FEATURES}
                try:
                    answer = client.post(
                        "/predict", json={"record": record, "routing_key": f"user-{i}"}
                    )
                    if answer.status_code == 200:
                        self.answered += 1
                        request_id = answer.json()["request_id"]
                        client.post("/feedback", json={"request_id": request_id, "label": label})
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                i += 1
                self.stopping.wait(0.01)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


class RolloutWatcher:
    """Prints each rollout step as the registry's rollout tags move."""

    def __init__(self, settings: Settings, dataset: str, console: Console) -> None:
        from mlops_core.adapters.registry import ModelRegistry

        self.registry = ModelRegistry(settings, dataset)
        self.console = console
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="mlops-rollout-watch", daemon=True)

    def run(self) -> None:
        seen: tuple[str, ...] = ()
        while not self.stopping.wait(0.3):
            try:
                tags = self.registry.tags()
            except Exception:  # noqa: BLE001 -- display only
                continue
            now = tuple(
                tags.get(k, "")
                for k in ("mlops.rollout.version", "mlops.rollout.mode", "mlops.rollout.weight")
            )
            if now != seen and now[0] and now[1] not in ("", "idle"):
                version, mode, weight = now
                self.console.print(
                    f"    [cyan]rollout v{version}: {mode} {float(weight or 0):.0%} of traffic"
                    f"[/cyan]",
                    highlight=False,
                )
            seen = now

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


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
    import polars as pl

    console = console or Console()
    demo = demo_settings(settings).model_copy(update={"prefect_port": 0, "mlflow_port": 0})
    fresh_home(demo.home)
    os.environ["MLOPS_HOME"] = str(demo.home)
    os.environ["MLOPS_GX_DIR"] = str(demo.gx_dir)

    stream = write_stream(
        demo.home / "stream", seed=seed, reference_rows=reference_rows, batch_rows=batch_rows
    )
    console.print(f"demo state: {demo.home}  (seed {seed}, {len(stream.batches)} weekly batches)")
    print_schedule(stream, console)
    registered = DatasetCatalog(demo).add(stream.spec, stream.reference_path)
    name = registered.name
    console.print(
        f"registered dataset [bold]{name}[/bold]: {len(registered.spec.features)} features, "
        f"reference {reference_rows:,} rows, suite {registered.suite_path}",
        highlight=False,
    )

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mlops_cli.stack import Stack, free_port
    from mlops_core.adapters.announce import announce

    serve_port = free_port()
    serve_url = f"http://127.0.0.1:{serve_port}"
    # The stack's flows roll challengers out through the demo's model server, in short steps.
    rollout_env = {
        "MLOPS_SERVE_URL": serve_url,
        "MLOPS_ROLLOUT_STEPS": "10,50,100",
        "MLOPS_ROLLOUT_MIN_REQUESTS": "60",
        "MLOPS_ROLLOUT_MIN_FEEDBACK": "60",
        "MLOPS_ROLLOUT_STEP_SECONDS": "60",
        "MLOPS_ROLLOUT_MAX_P99_MS": "1000",
        "MLOPS_SERVE_POLL_SECONDS": "0.5",
    }
    os.environ.update(rollout_env)
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
        + (f", MLflow UI {state.mlflow_ui_url}" if state.mlflow_ui_url else ""),
        highlight=False,
    )
    rows: list[Row] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: state.prefect_api_url}):
            from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
            from mlops_core.adapters.audit import record_manual

            run_id = record_manual(
                demo, name, "retrain", reason="demo: first champion from the reference", before={}
            )
            first = retrain_evaluate_deploy(dataset=name, decision_run_id=run_id)
            if first.status != "promoted":
                raise MlopsError(f"the demo could not train its first champion: {first.reason}")
            console.print(
                f"first champion: v{first.version} -- {first.reason}",
                highlight=False,
                soft_wrap=True,
            )
            server = ServerThread(demo, name, serve_port)
            server.start()
            traffic = Traffic(serve_url)
            traffic.world = pl.read_parquet(stream.reference_path)
            traffic.start()
            watcher = RolloutWatcher(demo, name, console)
            watcher.start()
            console.print(
                f"model server: {serve_url} (champion v{first.version}; steady traffic with "
                f"feedback from the current week's applicants)",
                highlight=False,
            )
            console.print(
                "batches arrive without labels (mlops.batch.arrived); each batch's labels arrive "
                "one batch later (mlops.labels.arrived):",
                highlight=False,
            )
            outcomes = Outcomes(demo, name)
            zone, labels_zone = LandingZone(demo), LandingZone(demo, "labels")
            unlabelled_dir = demo.home / "stream" / "unlabelled"
            unlabelled_dir.mkdir(parents=True, exist_ok=True)
            waiting: list[tuple[Row, Path]] = []

            def send_labels(row: Row, source: Path) -> None:
                frame = (
                    pl.read_parquet(source) if source.suffix == ".parquet" else pl.read_csv(source)
                )
                labels_path = unlabelled_dir / f"labels-{row.index:02d}.parquet"
                frame.select("application_id", "default").write_parquet(labels_path)
                began = time.perf_counter()
                receipt = labels_zone.submit(labels_path, name)
                announce(receipt.entry, "labels")
                settled = wait_for(
                    lambda: outcomes.settled(receipt.entry.sha256, "labels"), 180, "labels"
                )
                detail = settled["detail"]
                acted = wait_for(lambda: outcomes.acted(detail) is not None, 300, "the retrain")
                del acted
                decision = detail.get("decision") or {}
                evidence = decision.get("evidence") or {}
                row.observed = evidence.get("observed_accuracy")
                row.labels_decision = decision.get("action", "-")
                tags = outcomes.acted(detail) or {}
                row.labels_retrain = tags.get("mlops.retrain") or (
                    "rolled back" if "mlops.rollback" in tags else None
                )
                row.champion = outcomes.champion()
                row.labels_seconds = time.perf_counter() - began
                console.print(batch_line(row, labels=True), highlight=False, soft_wrap=True)

            for batch in stream.batches:
                row = Row(
                    batch.index,
                    batch.week,
                    batch.phase,
                    batch.kind.value,
                    batch.corruption.value if batch.corruption else None,
                    batch.rows,
                )
                rows.append(row)
                began = time.perf_counter()
                path = batch.path
                if batch.rows and batch.corruption is None:
                    frame = (
                        pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
                    )
                    traffic.world = frame  # this week's applicants are now the live traffic
                    path = unlabelled_dir / path.name
                    if path.suffix == ".parquet":
                        frame.drop("default").write_parquet(path)
                    else:
                        frame.drop("default").write_csv(path)
                try:
                    receipt = zone.submit(path, name)
                except UnusableInputError:
                    entry = next(e for e in zone.entries(name) if e.original_name == path.name)
                    row.state, row.verdict, row.reason = entry.state.value, "unusable", entry.reason
                    row.location, row.decision = str(entry.location), "-"
                else:
                    announce(receipt.entry, "batch")
                    settled = wait_for(
                        lambda r=receipt: outcomes.settled(r.entry.sha256, "batch"), 180, "a batch"
                    )
                    entry, detail = settled["entry"], settled["detail"]
                    wait_for(lambda d=detail: outcomes.acted(d) is not None, 300, "the retrain")
                    row.sha256, row.state, row.location = (
                        entry.sha256,
                        entry.state.value,
                        str(entry.location),
                    )
                    row.reason = entry.reason
                    row.verdict = (detail.get("validation") or {}).get("verdict", "-")
                    row.drift = detail.get("drift")
                    decision = detail.get("decision") or {}
                    row.decision = decision.get("action", "-")
                    row.estimated = (decision.get("evidence") or {}).get("estimated_accuracy")
                    tags = outcomes.acted(detail) or {}
                    row.retrain = tags.get("mlops.retrain") or (
                        "rolled back" if "mlops.rollback" in tags else None
                    )
                row.champion = outcomes.champion()
                row.seconds = time.perf_counter() - began
                line = batch_line(row)
                why = (row.reason or "").removeprefix(f"{path}: ")
                console.print(
                    f"{line}  [dim]{why[:110]}[/dim]" if why else line,
                    highlight=False,
                    soft_wrap=True,
                )
                for earlier, source in waiting:
                    send_labels(earlier, source)
                waiting = [(row, batch.path)] if row.state == "processed" else []
            for earlier, source in waiting:
                send_labels(earlier, source)

            routing = server.routing()
            console.print(
                f"model server now serves champion v{routing.get('champion')} "
                f"({traffic.answered:,} requests answered, {traffic.failed} failed)",
                highlight=False,
            )
            watcher.stop()
            traffic.stop()
            server.stop()

        console.print(summary_table(rows), width=max(console.width, 130))
        processed = sum(r.state == "processed" for r in rows)
        console.print(
            f"{processed} batches processed, {len(rows) - processed} quarantined with their "
            f"reports; champion now v{outcomes.champion()}; the whole demo took "
            f"{time.perf_counter() - started:.0f} s after the stack started.",
            highlight=False,
        )
        console.print(f"Prefect UI: {state.prefect_ui_url}", highlight=False)
        if state.mlflow_ui_url:
            console.print(f"MLflow UI:  {state.mlflow_ui_url}", highlight=False)
        console.print(f"quarantine: {demo.quarantine_dir / name}", highlight=False)
        console.print(f"Data Docs:  {demo.data_docs_dir / 'index.html'}", highlight=False)
        if keep_running:
            console.print("the stack keeps running; stop it with Ctrl-C", highlight=False)
            try:
                while not stack.dead():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        stack.stop()
        console.print("stack stopped", highlight=False)
    return [row.as_dict() for row in rows]
