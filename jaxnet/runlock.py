"""One writer per run folder: a lock file that a command (or `fit`) holds while it writes there."""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import pathlib
import signal
import socket
import threading

try:
    import fcntl
except ImportError:  # Windows has no flock: folders are not locked there (see `hold`)
    fcntl = None

from jaxnet.errors import JaxnetError

LOCK_FILE = ".jaxnet.lock"

# Folders this process holds: real path -> [open lock file descriptor, nesting depth]. A
# process may take a folder it already holds again (the CLI holds it, then `fit` does).
_held: dict[str, list[int]] = {}
_guard = threading.Lock()


class FolderInUseError(JaxnetError):
    """Another process is writing into the folder: it holds the folder's lock file."""


@contextlib.contextmanager
def hold(folder, command: str, *, create: bool = True):
    """Holds `folder`'s lock for the block, so that no other process writes there meanwhile.

    The lock is `fcntl.flock` on `folder/.jaxnet.lock`, taken without waiting. The operating
    system drops it when the process ends in any way (a crash or SIGKILL included), so a lock
    is never left stale; the file itself is removed when the block ends. The same process may
    take a folder it holds again (the inner `hold` does nothing). On Windows, which has no
    flock, nothing is locked. The lock is advisory: it keeps out jaxnet's writers (`jaxnet
    train`, `--resume`, `jaxnet sweep`, `fit` with `out_dir`), not other programs.

    Args:
      folder: the run's or sweep's output folder (None: nothing to lock). A missing one is
        made (with its parents) when `create`, and removed again at the end if the block left
        nothing in it; when not `create` (resuming: the folder must exist) a missing folder is
        not locked. Nor is one that cannot be made or written (the command then fails where
        it writes, with its own message).
      command: what holds it ("jaxnet train"), recorded with the process id and the time so
        that a process refused the folder can say who has it.

    Raises:
      FolderInUseError: another process holds `folder`, raised at once (before any work).
    """
    path = None if folder is None else pathlib.Path(folder)
    if fcntl is None or path is None or not (create or path.is_dir()):
        yield
        return
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a file in the way, no permission: the command says so when it writes
        made = None
    if made is None:
        yield
        return
    key = os.path.realpath(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
        else:
            try:
                _held[key] = [_acquire(path, command), 1]
            except BaseException:
                _remove_empty(made)
                raise
    try:
        yield
    finally:
        with _signals_held():  # a Ctrl-C must not cut the clean-up short (a lock file left)
            with _guard:
                _held[key][1] -= 1
                if not _held[key][1]:
                    fd, _ = _held.pop(key)
                    _release(path, fd)
                    _remove_empty(made)


@contextlib.contextmanager
def _signals_held():
    """SIGINT, SIGTERM and SIGALRM (jaxnet.cli.interrupt's deferred raise) wait until the
    block ends, in the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _acquire(path: pathlib.Path, command: str) -> int | None:
    """The open, locked lock file; None where it cannot be made (a read-only folder, where
    no one writes either)."""
    lock = path / LOCK_FILE
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise FolderInUseError(_in_use(path, lock)) from None
        # A holder removes the file when it lets go: if that happened between our open and
        # our flock, we hold a file no one else will open; take the new one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    owner = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
             "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(owner) + "\n").encode())
    return fd


def _release(path: pathlib.Path, fd: int | None) -> None:
    if fd is None:
        return
    # Removed while still locked: whoever opened it meanwhile sees it gone (see _acquire).
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path / LOCK_FILE)
    os.close(fd)  # drops the flock


def _remove_empty(folders: list[pathlib.Path]) -> None:
    """Removes the folders `hold` made (innermost first) while they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _in_use(path: pathlib.Path, lock: pathlib.Path) -> str:
    try:
        owner = json.loads(lock.read_text())
        who = (f"{owner['command']} (pid {owner['pid']} on {owner['host']}, since "
               f"{owner['since']})")
        stop = f" (kill {owner['pid']})" if owner["host"] == socket.gethostname() else ""
    except (OSError, ValueError, KeyError, TypeError):
        who, stop = "another process", ""
    return (f"{path} is in use: {who} is writing there; wait until it ends or stop it{stop}, "
            "then try again, or write to another folder")
