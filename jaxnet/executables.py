"""Fit's compiled programs kept on disk as XLA executables, so a warm run skips tracing them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import math
import os
import pathlib
import tempfile
import threading
from collections.abc import Callable

import jax

# JAX's persistent compilation cache still needs each program traced and lowered to compute
# its key (~0.35 s for digits' chunk program on 2 cores, of ~0.6 s in all); a program kept
# here is loaded without either. Off (plain jit) until `keep_in` names a folder: the jaxnet
# command does, in its compilation cache (`jaxnet.cli.cache`).
_FORMAT = 1
FOLDER = "executables"  # in the command's compilation cache folder
_state = {"folder": None}
_jax_cache_hits = threading.local()
_global_setting = threading.Lock()
LOADED_EVENT = "/jaxnet/executables/loaded"  # jax.monitoring event per program loaded
WRITTEN_EVENT = "/jaxnet/executables/written"


def keep_in(folder) -> None:
    """Keep fit's programs in `folder` (created on first write); None: plain jit."""
    _state["folder"] = None if folder is None else pathlib.Path(folder)


def keeping() -> bool:
    """Whether fit's programs are kept (`keep_in` named a folder)."""
    return _state["folder"] is not None


def _count_hits(event, **kwargs):
    del kwargs
    if event == "/jax/compilation_cache/cache_hits":
        _jax_cache_hits.n = getattr(_jax_cache_hits, "n", 0) + 1


jax.monitoring.register_event_listener(_count_hits)


@functools.cache
def _environment() -> str:
    """What a kept program depends on besides its own description and JAX's settings:
    JAX, jaxlib, optax and NumPy, the device, and every byte of jaxnet's source (so an
    edited jaxnet never loads a program of its older self)."""
    import jaxlib
    import numpy
    import optax

    device = jax.devices()[0]
    source = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        source.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return json.dumps([jax.__version__, jaxlib.__version__, optax.__version__,
                       numpy.__version__, device.platform,
                       device.client.platform_version, device.device_kind, source.hexdigest()])


def _environment_tag() -> str:
    """A short hash of `_environment()`, in each file's name: files with another tag were
    written by another jaxnet, JAX or device and are removed when a program is written."""
    return hashlib.sha256(_environment().encode()).hexdigest()[:12]


def _signature(leaves) -> tuple:
    out = []
    for leaf in leaves:
        aval = jax.typeof(leaf)
        out.append((tuple(aval.shape), str(aval.dtype), bool(aval.weak_type)))
    return tuple(out)


