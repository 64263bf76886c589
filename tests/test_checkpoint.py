"""Tests for jaxnet.checkpoint: round trips, model mismatches, bad files, crash safety, JSON."""

import errno
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors.numpy
from safetensors import safe_open

from jaxnet import checkpoint
from jaxnet.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    json_text,
    jsonable,
    load_checkpoint,
    load_metadata,
    save_checkpoint,
    write_json,
)
from jaxnet.errors import JaxnetError


def _params(seed, hidden=4, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (
        {
            "w": rng.standard_normal((3, hidden)).astype(dtype),
            "b": jnp.asarray(rng.standard_normal(hidden), dtype=dtype),
            "gamma": np.ones(hidden, dtype),
            "beta": np.zeros(hidden, dtype),
        },
        {"w": jnp.asarray(rng.standard_normal((hidden, 2)), dtype=dtype), "b": jnp.zeros(2, dtype)},
    )


def _state(seed, hidden=4, dtype=np.float32):
    """A training-state-like tree: params, batchnorm state, optax state, step and PRNG key."""
    params = _params(seed, hidden, dtype)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    opt_state = optimizer.init(params)
    grads = jax.tree.map(lambda p: jnp.full(jnp.shape(p), 0.5, p.dtype), params)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        _, opt_state = optimizer.update(grads, opt_state, params)  # non-trivial mu, nu, count
    return {
        "params": params,
        "bn_state": ({"mean": np.full(hidden, seed, dtype), "var": np.ones(hidden, dtype)},),
        "opt_state": opt_state,
        "step": jnp.asarray(7 + seed, jnp.int32),
        "key": jax.random.PRNGKey(seed),  # uint32 key data
        "odd": np.array([np.nan, -0.0, np.inf, 1e-45], np.float32),  # bitwise, not just ==
    }


def _assert_bitwise_equal(actual, expected):
    a_leaves, a_def = jax.tree_util.tree_flatten_with_path(actual)
    e_leaves, e_def = jax.tree_util.tree_flatten_with_path(expected)
    assert a_def == e_def
    for (path, a), (_, e) in zip(a_leaves, e_leaves, strict=True):
        name, e = jax.tree_util.keystr(path), np.asarray(e)
        assert isinstance(a, np.ndarray), f"{name} came back as {type(a)}"
        assert (a.dtype, a.shape) == (e.dtype, e.shape), name
        assert a.tobytes() == e.tobytes(), name


def _leftovers(directory):
    return sorted(set(os.listdir(directory)) - {CHECKPOINT_FILE})


def _rewrite(path, arrays=None, **header):
    """Rewrites the checkpoint at `path` with some arrays or header entries replaced."""
    with safe_open(path, framework="numpy") as file:
        old_header = file.metadata()
        old_arrays = {name: file.get_tensor(name) for name in file.keys()}
    new = safetensors.numpy.save(
        {**old_arrays, **(arrays or {})}, metadata={**old_header, **header}
    )
    path.write_bytes(new)


# ------------------------------------------------------------------ round trips


def test_round_trip_is_bitwise(tmp_path):
    saved = _state(0)
    path = save_checkpoint(tmp_path / "run", saved, {"epoch": 3})
    assert path == tmp_path / "run" / CHECKPOINT_FILE
    assert _leftovers(tmp_path / "run") == []

    restored, metadata = load_checkpoint(tmp_path / "run", _state(1))  # same structure
    _assert_bitwise_equal(restored, saved)
    assert metadata == {"epoch": 3}
    assert restored["step"].dtype == np.int32 and restored["key"].dtype == np.uint32
    assert int(restored["opt_state"].inner_state[0].count) == 1
    assert load_metadata(tmp_path / "run") == {"epoch": 3}


@pytest.mark.x64
def test_float64_round_trip_is_bitwise(tmp_path):
    saved = _state(0, dtype=np.float64)
    assert saved["params"][1]["w"].dtype == jnp.float64
    save_checkpoint(tmp_path, saved, {})
    restored, _ = load_checkpoint(tmp_path, _state(1, dtype=np.float64))
    _assert_bitwise_equal(restored, saved)


def test_strided_scalar_and_empty_leaves_round_trip(tmp_path):
    # safetensors copies each array's raw buffer, so strides must be undone before saving.
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    saved = {
        "transposed": base.T,
        "fortran": np.asfortranarray(base),
        "every_other": base[:, ::2],
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.int32),
        "mask": np.array([True, False]),
        "big_endian": np.arange(3, dtype=">i4"),
    }
    save_checkpoint(tmp_path, saved, {})
    template = {
        **{name: np.asarray(leaf, order="C") for name, leaf in saved.items()},
        "big_endian": np.zeros(3, np.int32),
    }
    restored, _ = load_checkpoint(tmp_path, template)
    for name, leaf in saved.items():
        np.testing.assert_array_equal(restored[name], leaf, err_msg=name)
        assert restored[name].shape == leaf.shape, name


