"""``mlops up --prometheus``: Debian's ``prometheus`` with ``deployments/prometheus.yml``.

The config it runs is the deployed one with two changes, written to ``<home>/prometheus/``:
each job's static targets become file discovery of ``targets/<job>-*.json`` (the exporter and
every ``mlops serve`` announce themselves there: ``mlops_core.adapters.scrape_targets``), and the
rule files are copied beside it. Its data lives in ``<home>/prometheus/data``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from mlops_core.adapters.scrape_targets import targets_dir
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings

DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deployments"


def binary() -> str:
    """The ``prometheus`` executable; a clear error when it is not installed."""
    found = shutil.which("prometheus")
    if found is None:
        raise MlopsError(
            "prometheus is not installed",
            hint="install Debian's package (apt-get install prometheus), or run without --prometheus",
        )
    return found


def stack_config(deployed: dict[str, Any]) -> dict[str, Any]:
    """``deployed`` with each job's static targets replaced by its announced target files."""
    config = dict(deployed)
    jobs = []
    for job in deployed.get("scrape_configs", []):
        job = {k: v for k, v in job.items() if k != "static_configs"}
        job["file_sd_configs"] = [
            {"files": [f"targets/{job['job_name']}-*.json"], "refresh_interval": "5s"}
        ]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def write_config(settings: Settings, source: Path = DEPLOYMENTS) -> Path:
    """Write the stack's Prometheus config (and its rule files) under ``<home>/prometheus/``."""
    folder = settings.home / "prometheus"
    targets_dir(settings).mkdir(parents=True, exist_ok=True)
    deployed = yaml.safe_load((source / "prometheus.yml").read_text(encoding="utf-8"))
    for rules in deployed.get("rule_files", []):
        shutil.copyfile(source / rules, folder / Path(rules).name)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(stack_config(deployed), sort_keys=False), encoding="utf-8")
    return path


def command(settings: Settings, config: Path, port: int) -> list[str]:
    """The command line that runs Prometheus on 127.0.0.1:``port`` with ``config``."""
    return [
        binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={settings.home / 'prometheus' / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=15d",
        "--web.enable-lifecycle",
    ]
