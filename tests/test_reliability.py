"""Nothing lost, nothing silently ignored: output folders, flag combinations, exact resume,
data fingerprints, the divergence guard, interrupts, kills and full disks.

Covered elsewhere, not repeated here: a checkpoint write that fails (full disk, at any
point) leaves the previous checkpoint loadable and no temporary file behind
(tests/test_checkpoint.py::test_full_disk_keeps_previous_checkpoint,
::test_failed_first_write_leaves_nothing, ::test_interrupted_write_removes_temp_file, and
tests/test_train.py::test_interrupted_checkpoint_write_keeps_the_previous_one); temporary
files left by a killed write are removed by the next write
(tests/test_checkpoint.py::test_stale_temp_files_of_a_killed_write_are_removed).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from conftest import one_line_error, popen_as_at_a_terminal, run_python, subprocess_env

import jaxnet
from jaxnet import checkpoint as ckpt
from jaxnet import fitting, train
from jaxnet.cli import common, main
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset, random_data
from jaxnet.errors import ConfigError

TINY = ["--layers", "2", "--hidden", "8", "--quiet"]
SMALL = {"hidden": (16,), "epochs": 4}


def _checkpoint_arrays(run):
    return safetensors.numpy.load_file(str(run / ckpt.CHECKPOINT_FILE))


def _assert_same_checkpoint(run, reference):
    """Every saved array (state, optimizer, best params, preprocessing) equal bit for bit,
    and the same record."""
    got, want = _checkpoint_arrays(run), _checkpoint_arrays(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    got_meta, want_meta = ckpt.load_metadata(run), ckpt.load_metadata(reference)
    assert got_meta["history"] == want_meta["history"]
    assert got_meta["best_epoch"] == want_meta["best_epoch"]


@pytest.fixture(scope="module")
def digits():
    return fitting.load_data(TrainConfig())


# ------------------------------------------------------------------ 1. output folders


@pytest.mark.slow
def test_out_holding_a_run_is_refused_and_overwrite_replaces_it_whole(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    saved = {name: (run / name).read_bytes() for name in ("checkpoint.safetensors", "metrics.json")}
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 2
    err = one_line_error(capsys)
    assert f"--out {run} already holds a run (checkpoint.safetensors, metrics.json)" in err
    assert f"continue it with --resume {run}" in err and "--overwrite" in err
    assert {name: (run / name).read_bytes() for name in saved} == saved  # untouched

    (run / "evaluation.json").write_text("{}")  # left by `jaxnet evaluate` of the old run
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1
    assert ckpt.load_metadata(run)["epoch"] == 1
    assert not (run / "evaluation.json").exists()  # nothing of the old run is left


@pytest.mark.parametrize("marker", common.RUN_MARKERS)
def test_any_run_file_marks_a_folder_as_taken(tmp_path, capsys, marker):
    (tmp_path / marker).write_text("{}")
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 2
    assert f"already holds a run ({marker})" in one_line_error(capsys)
    assert sorted(os.listdir(tmp_path)) == [marker]


@pytest.mark.slow
def test_sweep_output_is_protected_the_same_way(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')
    argv = ["sweep", "--lr", "1e-3,1e-2", "--epochs", "1", *TINY, "--out", str(out)]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"--out {out} already holds a run (results.json)" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == '{"old": true}'
    assert main([*argv, "--overwrite"]) == 0
    assert "old" not in json.loads((out / "results.json").read_text())


# ------------------------------------------------------------------ 2. flags refused with --seeds


@pytest.mark.parametrize("flags", [
    ["--patience", "2"], ["--max-epochs", "5"], ["--devices", "1"],
    ["--coordinator", "localhost:1234"], ["--num-processes", "2"], ["--process-id", "0"],
    ["--resume", "somewhere"],
])
def test_flags_that_seeds_cannot_honour_are_refused(tmp_path, capsys, flags):
    assert main(["train", "--seeds", "3", "--epochs", "2", *TINY, *flags,
                 "--out", str(tmp_path / "run")]) == 2
    err = one_line_error(capsys)
    assert flags[0] in err, err
    assert not (tmp_path / "run").exists()


# That `train --seeds` says how many epochs its seeds trained: tests/test_ensemble.py::
# test_cli_train_seeds_then_predict_evaluate_export (the same command).


# ------------------------------------------------------------------ 3. exact resume per schedule


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["constant", "step"])
def test_resuming_with_more_epochs_equals_the_uninterrupted_run(digits, tmp_path, schedule):
    config = TrainConfig(**SMALL, lr_schedule=schedule, lr_decay=0.8)
    full = fitting.fit(config, digits, out_dir=tmp_path / "full")
    fitting.fit(dataclasses.replace(config, epochs=2), digits, out_dir=tmp_path / "resumed")
    resumed = fitting.fit(config, digits, out_dir=tmp_path / "resumed", resume=True)
    chex.assert_trees_all_equal(resumed.final, full.final)
    assert resumed.history == full.history
    _assert_same_checkpoint(tmp_path / "resumed", tmp_path / "full")


class _Interrupt(Exception):
    pass


def _stop_after(epochs):
    def on_epoch(row):
        if row["epoch"] == epochs:
            raise _Interrupt
    return on_epoch


@pytest.mark.slow
def test_cosine_resumes_exactly_with_its_own_length_and_refuses_another(digits, tmp_path, capsys):
    config = TrainConfig(**SMALL, lr_schedule="cosine")
    fitting.fit(config, digits, out_dir=tmp_path / "full")
    # Stopped after epoch 1 (its checkpoint is written; on small data later calls run and
    # save several epochs at once, the first call one).
    with pytest.raises(_Interrupt):
        fitting.fit(config, digits, out_dir=tmp_path / "cut", on_epoch=_stop_after(1))
    assert ckpt.load_metadata(tmp_path / "cut")["epoch"] == 1
    for epochs in (3, 8):
        with pytest.raises(ConfigError, match=r"cosine schedule laid over 4 epochs; resuming "
                           rf"with epochs={epochs} would stretch it"):
            fitting.fit(dataclasses.replace(config, epochs=epochs), digits,
                    out_dir=tmp_path / "cut", resume=True)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--epochs", "8"]) == 2
    assert "resume with --epochs 4, or start a fresh run" in one_line_error(capsys)
    fitting.fit(config, digits, out_dir=tmp_path / "cut", resume=True)
    _assert_same_checkpoint(tmp_path / "cut", tmp_path / "full")


@pytest.mark.slow
def test_resuming_a_run_that_stopped_early_trains_no_further(digits, tmp_path):
    config = TrainConfig(hidden=(16,), lr=1e-2, epochs=60, patience=2)
    first = fitting.fit(config, digits, out_dir=tmp_path)
    assert first.metrics["epochs_run"] < 60 and first.message.startswith("early stopping")
    before = _checkpoint_arrays(tmp_path)
    again = fitting.fit(config, digits, out_dir=tmp_path, resume=True)
    assert again.message == first.message
    assert again.history == first.history
    chex.assert_trees_all_equal(again.params, first.params)
    after = _checkpoint_arrays(tmp_path)
    assert all(np.array_equal(after[k], before[k]) for k in before)


# ------------------------------------------------------------------ 4. data fingerprint


@pytest.mark.slow
def test_resuming_on_changed_data_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 5)), np.arange(120) % 3
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "npz", "--data", str(path), *TINY, "--epochs", "2",
                 "--out", str(run)]) == 0
    x[17, 3] += 1e-3  # one value changes behind the same path
    np.savez(path, x=x, y=y)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert f"was trained on different data than npz {path} holds now" in err
    assert "start a fresh run" in err
    assert ckpt.load_metadata(run)["epoch"] == 2  # not touched


# ------------------------------------------------------------------ 5. the divergence guard


def test_is_finite_looks_at_params_batchnorm_statistics_and_optimizer_state():
    config = TrainConfig(hidden=(4,))
    ts = train.init_train_state(config, (3, 4, 2), train.make_optimizer(config, 10))
    assert bool(train.is_finite(ts))

    def poisoned(tree, where, value):
        leaves, treedef = jax.tree.flatten(tree)
        leaves[where] = leaves[where].at[0].set(value)
        return jax.tree.unflatten(treedef, leaves)

    var_inf = (({**ts.bn_state[0], "var": ts.bn_state[0]["var"].at[1].set(jnp.inf)},))
    assert not bool(train.is_finite(ts._replace(bn_state=var_inf)))
    mean_nan = (({**ts.bn_state[0], "mean": ts.bn_state[0]["mean"].at[0].set(jnp.nan)},))
    assert not bool(train.is_finite(ts._replace(bn_state=mean_nan)))
    float_leaves = [i for i, leaf in enumerate(jax.tree.leaves(ts.opt_state))
                    if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.ndim]
    assert float_leaves  # Adam's moments
    for i in float_leaves:
        assert not bool(train.is_finite(ts._replace(opt_state=poisoned(ts.opt_state, i, jnp.inf))))
    assert not bool(train.is_finite(ts._replace(params=poisoned(ts.params, 0, -jnp.inf))))


@pytest.mark.x64
def test_is_finite_judges_each_float_dtype_in_its_own_precision():
    """Leaves of several float dtypes: a float64 value too large for float32 is still
    finite, and a non-finite value is found in whichever dtype holds it."""
    config = TrainConfig(hidden=(4,))
    ts = train.init_train_state(config, (3, 4, 2), train.make_optimizer(config, 10))
    huge = jnp.full(3, 1e300, jnp.float64)
    assert bool(train.is_finite(ts, {"f64": huge, "f16": jnp.ones(2, jnp.float16)}))
    assert not bool(train.is_finite(ts, {"f64": huge.at[1].set(jnp.nan)}))
    assert not bool(train.is_finite(ts, {"f64": huge, "f16": jnp.full(2, jnp.inf, jnp.float16)}))


@pytest.mark.slow
def test_fit_stops_when_only_the_running_variance_overflows():
    """Raw inputs near 1e20 (standardisation off): the batch variance overflows float32 to
    inf while the loss and the parameters stay finite (x / sqrt(inf) = 0). The guard must
    still stop the run, keeping the state from before the epoch."""
    base = random_data(d=8)
    data = Dataset(base.name, base.x_train * np.float32(1e20), base.y_train, None, None,
                   None, None, base.num_classes)
    config = TrainConfig(dataset="random", hidden=(16,), epochs=3, standardize=False,
                         batch_size=25, dropout=0.0)
    # What one unguarded epoch does: finite losses and params, an infinite running variance.
    prepared, _ = fitting.prepare(config, data)
    opt = train.make_optimizer(config, 50)
    ts0 = train.init_train_state(config, train.dims_for(config, prepared), opt)
    epoch = jax.jit(train.make_epoch(config, opt, 50, keep_finite=False))
    ts1, losses = epoch(ts0, jnp.asarray(prepared.x_train), jnp.asarray(prepared.y_train))
    assert np.all(np.isfinite(losses))
    chex.assert_tree_all_finite(ts1.params)
    assert not np.all(np.isfinite(ts1.bn_state[0]["var"]))

    result = fitting.fit(config, data)
    assert result.diverged and result.history == []
    assert "batchnorm statistics or optimizer state became non-finite" in result.message
    assert bool(train.is_finite(result.final))
    chex.assert_trees_all_equal(result.final.bn_state, ts0.bn_state)


# ------------------------------------------------------------------ 6. interrupts, kills, disks


KILL_EPOCHS = 30
KILL_ARGS = ["--layers", "2", "--hidden", "16", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run as the killed ones, in one go, in this process."""
    out = tmp_path_factory.mktemp("uninterrupted")
    config = TrainConfig(hidden=(16,), batch_size=8, epochs=KILL_EPOCHS)
    fitting.fit(config, out_dir=out)
    return out


