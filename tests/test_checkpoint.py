"""Tests for jaxnet.checkpoint: round trips, model mismatches, corruption, atomicity, no pickle."""

import io
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import checkpoint
from jaxnet.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    checkpoint_exists,
    load_checkpoint,
    load_metadata,
    save_checkpoint,
)


def _params(seed, hidden=4):
    rng = np.random.default_rng(seed)
    return (
        {
            "w": rng.standard_normal((3, hidden)).astype(np.float32),
            "b": rng.standard_normal(hidden).astype(np.float64),
        },
        {
            "w": jnp.asarray(rng.standard_normal((hidden, 2)), dtype=jnp.float32),
            "b": jnp.zeros(2, dtype=jnp.float32),
        },
    )


def _state(seed, hidden=4):
    """A training-state-like tree: params, optax adam state, both PRNG key kinds, int step."""
    params = _params(seed, hidden)
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)
    grads = jax.tree.map(lambda p: jnp.full(jnp.shape(p), 0.5, jnp.result_type(p)), params)
    _, opt_state = opt.update(grads, opt_state, params)  # non-trivial mu/nu/count
    return {
        "params": params,
        "opt_state": opt_state,
        "counts": np.arange(6, dtype=np.int32).reshape(2, 3),
        "legacy_key": jax.random.PRNGKey(seed),
        "key": jax.random.key(seed + 1),
        "step": 7 + seed,
    }


def _assert_same_tree(actual, expected):
    a_paths, a_def = jax.tree_util.tree_flatten_with_path(actual)
    e_paths, e_def = jax.tree_util.tree_flatten_with_path(expected)
    assert a_def == e_def
    for (path, a), (_, e) in zip(a_paths, e_paths, strict=False):
        name = jax.tree_util.keystr(path)
        if isinstance(e, jax.Array) and jax.dtypes.issubdtype(e.dtype, jax.dtypes.prng_key):
            assert a.dtype == e.dtype, name
            np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(e))
            continue
        if isinstance(e, int):
            assert type(a) is int and a == e, name
            continue
        assert isinstance(a, np.ndarray), f"{name} came back as {type(a)}"
        assert a.dtype == np.asarray(e).dtype, name
        np.testing.assert_array_equal(a, np.asarray(e), err_msg=name)


def _leftovers(directory):
    return sorted(set(os.listdir(directory)) - {CHECKPOINT_FILE})


# --------------------------------------------------------------------------- round trips


def test_round_trip_restores_values_dtypes_and_structure(tmp_path):
    saved = _state(0)
    path = save_checkpoint(tmp_path / "run", saved, {"epoch": 3})
    assert path == tmp_path / "run" / CHECKPOINT_FILE
    assert checkpoint_exists(tmp_path / "run")
    assert _leftovers(tmp_path / "run") == []

    template = _state(1)  # same structure, different values
    restored, metadata = load_checkpoint(tmp_path / "run", template)

    _assert_same_tree(restored, saved)
    assert metadata == {"epoch": 3}
    key = restored["key"]
    assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.uniform(key, (3,)), jax.random.uniform(saved["key"], (3,))
    )
    count = restored["opt_state"][0].count
    np.testing.assert_array_equal(count, np.asarray(saved["opt_state"][0].count))
    assert int(count) == 1


def test_metadata_round_trip_converts_numpy_values(tmp_path):
    history = [np.float32(0.5), np.float32(0.25)]
    metadata = {
        "losses": history,
        "best": {"epoch": np.int64(4), "acc": np.float64(0.9)},
        "hidden": (64, 32),
        "weights": np.array([1.5, 2.5], dtype=np.float32),
        "flag": np.bool_(True),
        "name": "mlp",
        "nothing": None,
    }
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, metadata)
    expected = {
        "losses": [0.5, 0.25],
        "best": {"epoch": 4, "acc": 0.9},
        "hidden": [64, 32],
        "weights": [1.5, 2.5],
        "flag": True,
        "name": "mlp",
        "nothing": None,
    }
    assert load_metadata(tmp_path) == expected
    _, loaded = load_checkpoint(tmp_path, {"w": np.zeros(2, np.float32)})
    assert loaded == expected
    assert type(loaded["best"]["epoch"]) is int
    assert type(loaded["losses"][0]) is float


