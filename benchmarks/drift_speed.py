"""Benchmark: the drift stage's speed and memory, and our MMD test against alibi-detect's own.

1. The full drift stage (MMD + classifier + per-feature tests) with a 100,000-row reference of
   20 features, for batches of 10k, 100k and 1M rows: fit time (once per reference), detect time
   and peak RSS, each size in a fresh process. Targets on 2 cores: 100k rows in at most 10 s,
   1M rows in at most 30 s, peak RSS at most 2 GiB.
2. The MMD permutation test alone, ours against alibi-detect's ``MMDDrift`` (PyTorch backend,
   same kernel and bandwidth, same number of permutations) at N = 1,000, 2,000 and 4,000 rows
   (reference + batch, half each). Target: at least 50x faster at N = 4,000.

    .venv/bin/python benchmarks/drift_speed.py [--sizes ...] [--mmd-sizes ...] [--permutations 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SPEC20, in_fresh_process, peak_rss_mib, print_table, table20, write_results  # noqa: E402


def child_stage(reference_path: str, batch_path: str) -> dict[str, float]:
    """In a fresh process: the drift stage's fit, read and detect seconds and peak RSS on one batch."""
    import polars as pl

    from mlops_core.drift import DriftDetector

    reference = pl.read_parquet(reference_path)
    started = time.perf_counter()
    detector = DriftDetector(SPEC20).fit(reference)
    fitted = time.perf_counter()
    batch = pl.read_parquet(batch_path)
    loaded = time.perf_counter()
    report = detector.detect(batch)
    done = time.perf_counter()
    return {
        "rows": batch.height,
        "fit_seconds": fitted - started,
        "read_seconds": loaded - fitted,
        "detect_seconds": done - loaded,
        "peak_rss_mib": peak_rss_mib(),
        "is_drift": report.is_drift,
    }


def child_mmd(total: str, permutations: str) -> dict[str, float]:
    """In a fresh process: our MMD permutation test and alibi-detect's on the same data, timed."""
    import logging
    import warnings

    import torch

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from alibi_detect.cd import MMDDrift

    from mlops_core.drift import _fast_mmd_detector

    n = int(total) // 2
    rng = np.random.default_rng(0)
    x_ref = rng.normal(size=(n, 20)).astype(np.float32)
    x_cur = (rng.normal(size=(n, 20)) + 0.05).astype(np.float32)
    torch.manual_seed(0)
    theirs = MMDDrift(x_ref, backend="pytorch", n_permutations=int(permutations), device="cpu")
    ours = _fast_mmd_detector(x_ref, permutations=int(permutations), alpha=0.05, seed=0)
    ours.predict(x_cur)  # warm-up: first-call allocations
    started = time.perf_counter()
    p_ours = ours.predict(x_cur)["data"]["p_val"]
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    p_theirs = theirs.predict(x_cur)["data"]["p_val"]
    theirs_seconds = time.perf_counter() - started
    return {
        "n_total": int(total),
        "permutations": int(permutations),
        "ours_seconds": ours_seconds,
        "alibi_seconds": theirs_seconds,
        "speedup": theirs_seconds / ours_seconds,
        "p_ours": p_ours,
        "p_alibi": p_theirs,
    }


def main() -> None:
    """Measure the drift stage per batch size and the MMD test per N; print tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--mmd-sizes", type=int, nargs="+", default=[1_000, 2_000, 4_000])
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_stage(*rest) if kind == "stage" else child_mmd(*rest)
        print(json.dumps(result))
        return

    stage = []
    with tempfile.TemporaryDirectory(prefix="mlops-drift-bench-") as tmp:
        reference_path = Path(tmp) / "reference.parquet"
        table20(100_000, np.random.default_rng(0)).write_parquet(reference_path)
        for n in args.sizes:
            batch_path = Path(tmp) / f"batch-{n}.parquet"
            table20(n, np.random.default_rng(n), mean_shift=(0, 0.1)).write_parquet(batch_path)
            print(f"drift stage: {n:,}-row batch against 100,000 reference rows ...", flush=True)
            stage.append(
                in_fresh_process(Path(__file__), "stage", str(reference_path), str(batch_path))
            )
    mmd = []
    for total in args.mmd_sizes:
        print(f"MMD test alone: N = {total:,}, {args.permutations} permutations ...", flush=True)
        mmd.append(in_fresh_process(Path(__file__), "mmd", str(total), str(args.permutations)))

    print("\nFull drift stage (reference 100,000 rows x 20 features; fit once, then detect):")
    print_table(
        ["batch rows", "fit s", "read s", "detect s", "peak RSS MiB"],
        [
            [f"{r['rows']:,}", f"{r['fit_seconds']:.2f}", f"{r['read_seconds']:.2f}", f"{r['detect_seconds']:.2f}", f"{r['peak_rss_mib']:,.0f}"]
            for r in stage
        ],
    )  # fmt: skip
    print(
        f"\nMMD permutation test, {args.permutations} permutations (ours vs alibi-detect MMDDrift):"
    )
    print_table(
        ["N", "ours s", "alibi s", "speed-up", "p ours", "p alibi"],
        [
            [f"{r['n_total']:,}", f"{r['ours_seconds']:.3f}", f"{r['alibi_seconds']:.2f}", f"{r['speedup']:.0f}x", f"{r['p_ours']:.3f}", f"{r['p_alibi']:.3f}"]
            for r in mmd
        ],
    )  # fmt: skip
    path = write_results(
        "drift_speed",
        {
            "targets": {
                "100k_seconds": 10,
                "1M_seconds": 30,
                "peak_rss_mib": 2048,
                "mmd_speedup_4000": 50,
            },
            "stage": stage,
            "mmd": mmd,
        },
        args.out,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
