"""Deploy the loop to a Prefect work pool, for workers (the cluster stack, or a team's own).

    python -m deployments.cluster --pool mlops     # with PREFECT_API_URL set

Creates the ``process`` work pool when it is missing, applies the same deployments, event
triggers and schedule as ``mlops up`` serves (``deployments/definitions.py``) to the pool, then the
automations and the per-dataset retrain concurrency limits, and prints ``READY <json>``. Workers
started with ``python -m deployments.worker --pool mlops`` in this repository's folder (with the
``MLOPS_*`` settings in their environment) run the flows, each run forked from a warm process
(``deployments/forkserver.py``); a plain ``prefect worker start --pool mlops`` runs them too, each
in a fresh interpreter. ``prefect.yaml`` beside this file declares
the same deployments for ``prefect deploy``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any


def ensure_pool(name: str, concurrency: int | None) -> None:
    """The ``process`` work pool ``name``, created when missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency)
            )


def deploy(pool: str) -> dict[str, Any]:
    """Apply every deployment of the loop to ``pool``; their ids by name."""
    from deployments.definitions import build
    from mlops_core.settings import Settings

    ids: dict[str, Any] = {}
    # The workers run each flow in this repository's folder (a process worker's default is a
    # new temporary folder, where the flows' code is not), with ``deployments.flow_run``: forked
    # from the worker's warm fork server when it has one (``python -m deployments.worker``),
    # the plain ``python -m prefect.engine`` otherwise.
    repo = str(Path(__file__).resolve().parents[1])
    command = shlex.join([sys.executable, "-m", "deployments.flow_run"])
    for deployment in build(Settings()):
        deployment.job_variables = {
            **(deployment.job_variables or {}),
            "working_dir": repo,
            "command": command,
        }
        ids[f"{deployment.flow_name}/{deployment.name}"] = deployment.apply(work_pool_name=pool)
    return ids


def main(argv: list[str] | None = None) -> int:
    """Deploy to the pool, create automations and limits; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", default="mlops", help="the work pool's name")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="the pool's concurrency limit (none: unlimited)",
    )
    args = parser.parse_args(argv)

    from deployments import automations
    from deployments.definitions import ALERT, REVIEW_DRIFT
    from deployments.serve import ensure_concurrency_limits
    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.settings import Settings

    ensure_pool(args.pool, args.concurrency)
    ids = deploy(args.pool)
    automations.ensure(ids[REVIEW_DRIFT], ids[ALERT])
    ensure_concurrency_limits(DatasetCatalog(Settings()).names())
    sys.stdout.write(f"READY {json.dumps({k: str(v) for k, v in ids.items()})}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
