"""The demo shows the stream's truth: corrupted batches quarantined, every other batch processed."""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_cli import options
from mlops_cli.demo import MARKER, fresh_home, prepare
from mlops_core.adapters.stack_state import read_state
from mlops_core.errors import MlopsError
from mlops_core.settings import Settings, prefect_environment


def run_demo_process(
    command: list[str], env: dict[str, str], demo_home: Path, timeout: float = 1_500
) -> subprocess.CompletedProcess[str]:
    """``mlops demo`` in a process of its own, and never a stack left behind: past ``timeout``
    (a liveness bound: the demo took 7 minutes alone and 10.5 beside the other test process,
    which the earlier 600 s cut short at its last batch) it gets Ctrl-C (its ``finally`` stops
    the stack), then SIGKILL; whatever its ``stack.json`` still records is stopped by process
    group id (each part leads its own)."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        stderr += f"\n(the demo ran past {timeout:.0f} s and was interrupted)"
    finally:
        left = read_state(Settings(home=demo_home, gx_dir=demo_home / "gx"))
        for pid in left.pids.values() if left else ():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_demo_shows_the_streams_truth(tmp_path: Path) -> None:
    """`mlops demo` as `make demo` runs it (its own process): the stack, real events, delayed
    labels, and the stream's truth in what it reports."""
    out = tmp_path / "rows.json"
    env = {**os.environ, "MLOPS_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    done = run_demo_process(
        [str(Path(sys.executable).parent / "mlops"), "demo", "--rows-json", str(out)],
        env,
        tmp_path / "home" / "demo",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert rows, "the demo processed batches"
    for row in rows:
        expected = "quarantined" if row["corruption"] else "processed"
        assert row["state"] == expected, row
        assert Path(row["location"]).exists()
        assert Path(row["location"]).with_name(Path(row["location"]).stem + ".report.json").exists()
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    stable = [r for r in by_kind["stable"] if not r["corruption"]]
    assert all(r["drift"] is False and r["decision"] == "none" for r in stable), stable
    assert all(r["labels_decision"] == "none" for r in stable), stable
    harmless = by_kind["harmless_drift"]
    assert all(r["drivers"] == ["channel"] and r["decision"] == "watch" for r in harmless)
    assert all(r["drift"] and "credit_score" in r["drivers"] for r in by_kind["sudden_shift"])
    assert all(r["drift"] is None for r in rows if r["corruption"]), "quarantined: no drift test"
    assert all(r["decision"] in ("none", "-") for r in rows if r["corruption"])
    concept = by_kind["concept_drift"]
    assert concept[0]["drift"] is False, "concept drift is invisible to input-drift tests"
    assert concept[0]["labels_decision"] == "retrain", concept[0]
    # The first labelled batch of the new regime locates the change; the window since it wins on
    # the validation rows, and its challenger, judged on rows that neither decided the retrain nor
    # chose the window, is promoted through the canary within the first two labelled batches
    # (the first, unless its canary step runs out of evidence before its deadline).
    assert "promoted" in [r["labels_retrain"] for r in concept[:2]], concept
    assert rows[-1]["champion"] != "1", "the champion changed during the stream"
    promoted = [r for r in rows if "promoted" in (r["retrain"], r["labels_retrain"])]
    assert promoted and all(r["kind"] in ("concept_drift", "sudden_shift") for r in promoted)
    # All the demo's state under its home, Prefect's history included.
    assert (tmp_path / "home" / "demo" / "prefect" / "prefect.db").is_file()
    assert not (tmp_path / "home" / "prefect").exists(), "Prefect wrote outside the demo's home"
    text = done.stdout
    assert "Summary" in text and "Prefect UI: http://127.0.0.1:" in text and "stack stopped" in text


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "demo"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(MlopsError, match="not made by `mlops demo`"):
        fresh_home(precious)
    assert (precious / "keep.txt").exists()
    (precious / MARKER).write_text("")
    fresh_home(precious)
    assert not (precious / "keep.txt").exists()


def test_the_demo_points_prefect_at_its_own_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's home (its database: the run history) follows the demo's home, unless a person
    chose one."""
    from rich.console import Console

    monkeypatch.setattr(options, "_DEFAULTED", set())
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_GX_DIR", str(tmp_path / "home" / "great_expectations"))
    for key in [*prefect_environment(Settings()), "PREFECT_API_URL"]:
        monkeypatch.delenv(key, raising=False)  # and restored after: nothing leaks to other tests
    current = options.settings()
    assert os.environ["PREFECT_HOME"] == str((tmp_path / "home" / "prefect").resolve())
    demo, _, _ = prepare(
        current, seed=3, batch_rows=200, reference_rows=1_000, console=Console(quiet=True)
    )
    assert os.environ["PREFECT_HOME"] == str(demo.home / "prefect")
    assert demo.home == (tmp_path / "home" / "demo").resolve()

    monkeypatch.setattr(options, "_DEFAULTED", set())
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "mine"))
    options.use_home(demo)
    assert os.environ["PREFECT_HOME"] == str(tmp_path / "mine"), "a person's choice is kept"