def _start_training(cwd, run="run"):
    return popen_as_at_a_terminal(
        [sys.executable, "-m", "jaxnet", "train", "--epochs", str(KILL_EPOCHS), *KILL_ARGS,
         "--out", run], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env())


def _wait_for_first_checkpoint(proc, run):
    while not (run / ckpt.CHECKPOINT_FILE).exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


def _resume(cwd, run="run"):
    return run_python(["-m", "jaxnet", "train", "--resume", run, "--quiet"], cwd=cwd,
                      timeout=600)


@pytest.mark.slow
def test_sigkill_then_resume_equals_the_uninterrupted_run_bitwise(tmp_path, uninterrupted):
    proc = _start_training(tmp_path)
    _wait_for_first_checkpoint(proc, tmp_path / "run")
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = ckpt.load_metadata(tmp_path / "run")["epoch"]
    assert 1 <= done < KILL_EPOCHS, "the run ended before it was killed"
    resumed = _resume(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{KILL_EPOCHS} epochs (best" in resumed.stdout
    _assert_same_checkpoint(tmp_path / "run", uninterrupted)
    assert not [f for f in os.listdir(tmp_path / "run") if f.endswith(".tmp")]


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_prints_the_resume_command_and_exits_130(
        tmp_path, uninterrupted):
    """SIGINT reaches the process as KeyboardInterrupt. While XLA runs an epoch, Python
    handles it when that call returns: training stops between epochs."""
    proc = _start_training(tmp_path)
    _wait_for_first_checkpoint(proc, tmp_path / "run")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    done = ckpt.load_metadata(tmp_path / "run")["epoch"]
    assert err.strip().splitlines() == [
        f"interrupted; epoch {done} is saved in run; continue with: jaxnet train --resume run"]
    assert 1 <= done < KILL_EPOCHS, "the run ended before it was interrupted"
    assert jaxnet.load(tmp_path / "run").num_features == 64  # whole and usable
    assert not (tmp_path / "run" / "metrics.json").exists()  # the run did not finish
    resumed = _resume(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_checkpoint(tmp_path / "run", uninterrupted)


@pytest.mark.slow
def test_a_full_disk_during_training_says_so_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync_fails_from_the_second_epoch(fd):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 syncs the file and its folder; epoch 2 hits a full disk
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ckpt.os, "fsync", fsync_fails_from_the_second_epoch)
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "3", "--out", str(run)]) == 2
    err = one_line_error(capsys)
    assert (f"no space left on device while writing {run / ckpt.CHECKPOINT_FILE}; the previous "
            f"checkpoint.safetensors is intact; free some space, then resume with --resume {run}"
            ) in err
    monkeypatch.undo()
    assert ckpt.load_metadata(run)["epoch"] == 1
    assert jaxnet.load(run).num_features == 64
    assert sorted(os.listdir(run)) == [ckpt.CHECKPOINT_FILE]  # no temp file, no metrics


# ------------------------------------------------------------------ 7. --version


@pytest.mark.slow
def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"jaxnet {jaxnet.__version__}\n"
    proc = run_python(["-m", "jaxnet", "--version"], timeout=300)
    assert proc.returncode == 0 and proc.stdout == f"jaxnet {jaxnet.__version__}\n"
