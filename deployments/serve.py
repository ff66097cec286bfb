"""Serve the loop's deployments against the Prefect API in ``PREFECT_API_URL``.

    python -m deployments.serve            # the warm runner (tuned: 0.25 s poll, warm process)
    python -m deployments.serve --default  # prefect.serve with Prefect's default settings

Both register the same deployments with their triggers, create the automations and the
per-dataset retrain concurrency limits, print one line ``READY <json>`` and run until SIGTERM or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any


def ensure_concurrency_limits(datasets: list[str]) -> None:
    """One global concurrency limit of 1 per dataset: one retrain at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from mlops_core.challenger import retrain_limit_name

    with get_client(sync_client=True) as client:
        existing = {limit.name for limit in client.read_global_concurrency_limits(limit=200)}
        for dataset in datasets:
            name = retrain_limit_name(dataset)
            if name not in existing:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )


def warm_up(settings: Any, datasets: list[str]) -> None:
    """Fit each dataset's drift detector, load its champion and run its expectation suite once
    now (Great Expectations' first run in a process costs about 1.5 s), not on the first batch."""
    import tempfile
    from pathlib import Path

    import polars as pl

    from mlops_core.adapters.context import DatasetContext
    from mlops_core.adapters.gx_project import load_suite, validate_frame
    from tasks.drift import fitted_detector

    for dataset in datasets:
        try:
            ctx = DatasetContext.open(settings, dataset)
            fitted_detector(ctx)
            ctx.champion()
            sample = pl.read_parquet(ctx.registered.reference_path, n_rows=100)
            with tempfile.TemporaryDirectory() as scratch:  # its result is kept nowhere
                validate_frame(
                    sample,
                    ctx.spec,
                    load_suite(settings, dataset),
                    settings.model_copy(update={"home": Path(scratch)}),
                    source="warm-up",
                    data_docs=False,
                )
        except Exception as exc:  # noqa: BLE001 -- warming is an optimisation only
            sys.stderr.write(f"warm-up of {dataset} skipped: {exc}\n")


# `mlops up` starts this process beside the Prefect server, which takes about 20 s to answer.
API_WAIT_SECONDS = 180.0


def wait_for_api(timeout: float) -> bool:
    """Whether the Prefect API (``PREFECT_API_URL``) answered its health check within ``timeout``."""
    import time

    from prefect.settings import PREFECT_API_URL

    from mlops_core.adapters.stack_state import healthy

    url = PREFECT_API_URL.value()
    if not url:
        return True  # no server named: Prefect's own ephemeral API, which needs no wait
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def limit_threads(settings: Any) -> int:
    """Cap this process' numeric thread pools (PyTorch's and the OpenMP/BLAS ones); the cap."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = settings.runner_threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    return threads


def main(argv: list[str] | None = None) -> int:
    """Serve the deployments until stopped, or only register them (``--register-only``); the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--default", action="store_true", help="prefect.serve, default settings")
    parser.add_argument(
        "--register-only",
        action="store_true",
        help="create the automations and concurrency limits for deployments made from "
        "prefect.yaml (work pools), then exit",
    )
    args = parser.parse_args(argv)

    from deployments import automations
    from deployments.definitions import ALERT, FLOWS, REVIEW_DRIFT, build
    from deployments.runner import WarmRunner, quiet_task_completions
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.settings import Settings

    settings = Settings()
    if args.register_only:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            review = client.read_deployment_by_name(REVIEW_DRIFT).id
            alert = client.read_deployment_by_name(ALERT).id
        automations.ensure(review, alert, settings)
        ensure_concurrency_limits(DatasetCatalog(settings).names())
        return 0
    quiet_task_completions()
    deployments = build(settings)
    if not args.default:  # needs no Prefect API: done while the server may still be starting
        limit_threads(settings)
        warm_up(settings, DatasetCatalog(settings).names())
    if not wait_for_api(API_WAIT_SECONDS):
        sys.stderr.write(
            f"the Prefect API did not answer its health check within {API_WAIT_SECONDS:.0f} s\n"
        )
        return 1
    runner = WarmRunner(deployments, FLOWS, poll_seconds=settings.runner_poll_seconds)
    ids = runner.register()
    automations.ensure(ids[REVIEW_DRIFT], ids[ALERT], settings)
    ensure_concurrency_limits(DatasetCatalog(settings).names())

    def ready(mode: str) -> None:
        info: dict[str, Any] = {"mode": mode, "deployments": {k: str(v) for k, v in ids.items()}}
        sys.stdout.write(f"READY {json.dumps(info)}\n")
        sys.stdout.flush()

    if args.default:
        from prefect import serve

        ready("default")
        serve(*deployments, print_starting_message=False)
        return 0

    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    ready("warm")
    try:
        runner.serve()
    except KeyboardInterrupt:
        runner.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
