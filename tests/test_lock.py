"""One writer per run folder (jaxnet.runlock): a second train, --resume, sweep or fit into a
folder in use is refused at once; the lock goes with its process, however that ends."""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import SUBPROCESS_TIMEOUT, one_line_error, subprocess_env

from jaxnet import checkpoint as ckpt
from jaxnet import fitting, runlock
from jaxnet.cli import main
from jaxnet.config import TrainConfig

TINY = ["--layers", "2", "--hidden", "8", "--quiet"]


def _hold_here(folder, pid=4242, command="jaxnet train"):
    """The folder's lock taken as another process would (a second open file), with its note."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / runlock.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    note = {"command": command, "pid": pid, "host": socket.gethostname(),
            "since": "2026-01-01T12:00:00+00:00"}
    os.write(fd, json.dumps(note).encode())
    return fd


def _listing(folder):
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------ in one process


def test_hold_takes_the_folder_and_leaves_nothing_behind(tmp_path):
    run = tmp_path / "new" / "run"
    with runlock.hold(run, "jaxnet train"):
        note = json.loads((run / runlock.LOCK_FILE).read_text())
        assert note["command"] == "jaxnet train" and note["pid"] == os.getpid()
        with runlock.hold(run, "jaxnet.fit"):  # the same process again: no conflict
            (run / "metrics.json").write_text("{}")
        assert (run / runlock.LOCK_FILE).exists()  # the outer hold still has it
    assert _listing(run) == ["metrics.json"]  # the lock file is gone, the output stays
    with runlock.hold(tmp_path / "empty" / "run", "jaxnet train"):
        pass
    assert not (tmp_path / "empty").exists()  # folders it made and left empty are removed
    with runlock.hold(tmp_path / "missing", "jaxnet train", create=False):
        assert not (tmp_path / "missing").exists()  # resuming: nothing there to protect
    (tmp_path / "file").write_text("x")
    with runlock.hold(tmp_path / "file", "jaxnet train"):  # nothing can be written there
        assert (tmp_path / "file").read_text() == "x"


def test_a_held_folder_is_refused_with_who_holds_it_and_what_to_do(tmp_path):
    fd = _hold_here(tmp_path / "run", pid=4242)
    try:
        with pytest.raises(runlock.FolderInUseError) as info:
            with runlock.hold(tmp_path / "run", "jaxnet sweep"):
                pytest.fail("the block must not run")
        message = str(info.value)
        assert message.startswith(f"{tmp_path / 'run'} is in use: jaxnet train (pid 4242 on ")
        assert "since 2026-01-01T12:00:00+00:00" in message
        assert "wait until it ends or stop it (kill 4242), then try again, or write to another " \
            "folder" in message
        # a library fit is refused before any work, and leaves the folder as it was
        with pytest.raises(runlock.FolderInUseError, match="is in use: jaxnet train"):
            fitting.fit(TrainConfig(hidden=(8,), epochs=1), out_dir=tmp_path / "run")
        assert _listing(tmp_path / "run") == [runlock.LOCK_FILE]
    finally:
        os.close(fd)
    with runlock.hold(tmp_path / "run", "jaxnet sweep"):  # free once its holder let go
        pass


@pytest.mark.parametrize("argv", [
    ["train", *TINY, "--out", "{run}"],
    ["train", "--resume", "{run}"],
    ["train", *TINY, "--seeds", "2", "--out", "{run}"],
    ["sweep", "--lr", "1e-3,1e-2", *TINY, "--out", "{run}"],
])
def test_every_writer_command_is_refused_at_once(tmp_path, capsys, argv):
    run = tmp_path / "run"
    fd = _hold_here(run, pid=4242)
    try:
        assert main([a.format(run=run) for a in argv]) == 2
        err = one_line_error(capsys)
    finally:
        os.close(fd)
    assert f"error: {run} is in use: jaxnet train (pid 4242 on " in err
    assert _listing(run) == [runlock.LOCK_FILE]  # nothing written


def test_without_flock_nothing_is_locked(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "fcntl", None)  # as on Windows
    with runlock.hold(tmp_path / "run", "jaxnet train"):
        assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ two processes


def _start(args, tmp_path):
    return subprocess.Popen([sys.executable, *map(str, args)], env=subprocess_env(),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(condition, proc, what):
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not condition():
        assert proc.poll() is None, f"{what}: the first process ended: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{what}: timed out"
        time.sleep(0.05)


def _kill(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=SUBPROCESS_TIMEOUT)


HOLDER = """
import sys, time
from jaxnet import runlock
with runlock.hold(sys.argv[1], "jaxnet sweep"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_jaxnet_process_is_refused_and_the_folder_frees_when_the_first_is_killed(
        tmp_path):
    run = tmp_path / "run"
    holder = _start(["-c", HOLDER, run], tmp_path)
    try:
        assert holder.stdout.readline() == "held\n"
        second = subprocess.run(
            [sys.executable, "-m", "jaxnet", "train", *TINY, "--epochs", "1", "--out", str(run)],
            env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True,
            timeout=SUBPROCESS_TIMEOUT)
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith(f"error: {run} is in use: jaxnet sweep (pid {holder.pid} ")
        assert f"stop it (kill {holder.pid})" in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        _kill(holder)
    assert holder.returncode == -signal.SIGKILL
    # The OS dropped the lock with its process; the file it left is no obstacle.
    assert _listing(run) == [runlock.LOCK_FILE]
    with runlock.hold(run, "jaxnet train"):
        pass
    assert _listing(run) == []


@pytest.mark.slow
def test_a_running_train_keeps_its_folder_until_killed(
        tmp_path, capsys):
    run = tmp_path / "run"
    training = _start(["-m", "jaxnet", "train", *TINY, "--epochs", "100000", "--out", run],
                      tmp_path)
    try:
        _wait_for(lambda: (run / ckpt.CHECKPOINT_FILE).exists(), training, "first checkpoint")
        for argv in (["train", "--resume", str(run)],
                     ["train", *TINY, "--out", str(run), "--overwrite"],
                     ["sweep", "--lr", "1e-3,1e-2", *TINY, "--out", str(run), "--overwrite"]):
            assert main(argv) == 2
            assert f"is in use: jaxnet train (pid {training.pid} " in one_line_error(capsys)
    finally:
        _kill(training)
    assert training.returncode == -signal.SIGKILL
    assert ckpt.load_metadata(run)["epoch"] >= 1  # what it saved is there to resume
    with runlock.hold(run, "jaxnet train", create=False):  # as --resume takes it
        pass
    assert runlock.LOCK_FILE not in _listing(run)
