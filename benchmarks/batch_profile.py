"""Where a batch's submit -> decision time goes: one stage per row, from Prefect's own records.

    .venv/bin/python benchmarks/batch_profile.py [--batches 8]

Starts the stack of ``mlops up`` (tuned: the warm runner) on a temporary MLOPS_HOME, lands and
announces 2,000-row unlabelled batches one at a time as ``mlops submit`` does, and for each one
reads back from the Prefect API: when the automation created the flow run, when the warm runner
started it, each task run's start and end, and when the flow run ended. The first batch warms
the process (its imports, the fitted detectors) and is reported apart. Prints the median of each
stage and writes ``benchmarks/results/batch_profile.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import Any

from common import (
    add_credit_dataset,
    bench_home,
    print_table,
    promote_first_champion,
    write_results,
)
from event_latency import submit_and_wait, unlabelled_batches


def stages(client: Any, flow_run: Any, submitted: float, settled: float) -> dict[str, float]:
    """Seconds per stage of one batch, in the order they happened (wall clock, Unix seconds)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
    )
    created = flow_run.created.timestamp()
    started = flow_run.start_time.timestamp()
    ended = flow_run.end_time.timestamp()
    out = {
        "submit -> flow run created (event, trigger)": created - submitted,
        "created -> started (runner poll, claim)": started - created,
    }
    cursor = started
    for task in sorted(tasks, key=lambda t: t.start_time or t.expected_start_time):
        if task.start_time is None or task.end_time is None:
            continue
        begin, end = task.start_time.timestamp(), task.end_time.timestamp()
        name = task.name.rsplit("-", 1)[0]
        out["between tasks (flow code, engine)"] = out.get(
            "between tasks (flow code, engine)", 0.0
        ) + max(0.0, begin - cursor)
        out[name] = out.get(name, 0.0) + (end - begin)
        cursor = max(cursor, end)
    out["after the last task (flow end)"] = ended - cursor
    out["flow end -> settled seen"] = settled - ended
    out["total (submit -> settled)"] = settled - submitted
    return out


def main() -> None:
    """Profile the batches; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    home = bench_home("batchprofile", {"MLOPS_PREFECT_PORT": "0"})

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mlops_cli.stack import Stack
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.settings import Settings

    settings = Settings()
    add_credit_dataset(settings)
    promote_first_champion(settings)
    stack = Stack(settings, log=lambda text: print(f"  {text}"))
    state = stack.start()
    zone = LandingZone(settings)
    per_batch: list[dict[str, float]] = []
    try:
        with (
            temporary_settings(updates={PREFECT_API_URL: state.prefect_api_url}),
            get_client(sync_client=True) as client,
        ):
            timed: list[tuple[str, float, float]] = []
            # Back to back, as event_latency.py submits them; Prefect's records are read after.
            for path in unlabelled_batches(home, "profile", args.batches + 1):
                timed.append(submit_and_wait(zone, path))
                submitted = timed[-1][1]
                print(f"  {path.name}: {timed[-1][2] - submitted:.2f} s")
            for sha, submitted, settled in timed:
                runs: list[Any] = []
                for _ in range(100):
                    # Runs are named for their file; the batch's sha256 is a parameter.
                    runs = [
                        r
                        for r in client.read_flow_runs(limit=200)
                        if r.parameters.get("sha256") == sha
                    ]
                    if runs and runs[0].end_time is not None:
                        break
                    time.sleep(0.1)
                per_batch.append(stages(client, runs[0], submitted, settled))
    finally:
        stack.stop()

    warm = per_batch[1:]
    medians: dict[str, float] = {}
    seen: dict[str, list[float]] = defaultdict(list)
    for batch in warm:
        for stage, seconds in batch.items():
            seen[stage].append(seconds)
    for stage, values in seen.items():
        values += [0.0] * (len(warm) - len(values))  # a stage some batches skipped
        medians[stage] = statistics.median(values)
    rows = [
        [stage, f"{seconds:.3f}", f"{per_batch[0].get(stage, 0.0):.3f}"]
        for stage, seconds in medians.items()
    ]
    print()
    print_table(["stage", f"median s ({len(warm)} warm batches)", "first batch s"], rows)
    path = write_results(
        "batch_profile",
        {
            "what": "submit -> settled for 2,000-row unlabelled credit batches through the tuned "
            "stack, split into stages from Prefect's flow and task run records",
            "median_seconds": {k: round(v, 3) for k, v in medians.items()},
            "first_batch_seconds": {k: round(v, 3) for k, v in per_batch[0].items()},
            "batches": [{k: round(v, 3) for k, v in b.items()} for b in per_batch],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