def test_a_single_array_is_a_tree(tmp_path):
    array = np.arange(5, dtype=np.int32)
    save_checkpoint(tmp_path, array, {})
    restored, _ = load_checkpoint(tmp_path, np.zeros(5, np.int32))
    _assert_bitwise_equal(restored, array)


def test_file_is_plain_safetensors_for_any_reader(tmp_path):
    saved = _state(0)
    save_checkpoint(tmp_path, saved, {"epoch": 2})
    path = tmp_path / CHECKPOINT_FILE
    arrays = safetensors.numpy.load_file(path)
    np.testing.assert_array_equal(arrays["['params'][0]['w']"], saved["params"][0]["w"])
    assert "['opt_state'].inner_state[0].mu[1]['b']" in arrays
    with safe_open(path, framework="numpy") as file:
        header = file.metadata()
    assert header["format"] == "jaxnet-checkpoint"
    assert json.loads(header["metadata"]) == {"epoch": 2}


def test_metadata_round_trip_converts_numpy_values(tmp_path):
    metadata = {
        "losses": [np.float32(0.5), np.float32(0.25)],
        "best": {"epoch": np.int64(4), "acc": np.float64(0.9)},
        "hidden": (64, 32),
        "weights": np.array([1.5, 2.5], dtype=np.float32),
        "step": jnp.asarray(3, jnp.int32),
        "flag": np.bool_(True),
        "name": "mlp",
        "nothing": None,
        "bad": [float("nan"), np.float32("inf")],
    }
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, metadata)
    expected = {
        "losses": [0.5, 0.25],
        "best": {"epoch": 4, "acc": 0.9},
        "hidden": [64, 32],
        "weights": [1.5, 2.5],
        "step": 3,
        "flag": True,
        "name": "mlp",
        "nothing": None,
        "bad": [None, None],
    }
    assert load_metadata(tmp_path) == expected
    _, loaded = load_checkpoint(tmp_path, {"w": np.zeros(2, np.float32)})
    assert loaded == expected
    assert type(loaded["best"]["epoch"]) is int
    assert type(loaded["losses"][0]) is float


def test_overwrite_replaces_previous_checkpoint(tmp_path):
    template = {"w": np.zeros(3, np.float32), "step": np.int32(0)}
    save_checkpoint(tmp_path, {"w": np.ones(3, np.float32), "step": np.int32(1)}, {"v": 1})
    save_checkpoint(tmp_path, {"w": np.full(3, 2.0, np.float32), "step": np.int32(2)}, {"v": 2})
    tree, metadata = load_checkpoint(tmp_path, template)
    np.testing.assert_array_equal(tree["w"], np.full(3, 2.0, np.float32))
    assert tree["step"] == 2
    assert metadata == {"v": 2}
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_file_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, {})
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0o600


# ------------------------------------------------------------------ what cannot be saved


