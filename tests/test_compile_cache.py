"""The jaxnet command's persistent compilation cache: where it lives, how it is turned off, that
a second identical run compiles nothing (counted with jax.monitoring's cache events, not
timed), that fit's programs kept as executables (`jaxnet.executables`) give the same run and
a corrupt one is recompiled, and that a folder it cannot write never fails a run."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import subprocess_env

from jaxnet import executables
from jaxnet.cli import build_parser, cache, main

# A short run of the real command: digits, a small net, one epoch.
TRAIN = ["train", "--epochs", "1", "--layers", "2", "--hidden", "16", "--quiet"]

# Runs `jaxnet ARGV` in a fresh process, counting JAX's persistent-cache events.
_CHILD = """
import collections, json, sys
import jax
from jaxnet.cli import main
events = collections.Counter()
jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))
jax.monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: events.update([name]))
code = main(sys.argv[1:])
print(json.dumps({"code": code, "hits": events["/jax/compilation_cache/cache_hits"],
                  "misses": events["/jax/compilation_cache/cache_misses"],
                  "lowered": events["/jax/core/compile/jaxpr_to_mlir_module_duration"],
                  "loaded": events["/jaxnet/executables/loaded"],
                  "written": events["/jaxnet/executables/written"]}))
"""


def _run(tmp_path, argv, **env):
    """`jaxnet ARGV` in a child whose home and XDG cache are in tmp_path, with `env` set
    (None: unset); its exit status, cache hits and misses, and stderr."""
    child_env = subprocess_env(1)
    child_env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    for name, value in env.items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], env=child_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stderr": proc.stderr}


def _files(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _jax_files(folder: pathlib.Path) -> list[str]:
    """JAX's own cache files in `folder` (not jaxnet's kept executables)."""
    return [f for f in _files(folder) if not f.startswith(executables.FOLDER)]


def _args(argv=()):
    return build_parser().parse_args(["train", *argv])


# ----------------------------------------------------------------------- where it lives


def test_the_cache_folder_by_flag_environment_and_default(tmp_path):
    home_cache = pathlib.Path.home() / ".cache" / "jaxnet" / "jax"
    assert cache.cache_dir(_args(), {}) == home_cache
    assert cache.cache_dir(_args(), {"XDG_CACHE_HOME": "/x"}) == pathlib.Path("/x/jaxnet/jax")
    assert cache.cache_dir(_args(), {"XDG_CACHE_HOME": "rel"}) == home_cache  # XDG: ignored
    assert cache.cache_dir(_args(), {"JAXNET_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x"}) \
        == pathlib.Path("/c")
    for off in ("", " ", "off", "OFF"):
        assert cache.cache_dir(_args(), {"JAXNET_CACHE_DIR": off}) is None
    env = {"JAXNET_CACHE_DIR": "/c"}
    assert cache.cache_dir(_args(["--compile-cache", "/f"]), env) == pathlib.Path("/f")
    assert cache.cache_dir(_args(["--no-compile-cache"]), env) is None


def test_the_two_flags_exclude_each_other_and_every_command_takes_them(capsys):
    assert main(["train", "--compile-cache", "x", "--no-compile-cache"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    for argv in (["train"], ["sweep"], ["predict", "run", "--data", "x.csv", "--out", "p.csv"],
                 ["evaluate", "run"], ["export", "run", "w.safetensors"], ["gradcheck"]):
        assert build_parser().parse_args([*argv, "--no-compile-cache"]).no_compile_cache


def test_turned_off_it_leaves_jax_alone(tmp_path):
    # (In this process: a cache switched on here would stay on for the rest of the suite.)
    import jax

    before = jax.config.jax_compilation_cache_dir
    assert cache.enable(_args(["--no-compile-cache"]), {}) is None
    assert cache.enable(_args(), {"JAXNET_CACHE_DIR": ""}) is None
    assert jax.config.jax_compilation_cache_dir == before


# ----------------------------------------------------------------------- in a real run


@pytest.mark.slow
def test_a_second_identical_run_compiles_nothing(tmp_path):
    folder = tmp_path / "xdg" / "jaxnet" / "jax"  # the default, under XDG_CACHE_HOME
    first = _run(tmp_path, [*TRAIN, "--out", "a"], JAXNET_CACHE_DIR=None)
    assert first["code"] == 0 and first["lowered"] > 0 and first["written"] > 0
    written = _files(folder)
    assert len(_jax_files(folder)) == first["misses"]  # one file per program written
    second = _run(tmp_path, [*TRAIN, "--out", "b"], JAXNET_CACHE_DIR=None)
    assert second["code"] == 0 and second["misses"] == 0 and second["written"] == 0
    # Every program from a cache: JAX's (its "misses" count the programs it writes), or
    # fit's kept executables, loaded untraced (not in JAX's cache). A warm train loads
    # fit's programs and lowers nothing (no JAX program for its key or its hyperparameters).
    assert second["loaded"] == first["written"] and second["lowered"] == 0
    assert second["hits"] + second["loaded"] == first["hits"] + first["misses"] + first["written"]
    assert _files(folder) == written
    assert not (tmp_path / "home" / ".cache" / "jaxnet").exists()
    # Other commands' programs are JAX's to keep: a second `evaluate` takes every one from it.
    runs = [_run(tmp_path, ["evaluate", "a", "--overwrite", "--quiet"], JAXNET_CACHE_DIR=None)
            for _ in range(2)]
    assert runs[0]["code"] == runs[1]["code"] == 0 and runs[0]["misses"] > 0
    assert runs[1]["misses"] == 0 and runs[1]["hits"] == runs[0]["misses"] + runs[0]["hits"]


def _outputs(folder: pathlib.Path):
    from safetensors.numpy import load_file

    return (json.loads((folder / "metrics.json").read_text())["history"],
            load_file(folder / "checkpoint.safetensors"))


@pytest.mark.slow
@pytest.mark.x64
def test_kept_executables_give_the_same_run_and_a_corrupt_one_is_recompiled(tmp_path):
    # Three epochs: the first call runs one epoch, the second a chunk (`train.make_epochs`).
    argv = ["train", "--epochs", "3", "--layers", "2", "--hidden", "8", "--dtype", "float64",
            "--quiet"]
    folder = tmp_path / "c"
    runs = {"plain": _run(tmp_path, [*argv, "--no-compile-cache", "--out", "plain"])}
    stale = folder / executables.FOLDER / "epochs-000000000000-0.xla"  # another jaxnet's
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"{}\n")
    for name in ("cold", "warm"):
        runs[name] = _run(tmp_path, [*argv, "--compile-cache", str(folder), "--out", name])
    kept = sorted((folder / executables.FOLDER).glob("*.xla"))
    assert not stale.exists()  # removed when the cold run wrote its programs
    assert [p.name.split("-")[0] for p in kept] == ["epochs", "evaluate", "fresh_state"]
    assert runs["plain"]["loaded"] == runs["plain"]["written"] == 0
    assert runs["cold"]["written"] == 3 and runs["cold"]["loaded"] == 0
    assert runs["warm"]["loaded"] == 3 and runs["warm"]["written"] == 0
    chunk = next(p for p in kept if p.name.startswith("epochs-"))
    raw = bytearray(chunk.read_bytes())
    raw[-100] ^= 0xFF  # one bit pattern changed inside the executable
    chunk.write_bytes(bytes(raw))
    runs["corrupt"] = _run(tmp_path, [*argv, "--compile-cache", str(folder), "--out", "corrupt"])
    assert runs["corrupt"]["loaded"] == 2 and runs["corrupt"]["written"] == 1  # replaced
    assert "Traceback" not in runs["corrupt"]["stderr"]
    assert chunk.read_bytes() != bytes(raw)
    history, arrays = _outputs(tmp_path / "plain")
    assert len(history) == 3
    for name in ("cold", "warm", "corrupt"):
        other_history, other = _outputs(tmp_path / name)
        assert other_history == history
        assert other.keys() == arrays.keys()
        for k in arrays:  # bitwise
            np.testing.assert_array_equal(other[k], arrays[k], err_msg=f"{name}: {k}")


@pytest.mark.slow
def test_turned_off_by_the_environment_it_writes_nothing(tmp_path):
    run = _run(tmp_path, [*TRAIN, "--out", "a"], JAXNET_CACHE_DIR="")
    assert run["code"] == 0 and run["hits"] == run["misses"] == 0
    assert not (tmp_path / "xdg" / "jaxnet").exists()
    assert not (tmp_path / "home" / ".cache" / "jaxnet").exists()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_folder_trains_uncached_with_one_note(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    monkeypatch.chdir(tmp_path)
    try:
        # In this process: a folder it cannot write leaves JAX's settings untouched.
        assert main([*TRAIN[:-1], "--compile-cache", str(folder), "--out", "a"]) == 0
    finally:
        folder.chmod(0o700)
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if "compilation cache" in line]
    assert notes == [f"note: compilation cache off: cannot write to {folder} (Permission "
                     "denied); set JAXNET_CACHE_DIR to a writable folder, or JAXNET_CACHE_DIR= "
                     "to turn the cache off"]
    assert "Traceback" not in err and "test accuracy" in out
    assert not _files(folder)


def test_a_file_in_place_of_the_folder_leaves_the_cache_off_with_a_note(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cache.enable(_args(["--compile-cache", str(blocker / "jax")]), {}) is None
    assert capsys.readouterr().err.startswith(f"note: compilation cache off: cannot write to "
                                              f"{blocker / 'jax'} (")
    assert cache.enable(_args(["--compile-cache", str(blocker / "jax"), "--quiet"]), {}) is None
    assert capsys.readouterr().err == ""


def test_an_output_structure_is_rebuilt_from_json_and_only_from_known_node_kinds():
    import jax
    import optax

    from jaxnet import train

    state = train.TrainState(({"w": 0, "b": 1},), ({"mean": 0, "var": 1},),
                             optax.adam(1e-3).init({"w": np.zeros(2)}), 0, 0, {})
    tree = jax.tree.structure((state, None, [0]))
    described = json.loads(json.dumps(executables._describe(tree)))
    assert executables._rebuild(described) == tree
    for bad in (["os:system", None, []], ["jaxnet.train:improves", None, []]):
        with pytest.raises(ValueError):
            executables._rebuild(bad)
    with pytest.raises(TypeError):  # a node kind it would not rebuild: not described
        executables._describe(jax.tree.structure(jax.tree_util.Partial(print)))


def test_a_program_prepared_in_a_thread_is_the_one_called_and_its_error_surfaces(tmp_path):
    import jax
    import jax.numpy as jnp

    x = jnp.arange(3.0)
    executables.keep_in(tmp_path)
    try:
        double = executables.Kept(lambda a: (2 * a,), "test_double", "v1", None)
        assert not double.on_disk(x)
        double.prepare(jax.ShapeDtypeStruct(x.shape, x.dtype))  # from shapes alone
        np.testing.assert_array_equal(double(x)[0], [0.0, 2.0, 4.0])
        assert len(double._programs) == 1  # the call used the prepared program
        assert [p.name.split("-")[0] for p in tmp_path.glob("*.xla")] == ["test_double"]
        assert double.on_disk(x)

        def broken(a):
            raise ValueError("broken program")

        # The thread traces under the caller's settings, here its own x64.
        with jax.enable_x64(True):
            wide = jnp.arange(3.0, dtype=jnp.float64)
            double.prepare(jax.ShapeDtypeStruct(wide.shape, wide.dtype))
            assert double(wide)[0].dtype == jnp.float64

        bad = executables.Kept(broken, "test_broken", "v1", None)
        bad.prepare(x)
        for _ in range(2):  # the thread's error, then the same from a compile of its own
            with pytest.raises(ValueError, match="broken program"):
                bad(x)
    finally:
        executables.keep_in(None)


@pytest.mark.slow
def test_the_programs_a_cold_fit_prepares_are_the_ones_it_calls(tmp_path, monkeypatch):
    # The chunked path without class weights is the command's test above (3 written). Here
    # one epoch per call and a class-weighted evaluation: a program `fitting._start_programs`
    # prepared with other arguments than the loop's calls would be compiled and written twice.
    import jax

    from jaxnet import TrainConfig, fitting, train

    written = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: written.append(name) if name == executables.WRITTEN_EVENT else None)
    monkeypatch.setattr(train, "CHUNK_FLOPS", 0)  # every epoch a call of its own
    config = TrainConfig(hidden=(13,), epochs=2, class_weight="balanced")  # a shape of its own
    executables.keep_in(tmp_path)
    try:
        fitting.fit(config)
    finally:
        executables.keep_in(None)
    kept = sorted(p.name.split("-")[0] for p in tmp_path.glob("*.xla"))
    assert kept == ["epoch", "evaluate", "fresh_state"]
    assert len(written) == 3
