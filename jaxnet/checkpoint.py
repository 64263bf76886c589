"""Checkpoints of pytrees in one safetensors file, and atomic JSON files, written crash-safely."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from jaxnet.errors import JaxnetError, OutputExistsError

__all__ = [
    "CHECKPOINT_FILE",
    "CheckpointError",
    "json_text",
    "jsonable",
    "load_checkpoint",
    "load_metadata",
    "save_checkpoint",
    "write_json",
]

CHECKPOINT_FILE = "checkpoint.safetensors"
_OLD_CHECKPOINT_FILE = "checkpoint.npz"  # jaxnet 0.1; no longer read
_FORMAT = "jaxnet-checkpoint"
_VERSION = "2"  # version 1 was jaxnet 0.1's checkpoint.npz
_MAX_LISTED = 8


class CheckpointError(JaxnetError, ValueError):
    """A checkpoint or result file that cannot be written, found, read or fitted to the model."""


# ------------------------------------------------------------------ JSON and atomic files


def jsonable(obj: Any) -> Any:
    """`obj` as JSON values: the one NaN-to-null rule of every file jaxnet writes.

    Args:
      obj: dicts, lists, tuples, str, numbers, bool, None, numpy/JAX numbers and arrays.

    Returns:
      The same structure with numpy/JAX numbers and arrays as Python ones, tuples as lists
      and non-finite floats (NaN, infinities: JSON has none) as None.
    """
    if isinstance(obj, Mapping):
        return {key: jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(value) for value in obj]
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        return jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: Any, what: str = "the value", **kwargs: Any) -> str:
    """`obj` as JSON text, converted by `jsonable` (NaN and infinities become null).

    Args:
      obj: as `jsonable` takes it.
      what: what `obj` is, for the message.
      **kwargs: passed to `json.dumps` (e.g. `indent=2`).

    Raises:
      TypeError: `obj` holds something JSON cannot represent.
    """
    try:
        return json.dumps(jsonable(obj), allow_nan=False, **kwargs)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} cannot be stored as JSON ({exc}); use dicts with str keys, lists, str, "
            "numbers, bool and None (numpy/JAX numbers and arrays are converted)"
        ) from exc


def _default_file_mode() -> int:
    # mkstemp makes owner-only files; a result file should get the mode open() would give it.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: pathlib.Path) -> None:
    # Makes the rename durable. Best effort: some systems cannot open or fsync a folder, and
    # readers already see the new file.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_failed(path: pathlib.Path, exc: OSError, had_file: bool, retry: str) -> CheckpointError:
    if exc.errno == errno.ENOSPC:
        problem, fix = "no space left on device", "free some space"
    else:
        problem, fix = exc.strerror or str(exc), "check that the folder is writable"
    kept = f"the previous {path.name} is intact" if had_file else "nothing was written"
    return CheckpointError(f"{problem} while writing {path}; {kept}; {fix}, then {retry}")


def _replace_file(path: pathlib.Path, data: bytes, retry: str) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never a mix.

    Temporary files left in the folder by a killed write are removed after a successful one
    (only one process writes to a run's folder).
    """
    had_file = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, _default_file_mode())
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _write_failed(path, exc, had_file, retry) from exc
    _fsync_folder(path.parent)
    for stale in path.parent.glob(glob.escape(f".{path.name}.") + "*.tmp"):
        stale.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically writes `obj` as indented JSON (metrics.json, results.json, ...).

    Args:
      path: the file to write; its folder is created if missing.
      obj: dicts, lists, tuples, str, numbers, bool and None; numpy/JAX numbers and arrays
        become Python numbers and lists, and NaN or infinite floats become null (`jsonable`).

    Raises:
      TypeError: `obj` holds something JSON cannot represent.
      CheckpointError: the file could not be written (disk full, read-only folder); any
        previous version of it is left intact.
    """
    text = json_text(obj, str(path), indent=2) + "\n"
    _replace_file(pathlib.Path(path), text.encode("utf-8"), "run the command again")


def writable(path, overwrite: bool) -> pathlib.Path:
    """`path` as a Path; OutputExistsError if it exists and `overwrite` is False (the rule of
    every export)."""
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; choose another file name, or set `overwrite` "
                                "to replace it")
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically writes `data` to `path` (predictions, exported weights), as `write_json` does.

    Raises:
      CheckpointError: the file could not be written; any previous version is left intact.
    """
    _replace_file(pathlib.Path(path), data, "run the command again")


