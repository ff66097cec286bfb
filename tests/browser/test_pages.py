"""What a person sees, checked in a real browser: `mlops up --mlflow-ui` runs as a process with a
champion, three batches go through it (a quiet one, a drifted one, one that fails validation and
is quarantined), a model server runs beside it, and headless Chromium opens each page a person
looks at -- the Prefect runs list and a batch run's artifact, the MLflow experiment and registered
model, the HTML timeline with its batch pages, the model server's /docs, Prometheus' graph of the
pipeline metrics and its alerts -- asserts on the text it
shows and saves a screenshot (into ``MLOPS_SCREENSHOT_DIR`` when set).

The browser is offline (see conftest.py): a page that needs a CDN shows nothing here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which(
    "chromedriver"
):
    if os.environ.get("CI"):  # .ci/run installs them: missing there is a broken CI machine
        raise RuntimeError("chromium and chromium-driver are missing: .ci/system-packages failed")
    pytest.skip(
        "the browser tests need Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/system-packages installs them)",
        allow_module_level=True,
    )

from mlflow.tracking import MlflowClient  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from stackproc import DATASET, MLOPS, StackProcess, pid_alive, prepare, wait  # noqa: E402

from mlops_cli.scenarios import (  # noqa: E402
    Corruption,
    PhaseKind,
    corrupt,
    generate_applications,
)
from mlops_cli.services import free_port  # noqa: E402
from mlops_core.adapters.registry import ModelRegistry  # noqa: E402
from mlops_core.batches import BatchState  # noqa: E402
from mlops_core.reporting import mlflow_ui_link  # noqa: E402
from mlops_core.settings import Settings  # noqa: E402

# MLflow 3.17 opens its assistant panel beside every page on first load.
MLFLOW_ASSISTANT_CLOSE = 'button[aria-label="Close"]'
GOOD = "week01-good.parquet"
DRIFTED = "week02-drifted.parquet"
QUARANTINED = "week03-missing-column.parquet"


class UiStack(StackProcess):
    """`mlops up --mlflow-ui --prometheus` as its own process (StackProcess starts it without)."""

    def __init__(self, env: dict[str, str], settings: Settings) -> None:
        super().__init__(env, settings, "--mlflow-ui", "--prometheus")


@dataclass
class Batch:
    file: str
    sha256: str
    state: BatchState
    flow_run_id: str


@dataclass
class Site:
    """Everything the pages are about: the stack, its URLs, the batches, the model server."""

    stack: UiStack
    prefect_ui: str
    mlflow_ui: str
    model_server: str
    batches: dict[str, Batch]
    root: Path

    @property
    def settings(self) -> Settings:
        return self.stack.settings


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[str]:
    """`mlops serve` as its own process group (`mlops up` runs no model server)."""
    return subprocess.Popen(
        [MLOPS, "serve", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_server(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert not pid_alive(process.pid)


def write_batches(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    unlabeled = {
        GOOD: generate_applications(np.random.default_rng(1), 500, week=1),
        DRIFTED: generate_applications(
            np.random.default_rng(2), 500, week=2, kind=PhaseKind.harmless_drift
        ),
        QUARANTINED: corrupt(
            generate_applications(np.random.default_rng(3), 500, week=3),
            Corruption.missing_column,
            np.random.default_rng(3),
        ),
    }
    paths = []
    for name, frame in unlabeled.items():
        frame.drop("default").write_parquet(folder / name)
        paths.append(folder / name)
    return paths


def final_flow_run(stack: UiStack, sha256: str) -> Any:
    """The process-batch run of ``sha256`` once Prefect shows it in a final state."""
    runs = [
        r
        for r in stack.flow_runs("")
        if r.parameters.get("sha256") == sha256 and r.state is not None and r.state.is_final()
    ]
    return runs[0] if runs else None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("browser")
    env, settings = prepare(root, MLOPS_MLFLOW_PORT="0")
    server_url = f"http://127.0.0.1:{free_port()}"
    server = serve(env, int(server_url.rsplit(":", 1)[1]), root / "serve.log")
    stack = None
    try:
        stack = UiStack(env, settings)
        submitted = {}
        for path in write_batches(root / "batches"):
            done = stack.mlops("submit", str(path), "--dataset", DATASET, "--json")
            assert done.returncode == 0, done.stderr
            submitted[path.name] = json.loads(done.stdout)["sha256"]
        batches = {}
        for name, sha in submitted.items():
            entry = wait(lambda sha=sha: stack.settled(sha), 240, f"{name} to settle")
            run = wait(lambda sha=sha: final_flow_run(stack, sha), 60, f"{name}'s final run")
            batches[name] = Batch(name, sha, entry.state, str(run.id))
        assert batches[QUARANTINED].state is BatchState.quarantined
        assert batches[GOOD].state is batches[DRIFTED].state is BatchState.processed
        wait(lambda: ready(server_url), 120, "the model server", every=0.5)
        yield Site(
            stack=stack,
            prefect_ui=stack.state["prefect_ui_url"].rstrip("/"),
            mlflow_ui=str(stack.state["mlflow_ui_url"]).rstrip("/"),
            model_server=server_url,
            batches=batches,
            root=root,
        )
    finally:
        stop_server(server)
        if stack is not None:
            output = stack.stop()  # every process the stack started is gone, the MLflow UI too
            assert stack.process.returncode == 0, output


@pytest.fixture(scope="module")
def report_html(site: Site) -> Path:
    """The dataset's self-contained HTML report, written by `mlops report --html`."""
    path = site.root / "credit-timeline.html"
    done = site.stack.mlops("report", "--dataset", DATASET, "--html", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.is_file()
    return path


def row_of(browser: Any, text: str) -> str:
    """The text of the runs-list row that shows ``text``."""
    rows = browser.driver.find_elements(
        By.XPATH,
        f"//*[contains(@class, 'state-list-item__content')][contains(normalize-space(.), '{text}')]",
    )
    assert rows, f"no row in the runs list shows {text!r}"
    return str(rows[0].text)


def test_the_prefect_runs_list_names_each_batch_and_sets_the_quarantined_one_apart(
    site: Site, browser: Any
) -> None:
    text = browser.see(
        f"{site.prefect_ui}/runs",
        ["process-batch", GOOD, DRIFTED, QUARANTINED, "Quarantined"],
        "prefect-runs",
        focus="//*[contains(@class, 'state-list-item__content')]",
    )
    assert "Flow runs" in text
    quarantined = row_of(browser, QUARANTINED)
    assert "Quarantined" in quarantined and "quarantined" in quarantined  # its state and its tag
    assert "Quarantined" not in row_of(browser, GOOD)
    assert "Quarantined" not in row_of(browser, DRIFTED)


def test_a_batch_run_shows_its_artifact_with_validation_drift_and_decision(
    site: Site, browser: Any
) -> None:
    run = site.batches[DRIFTED]
    browser.see(f"{site.prefect_ui}/runs/flow-run/{run.flow_run_id}", [DRIFTED], "prefect-run")
    tab = "//li[contains(@class, 'p-tab')][normalize-space(.)='Artifacts']"
    browser.driver.find_element(By.XPATH, tab).click()
    # The card says MARKDOWN through CSS (text-transform); the DOM has it in lower case.
    card = (
        "//a[contains(@href, '/artifacts/artifact/')]"
        "[contains(translate(., 'MARKDOWN', 'markdown'), 'markdown')]"
    )
    found = browser.until(lambda d: d.find_elements(By.XPATH, card))
    browser.scroll_to(tab)
    browser.shoot("prefect-run-artifacts")
    assert found, "the run's Artifacts tab shows no markdown artifact"
    artifact_url = browser.driver.find_element(By.XPATH, card).get_attribute("href")
    text = browser.see(
        artifact_url,
        [DRIFTED, "Validation", "Drift", "Decision", "watch"],
        "prefect-batch-artifact",
    )
    assert "p = 0 " not in text, "a p-value below the resolution is shown as 0"
    hrefs = [
        str(a.get_attribute("href")) for a in browser.driver.find_elements(By.XPATH, "//a[@href]")
    ]
    assert not [h for h in hrefs if h.startswith("file:")], f"file:// links: {hrefs}"
    assert [h for h in hrefs if "/artifacts/report/batch.html" in h], f"no batch page: {hrefs}"
    # The drift plots are images the MLflow server serves; a person sees them drawn.
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    drawn = browser.until(
        lambda d: [
            img
            for img in d.find_elements(By.XPATH, "//img[contains(@src, '/get-artifact?')]")
            if d.execute_script(loaded, img)
        ]
    )
    assert drawn, "the drift plots embedded from the MLflow server did not load"


def test_the_mlflow_experiment_opens_on_its_runs(site: Site, browser: Any) -> None:
    client = MlflowClient(tracking_uri=site.settings.tracking_uri)
    experiment = client.get_experiment_by_name(DATASET)
    assert experiment is not None
    names = [
        str(run.info.run_name)
        for run in client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`mlops.run_type` = 'decision'",
        )
        if run.data.tags.get("mlops.batch_sha256") in {b.sha256 for b in site.batches.values()}
    ]
    assert len(names) >= 3, names
    text = browser.see(
        # The link the product prints (Prefect artifacts, `mlops up`): MLflow 3's UI opens every
        # experiment in GenAI mode unless the address asks for machine-learning mode.
        mlflow_ui_link(site.mlflow_ui, f"experiments/{experiment.experiment_id}"),
        ["Runs", *names],
        "mlflow-experiment",
        dismiss=MLFLOW_ASSISTANT_CLOSE,
    )
    url = browser.driver.current_url
    assert "genai" not in url.lower(), f"the experiment opened in GenAI mode: {url}"
    assert "Token Usage" not in text and "Total Cost" not in text


