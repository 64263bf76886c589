"""Ctrl-C and SIGTERM at any moment of `jaxnet train`, sent to real processes: exit 130 or
143, one line saying which epoch is saved (or that nothing is), never a traceback, never
ignored; the run's folder is untouched or holds a loadable checkpoint."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import SUBPROCESS_TIMEOUT, popen_as_at_a_terminal, subprocess_env

import jaxnet
from jaxnet import checkpoint as ckpt
from jaxnet import runlock

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                 reason="times its signals by /proc/PID/status (Linux)")]

TRAIN = ["-m", "jaxnet", "train", "--layers", "2", "--hidden", "8", "--quiet", "--out", "run"]
# Before the command has parsed its flags, and after (when it knows it is training).
NOTHING = ("{what}; nothing was saved", "{what} before the first epoch ended; nothing was saved")


def _start(cwd, args):
    # A suite started in the background by a script passes SIGINT on ignored, and jaxnet
    # (like Python) leaves an ignored SIGINT ignored; at a terminal it is not.
    return popen_as_at_a_terminal([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=subprocess_env())


def _wait_for(proc, ready):
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out waiting for the moment to signal"
        time.sleep(0.005)


def _handlers_installed(pid):
    """jaxnet's main catches SIGTERM (Python alone does not): its handlers are in place."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt"))
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def _saved_epoch(run):
    try:
        return ckpt.load_metadata(run)["epoch"]
    except ckpt.CheckpointError:  # not written yet
        return 0


def _stopped(proc, signum, printed=()):
    """The one line on stderr of a process stopped by `signum`, after checking the exit
    status and that nothing else was printed (but the `printed` lines, and lines of epochs)."""
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert out == ""  # no summary for a run that did not finish
    lines = [*printed, *err.strip().splitlines()]
    assert all(line.startswith("epoch ") for line in lines[len(printed):-1]), err
    return lines[-1]


def _assert_consistent(line, run, what):
    """The line says what the folder holds: nothing (the folder is untouched: never made,
    not even its lock file left), or epoch k with a loadable checkpoint of epoch k."""
    if line in [text.format(what=what) for text in NOTHING]:
        assert not run.exists(), os.listdir(run)
        return 0
    done = _saved_epoch(run)
    assert line == f"{what}; epoch {done} is saved in run; continue with: jaxnet train --resume run"
    assert jaxnet.load(run).num_features == 64
    assert not (run / runlock.LOCK_FILE).exists()
    return done


def test_a_signal_as_soon_as_the_handlers_are_in_saves_nothing_and_leaves_no_folder(tmp_path):
    # Before the command's imports of JAX, its data and its compilation.
    proc = _start(tmp_path, [*TRAIN, "--epochs", "3"])
    _wait_for(proc, lambda: _handlers_installed(proc.pid))
    proc.send_signal(signal.SIGINT)
    assert _assert_consistent(_stopped(proc, signal.SIGINT), tmp_path / "run", "interrupted") == 0


def test_sigterm_while_loading_or_compiling_exits_143(tmp_path):
    # The lock file appears when `jaxnet train` takes the folder, before it loads the data.
    run = tmp_path / "run"
    proc = _start(tmp_path, [*TRAIN, "--epochs", "3"])
    _wait_for(proc, lambda: (run / runlock.LOCK_FILE).exists())
    proc.send_signal(signal.SIGTERM)
    line = _stopped(proc, signal.SIGTERM)
    assert _assert_consistent(line, run, "interrupted by SIGTERM") < 3


def test_ctrl_c_while_compiling_the_first_epoch(tmp_path):
    # Raising inside JAX's tracing or compiling crashed the process as it exited (SIGSEGV):
    # the handler waits until Python runs outside JAX.
    run = tmp_path / "run"
    proc = _start(tmp_path, [*TRAIN[:-3], "--out", "run", "--epochs", "3"])  # not --quiet
    banner = proc.stderr.readline()  # printed once the data is loaded, before compiling
    assert banner.startswith("training (64, 8, 10) on digits"), banner
    proc.send_signal(signal.SIGINT)
    line = _stopped(proc, signal.SIGINT, printed=[banner])
    assert _assert_consistent(line, run, "interrupted") < 3


def test_ctrl_c_after_a_few_epochs_names_the_epoch_saved_and_it_loads(tmp_path):
    run = tmp_path / "run"
    proc = _start(tmp_path, [*TRAIN, "--epochs", "500"])
    _wait_for(proc, lambda: _saved_epoch(run) >= 3)
    proc.send_signal(signal.SIGINT)
    line = _stopped(proc, signal.SIGINT)
    assert 3 <= _assert_consistent(line, run, "interrupted") < 500
    assert not (run / "metrics.json").exists()
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]


# A child that installs the handlers as `main` does, then meets a signal where Python cannot
# raise it, or a second one while the first unwinds.
_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from jaxnet.cli import interrupt

    interrupt.install()

    class Finalized:
        def __del__(self):  # as JAX's gc callback: an exception here is dropped
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)

    if sys.argv[1] == "finalizer":
        Finalized()  # collected at once: the signal arrives inside __del__
        print("ran on", flush=True)
        try:
            interrupt.check()
        except interrupt.Interrupted as err:
            print(f"raised at the safe point: {err.exit_status}", flush=True)
    else:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except interrupt.Interrupted:
            os.kill(os.getpid(), signal.SIGINT)  # the second, while the first unwinds
            time.sleep(5)
        print("not stopped", flush=True)
""")


def test_a_signal_python_drops_in_a_finalizer_is_raised_at_the_next_safe_point(tmp_path):
    proc = _start(tmp_path, ["-c", _CHILD, "finalizer"])
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0 and err == ""  # no "Exception ignored in ..."
    assert out == "ran on\nraised at the safe point: 130\n"


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    proc = _start(tmp_path, ["-c", _CHILD, "twice"])
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 130 and out == ""
    assert err.startswith("SIGINT again: stopped at once") and len(err.splitlines()) == 1
