"""The warm flow-run start (``deployments.forkserver`` + ``deployments.flow_run``): a forked run
is to its worker what a fresh ``python -m prefect.engine`` is -- the command's environment,
folder, arguments, output and exit code, its signals, and its death with the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
# What the forked child runs in these tests instead of the Prefect engine: it reports where it
# runs and exits with the code it is given, or waits for a signal.
PROBE = """
import json, os, sys, time
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                  "argv": sys.argv[1:], "secret": os.environ.get("PROBE_SECRET")}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[1:] == ["wait"]:
    time.sleep(120)
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A fork server whose children run the probe module; its socket."""
    (tmp_path / "probe_module.py").write_text(PROBE)
    socket_path = tmp_path / "fork.sock"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deployments.forkserver",
            "--socket",
            str(socket_path),
            "--preload",
            "json",
            "--module",
            "probe_module",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
    )
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        assert process.poll() is None, "the fork server exited while starting"
        assert time.monotonic() < deadline, "the fork server did not bind its socket"
        time.sleep(0.05)
    yield socket_path, process
    process.terminate()
    process.wait(30)


def client(socket_path: Path | None, *argv: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    """``python -m deployments.flow_run`` as a process worker starts it."""
    environment = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    environment.pop("MLOPS_FORKSERVER", None)
    if socket_path is not None:
        environment["MLOPS_FORKSERVER"] = str(socket_path)
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.flow_run", *argv],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_forked_run_has_its_commands_environment_folder_arguments_output_and_exit_code(
    server: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    import json

    socket_path, process = server
    folder = tmp_path / "run-folder"
    folder.mkdir()
    run = client(socket_path, "3", cwd=folder, PROBE_SECRET="from-the-worker")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 3, err
    seen = json.loads(out.splitlines()[0])
    assert seen["ppid"] == process.pid, "the run is a child of the fork server"
    assert seen["pid"] != run.pid
    assert seen["cwd"] == str(folder)
    assert seen["argv"] == ["3"]
    assert seen["secret"] == "from-the-worker", "the command's environment, not the server's"
    assert "to stderr" in err

    again = client(socket_path, cwd=folder)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0
    assert json.loads(out.splitlines()[0])["secret"] is None, "no environment left from a run"


def test_a_signal_to_the_command_reaches_the_run_and_a_killed_command_takes_the_run_with_it(
    server: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    import json

    socket_path, _ = server
    run = client(socket_path, "wait", cwd=tmp_path)
    assert run.stdout is not None
    child = json.loads(run.stdout.readline())["pid"]
    run.send_signal(signal.SIGTERM)  # a cancellation, a worker stopping
    assert run.wait(timeout=30) == 128 + signal.SIGTERM
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE

    run = client(socket_path, "wait", cwd=tmp_path)
    assert run.stdout is not None
    child = json.loads(run.stdout.readline())["pid"]
    run.kill()  # the worker's machine crashed: no signal can be forwarded
    run.wait(timeout=30)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the run outlived its killed command"
        time.sleep(0.1)


def test_without_a_reachable_fork_server_the_command_is_the_plain_prefect_engine(
    tmp_path: Path,
) -> None:
    for socket_path in (None, tmp_path / "nobody-listens.sock"):
        run = client(socket_path, "not-a-flow-run-id", cwd=tmp_path)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 1
        assert "Invalid flow run id" in err, err[-2000:]
        if socket_path is not None:
            assert "unreachable" in err and "running the plain engine" in err


def test_a_killed_wrappers_socket_folder_is_removed_by_the_next_one_and_no_live_ones(
    tmp_path: Path,
) -> None:
    from deployments.worker import PREFIX, STALE_AFTER_SECONDS, sweep_stale

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a wrapper SIGKILLed: its pid no longer runs
    folders = {}
    for name, pid in (
        ("killed", str(gone.pid)),
        ("running", str(os.getpid())),
        ("unreadable", "not a pid"),
    ):
        folder = tmp_path / f"{PREFIX}{name}"
        folder.mkdir()
        (folder / "socket").write_text("")
        (folder / "pid").write_text(pid)
        folders[name] = folder
    starting = tmp_path / f"{PREFIX}starting"  # a new wrapper's, its pid not written yet
    starting.mkdir()
    (tmp_path / "someone-else").mkdir()
    old = time.time() - STALE_AFTER_SECONDS - 10
    for folder in (*folders.values(), tmp_path / "someone-else"):
        os.utime(folder, (old, old))

    removed = sweep_stale(tmp_path)

    assert sorted(removed) == sorted([folders["killed"], folders["unreadable"]])
    assert not folders["killed"].exists() and not folders["unreadable"].exists()
    assert folders["running"].exists() and starting.exists()
    assert (tmp_path / "someone-else").exists()
    # The starting folder becomes stale too once old enough, its wrapper never having run.
    assert sweep_stale(tmp_path, now=time.time() + STALE_AFTER_SECONDS + 10) == [starting]
