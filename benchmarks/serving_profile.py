"""Where a request's time goes in ``mlops serve``: py-spy samples the server under wrk's load.

    .venv/bin/python benchmarks/serving_profile.py [--seconds 10] [--connections 16] [--records 1]

The same server as ``serving.py`` (credit model, a 25% canary, the prediction log on) is loaded
by wrk while py-spy records its stacks (on-CPU samples only, every thread). Each
sample is put in the first bucket, innermost frame outwards, whose pattern its stack holds:
scoring the model, checking the records, routing, the traffic memory and prediction log, the
metrics, FastAPI/pydantic's parsing and serialising, the HTTP server (uvicorn, h11, asyncio), and
the rest. Prints the shares and writes ``benchmarks/results/serving_profile.json``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results  # noqa: E402
from serving import prepare, start, stop, wrk_load  # noqa: E402

# (bucket, substrings of a frame "function (file:line)"), checked innermost frame first.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("model scoring (compiled or pipeline)", ("serving/compiled.py", "sklearn/", "serving/batcher.py")),
    ("records checked against the spec", ("serving/inputs.py",)),
    ("routing", ("mlops_core/routing.py",)),
    ("traffic memory and prediction log", ("serving/records.py", "remember (", "prediction_log (")),
    ("metrics", ("prometheus_client/", "serving/metrics.py")),
    ("FastAPI / pydantic / starlette", ("fastapi/", "pydantic", "starlette/", "anyio/")),
    ("HTTP server (uvicorn, h11, asyncio)", ("uvicorn/", "h11/", "httptools", "asyncio/", "uvloop")),
]  # fmt: skip


IDLE = ("Condition.wait (", "EpollSelector.select (", "Event.wait (", "Queue.get (", "select (")
"""Innermost frames of a thread that waits: not CPU time, left out of the shares."""


def bucket_of(stack: str) -> str:
    """The bucket of one collapsed stack ("outer;...;inner")."""
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, patterns in BUCKETS:
            if any(p in frame for p in patterns):
                return name
    return "other (threads idle in Python, the follower, logging)"


def profile(pid: int, seconds: float, load: Any) -> tuple[Counter[str], Counter[str]]:
    """py-spy's on-CPU samples of process ``pid`` while ``load()`` runs, counted by bucket, and
    by innermost frame."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "stacks.txt"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        worker = threading.Thread(target=load)
        worker.start()
        recorder.wait(timeout=seconds + 120)
        worker.join()
        counts: Counter[str] = Counter()
        frames: Counter[str] = Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            innermost = stack.split(";")[-1]
            if stack and count.isdigit() and not innermost.startswith(IDLE):
                counts[bucket_of(stack)] += int(count)
                frames[innermost] += int(count)
    return counts, frames


def main() -> None:
    """Profile ``mlops serve`` under wrk; print and write the shares."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--records", type=int, default=1, help="records per request")
    args = parser.parse_args()
    models, env = prepare("serving_profile")
    from mlops_cli.stack import free_port

    bin_dir = Path(sys.executable).parent
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start([str(bin_dir / "mlops"), "serve", "--port", str(port)], f"{url}/ready", env)
    body: dict[str, Any] = (
        {"record": models.records[0]}
        if args.records == 1
        else {"records": models.records[: args.records]}
    )
    measured: dict[str, Any] = {}
    try:

        def load() -> None:
            measured.update(wrk_load(f"{url}/predict", body, args.seconds, args.connections))

        counts, frames = profile(server.pid, args.seconds, load)
    finally:
        stop(server)
    total = sum(counts.values()) or 1
    shares = {name: counts[name] / total for name, _ in BUCKETS}
    shares["other (threads idle in Python, the follower, logging)"] = (
        counts["other (threads idle in Python, the follower, logging)"] / total
    )
    print(
        f"\nmlops serve under wrk ({args.connections} connections, {args.records} record(s) a "
        f"request): {measured.get('throughput_rps')} req/s, p99 {measured.get('p99_ms')} ms; "
        f"{total} on-CPU samples"
    )
    print_table(["where", "share of CPU samples"], [[k, f"{v:.1%}"] for k, v in shares.items()])
    top = [[frame[:110], f"{count / total:.1%}"] for frame, count in frames.most_common(12)]
    print("\nInnermost frames, the most sampled:")
    print_table(["frame", "share"], top)
    path = write_results(
        f"serving_profile_{args.records}",
        {
            "records": args.records,
            "load": measured,
            "samples": total,
            "shares": shares,
            "top_frames": dict(frames.most_common(30)),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