def test_overwrite_replaces_previous_checkpoint(tmp_path):
    template = {"w": np.zeros(3, np.float32), "step": 0}
    save_checkpoint(tmp_path, {"w": np.ones(3, np.float32), "step": 1}, {"v": 1})
    save_checkpoint(tmp_path, {"w": np.full(3, 2.0, np.float32), "step": 2}, {"v": 2})
    tree, metadata = load_checkpoint(tmp_path, template)
    np.testing.assert_array_equal(tree["w"], np.full(3, 2.0, np.float32))
    assert tree["step"] == 2
    assert metadata == {"v": 2}
    assert _leftovers(tmp_path) == []


def test_single_array_tree_and_shape_dtype_struct_template(tmp_path):
    array = np.arange(5, dtype=np.int32)
    save_checkpoint(tmp_path, array, {})
    restored, _ = load_checkpoint(tmp_path, jax.ShapeDtypeStruct((5,), jnp.int32))
    np.testing.assert_array_equal(restored, array)
    assert restored.dtype == np.int32


def test_unsupported_leaf_is_rejected_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match=r"\['name'\].*dtype"):
        save_checkpoint(tmp_path, {"name": "not an array", "w": np.ones(2)}, {})
    assert not checkpoint_exists(tmp_path)


def test_non_json_metadata_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path, {"w": np.ones(2)}, {"fn": object()})
    assert not checkpoint_exists(tmp_path)


# --------------------------------------------------------------------------- model mismatch


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
    assert "--hidden/--layers" in message


def test_missing_and_unexpected_leaves_are_reported(tmp_path):
    save_checkpoint(tmp_path, [{"w": np.ones(2)}, {"w": np.ones(2)}], {})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, [{"w": np.ones(2)}, {"w": np.ones(2)}, {"w": np.ones(2)}])
    assert "missing from the file: [2]['w']" in str(info.value)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, [{"w": np.ones(2)}])
    assert "in the file but not in the model: [1]['w']" in str(info.value)


def test_dtype_and_key_kind_mismatches_are_reported(tmp_path):
    save_checkpoint(tmp_path, {"w": np.ones(2, np.float32), "key": jax.random.key(0)}, {})
    template = {"w": np.ones(2, np.float64), "key": jax.random.PRNGKey(0)}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, template)
    message = str(info.value)
    assert "['w'] has dtype float32 in the file but float64 in the model" in message
    assert "['key'] is a PRNG key" in message


# --------------------------------------------------------------------------- bad files


def test_missing_checkpoint_names_the_path(tmp_path):
    directory = tmp_path / "nope"
    assert not checkpoint_exists(directory)
    expected = str(directory / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="no checkpoint found") as info:
        load_checkpoint(directory, {"w": np.ones(2)})
    assert expected in str(info.value)
    with pytest.raises(CheckpointError) as info:
        load_metadata(directory)
    assert expected in str(info.value)


def _hostile_pickle_bytes():
    """A pickle stream, built by hand, that would call `_record_unpickle` if ever unpickled."""
    return f"c{__name__}\n_record_unpickle\n(tR.".encode()


_UNPICKLED = []


def _record_unpickle():
    _UNPICKLED.append(True)
    return 0