class Kept:
    """`fun` (a function of positional arguments) jitted on one device, its compiled
    programs kept in `keep_in`'s folder and loaded from there by later processes, with no
    tracing; with no folder, `plain` runs (default: `jax.jit(fun, donate_argnums=...)`).

    A program's file is named by the SHA-256 of everything that shapes it: `name` and
    `description` (the caller's: e.g. the program config and the training set's size), the
    arguments' tree structure, shapes and dtypes, and `_environment()`. It holds a JSON
    header (the blob's SHA-256 and the output's tree structure) and JAX's serialized
    executable. A missing, unreadable, corrupt or mismatched file falls back to compiling,
    and the program compiled then replaces it.

    That compile is a real one: its module is named `jaxnet_kept_<name>` and JAX's own
    cache does not keep it, since XLA's CPU client serializes an executable that it loaded
    from JAX's cache incompletely (it fails when run). Should one still come from JAX's
    cache, it is used but not written.

    `deserialize_and_load` needs the output's tree structure: `out_tree(*args)` gives it
    from the arguments (leaves of any value); None: it is rebuilt from the JSON description
    in the file (`_describe`: tuples, lists, dicts, None and jaxnet's or optax's named
    tuples only), never unpickled.
    """

    def __init__(self, fun, name: str, description: str, out_tree: Callable | None, *,
                 donate_argnums=(), plain=None):
        def kept(*args):
            return fun(*args)

        kept.__name__ = kept.__qualname__ = f"jaxnet_kept_{name}"
        self.jitted = jax.jit(kept, donate_argnums=donate_argnums)
        self.plain = jax.jit(fun, donate_argnums=donate_argnums) if plain is None else plain
        self.name, self.description, self.out_tree = name, description, out_tree
        self._programs: dict = {}  # (tree, signature) -> program, or a Future of one

    def __call__(self, *args):
        folder = _state["folder"]
        if folder is None:
            return self.plain(*args)
        key = _key(args)
        program = self._programs.get(key)
        if isinstance(program, concurrent.futures.Future):
            try:
                program = program.result()  # what `prepare` started; its error, if any
            except BaseException:
                del self._programs[key]  # a later call tries again
                raise
            self._programs[key] = program
        if program is None:
            program = self._programs[key] = self._load_or_compile(folder, args, *key)
        return program(*args)

    def prepare(self, *args) -> None:
        """Starts loading or compiling the program for `args` in a thread of its own, so
        that it overlaps other work (XLA's compile and load release the GIL); the first
        call with arguments of the same structure, shapes and dtypes waits for it and
        raises its error, if any. `args`' leaves may be arrays or `jax.ShapeDtypeStruct`s.
        The thread traces under this thread's x64, matmul precision and promotion settings.
        Does nothing without a folder (plain jit compiles on the first call)."""
        folder = _state["folder"]
        if folder is None:
            return
        key = _key(args)
        if key not in self._programs:
            self._programs[key] = _pool().submit(_in_settings(_settings(), self._load_or_compile),
                                                 folder, args, *key)

    def on_disk(self, *args) -> bool:
        """Whether a file for `args` is in the folder (it may still prove unusable)."""
        folder = _state["folder"]
        return folder is not None and self._path(folder, *_key(args)).is_file()

    def _path(self, folder, tree, signature) -> pathlib.Path:
        # The settings that change lowering are read now: a process may switch them.
        text = json.dumps([_FORMAT, self.name, self.description, str(tree), signature,
                           _environment(), bool(jax.config.jax_enable_x64),
                           str(jax.config.jax_default_matmul_precision)])
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return folder / f"{self.name}-{_environment_tag()}-{digest}.xla"

    def _load_or_compile(self, folder, args, tree, signature):
        from jax.experimental import serialize_executable

        path = self._path(folder, tree, signature)
        out_tree = None if self.out_tree is None else self.out_tree(*args)
        try:
            raw = path.read_bytes()
            header, blob = raw.split(b"\n", 1)
            meta = json.loads(header)
            expected = _rebuild(meta["described"]) if out_tree is None else out_tree
            if (meta.get("format") == _FORMAT and meta.get("out_tree") == str(expected)
                    and meta.get("sha256") == hashlib.sha256(blob).hexdigest()):
                program = serialize_executable.deserialize_and_load(blob, tree, expected)
                jax.monitoring.record_event(LOADED_EVENT)
                return program
        except Exception:  # unreadable, corrupt, or from another JAX: compile it afresh
            pass
        hits = getattr(_jax_cache_hits, "n", 0)
        lowered = self.jitted.lower(*args)
        with _not_in_jax_cache():
            program = lowered.compile()
        if getattr(_jax_cache_hits, "n", 0) == hits and (
                out_tree is None or str(program.out_tree) == str(out_tree)):
            _write(path, program, program.out_tree)
        return program


def _key(args) -> tuple:
    leaves, tree = jax.tree.flatten((args, {}))
    return tree, _signature(leaves)


def _settings() -> tuple:
    """This thread's values of the JAX settings that shape a trace: a thread sees another's
    values only where they are global, and the caller's may be its own
    (`with jax.enable_x64(True):`)."""
    config = jax.config
    return (config.jax_enable_x64, config.jax_default_matmul_precision,
            config.jax_numpy_dtype_promotion, config.jax_numpy_rank_promotion)


