"""Soak test: the whole product running for a bounded time under steady load, then accounted for.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--batch-seconds 5] [--clients 3]

On a fresh temporary MLOPS_HOME / PREFECT_HOME (analytics off), the soak:

1. writes the built-in credit-risk scenario streams (``write_stream``, seeds 7, 8, ...: 20 weekly
   batches each, their corrupted files included), registers the dataset from seed 7's reference,
   starts ``mlops up`` as a real process (Prefect server, the served deployments on the warm
   runner, automations, inbox watcher), trains the first champion with ``mlops train`` (the gated
   subflow, promoted directly) and starts ``mlops serve`` on a free loopback port;
2. for ``--minutes`` (the soak window) keeps ``--clients`` threads sending single-record
   ``/predict`` requests with a routing key (``--rate`` requests per second each; fresh stable-week
   applications, not the reference the champion was trained on), each followed by ``/feedback``
   with the true label; a request failed when it raised a transport error (10 s timeout) or got a
   non-2xx answer;
3. every ``--batch-seconds`` submits a batch exactly as ``mlops submit`` does
   (``LandingZone.submit``, then ``announce`` -> ``mlops.batch.arrived`` to the stack's Prefect
   server unless the file is a duplicate): the stream's batches without their label column, as the demo sends them, and every
   4th submission a file already submitted, which must be recognised as a duplicate;
4. measures the server's RSS once warmed up: after ``--warmup`` seconds and the server's first
   prediction and feedback log files landed (its first flush, after 60 s, imports the Prefect
   client: a one-time ~50 MiB), then every 5 s, and at the end of the window;
5. runs three rollouts through the rollout flow (``flows.rollout.rollout``, in this process,
   against the served URL, with PREFECT_API_URL on the stack's server) at 15%, 45% and 75% of the
   window, none before the warm-up ends, of challengers trained on 10,000 fresh applications and
   registered in the MLflow registry (``train_challenger``) during the setup: two good ones that
   must be promoted and one trained on flipped labels (as in ``bad_challenger.py``) that must be
   rolled back.
   Canary 25% -> 50% -> 100% with at least 60 requests and 60 feedback rows per step, a step
   ending at 120 s at the latest: at 10% for 90 s (the soak before) a sound challenger's first
   step got about 250 labelled rows, too few to show it not worse at a 5-point tolerance, so it
   was rolled back as inconclusive. A rollout starts no earlier than the previous one ended, and
   the window is extended until the third has ended;
6. then stops the traffic, waits up to ``--grace`` seconds for every submitted batch to settle,
   and reports.

Policy during the soak: ``MLOPS_MIN_LABELLED_ROWS`` is set out of reach, so a batch decision (or
the repeated-drift review) that would retrain says ``watch`` instead: the only model changes are
the three rollouts. The batches carry no labels, so the rollback rule (champion worse than the
previous one on labelled rows) cannot fire on them; the server's own feedback log (landed as
labels every 60 s by ``mlops serve``) can still reach it, and any policy retrain or rollback seen
in MLflow is printed. ``MLOPS_GATE_LATENCY_BUDGET_MS`` is raised to 500 ms: on a loaded 2-core
machine the first champion's single-row latency gate (50 ms) refuses sound models, and that gate
is not what a soak measures. The server's prediction and feedback logs are landed and processed
by the stack as in production; they are reported, but the batch targets concern the submitted
files.

Reports duration, requests served and failed, batches submitted (unique), duplicates resubmitted,
batches processed / quarantined (the ledger), lost batches (submitted, not settled within the
grace period), duplicated batches (a sha256 with more than one per-batch decision run in MLflow --
tag ``mlops.batch_sha256``, review-drift runs excluded -- or a resubmission not recognised), the
rollouts, and the RSS of the ``mlops serve`` process and its children after warm-up and at the end.
Targets: 0 failed requests, 0 lost, 0 duplicated batches, RSS growth < 10%, and the rollouts'
outcomes as planned. Prints PASS/FAIL per target, writes ``benchmarks/results/soak.json`` and exits
1 when a target is missed. Everything started is stopped by process id / group, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, bench_home, write_results
from soak_load import DATASET, Batches, Example, Sampler, Streams, Users, rss_bytes
from soak_processes import (
    BIN,
    log,
    register_challenger,
    spawn,
    stop_stack,
    train_first_champion,
    wait_for,
)
from soak_report import (
    EXPECTED,
    PLAN,
    Window,
    plot_memory,
    print_report,
    read_ledger,
    results_json,
    targets,
    wait_to_settle,
)

SOAK_ENVIRONMENT = {
    "MLOPS_PREFECT_PORT": "0",
    # No batch decision starts a retrain: "not retraining: only N labelled rows" -> watch.
    "MLOPS_MIN_LABELLED_ROWS": "1000000000",
    # The first champion's latency gate (p95 single-row predict <= 50 ms) measured on a loaded
    # 2-core machine refuses sound models; the soak is about endurance, not that gate.
    "MLOPS_GATE_LATENCY_BUDGET_MS": "500",
    # Rollouts that finish in a few minutes; a first step of 25% (as the demo's) gets the
    # labelled rows that can show a sound challenger not worse than the champion.
    "MLOPS_ROLLOUT_STEPS": "25,50,100",
    "MLOPS_ROLLOUT_MIN_REQUESTS": "60",
    "MLOPS_ROLLOUT_MIN_FEEDBACK": "60",
    "MLOPS_ROLLOUT_STEP_SECONDS": "120",
    "MLOPS_ROLLOUT_MAX_P99_MS": "1000",
    "MLOPS_ROLLOUT_MAX_ERROR_RATE": "0.05",  # as the demo: limits a step can show in a minute
    "MLOPS_ROLLOUT_ACCURACY_TOLERANCE": "0.05",
    "MLOPS_SERVE_POLL_SECONDS": "0.5",
}
# The soak's stack is its own: nothing inherited may point it at another server or store.
INHERITED = ("PREFECT_API_URL", "MLOPS_SERVE_URL", "MLOPS_INBOX_DIR", "MLOPS_MLFLOW_TRACKING_URI")


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


class Soak:
    """The soak's parts as they are started, and its phases in the order they run."""

    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        from mlops_core.settings import Settings

        self.args, self.home = args, home
        self.window = args.minutes * 60
        self.settings = Settings()
        self.streams = Streams(home, args.batch_rows)
        self.first_files: list[Path] = []
        self.examples: list[Example] = []
        self.up: subprocess.Popen[str] | None = None
        self.up_log: Path | None = None
        self.serve: subprocess.Popen[str] | None = None
        self.api = self.url = ""
        self.users: Users | None = None
        self.batches: Batches | None = None
        self.sampler: Sampler | None = None
        self.t0 = 0.0

    def alive(self) -> None:
        """Raise when ``mlops up`` or ``mlops serve`` exited although nobody stopped them."""
        for name, process, path in (
            ("mlops up", self.up, self.up_log),
            ("mlops serve", self.serve, None),
        ):
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}"
                    + (f"; see {path}" if path else "")
                )

    def prepare_data(self) -> None:
        """Write the first stream, register the dataset from its reference, draw the users' examples."""
        import numpy as np

        from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
        from mlops_core.adapters.catalog import DatasetCatalog

        log(f"soak state: {self.home}")
        self.first_files = self.streams.next()
        reference = self.streams.reference
        assert reference is not None
        DatasetCatalog(self.settings).add(CREDIT_SPEC, reference)
        features = list(CREDIT_SPEC.features)
        # Live traffic: fresh applications of a stable week, never the reference the first champion
        # was trained on (on its own training rows it would look better than any challenger).
        self.examples = [
            ({f: row[f] for f in features}, int(row["default"]))
            for row in generate_applications(
                np.random.default_rng(11), 10_000, week=1, id_prefix="U"
            ).to_dicts()
        ]
        log(f"dataset {DATASET} registered; stream batches of {self.args.batch_rows:,} rows")

    def set_up(self) -> list[str]:
        """Start the stack, train the first champion, register the challengers, start the server;
        the challengers' versions, in the order of the plan."""
        started = time.monotonic()
        self.up, up_log = spawn(self.home, [str(BIN / "mlops"), "up"], "up")
        self.up_log = up_log
        stack_file = self.settings.stack_file
        wait_for(
            lambda: (
                "ready" in up_log.read_text(encoding="utf-8", errors="replace")
                and stack_file.exists()
            ),
            300,
            "mlops up",
            self.alive,
        )
        self.api = json.loads(stack_file.read_text())["prefect_api_url"]
        log(f"mlops up ready (pid {self.up.pid}), Prefect API {self.api}")
        train_first_champion(self.settings)
        challengers = [
            register_challenger(self.settings, kind, 100 + n) for n, (kind, _) in enumerate(PLAN)
        ]
        log(f"challengers registered: {', '.join(f'v{v}' for v in challengers)}")
        serve = self.start_server()
        log(
            f"mlops serve ready on {self.url} (pid {serve.pid}); setup took "
            f"{time.monotonic() - started:.0f} s"
        )
        return challengers

    def start_server(self) -> subprocess.Popen[str]:
        """``mlops serve`` started on a free loopback port, once it is ready."""
        import httpx

        from mlops_cli.stack import free_port

        port = free_port()
        self.url = url = f"http://127.0.0.1:{port}"
        serve, _ = spawn(
            self.home,
            [str(BIN / "mlops"), "serve", "--dataset", DATASET, "--port", str(port)],
            "serve",
        )
        self.serve = serve  # watched by alive() from now on

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 120, "mlops serve", self.alive)
        return serve

    def sleep_until(self, moment: float) -> None:
        """Sleep until ``moment`` (monotonic), checking every second that the stack and server live."""
        while time.monotonic() < moment:
            self.alive()
            time.sleep(min(1.0, max(0.0, moment - time.monotonic())))

    def run_window(self, challengers: list[str]) -> Window:
        """The soak window: the load on, the warm-up, the three rollouts; the load stopped at its end."""
        args, serve = self.args, self.serve
        assert serve is not None
        users = self.users = Users(self.url, self.examples, args.clients, args.rate)
        batches = self.batches = Batches(self.settings, self.api, self.streams, args.batch_seconds)
        batches.files = self.first_files
        sampler = self.sampler = Sampler(serve.pid)
        self.t0 = time.monotonic()
        users.start()
        batches.start()
        sampler.start()
        log(
            f"soak window: {args.minutes:g} min; {args.clients} clients at {args.rate:g} req/s "
            f"each; a batch every {args.batch_seconds:g} s"
        )
        rss_start, warmed = self.warm_up(serve.pid)
        rollouts = []
        for n, (kind, at) in enumerate(PLAN):
            self.sleep_until(self.t0 + max(at * self.window, warmed))
            rollouts.append(self.roll_out(n, kind, challengers[n]))
        self.sleep_until(self.t0 + self.window)
        duration = time.monotonic() - self.t0
        rss_end = rss_bytes(serve.pid)
        latencies = sorted(users.latencies)
        batches.stop()
        users.stop()
        sampler.stop()
        log(
            f"window over after {duration:.0f} s; server RSS {rss_end / 2**20:.1f} MiB; "
            f"waiting up to {args.grace:.0f} s for the batches to settle"
        )
        return Window(duration, warmed, rss_start, rss_end, latencies, rollouts)

    def warm_up(self, pid: int) -> tuple[int, float]:
        """The server's RSS once warmed up, and when (seconds into the window)."""
        from mlops_core.adapters.landing import LandingZone

        # Warm-up: --warmup seconds, and the server's first prediction and feedback log files
        # landed (after MLOPS_SERVE_LOG_SECONDS, 60 s: the first flush imports the Prefect client
        # into the server, a one-time ~50 MiB), so the baseline is the server's steady state.
        self.sleep_until(self.t0 + self.args.warmup)

        def first_logs() -> bool:
            return all(
                any(
                    e.original_name.startswith("served-")
                    for e in LandingZone(self.settings, k).entries(DATASET)
                )
                for k in ("batch", "labels")
            )

        with contextlib.suppress(RuntimeError):
            wait_for(first_logs, 120, "the server's first prediction log", self.alive)
        self.sleep_until(time.monotonic() + 5)
        rss_start = rss_bytes(pid)
        warmed = time.monotonic() - self.t0
        log(f"server RSS after warm-up ({warmed:.0f} s): {rss_start / 2**20:.1f} MiB")
        return rss_start, warmed

    def roll_out(self, n: int, kind: str, version: str) -> dict[str, Any]:
        """Roll challenger ``version`` out through the served URL; what happened, for the report."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.rollout import rollout

        began = time.monotonic()
        log(f"rollout {n + 1}: v{version} ({kind}) through {self.url}")
        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            outcome = rollout(dataset=DATASET, version=version, server_url=self.url)
        self.alive()
        last = outcome.steps[-1] if outcome.steps else None
        done = {
            "version": version,
            "challenger": kind,
            "expected": EXPECTED[kind],
            "outcome": outcome.status.value,
            "steps": len(outcome.steps),
            "last_weight": last.weight if last is not None else None,
            "reason": "; ".join(outcome.last_reasons),
            "champion_after": outcome.aliases.get("champion"),
            "seconds": round(time.monotonic() - began, 1),
            "at_second": round(began - self.t0, 1),
        }
        log(
            f"rollout {n + 1}: v{version} {done['outcome']} in {done['seconds']} s -- {done['reason']}"
        )
        return done

    def account(self, window: Window) -> dict[str, Any]:
        """Wait for the batches to settle, print the report; the results as JSON."""
        users, batches, sampler = self.users, self.batches, self.sampler
        assert users is not None and batches is not None and sampler is not None
        lost = wait_to_settle(self.settings, batches, self.args.grace, self.alive)
        ledger = read_ledger(self.settings, batches, lost)
        met = targets(window, users, ledger)
        print_report(window, users, batches, ledger, met)
        return results_json(self.args, window, (users, batches, sampler), ledger, met)

    def stop_everything(self) -> str:
        """Stop the load, the server and the stack, each by what this soak started; how the stack stopped."""
        from mlops_cli.stack import stop_group

        for part in (self.batches, self.users, self.sampler):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        if self.serve is not None:
            stop_group(self.serve)
        if self.up is None:
            return "-"
        how = stop_stack(self.up, self.settings)
        log(f"mlops up {how}")
        return how


def parse_arguments() -> argparse.Namespace:
    """The soak's options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="the soak window (default 10)")
    parser.add_argument("--batch-seconds", type=float, default=5.0, help="between submissions")
    parser.add_argument("--batch-rows", type=int, default=1_000, help="rows per stream batch")
    parser.add_argument("--clients", type=int, default=3, help="client threads")
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s per client")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the first RSS")
    parser.add_argument("--grace", type=float, default=180.0, help="seconds to settle at the end")
    return parser.parse_args()


