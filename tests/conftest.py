"""Shared fixtures. Tests run as users do: float32, x64 off, with strict dtype promotion so an
accidental upcast fails loudly. A test (or module, via `pytestmark`) marked `x64` runs with
64-bit JAX switched on, for tight gradient checks."""

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


def pytest_configure(config):
    config.addinivalue_line("markers", "x64: run the test with jax_enable_x64 switched on")


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


def assert_trees_close(actual, expected, *, rtol, atol=0.0):
    """Every leaf agrees to `rtol` times the leaf's own scale (max |x|), plus `atol`."""
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


def one_line_error(capsys):
    """The stderr of a CLI call that failed as a user error: one line, `error: ...`."""
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    return err