@pytest.mark.parametrize(
    "leaf",
    ["not an array", object(), np.ones(2, np.complex64), jax.random.key(0)],
    ids=["str", "object", "complex", "typed_key"],
)
def test_unsupported_leaf_is_rejected_before_writing(tmp_path, leaf):
    with pytest.raises(TypeError, match=r"leaf \['bad'\]"):
        save_checkpoint(tmp_path, {"bad": leaf, "w": np.ones(2, np.float32)}, {})
    assert not (tmp_path / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("metadata", [{"fn": object()}, {np.int64(1): 2}, ["not", "a", "dict"]])
def test_non_json_metadata_is_rejected_before_writing(tmp_path, metadata):
    with pytest.raises(TypeError, match="JSON|dict"):
        save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, metadata)
    assert not (tmp_path / CHECKPOINT_FILE).exists()


class _Twins:
    """A pytree node whose two children have the same key, so the same path string."""

    def __init__(self, a, b):
        self.a, self.b = a, b


jax.tree_util.register_pytree_with_keys(
    _Twins,
    lambda t: (((jax.tree_util.GetAttrKey("x"), t.a), (jax.tree_util.GetAttrKey("x"), t.b)), None),
    lambda _, children: _Twins(*children),
)


def test_leaves_with_the_same_path_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="same path"):
        save_checkpoint(tmp_path, _Twins(np.ones(1), np.zeros(1)), {})
    assert not (tmp_path / CHECKPOINT_FILE).exists()


# ------------------------------------------------------------------ model mismatch


def test_checkpoint_error_is_a_user_error():
    assert issubclass(CheckpointError, JaxnetError)
    assert issubclass(CheckpointError, ValueError)


def test_wrong_architecture_names_leaf_and_both_shapes(tmp_path):
    saved = [{"w": np.ones((3, 100), np.float32)}, {"w": np.ones((100, 64), np.float32)}]
    template = [{"w": np.ones((3, 50), np.float32)}, {"w": np.ones((50, 64), np.float32)}]
    save_checkpoint(tmp_path / "x", saved, {})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "x", template)
    message = str(info.value)
    assert str(tmp_path / "x" / CHECKPOINT_FILE) in message
    assert "does not fit this model" in message
    assert "[1]['w'] has shape (100, 64) in the file but (50, 64) in the model" in message
    assert "[0]['w'] has shape (3, 100) in the file but (3, 50) in the model" in message
    assert "saved with a different hidden, data or optimizer" in message  # the CLI: --hidden


def test_missing_and_unexpected_leaves_are_reported(tmp_path):
    leaf = np.ones(2, np.float32)
    save_checkpoint(tmp_path, [{"w": leaf}, {"w": leaf}], {})
    with pytest.raises(CheckpointError, match=r"missing from the file: \[2\]\['w'\]"):
        load_checkpoint(tmp_path, [{"w": leaf}, {"w": leaf}, {"w": leaf}])
    with pytest.raises(CheckpointError, match=r"in the file but not in the model: \[1\]\['w'\]"):
        load_checkpoint(tmp_path, [{"w": leaf}])


def test_dtype_mismatches_are_reported(tmp_path):
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32), "step": np.int32(1)}, {})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, {"w": np.ones(2, np.float64), "step": np.int64(0)})
    message = str(info.value)
    assert "['w'] has dtype float32 in the file but float64 in the model" in message
    assert "['step'] has dtype int32 in the file but int64 in the model" in message


# ------------------------------------------------------------------ bad files


def test_missing_checkpoint_names_the_path(tmp_path):
    directory = tmp_path / "nope"
    expected = str(directory / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="no checkpoint found") as info:
        load_checkpoint(directory, {"w": np.ones(2)})
    assert expected in str(info.value)
    with pytest.raises(CheckpointError, match="no checkpoint found") as info:
        load_metadata(directory)
    assert expected in str(info.value)


def test_old_npz_checkpoint_is_refused_with_a_way_forward(tmp_path):
    # What jaxnet 0.1 wrote: an .npz with the arrays and a JSON __metadata__ entry.
    header = {"format": "jaxnet-checkpoint", "version": 1, "user": {"config": {"hidden": [8]}}}
    np.savez(
        tmp_path / "checkpoint.npz",
        **{"['w']": np.ones(2, np.float32)},
        __metadata__=np.frombuffer(json.dumps(header).encode(), np.uint8),
    )
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"hidden": [8]}}))
    for load in (
        lambda: load_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}),
        lambda: load_metadata(tmp_path),
    ):
        with pytest.raises(CheckpointError) as info:
            load()
        message = str(info.value)
        assert "checkpoint.npz" in message and "jaxnet 0.1" in message
        assert "no longer reads" in message
        assert str(tmp_path / "metrics.json") in message and '"config"' in message
        assert "jaxnet train" in message


