"""Imports started early, in a background thread, for modules a job needs only at its end.

`jaxnet train` imports matplotlib (~0.35 s on 2 cores) only to draw curves.png after the
last epoch. Started in a thread before the epochs, the import runs while the compiled
programs run (they release the GIL) instead of after them.
"""

from __future__ import annotations

import functools
import importlib
import threading


@functools.cache
def preload(module: str) -> None:
    """Starts importing `module` in a daemon thread, once per process per module.

    A later `import module` waits for that import to finish (Python's per-module import
    lock) and raises its error, if any: a failed import here is only dropped, so that it
    surfaces where the module is used.
    """
    threading.Thread(target=_import, args=(module,), daemon=True,
                     name=f"jaxnet-preload-{module}").start()


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:  # raised again by the import that needs the module
        pass
