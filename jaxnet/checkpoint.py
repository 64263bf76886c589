"""Atomic, pickle-free checkpoints of JAX pytrees plus JSON metadata in a single .npz file."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = [
    "CHECKPOINT_FILE",
    "CheckpointError",
    "checkpoint_exists",
    "load_checkpoint",
    "load_metadata",
    "save_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.npz"

_FORMAT = "jaxnet-checkpoint"
_VERSION = 1
_METADATA_KEY = "__metadata__"
_ZIP_MAGIC = b"PK\x03\x04"  # np.savez always writes at least one local file header
# Numeric dtype kinds a leaf may have: bool, signed/unsigned int, float, complex.
_ALLOWED_KINDS = frozenset("biufc")
_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint could not be written, found, parsed or matched to the model."""


# --------------------------------------------------------------------------- helpers


def _checkpoint_path(directory: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(directory) / CHECKPOINT_FILE


def _is_prng_key(dtype: Any) -> bool:
    try:
        return bool(jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key))
    except TypeError:
        return False


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... and {len(items) - _MAX_LISTED} more"
    return shown


def _to_jsonable(value: Any, where: str = "metadata") -> Any:
    """Converts numpy/JAX scalars and arrays (recursively) into plain JSON-compatible Python."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(jax.device_get(value)).tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise CheckpointError(
                    f"{where} has a key {key!r} of type {type(key).__name__}, but JSON object "
                    "keys must be str, int, float, bool or None; convert the key to str"
                )
            out[key] = _to_jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise CheckpointError(
        f"{where} is a {type(value).__name__}, which cannot be stored as JSON; metadata may only "
        "contain dicts, lists, tuples, str, int, float, bool, None and numpy/JAX numbers or "
        "arrays, so convert it (e.g. with str() or float()) before saving"
    )


def _host_leaf(leaf: Any) -> tuple[np.ndarray, str | None]:
    """Returns (numpy array to store, PRNG impl name or None) for one pytree leaf."""
    impl = None
    if isinstance(leaf, jax.Array) and _is_prng_key(leaf.dtype):
        impl = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        from jax.experimental import multihost_utils

        leaf = multihost_utils.process_allgather(leaf, tiled=True)
    return np.asarray(jax.device_get(leaf)), impl


def _update_hash(digest: Any, path: str, array: np.ndarray) -> None:
    header = json.dumps([path, array.dtype.str, list(array.shape)]).encode("utf-8")
    digest.update(len(header).to_bytes(8, "little"))
    digest.update(header)
    digest.update(np.asarray(array, order="C").reshape(-1).view(np.uint8))


def _open_new_file(directory: pathlib.Path) -> tuple[int, pathlib.Path]:
    """Creates a fresh hidden temp file next to the checkpoint (mode honours the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = directory / f".{CHECKPOINT_FILE}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _fsync_directory(directory: pathlib.Path) -> None:
    """Makes the rename durable on POSIX; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- saving


def save_checkpoint(
    directory: str | os.PathLike, tree: Any, metadata: Mapping[str, Any] | None
) -> pathlib.Path:
    """Atomically writes a pytree of arrays and JSON metadata to ``directory/checkpoint.npz``.

    Everything goes into one ``.npz`` (no pickle): one array per leaf, keyed by its pytree path
    string, plus a ``__metadata__`` entry holding UTF-8 JSON with the leaf layout, a sha256 over
    the leaf bytes and ``metadata``. The file is written to a temporary name in the same
    directory, fsynced and then renamed over the old checkpoint, so a crash at any point leaves
    the previous checkpoint intact.

    Typed PRNG keys (``jax.random.key``) are stored as their key data and restored as keys.
    Arrays that are not fully addressable (multi-host sharding) are gathered with
    ``process_allgather``, which is a collective: every process must then call this function.

    Args:
        directory: Directory for the checkpoint; created if missing.
        tree: Any JAX pytree whose leaves are JAX arrays, numpy arrays or Python/numpy
            scalars of bool, integer, float or complex dtype (e.g. params plus an optax state).
        metadata: JSON-serialisable mapping (numpy/JAX numbers and arrays are converted to
            Python numbers and lists). ``None`` is treated as ``{}``.

    Returns:
        The path of the written checkpoint file.

    Raises:
        CheckpointError: If a leaf has an unsupported dtype, two leaves share a path string,
            or the metadata cannot be represented as JSON.
        OSError: If the directory or file cannot be written.
    """
    directory = pathlib.Path(directory)
    user = _to_jsonable(dict(metadata) if metadata is not None else {})

    leaves_with_path, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays: dict[str, np.ndarray] = {}
    leaf_info = []
    digest = hashlib.sha256()
    for key_path, leaf in leaves_with_path:
        path = jax.tree_util.keystr(key_path)
        if path in arrays or path == _METADATA_KEY:
            raise CheckpointError(
                f"two leaves of the tree have the same path string {path!r}, so they cannot be "
                "told apart in a checkpoint; use distinct dict keys/field names"
            )
        array, impl = _host_leaf(leaf)
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise CheckpointError(
                f"leaf {path or '<root>'} has dtype {array.dtype} (from {type(leaf).__name__}), "
                "but checkpoints only hold bool, integer, float and complex arrays; convert it "
                "(e.g. bfloat16 -> float32) or move it into metadata"
            )
        array = np.asarray(array, order="C")
        info: dict[str, Any] = {
            "path": path,
            "shape": list(array.shape),
            "dtype": array.dtype.str,
        }
        if impl is not None:
            info["prng_impl"] = impl
            info["key_dtype"] = str(leaf.dtype)
            info["key_shape"] = list(leaf.shape)
        arrays[path] = array
        leaf_info.append(info)
        _update_hash(digest, path, array)

    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "leaves": leaf_info,
        "sha256": digest.hexdigest(),
        "user": user,
    }
    try:
        header_bytes = json.dumps(header, sort_keys=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # e.g. circular references
        raise CheckpointError(
            f"metadata cannot be encoded as JSON ({exc}); pass plain dicts/lists of numbers and "
            "strings"
        ) from exc
    entries = dict(arrays)
    entries[_METADATA_KEY] = np.frombuffer(header_bytes, dtype=np.uint8)

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / CHECKPOINT_FILE
    fd, tmp = _open_new_file(directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **entries)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    return final


# --------------------------------------------------------------------------- loading


def _corrupt(path: pathlib.Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt or not a jaxnet checkpoint ({reason}); delete it and start "
        "a fresh run, or point to a directory holding a checkpoint written by save_checkpoint"
    )


def _parse_header(path: pathlib.Path, raw: Any) -> dict:
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise _corrupt(path, f"{_METADATA_KEY} entry is not a 1-D uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except ValueError as exc:
        raise _corrupt(path, f"{_METADATA_KEY} entry is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise _corrupt(path, f"{_METADATA_KEY} does not declare format {_FORMAT!r}")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _corrupt(path, f"format version {version!r} is not an integer")
    if version > _VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, but this jaxnet reads only "
            f"versions up to {_VERSION}; upgrade jaxnet to load it"
        )
    leaves = header.get("leaves")
    valid_leaves = isinstance(leaves, list) and all(
        isinstance(info, dict)
        and isinstance(info.get("path"), str)
        and isinstance(info.get("shape"), list)
        and all(isinstance(n, int) and not isinstance(n, bool) for n in info["shape"])
        and isinstance(info.get("dtype"), str)
        for info in leaves
    )
    if not valid_leaves:
        raise _corrupt(path, "leaf table in the metadata is malformed")
    if len({info["path"] for info in leaves}) != len(leaves):
        raise _corrupt(path, "leaf table lists the same path twice")
    if not isinstance(header.get("sha256"), str) or not isinstance(header.get("user"), dict):
        raise _corrupt(path, "metadata lacks the sha256 or user entries")
    return header


def _read_file(path: pathlib.Path, read_arrays: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads and checks the header (optionally all arrays and the hash); never unpickles."""
    try:
        handle = path.open("rb")  # closed by the `with` below
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"no checkpoint found at {path}; expected a {CHECKPOINT_FILE} written by "
            "save_checkpoint, so check the directory or start a fresh run"
        ) from exc
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be opened ({exc}); check that it is a readable file"
        ) from exc
    with handle:
        # Only hand zip archives to np.load, so it never takes its .npy or pickle code paths.
        if handle.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            raise _corrupt(path, "file is not a zip/.npz archive")
        handle.seek(0)
        try:
            npz = np.load(handle, allow_pickle=False)
        except Exception as exc:  # truncated or damaged zip, ...
            raise _corrupt(path, f"{type(exc).__name__}: {exc}") from exc
        if not hasattr(npz, "files"):
            raise _corrupt(path, "file is not an .npz archive")
        with npz:
            header, arrays = _read_entries(path, npz, read_arrays)
    return header, arrays