def _hostile_pickle_bytes():
    """A pickle stream, built by hand, that would call `_record_unpickle` if ever unpickled."""
    return f"c{__name__}\n_record_unpickle\n(tR.".encode()


_UNPICKLED = []


def _record_unpickle():
    _UNPICKLED.append(True)
    return 0


@pytest.mark.parametrize(
    "corrupt",
    [
        "truncated",
        "one_byte_short",
        "random_bytes",
        "empty",
        "text",
        "pickle_stream",
        "plain_npy",
        "npz",
        "foreign_safetensors",
    ],
)
def test_corrupt_or_foreign_files_raise_checkpoint_error(tmp_path, corrupt):
    save_checkpoint(tmp_path, _state(0), {"epoch": 1})
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    if corrupt == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif corrupt == "one_byte_short":
        path.write_bytes(data[:-1])
    elif corrupt == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif corrupt == "empty":
        path.write_bytes(b"")
    elif corrupt == "text":
        path.write_text('{"format": "jaxnet-checkpoint"}')
    elif corrupt == "pickle_stream":
        path.write_bytes(_hostile_pickle_bytes())
    elif corrupt == "plain_npy":
        with path.open("wb") as handle:
            np.save(handle, np.ones(3))
    elif corrupt == "npz":
        with path.open("wb") as handle:
            np.savez(handle, w=np.ones(3))
    else:  # somebody else's model, with its own header
        safetensors.numpy.save_file({"weight": np.ones(3, np.float32)}, path, {"format": "pt"})
    _UNPICKLED.clear()
    for load in (lambda: load_checkpoint(tmp_path, _state(1)), lambda: load_metadata(tmp_path)):
        with pytest.raises(CheckpointError, match="corrupt or not a jaxnet checkpoint") as info:
            load()
        assert str(path) in str(info.value)
        assert "move it aside" in str(info.value)
    assert _UNPICKLED == []
    if corrupt == "foreign_safetensors":
        assert "format tag" in str(info.value)


def test_flipped_bit_in_the_arrays_is_caught_by_the_hash(tmp_path):
    # safetensors checks the file's layout, not its bytes: this would load as a wrong weight.
    save_checkpoint(tmp_path, _state(0), {"epoch": 1})
    path = tmp_path / CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    safetensors.numpy.load_file(path)  # the damage is invisible to safetensors itself
    with pytest.raises(CheckpointError, match="corrupt.*sha256"):
        load_checkpoint(tmp_path, _state(1))
    assert load_metadata(tmp_path) == {"epoch": 1}  # the header alone is fine


def test_broken_metadata_json_is_corrupt(tmp_path):
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, {})
    _rewrite(tmp_path / CHECKPOINT_FILE, metadata='{"epoch": ')
    with pytest.raises(CheckpointError, match="corrupt.*JSON"):
        load_metadata(tmp_path)
    with pytest.raises(CheckpointError, match="corrupt.*JSON"):
        load_checkpoint(tmp_path, {"w": np.ones(2, np.float32)})


def test_newer_format_version_asks_for_an_upgrade(tmp_path):
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, {})
    _rewrite(tmp_path / CHECKPOINT_FILE, version="3")
    with pytest.raises(CheckpointError, match="version 3.*upgrade jaxnet"):
        load_metadata(tmp_path)


def test_unreadable_checkpoint_path_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).mkdir()
    with pytest.raises(CheckpointError, match="cannot read"):
        load_metadata(tmp_path)