def _in_settings(settings: tuple, fun: Callable) -> Callable:
    """`fun` run under `settings` (`_settings()`), in whichever thread calls it."""
    x64, precision, dtype_promotion, rank_promotion = settings

    def run(*args):
        with (jax.enable_x64(x64), jax.default_matmul_precision(precision),
              jax.numpy_dtype_promotion(dtype_promotion),
              jax.numpy_rank_promotion(rank_promotion)):
            return fun(*args)

    return run


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    # Fit keeps three programs; more threads than cores would only slow the longest one.
    return concurrent.futures.ThreadPoolExecutor(max_workers=min(3, os.cpu_count() or 1),
                                                 thread_name_prefix="jaxnet-executables")


@contextlib.contextmanager
def _not_in_jax_cache():
    """JAX's cache keeps no program compiled inside (see `Kept`). JAX's setting for it has
    a thread-local form, not public: the programs `Kept.prepare` compiles in threads must
    not keep the main thread's programs out of JAX's cache. Without it (another JAX), the
    global setting is changed, one compile at a time."""
    try:
        from jax._src.config import persistent_cache_min_compile_time_secs as setting
    except ImportError:
        setting = None
    if setting is not None:
        with setting(math.inf):
            yield
        return
    with _global_setting:
        keep = jax.config.jax_persistent_cache_min_compile_time_secs
        jax.config.update("jax_persistent_cache_min_compile_time_secs", math.inf)
        try:
            yield
        finally:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", keep)


def _write(path: pathlib.Path, program, out_tree) -> None:
    """Writes `program` to `path` atomically; a folder it cannot write is left alone."""
    from jax.experimental import serialize_executable

    try:
        described = _describe(out_tree)
        if str(_rebuild(described)) != str(out_tree):
            return
        blob = serialize_executable.serialize(program)[0]
        header = json.dumps({"format": _FORMAT, "out_tree": str(out_tree),
                             "described": described,
                             "sha256": hashlib.sha256(blob).hexdigest()}).encode()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header + b"\n" + blob)
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
        jax.monitoring.record_event(WRITTEN_EVENT)
        for old in path.parent.glob("*.xla"):  # programs no process like this one can load
            if old.name.split("-")[1:2] != [_environment_tag()]:
                old.unlink(missing_ok=True)
    except (OSError, ValueError, TypeError, NotImplementedError):
        pass


_BUILTIN_NODES = {"tuple": tuple, "list": list, "dict": dict, "NoneType": type(None)}
_NAMED_TUPLE_PACKAGES = ("jaxnet", "optax")


def _describe(tree):
    """A JSON description of the tree structure `tree`: "*" for a leaf, else [kind, dict
    keys or None, children], kind a builtin's name or "module:qualname" of a named tuple
    from jaxnet or optax. Raises TypeError for any other node."""
    data = tree.node_data()
    if data is None:
        return "*"
    kind, aux = data
    children = [_describe(child) for child in tree.children()]
    if kind in _BUILTIN_NODES.values():
        return [kind.__name__, list(aux) if kind is dict else None, children]
    if (issubclass(kind, tuple) and hasattr(kind, "_fields")
            and kind.__module__.split(".")[0] in _NAMED_TUPLE_PACKAGES):
        return [f"{kind.__module__}:{kind.__qualname__}", None, children]
    raise TypeError(f"no JSON description for a {kind} node")


def _rebuild(described):
    """The tree structure `_describe` described; only the node kinds it writes."""
    import importlib

    if described == "*":
        return jax.tree.structure(0)
    name, aux, children = described
    kind = _BUILTIN_NODES.get(name)
    if kind is None:
        module, _, qualname = name.partition(":")
        if module.split(".")[0] not in _NAMED_TUPLE_PACKAGES:
            raise ValueError(f"unexpected node kind {name!r}")
        kind = importlib.import_module(module)
        for part in qualname.split("."):
            kind = getattr(kind, part)
        if not (isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields")):
            raise ValueError(f"{name!r} is not a named tuple")
    return jax.tree_util.PyTreeDef.from_node_data_and_children(
        jax.tree_util.default_registry, (kind, aux), [_rebuild(c) for c in children])