def main() -> int:
    """Run the soak and report: 0 when every target is met, 1 when one is missed, 130 when stopped."""
    args = parse_arguments()
    home = bench_home("soak", SOAK_ENVIRONMENT)
    for key in INHERITED:
        os.environ.pop(key, None)
    signal.signal(signal.SIGTERM, _interrupt)

    soak = Soak(args, home)
    soak.prepare_data()
    results: dict[str, Any] = {}
    try:
        results = soak.account(soak.run_window(soak.set_up()))
    except KeyboardInterrupt:
        log("interrupted: stopping everything started")
        return_code = 130
    else:
        return_code = 0 if all(t["passed"] for t in results["targets"].values()) else 1
    finally:
        stack_stop = soak.stop_everything()
    if results:
        results["stack_stop"] = stack_stop
        results["home"] = str(home)
        print(f"wrote {write_results('soak', results)}")
        print(f"wrote {plot_memory(results)}")
        for name, target in results["targets"].items():
            print(
                f"{'PASS' if target['passed'] else 'FAIL'}  {name}: {target['value']} (target {target['target']})"
            )
    return return_code


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plot"]:  # redraw the plot from the last results
        print(plot_memory(json.loads((ROOT / "benchmarks/results/soak.json").read_text())))
        sys.exit(0)
    sys.exit(main())
