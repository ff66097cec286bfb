"""Scrape targets announced to Prometheus' file discovery: ``<home>/prometheus/targets/*.json``.

``mlops up --prometheus`` points its Prometheus at these files (``file_sd_configs``), so the
processes it should scrape -- the pipeline exporter, each ``mlops serve`` -- add themselves when
they start and leave when they stop, without a restart of Prometheus or an edited config.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from mlops_core.settings import Settings


def targets_dir(settings: Settings) -> Path:
    """The folder Prometheus reads target files from."""
    return settings.home / "prometheus" / "targets"


def target_file(settings: Settings, job: str, address: str) -> Path:
    """The file announcing ``address`` (``host:port``) as a target of ``job``."""
    safe = address.replace(":", "_").replace("/", "_")
    return targets_dir(settings) / f"{job}-{safe}.json"


@contextlib.contextmanager
def announced(settings: Settings, job: str, address: str) -> Iterator[Path]:
    """``address`` announced as a target of ``job`` while the block runs (the file is written in
    one step, so Prometheus never reads half of it, and removed at the end)."""
    path = target_file(settings, job, address)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps([{"targets": [address], "labels": {}}]), encoding="utf-8")
        os.replace(staged, path)
    except OSError:  # a read-only home: nothing announced, the process still runs
        yield path
        return
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