def _read_entries(path: pathlib.Path, npz: Any, read_arrays: bool) -> tuple[dict, dict]:
    try:
        names = set(npz.files)
        if _METADATA_KEY not in names:
            raise _corrupt(path, f"no {_METADATA_KEY} entry")
        header = _parse_header(path, npz[_METADATA_KEY])
        expected = {info["path"] for info in header["leaves"]}
        stored = names - {_METADATA_KEY}
        if stored != expected:
            diff = sorted(stored ^ expected)
            raise _corrupt(path, f"arrays and leaf table disagree on {_listing(diff)}")
        if not read_arrays:
            return header, {}
        arrays = {}
        digest = hashlib.sha256()
        for info in header["leaves"]:
            array = npz[info["path"]]
            if list(array.shape) != info["shape"] or array.dtype.str != info["dtype"]:
                raise _corrupt(
                    path,
                    f"array {info['path']} is {array.dtype.str}{list(array.shape)} but the "
                    f"leaf table says {info['dtype']}{info['shape']}",
                )
            _update_hash(digest, info["path"], array)
            arrays[info["path"]] = array
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile/zlib/numpy format errors from untrusted bytes
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from exc
    if digest.hexdigest() != header["sha256"]:
        raise _corrupt(path, "sha256 of the stored arrays does not match the recorded hash")
    return header, arrays


