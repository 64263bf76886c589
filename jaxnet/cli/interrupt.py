"""Ctrl-C and SIGTERM for the commands: handled at any moment, never swallowed, twice to stop at once."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A KeyboardInterrupt, so that `except Exception` in any
    library lets it through; `exit_status` is the shell's 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = 128 + signum


_pending: list[int] = []  # the signal received, once one has been
_raised: list[bool] = [False]  # whether it was raised (it may have been dropped: see `check`)
# Raising inside JAX (importing it, tracing, lowering, compiling, dispatching) can leave its
# C++ state half-changed: the process then crashed (SIGSEGV) as it exited, after the message.
_JAX_FILES = (f"{os.sep}jax{os.sep}", f"{os.sep}jaxlib{os.sep}")
_RECHECK_SECONDS = 0.05


def _on_signal(signum, frame):
    if _pending:  # the second: the user does not want to wait for the first to unwind
        print(f"{signal.Signals(signum).name} again: stopped at once (every file written so "
              "far is whole: jaxnet writes each one aside and renames it)", file=sys.stderr,
              flush=True)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(128 + signum)
    _pending.append(signum)
    _raise_when_safe(frame)


def _on_alarm(signum, frame):
    del signum
    if _pending and not _raised[0]:
        _raise_when_safe(frame)


def _raise_when_safe(frame):
    """Raises Interrupted, unless JAX's code is running: then looks again shortly (SIGALRM),
    once Python runs outside it."""
    if _inside_jax(frame):
        if hasattr(signal, "setitimer"):  # elsewhere, `check` raises it at a safe point
            signal.setitimer(signal.ITIMER_REAL, _RECHECK_SECONDS)
        return
    _raised[0] = True
    raise Interrupted(_pending[0])


def _inside_jax(frame) -> bool:
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _JAX_FILES):
            return True
        frame = frame.f_back
    return False


def _unraisable(previous):
    # Python drops an exception raised inside a finalizer or a garbage-collector callback
    # (JAX's `_xla_gc_callback`) with an "Exception ignored in ..." message and runs on.
    # Ours is not lost: `_pending` still holds it and `check` raises it at the next safe
    # point; only the message is left out.
    def hook(unraisable):
        if isinstance(unraisable.exc_value, Interrupted):
            return
        previous(unraisable)
    return hook


def check() -> None:
    """Raises Interrupted if a signal arrived (call it where stopping is safe: after loading
    the data, after each epoch), so one that landed where Python could not raise it (a
    finalizer, a callback run from C) still stops the command."""
    if _pending:
        _raised[0] = True
        raise Interrupted(_pending[0])


def install(*, exit_when_interrupted: bool = False):
    """From now on SIGINT and SIGTERM raise Interrupted (a second one ends the process at
    once with 128 + its number). Returns the function that puts the previous handlers back;
    with `exit_when_interrupted` (the process is the command), that function ends the
    process instead if a signal arrived: with 128 + its number, once stdout and stderr are
    flushed, skipping the interpreter's teardown, which now and then crashed (SIGSEGV, after
    the message) once JAX had been stopped in the middle of its work.
    A signal the process was started ignoring stays ignored (as Python leaves SIGINT for a
    job a script started in the background); outside the main thread, where Python allows
    no handlers, nothing changes."""
    handlers = {s: _on_signal for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    if hasattr(signal, "SIGALRM"):
        handlers[signal.SIGALRM] = _on_alarm
    try:
        previous = {s: signal.signal(s, handler) for s, handler in handlers.items()}
    except ValueError:  # not the main thread
        return lambda: None
    hook, _pending[:], _raised[0] = sys.unraisablehook, [], False
    sys.unraisablehook = _unraisable(hook)

    def restore():
        if exit_when_interrupted and _pending:
            if not _raised[0]:  # it came as the command ended, inside JAX's code
                print(f"{what(Interrupted(_pending[0]))} as jaxnet finished; its outputs are "
                      "written", file=sys.stderr)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(128 + _pending[0])
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = hook
        _pending.clear()
    return restore


def exit_status(err: KeyboardInterrupt) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM."""
    return getattr(err, "exit_status", 128 + signal.SIGINT)


def what(err: KeyboardInterrupt) -> str:
    """The lines' first words: `interrupted` (Ctrl-C) or `interrupted by SIGTERM`."""
    signum = getattr(err, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"


def stopped(err: KeyboardInterrupt, args=None) -> str:
    """The line for a command stopped by a signal (`jaxnet train` says more: what epoch
    its folder holds)."""
    command = getattr(args, "command", None)
    if command is None:
        return f"{what(err)}; nothing was saved"
    return (f"{what(err)}; jaxnet {command} stopped before it finished, so its outputs are "
            "missing or incomplete")