# ------------------------------------------------------------------ checkpoints


def _sha256(arrays: Mapping[str, np.ndarray]) -> str:
    # safetensors checks the file's structure but not its bytes: a flipped bit in an array
    # would load silently as a different weight.
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(json.dumps([name, array.dtype.name, list(array.shape)]).encode("utf-8"))
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _leaf_array(name: str, leaf: Any) -> np.ndarray:
    try:
        array = np.asarray(leaf, order="C")  # safetensors writes the raw buffer, ignoring strides
    except (TypeError, ValueError) as exc:
        raise TypeError(f"leaf {name or '<root>'} cannot be stored: {exc}") from exc
    if array.dtype.kind not in "biuf" or array.dtype.itemsize > 8:
        raise TypeError(
            f"leaf {name or '<root>'} has dtype {array.dtype} (from {type(leaf).__name__}), but "
            "a checkpoint holds bool, integer and float arrays of up to 64 bits; convert it or "
            "move it into the metadata"
        )
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def save_checkpoint(
    directory: str | os.PathLike, tree: Any, metadata: Mapping[str, Any]
) -> pathlib.Path:
    """Atomically writes `tree` and `metadata` to `directory/checkpoint.safetensors`.

    One tensor per leaf, named by its pytree path (`jax.tree_util.keystr`, e.g.
    `['params'][0]['w']`); the header holds the format tag, `metadata` as JSON and a sha256 of
    the arrays. The file is written next to the old one, flushed to disk and renamed over it,
    so a crash or a full disk at any point leaves the previous checkpoint intact.

    Args:
      directory: the run's folder; created if missing.
      tree: a pytree of arrays (numpy or fully addressable JAX) of bool, integer or float
        dtype, e.g. `{"train_state": ..., "best": ...}` with an optax state inside.
      metadata: a JSON-able dict (numpy/JAX numbers and arrays are converted, NaN and
        infinities become None).

    Returns:
      The path of the checkpoint file.

    Raises:
      TypeError: a leaf or the metadata cannot be stored.
      ValueError: two leaves have the same path string.
      CheckpointError: the file could not be written (e.g. no space left on device).
    """
    directory = pathlib.Path(directory)
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {}
    for key_path, leaf in leaves:
        name = jax.tree_util.keystr(key_path)
        arrays[name] = _leaf_array(name, leaf)
    if len(arrays) != len(leaves):
        raise ValueError("two leaves of the tree have the same path string; use distinct keys")
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "metadata": json_text(metadata, "metadata"),
        "sha256": _sha256(arrays),
    }
    path = directory / CHECKPOINT_FILE
    retry = f"resume with --resume {directory}" if path.exists() else "start the run again"
    _replace_file(path, safetensors.numpy.save(arrays, metadata=header), retry)
    return path


def _bad_file(path: pathlib.Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is corrupt or not a jaxnet checkpoint: {reason}; move it aside and start the "
        "run again, or pass the folder of another jaxnet checkpoint"
    )


def _missing(path: pathlib.Path) -> CheckpointError:
    folder = path.parent
    if (folder / _OLD_CHECKPOINT_FILE).exists():
        return CheckpointError(
            f"{folder} holds {_OLD_CHECKPOINT_FILE}, a checkpoint in the format of jaxnet 0.1, "
            "which this version no longer reads; to continue, train again: the run's settings "
            f'are under "config" in {folder / "metrics.json"}, so rerun `jaxnet train` with '
            "them into a new --out folder"
        )
    sweep_files = [name for name in ("results.json", "best.json") if (folder / name).exists()]
    if sweep_files:  # what `jaxnet sweep` writes: scores of many runs, no trained network
        return CheckpointError(
            f"{folder} is the output folder of a jaxnet sweep ({', '.join(sweep_files)}), which "
            "keeps the scores of its runs but no trained network; train the setting you want "
            f"(the best one is in {folder / 'best.json'}) with `jaxnet train --out DIR`, and "
            "pass that folder"
        )
    return CheckpointError(
        f"no checkpoint found at {path}; pass the folder of an earlier `jaxnet train` run, "
        "or start a fresh run"
    )


