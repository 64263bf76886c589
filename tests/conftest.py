"""Shared fixtures and helpers. Tests run as users do: float32, x64 off, with strict dtype
promotion so an accidental upcast fails loudly. A test (or module, via `pytestmark`) marked
`x64` runs with 64-bit JAX switched on, for tight gradient checks; one marked `slow` (a
subprocess or a full fit) is left out of the quick loop `pytest -m "not slow"`. Both markers
are registered in pyproject.toml."""

import contextlib
import logging
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxnet import fitting
from jaxnet.data import Dataset

jax.config.update("jax_numpy_dtype_promotion", "strict")
# The jaxnet command keeps compiled programs in the user's cache folder; the suite's commands,
# in this process and in the children it starts, keep none (tests/test_compile_cache.py turns
# the cache on where it tests it, in folders of its own).
os.environ["JAXNET_CACHE_DIR"] = ""

REPO = pathlib.Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 120  # seconds: a stuck collective fails the test instead of hanging


@pytest.fixture(autouse=True, scope="module")
def _x64_for_marked_modules(request):
    """Module-scoped fixtures of a module marked x64 are built with x64 on too."""
    with jax.enable_x64(request.node.get_closest_marker("x64") is not None):
        yield


@pytest.fixture(autouse=True)
def _x64_when_marked(request):
    with jax.enable_x64(request.node.get_closest_marker("x64") is not None):
        yield


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


# ---------------------------------------------------------------------------- data


def prepared(config) -> Dataset:
    """`config`'s dataset as training sees it: split, and standardised with the training
    statistics when `config.standardize` (the default)."""
    return fitting.prepare(config, fitting.load_data(config))[0]


def train_only(data: Dataset) -> Dataset:
    """The same data without val/test splits (fewer evaluations to compile)."""
    return Dataset(data.name, data.x_train, data.y_train, None, None, None, None, data.num_classes)


# ---------------------------------------------------------------------------- trees


def assert_trees_close(actual, expected, *, rtol, atol=0.0):
    """Every leaf agrees to `rtol` times the leaf's own scale (max |x|), plus `atol`.

    Looser than `chex.assert_trees_all_close` (which scales by each entry): for trees whose
    entries that should be zero hold rounding noise, e.g. the gradients of biases feeding
    batchnorm."""
    a_leaves, a_def = jax.tree.flatten(actual)
    _e_leaves, e_def = jax.tree.flatten(expected)
    assert a_def == e_def, f"tree structures differ: {a_def} vs {e_def}"
    for path_and_leaf, a in zip(jax.tree_util.tree_flatten_with_path(expected)[0], a_leaves, strict=True):
        path, e = path_and_leaf
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"{jax.tree_util.keystr(path)}: shape {a.shape} vs {e.shape}"
        scale = float(np.max(np.abs(e), initial=0.0))
        err = float(np.max(np.abs(a - e), initial=0.0))
        assert err <= rtol * scale + atol, (
            f"{jax.tree_util.keystr(path)}: max error {err:.3e} > {rtol:.1e} * {scale:.3e} + {atol:.1e}"
        )


# ---------------------------------------------------------------------------- compilations


class _CompileLog(logging.Handler):
    _FINISHED = re.compile(r"Finished XLA compilation of (?:jit\()?([^\s)]+)\)? in ")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        found = self._FINISHED.search(record.getMessage())
        if found:
            self.names.append(found.group(1))


@contextlib.contextmanager
def compiled_programs():
    """Yields the list of programs XLA compiles inside the block, by name, in order
    (`jit(epoch)` is "epoch"); empty when everything came from JAX's caches."""
    handler, logger = _CompileLog(), logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler.names
    finally:
        logger.removeHandler(handler)


# ---------------------------------------------------------------------------- subprocesses


def subprocess_env(devices: int = 1) -> dict:
    """The environment of a child Python: this checkout importable, `devices` CPU devices,
    no cluster variables inherited (a child would take them for its own job)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "SLURM_", "OMPI_"))}
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_python(args, *, devices: int = 1, cwd=None, timeout=SUBPROCESS_TIMEOUT, **kwargs):
    """`python ARGS...` in a child with `subprocess_env(devices)`; its CompletedProcess."""
    return subprocess.run([sys.executable, *map(str, args)], env=subprocess_env(devices),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)


def succeeded(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def run_jaxnet(argv, *, devices: int = 1, cwd=None, timeout=SUBPROCESS_TIMEOUT):
    """`python -m jaxnet ARGV...`, which must succeed."""
    return succeeded(run_python(["-m", "jaxnet", *argv], devices=devices, cwd=cwd,
                                timeout=timeout))


def popen_as_at_a_terminal(args, **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(args, **kwargs)` whose child starts with SIGINT not ignored, as under
    a terminal: Python turns SIGINT into KeyboardInterrupt only then. A suite started in the
    background by a shell without job control (`bash .ci/run &` in a script) passes SIGINT on
    ignored, and the child would never see a test's Ctrl-C. The parent sets a handler for the
    moment of the start (a handler becomes the default in the child, an ignored signal stays
    ignored), not a `preexec_fn`: that forks this multithreaded JAX process in Python, which
    JAX warns may deadlock."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(args, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# what a jaxlib without cross-process CPU collectives says (older ones, or built without Gloo)
_NO_CPU_COLLECTIVES = ("aren't implemented on the CPU backend", "make_gloo_tcp_collectives",
                       "jax_cpu_collectives_implementation")


def two_processes(argv_of, cwd) -> list[str]:
    """Runs `jaxnet` as processes 0 and 1 of one job (one CPU device each); their stdouts.
    `argv_of(i)` is process i's command line. Skips where jaxlib has no CPU collectives."""
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxnet", *map(str, argv_of(i)), "--coordinator",
         f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
        env=subprocess_env(1), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
        for i in range(2)]
    results = []
    try:
        for p in procs:
            results.append(p.communicate(timeout=SUBPROCESS_TIMEOUT))
    except subprocess.TimeoutExpired:
        pytest.fail(f"two-process jaxnet did not finish in {SUBPROCESS_TIMEOUT} s (deadlock?)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    codes = [p.returncode for p in procs]
    if any(codes):
        err = "\n".join(e for _, e in results)
        if any(s in err for s in _NO_CPU_COLLECTIVES):
            pytest.skip(f"this jaxlib cannot run CPU collectives across processes: {err[-500:]}")
        pytest.fail(f"exit codes {codes}:\n{err[-4000:]}")
    return [out for out, _ in results]


# ---------------------------------------------------------------------------- CLI


def one_line_error(capsys):
    """The stderr of a CLI call that failed as a user error: one line, `error: ...`."""
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def make_table(rows: int = 3000, seed: int = 0, **kwargs):
    """scripts/make_table.py's customer table (a pandas DataFrame: an identifier, a date,
    categories and numbers with empty cells, yes/no, a string label), for tests of tables."""
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "make_table.py"
    spec = importlib.util.spec_from_file_location("make_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_table(rows, seed, **kwargs)