def _fit_leaf(path: str, info: dict, array: np.ndarray, template_leaf: Any):
    """Returns (restored leaf, None) or (None, problem description)."""
    name = path or "<root>"
    file_is_key = "prng_impl" in info
    t_dtype = getattr(template_leaf, "dtype", None)
    if t_dtype is not None and _is_prng_key(t_dtype):
        t_shape = tuple(template_leaf.shape)
        if not file_is_key:
            return None, (
                f"{name} is a {array.dtype} array in the file but a PRNG key ({t_dtype}) in the "
                "model"
            )
        f_dtype, f_shape = info.get("key_dtype"), tuple(info.get("key_shape") or ())
        if f_dtype != str(t_dtype) or f_shape != t_shape:
            return None, (
                f"{name} is a {f_dtype} key of shape {f_shape} in the file but a {t_dtype} key "
                f"of shape {t_shape} in the model"
            )
        try:
            key = jax.random.wrap_key_data(array, impl=info["prng_impl"])
        except (TypeError, ValueError) as exc:
            return None, f"{name} cannot be restored as a {t_dtype} key ({exc})"
        return key, None
    if file_is_key:
        return None, (
            f"{name} is a PRNG key ({info.get('key_dtype')}) in the file but not in the model"
        )

    if type(template_leaf) in (bool, int, float, complex):
        # Python scalars: accept any 0-d value of the same kind and return a Python scalar.
        kinds = {bool: "b", int: "iu", float: "f", complex: "c"}[type(template_leaf)]
        if array.shape != () or array.dtype.kind not in kinds:
            return None, (
                f"{name} is {array.dtype} with shape {array.shape} in the file but a Python "
                f"{type(template_leaf).__name__} in the model"
            )
        return type(template_leaf)(array.item()), None

    if t_dtype is not None and hasattr(template_leaf, "shape"):
        t_shape, t_dtype = tuple(template_leaf.shape), np.dtype(t_dtype)
    else:
        probe = np.asarray(template_leaf)
        t_shape, t_dtype = probe.shape, probe.dtype
    if array.shape != t_shape:
        return None, f"{name} has shape {array.shape} in the file but {t_shape} in the model"
    if array.dtype != t_dtype:
        return None, f"{name} has dtype {array.dtype} in the file but {t_dtype} in the model"
    return array, None