def _read(directory: str | os.PathLike, *, arrays: bool) -> tuple[pathlib.Path, dict, dict]:
    """(path, metadata, arrays by path string) of a checkpoint; the arrays only if asked."""
    path = pathlib.Path(directory) / CHECKPOINT_FILE
    try:
        with safe_open(path, framework="numpy") as file:
            header = file.metadata() or {}
            if header.get("format") != _FORMAT:
                raise _bad_file(path, "a safetensors file without jaxnet's format tag")
            if header.get("version") != _VERSION:
                raise CheckpointError(
                    f"{path} has jaxnet checkpoint format version {header.get('version')}, but "
                    f"this jaxnet reads version {_VERSION}; upgrade jaxnet to read it"
                )
            try:
                metadata = json.loads(header.get("metadata", ""))
            except ValueError:
                metadata = None
            if not isinstance(metadata, dict):
                raise _bad_file(path, "its metadata is not a JSON object")
            tensors = {name: file.get_tensor(name) for name in file.keys()} if arrays else {}
    except FileNotFoundError as exc:
        raise _missing(path) from exc
    except SafetensorError as exc:
        reason = f"it is cut short, damaged or not a safetensors file (safetensors: {exc})"
        raise _bad_file(path, reason) from exc
    except OSError as exc:
        raise CheckpointError(
            f"cannot read {path} ({exc}); check that it is a file you may read"
        ) from exc
    if arrays and _sha256(tensors) != header.get("sha256"):
        raise _bad_file(path, "its arrays do not match the sha256 recorded when it was saved")
    return path, metadata, tensors


def _listing(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... and {len(items) - _MAX_LISTED} more"
    return shown


def load_checkpoint(directory: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Reads `directory/checkpoint.safetensors` back into the structure of `template`.

    The format tag and the arrays' sha256 are checked, then every leaf's path, shape and
    dtype against `template`; all mismatches are reported together.

    Args:
      directory: the folder given to `save_checkpoint`.
      template: a pytree like the saved one (e.g. freshly initialised state) whose leaves are
        arrays; only their shapes and dtypes are read.

    Returns:
      `(tree, metadata)`: `tree` has `template`'s structure with numpy arrays as leaves
      (moving them to devices is up to the caller); `metadata` is the saved dict.

    Raises:
      CheckpointError: the file is missing, in jaxnet 0.1's format, corrupt, not a jaxnet
        checkpoint, or does not fit `template`.
    """
    path, metadata, arrays = _read(directory, arrays=True)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(key_path) for key_path, _ in leaves]
    problems = []
    if missing := [name or "<root>" for name in names if name not in arrays]:
        problems.append(f"leaves missing from the file: {_listing(missing)}")
    if unexpected := [name or "<root>" for name in sorted(set(arrays) - set(names))]:
        problems.append(f"leaves in the file but not in the model: {_listing(unexpected)}")
    for name, (_, leaf) in zip(names, leaves, strict=True):
        array = arrays.get(name)
        if array is None:
            continue
        if array.shape != tuple(leaf.shape):
            problems.append(
                f"{name} has shape {array.shape} in the file but {tuple(leaf.shape)} in the model"
            )
        elif array.dtype != leaf.dtype:
            problems.append(
                f"{name} has dtype {array.dtype} in the file but {leaf.dtype} in the model"
            )
    if problems:
        raise CheckpointError(
            f"{path} does not fit this model: {_listing(problems, '; ')}; was it saved with "
            "a different `hidden`, data or optimizer? Pass the settings it was trained "
            "with, or start a fresh run in a new folder"
        )
    return jax.tree_util.tree_unflatten(treedef, [arrays[name] for name in names]), metadata


def load_metadata(directory: str | os.PathLike) -> dict:
    """Reads only the metadata of `directory/checkpoint.safetensors` (its header, not arrays).

    The arrays and their sha256 are not read; `load_checkpoint` checks them.

    Args:
      directory: the folder given to `save_checkpoint`.

    Returns:
      The metadata dict given to `save_checkpoint`.

    Raises:
      CheckpointError: the file is missing, in jaxnet 0.1's format, corrupt or not a jaxnet
        checkpoint.
    """
    return _read(directory, arrays=False)[1]