@pytest.mark.parametrize(
    "corrupt",
    ["truncated", "random_bytes", "empty", "text", "pickle_stream", "plain_npy"],
)
def test_corrupt_files_raise_checkpoint_error(tmp_path, corrupt):
    save_checkpoint(tmp_path, _state(0), {"epoch": 1})
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    if corrupt == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif corrupt == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif corrupt == "empty":
        path.write_bytes(b"")
    elif corrupt == "text":
        path.write_text('{"format": "jaxnet-checkpoint"}')
    elif corrupt == "pickle_stream":
        path.write_bytes(_hostile_pickle_bytes())
    else:
        with path.open("wb") as handle:
            np.save(handle, np.ones(3))
    _UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="corrupt or not a jaxnet checkpoint"):
        load_checkpoint(tmp_path, _state(1))
    with pytest.raises(CheckpointError, match="corrupt or not a jaxnet checkpoint"):
        load_metadata(tmp_path)
    assert _UNPICKLED == []


def _rewrite_entries(path, replace):
    """Rewrites the npz at `path`, swapping raw member bytes for those given in `replace`."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_hash_mismatch_is_detected(tmp_path):
    save_checkpoint(tmp_path, _state(0), {"epoch": 1})
    path = tmp_path / CHECKPOINT_FILE
    with np.load(path, allow_pickle=False) as npz:
        original = npz["['params'][0]['w']"]
    tampered = original.copy()
    tampered[0, 0] += 1.0
    _rewrite_entries(path, {"['params'][0]['w'].npy": _npy_bytes(tampered)})
    with pytest.raises(CheckpointError, match="corrupt.*sha256"):
        load_checkpoint(tmp_path, _state(1))


def test_broken_metadata_json_is_corrupt(tmp_path):
    save_checkpoint(tmp_path, {"w": np.ones(2)}, {})
    broken = np.frombuffer(b'{"format": "jaxnet-checkpoint", ', dtype=np.uint8)
    _rewrite_entries(tmp_path / CHECKPOINT_FILE, {"__metadata__.npy": _npy_bytes(broken)})
    with pytest.raises(CheckpointError, match="corrupt.*JSON"):
        load_metadata(tmp_path)


def test_object_array_is_rejected_without_unpickling(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"w": np.ones(1)}, {})
    # A .npy member declaring an object array followed by a hostile pickle stream; written by
    # hand so that no pickling happens anywhere in this test.
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(np.empty(1, dtype=object))
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(_hostile_pickle_bytes())
    _rewrite_entries(tmp_path / CHECKPOINT_FILE, {"['w'].npy": buffer.getvalue()})

    calls = []
    monkeypatch.setattr("pickle.load", lambda *a, **k: calls.append("load"))
    monkeypatch.setattr("pickle.loads", lambda *a, **k: calls.append("loads"))
    _UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path, {"w": np.ones(1)})
    assert calls == []
    assert _UNPICKLED == []


# --------------------------------------------------------------------------- atomicity


def _failing_savez(handle, **entries):
    handle.write(b"PK\x03\x04 half of a zip")  # something partial reaches the temp file
    raise OSError("simulated crash: disk full")


def _failing_replace(src, dst):
    raise OSError("simulated crash during rename")


@pytest.mark.parametrize(
    ("target", "replacement"),
    [(checkpoint.np, "savez"), (checkpoint.os, "replace")],
    ids=["savez", "os.replace"],
)
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, target, replacement):
    first = {"w": np.ones((2, 2), np.float32), "step": 1}
    save_checkpoint(tmp_path, first, {"epoch": 1})

    failing = _failing_savez if replacement == "savez" else _failing_replace
    monkeypatch.setattr(target, replacement, failing)
    second = {"w": np.full((2, 2), 9.0, np.float32), "step": 2}
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, second, {"epoch": 2})
    monkeypatch.undo()

    assert _leftovers(tmp_path) == []
    tree, metadata = load_checkpoint(tmp_path, {"w": np.zeros((2, 2), np.float32), "step": 0})
    np.testing.assert_array_equal(tree["w"], first["w"])
    assert tree["step"] == 1
    assert metadata == {"epoch": 1}


def test_interrupted_write_removes_temp_file(tmp_path, monkeypatch):
    def interrupted(handle, **entries):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "new", {"w": np.ones(2)}, {})
    assert os.listdir(tmp_path / "new") == []
    assert not checkpoint_exists(tmp_path / "new")
