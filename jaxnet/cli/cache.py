"""JAX's persistent compilation cache for the jaxnet command: where it lives, how to turn it off."""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

ENV = "JAXNET_CACHE_DIR"  # a folder moves the cache; empty or "off" turns it off
_OFF = ("", "off")


def default_dir(environ=os.environ) -> pathlib.Path:
    """$XDG_CACHE_HOME/jaxnet/jax, or ~/.cache/jaxnet/jax (the XDG default) without it."""
    base = environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        base = pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jaxnet" / "jax"


def cache_dir(args=None, environ=os.environ) -> pathlib.Path | None:
    """The folder of the command's compilation cache, or None when it is off.

    --no-compile-cache, then --compile-cache DIR, then $JAXNET_CACHE_DIR (empty or "off":
    off), then `default_dir()`.
    """
    if getattr(args, "no_compile_cache", False):
        return None
    if getattr(args, "compile_cache", None):
        return pathlib.Path(args.compile_cache).expanduser()
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in _OFF else pathlib.Path(value).expanduser()
    return default_dir(environ)


def add_flags(p):
    g = p.add_argument_group("compilation cache")
    flags = g.add_mutually_exclusive_group()
    flags.add_argument("--compile-cache", metavar="DIR", help="folder where compiled programs "
                       f"are kept for the next run (default: ${ENV}, else "
                       "$XDG_CACHE_HOME/jaxnet/jax or ~/.cache/jaxnet/jax)")
    flags.add_argument("--no-compile-cache", action="store_true", help="compile everything "
                       f"afresh and keep nothing (as {ENV}= does)")


def enable(args=None, environ=os.environ) -> pathlib.Path | None:
    """Points JAX's persistent compilation cache at `cache_dir(args)`; call it before the
    command's first compilation. Returns the folder, or None when the cache stays off.

    Every program is kept, however quick to compile: JAX's default keeps those that took
    1 s or more, 3 of the 11 `jaxnet train` compiles on digits (~300 KB together) on a
    loaded 2-core machine. A new folder is private (0o700): JAX runs what it finds there.
    A folder that cannot be created or written leaves the cache off, with one note on
    stderr (unless --quiet): a cache never fails a run.
    """
    path = cache_dir(args, environ)
    if path is None:
        return None
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        if not getattr(args, "quiet", False):
            print(f"note: compilation cache off: cannot write to {path} "
                  f"({err.strerror or err}); set {ENV} to a writable folder, or {ENV}= to "
                  "turn the cache off", file=sys.stderr)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    from jaxnet import executables

    executables.keep_in(path / executables.FOLDER)
    return path