# ------------------------------------------------------------------ crash safety


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FillsUpHalfway:
    """A file handle on a disk that runs out of space halfway through the write."""

    def __init__(self, handle):
        self._handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _break(monkeypatch, where):
    """Makes the next write fail at `where`, as a full disk would."""
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(checkpoint.os, "fdopen", lambda *a: _FillsUpHalfway(real_fdopen(*a)))
    else:
        monkeypatch.setattr(checkpoint.os, where, _disk_full)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    first = {"w": np.ones((2, 2), np.float32), "step": np.int32(1)}
    save_checkpoint(tmp_path, first, {"epoch": 1})

    _break(monkeypatch, where)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(
            tmp_path, {"w": np.full((2, 2), 9.0, np.float32), "step": np.int32(2)}, {"epoch": 2}
        )
    monkeypatch.undo()

    message = str(info.value)
    assert message.startswith(f"no space left on device while writing {tmp_path / CHECKPOINT_FILE}")
    assert f"previous {CHECKPOINT_FILE} is intact" in message
    assert f"free some space, then resume with --resume {tmp_path}" in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert _leftovers(tmp_path) == []
    tree, metadata = load_checkpoint(
        tmp_path, {"w": np.zeros((2, 2), np.float32), "step": np.int32(0)}
    )
    _assert_bitwise_equal(tree, first)
    assert metadata == {"epoch": 1}


def _permission_denied(*args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint.os, "replace", _permission_denied)
    with pytest.raises(
        CheckpointError,
        match="nothing was written; check that the folder is writable, then start the run again",
    ):
        save_checkpoint(tmp_path / "new", {"w": np.ones(2, np.float32)}, {})
    monkeypatch.undo()
    assert os.listdir(tmp_path / "new") == []


def test_interrupted_write_removes_temp_file(tmp_path, monkeypatch):
    class Interrupted(_FillsUpHalfway):
        def write(self, data):
            raise KeyboardInterrupt

    real_fdopen = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda *a: Interrupted(real_fdopen(*a)))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "new", {"w": np.ones(2, np.float32)}, {})
    monkeypatch.undo()
    assert os.listdir(tmp_path / "new") == []


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    stale = [tmp_path / f".{CHECKPOINT_FILE}.k1ll3d.tmp", tmp_path / f".{CHECKPOINT_FILE}.x.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    others = [tmp_path / "metrics.json", tmp_path / ".notes.tmp"]
    for path in others:
        path.write_text("{}")
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, {})
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)


# ------------------------------------------------------------------ write_json


def test_write_json_converts_numpy_and_non_finite_values(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    write_json(
        path,
        {
            "acc": np.float32(0.5),
            "loss": float("nan"),
            "hidden": (8, 4),
            "curve": np.array([1.0, np.inf]),
            "n": np.int64(3),
        },
    )
    text = path.read_text()
    assert text.endswith("}\n") and "\n  " in text  # indented, newline-terminated
    assert json.loads(text) == {
        "acc": 0.5,
        "loss": None,
        "hidden": [8, 4],
        "curve": [1.0, None],
        "n": 3,
    }
    assert os.listdir(path.parent) == ["metrics.json"]


def test_json_values_never_hold_nan():
    """The one NaN-to-null rule (results.json, best.json, results.csv, metrics.json, export)."""
    nested = [1.0, float("nan"), {"a": [float("inf"), 2.0]}, (np.float32("-inf"),)]
    assert jsonable(nested) == [1.0, None, {"a": [None, 2.0]}, [None]]
    assert jsonable(np.float32("nan")) is None
    assert jsonable(jnp.array([1.0, jnp.nan])) == [1.0, None]
    assert json_text({"x": np.float64("nan"), "y": np.int32(2)}) == '{"x": null, "y": 2}'


def test_write_json_rejects_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        write_json(tmp_path / "results.json", {"fn": print})
    assert os.listdir(tmp_path) == []


def test_write_json_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"epoch": 1})
    (tmp_path / ".metrics.json.old.tmp").write_text("{")  # left by a killed write
    _break(monkeypatch, "write")
    with pytest.raises(
        CheckpointError, match="no space left on device.*previous metrics.json is intact"
    ):
        write_json(path, {"epoch": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"epoch": 1}
    write_json(path, {"epoch": 3})
    assert os.listdir(tmp_path) == ["metrics.json"]