def load_checkpoint(directory: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Reads ``directory/checkpoint.npz`` back into the structure of ``template``.

    The file is opened with ``allow_pickle=False``, its format and sha256 are verified, and
    every leaf is checked against ``template`` (same leaf paths, shapes and dtypes) before
    anything is returned.

    Args:
        directory: Directory passed to :func:`save_checkpoint`.
        template: A pytree with the same structure as the saved one, e.g. freshly initialised
            params and optimiser state. Leaves may be arrays, ``jax.ShapeDtypeStruct`` or
            Python scalars; only their shapes and dtypes are used.

    Returns:
        ``(tree, metadata)``: ``tree`` has the template's structure with numpy arrays as leaves
        (typed PRNG keys come back as JAX key arrays, and leaves that are Python scalars in the
        template come back as Python scalars); ``metadata`` is the dict given when saving.
        Moving the arrays onto devices is up to the caller.

    Raises:
        CheckpointError: If the file is missing, corrupt, not a jaxnet checkpoint, written by
            a newer format version, or does not fit ``template``.
    """
    path = _checkpoint_path(directory)
    header, arrays = _read_file(path, read_arrays=True)
    infos = {info["path"]: info for info in header["leaves"]}

    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    template_paths = [jax.tree_util.keystr(key_path) for key_path, _ in leaves_with_path]
    problems = []
    missing = [p or "<root>" for p in template_paths if p not in infos]
    unexpected = sorted(set(infos) - set(template_paths))
    if missing:
        problems.append(f"leaves missing from the file: {_listing(missing)}")
    if unexpected:
        shown = _listing([p or "<root>" for p in unexpected])
        problems.append(f"leaves in the file but not in the model: {shown}")
    restored = []
    for path_str, (_, template_leaf) in zip(template_paths, leaves_with_path, strict=False):
        if path_str not in infos:
            continue
        leaf, problem = _fit_leaf(path_str, infos[path_str], arrays[path_str], template_leaf)
        if problem is not None:
            problems.append(problem)
        restored.append(leaf)
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: {'; '.join(problems[:_MAX_LISTED])}"
            + (
                f"; ... and {len(problems) - _MAX_LISTED} more"
                if len(problems) > _MAX_LISTED
                else ""
            )
            + "; was it saved with a different --hidden/--layers? Start a fresh run or pass "
            "matching flags"
        )
    return jax.tree_util.tree_unflatten(treedef, restored), header["user"]


def load_metadata(directory: str | os.PathLike) -> dict:
    """Reads only the user metadata of ``directory/checkpoint.npz``.

    The format and leaf table are validated, but the arrays are not read, so the sha256 is not
    checked here (``load_checkpoint`` does that).

    Args:
        directory: Directory passed to :func:`save_checkpoint`.

    Returns:
        The metadata dict given when saving.

    Raises:
        CheckpointError: If the file is missing, corrupt or not a jaxnet checkpoint.
    """
    header, _ = _read_file(_checkpoint_path(directory), read_arrays=False)
    return header["user"]


def checkpoint_exists(directory: str | os.PathLike) -> bool:
    """Tells whether ``directory/checkpoint.npz`` exists (without validating it).

    Args:
        directory: Directory passed to :func:`save_checkpoint`.

    Returns:
        True if the checkpoint file exists.
    """
    return _checkpoint_path(directory).is_file()