def test_the_registered_model_shows_the_champion_alias(site: Site, browser: Any) -> None:
    champion = ModelRegistry(site.settings, DATASET).version_of("champion")
    assert champion is not None
    text = browser.see(
        mlflow_ui_link(site.mlflow_ui, f"models/{DATASET}"),
        [DATASET, f"Version {champion.version}", "champion"],
        "mlflow-registered-model",
        dismiss=MLFLOW_ASSISTANT_CLOSE,
    )
    assert "@ champion" in text or "@champion" in text


def test_the_html_timeline_lists_every_batch_and_the_quarantine(
    browser: Any, report_html: Path
) -> None:
    text = browser.see(report_html.as_uri(), [GOOD, DRIFTED, QUARANTINED], "timeline")
    assert "quarantined" in text.lower()
    # Self-contained: no request leaves the file (the browser is offline, so count what it asked).
    outside = browser.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:') && !n.startsWith('file:'))"
    )
    assert outside == [], f"the report loads {outside}"
    broken = browser.driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.src.slice(0, 80))"
    )
    assert broken == [], f"images that do not show: {broken}"


def test_the_html_batch_pages_show_validation_drift_and_the_decision(
    site: Site, browser: Any, report_html: Path
) -> None:
    def section(name: str, shot: str) -> str:
        anchor = f"batch-{site.batches[name].sha256[:12]}"
        browser.driver.get(f"{report_html.as_uri()}#{anchor}")
        found = browser.until(lambda d: d.find_elements(By.ID, anchor), timeout=10)
        browser.shoot(shot)
        assert found, f"the report has no page for {name} (#{anchor})"
        return str(browser.driver.find_element(By.ID, anchor).text)

    drifted = section(DRIFTED, "batch-page-drifted")
    for text in (DRIFTED, "Validation", "Drift", "Decision", "watch"):
        assert text in drifted, f"{text!r} is not on the page of {DRIFTED}"
    quarantined = section(QUARANTINED, "batch-page-quarantined")
    assert QUARANTINED in quarantined
    assert "quarantined" in quarantined.lower()
    assert "failed" in quarantined.lower()


def test_the_model_server_docs_render_offline(site: Site, browser: Any) -> None:
    text = browser.see(f"{site.model_server}/docs", ["/predict"], "model-server-docs")
    assert "POST" in text


def test_prometheus_graphs_the_pipeline_and_lists_the_alerts(site: Site, browser: Any) -> None:
    from urllib.parse import urlencode

    prometheus = str(site.stack.state["prometheus_url"])
    query = urlencode(
        {
            "g0.expr": 'sum by (state) (mlops_batches{dataset="credit"})',
            "g0.tab": "0",
            "g0.range_input": "5m",
            "g0.stacked": "0",
        }
    )
    text = browser.see(
        f"{prometheus}/graph?{query}",
        ['state="processed"', 'state="quarantined"'],
        "prometheus-graph",
    )
    assert "mlops_batches" in text
    # Debian builds the classic UI only: its alerts page is /classic/alerts.
    alerts = browser.see(
        f"{prometheus}/classic/alerts", ["MlopsDrift", "MlopsNoRecentBatch"], "prometheus-alerts"
    )
    for rule in ("MlopsModelServerErrorRate", "MlopsRolloutStuck", "MlopsBatchesFailing"):
        assert rule in alerts
