"""The `jaxnet sweep` command (and `jaxnet train --seeds`), run in-process through cli.main."""

import contextlib
import csv
import io
import json
import re

import numpy as np
import pytest

from jaxnet import cli

PNG = b"\x89PNG\r\n\x1a\n"


def run(argv):
    """(exit status, stdout, stderr) of `jaxnet ARGV`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def strict_json(path):
    """Parses JSON that must not hold NaN or Infinity (not JSON; many readers reject them)."""
    def reject(name):
        raise AssertionError(f"{path.name} holds {name}")
    return json.loads(path.read_text(), parse_constant=reject)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """`jaxnet sweep --preset notebook --epochs 6 --out DIR`, run once from a scratch cwd.
    6 full-batch steps: the largest learning rates overflow the float32 loss, so the tests
    below see both finished and diverged settings."""
    cwd = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        code, stdout, stderr = run(["sweep", "--preset", "notebook", "--epochs", "6",
                                    "--out", "out"])
    return code, stdout, stderr, cwd / "out"


# ------------------------------------------------------------------------ notebook preset


@pytest.mark.slow
def test_notebook_preset_reports_100_settings(notebook):
    code, stdout, stderr, _ = notebook
    assert code == 0, stderr
    lines = stdout.splitlines()
    settings = [line for line in lines if line.startswith("lr: ")]
    assert len(settings) == 100
    assert all("weight_scale: " in line and "loss: " in line for line in settings)
    assert settings[0].startswith("lr: 1e-05 weight_scale: 0.01 ")
    assert settings[-1].startswith("lr: 100000 weight_scale: 0.09 ")
    assert sum(line.startswith("min loss found: ") for line in lines) == 1
    assert sum(line.startswith("best parameters found: lr=") for line in lines) == 1
    assert "100 settings" in lines[-1]
    assert not re.search(r"\b(nan|inf)\b", stdout, re.IGNORECASE)
    assert "100 runs" in stderr and "random" in stderr  # what it is about to do


@pytest.mark.slow
def test_notebook_preset_writes_results_and_plots(notebook):
    code, stdout, _, out = notebook
    assert code == 0
    results = strict_json(out / "results.json")
    config = results["config"]
    assert (config["dataset"], config["optimizer"], config["batch_size"], config["epochs"]) == (
        "random", "sgd", 50, 6)
    assert (config["dropout"], config["reg"], config["init"]) == (0.0, 0.0, "normal")
    assert config["hidden"] == [100, 100, 100, 100]
    assert results["criterion"] == "final_loss"
    settings = results["settings"]
    assert len(settings) == 100 and len(results["runs"]) == 100
    np.testing.assert_allclose([s["lr"] for s in settings], np.geomspace(1e-5, 1e5, 100))
    np.testing.assert_allclose([s["weight_scale"] for s in settings], np.linspace(0.01, 0.09, 100))

    rows = read_csv(out / "results.csv")
    assert len(rows) == 100
    assert {"lr", "weight_scale", "seed", "final_loss", "diverged"} <= rows[0].keys()
    for row, s in zip(rows, settings, strict=True):
        assert float(row["lr"]) == s["lr"]
        assert row["diverged"] == str(s["diverged"])
        assert (row["final_loss"] == "") == s["diverged"]

    best = strict_json(out / "best.json")
    assert best["criterion"] == "final_loss"
    ok = [s for s in settings if not s["diverged"]]
    assert best["best"] == min(ok, key=lambda s: s["final_loss"])
    assert f"min loss found: {best['best']['final_loss']}" in stdout
    assert (f"best parameters found: lr={best['best']['lr']!r}, weight_scale="
            f"{best['best']['weight_scale']!r} (chosen by final loss)") in stdout

    for name in ("sweep.png", "loss_curves.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name


@pytest.mark.slow
def test_notebook_preset_flags_diverged_settings(notebook):
    code, stdout, stderr, out = notebook
    assert code == 0, stderr
    settings = strict_json(out / "results.json")["settings"]
    diverged = [s for s in settings if s["diverged"]]
    assert diverged, "expected some of lr up to 1e5 to diverge"
    assert all(s["final_loss"] is None and s["train_loss"] is None for s in diverged)
    lines = [line for line in stdout.splitlines() if line.startswith("lr: ")]
    assert [line.endswith("loss: diverged") for line in lines] == [s["diverged"] for s in settings]
    assert f"{len(diverged)} diverged (flagged, never chosen)" in stdout
    assert not re.search(r"\b(nan|inf)\b", stdout, re.IGNORECASE)
    best = strict_json(out / "best.json")["best"]
    assert not best["diverged"] and best["lr"] < 1e5


@pytest.mark.slow
def test_notebook_preset_takes_explicit_flags_over_its_defaults(tmp_path):
    code, stdout, stderr = run(["sweep", "--preset", "notebook", "--epochs", "1", "--reg", "1e-3",
                                "--optimizer", "momentum", "--layers", "3", "--hidden", "8",
                                "--quiet", "--out", str(tmp_path)])
    assert code == 0, stderr
    assert stderr == ""  # --quiet: no plan line
    assert "min loss found: " in stdout
    config = strict_json(tmp_path / "results.json")["config"]
    assert (config["reg"], config["optimizer"], config["hidden"]) == (1e-3, "momentum", [8, 8])
    assert (config["dataset"], config["batch_size"], config["dropout"]) == ("random", 50, 0.0)
    assert len(strict_json(tmp_path / "results.json")["settings"]) == 100


# ------------------------------------------------------------------------- general use


@pytest.mark.slow
def test_grid_sweep_with_ranges_lists_and_seeds(tmp_path):
    code, stdout, stderr = run(["sweep", "--lr", "1e-4:1e-1", "--num", "3", "--reg", "0,1e-3",
                                "--epochs", "2", "--hidden", "32", "--seeds", "2",
                                "--out", str(tmp_path)])
    assert code == 0, stderr
    assert "6 settings x 2 seed(s) = 12 runs" in stderr
    results = strict_json(tmp_path / "results.json")
    settings, runs = results["settings"], results["runs"]
    assert results["config"]["hidden"] == [32, 32, 32, 32] and results["config"]["epochs"] == 2
    expected = [(lr, reg) for lr in np.geomspace(1e-4, 1e-1, 3) for reg in (0.0, 1e-3)]
    np.testing.assert_allclose([(s["lr"], s["reg"]) for s in settings], expected)
    assert all(s["seeds"] == 2 and not s["diverged"] for s in settings)
    assert [r["seed"] for r in runs] == [0, 1] * 6
    for i, s in enumerate(settings):
        accs = [r["val_accuracy"] for r in runs[2 * i:2 * i + 2]]
        assert s["val_accuracy"] == pytest.approx(np.mean(accs), rel=1e-12)
        assert s["val_accuracy_std"] == pytest.approx(np.std(accs), rel=1e-9, abs=1e-15)
    assert results["criterion"] == "val_accuracy"
    best = strict_json(tmp_path / "best.json")["best"]
    assert best["val_accuracy"] == max(s["val_accuracy"] for s in settings)
    assert len(read_csv(tmp_path / "results.csv")) == 12

    lines = stdout.splitlines()
    rows = [line for line in lines if line.startswith("lr: ")]
    assert len(rows) == 6 and all(" ± " in line and "val accuracy: " in line for line in rows)
    assert (f"best parameters found: lr={best['lr']!r}, reg={best['reg']!r} (chosen by val "
            "accuracy)") in stdout
    assert "best val accuracy: " in stdout and " over 2 seeds" in stdout
    for name in ("sweep.png", "loss_curves.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


@pytest.mark.slow
def test_halving_reports_its_rungs_and_the_compute_saved(tmp_path):
    code, stdout, stderr = run(["sweep", "--lr", "1e-3,1e-2,1e-1,1", "--hidden", "8",
                                "--batch-size", "256", "--epochs", "4", "--halving", "2",
                                "--min-epochs", "1", "--out", str(tmp_path)])
    assert code == 0, stderr
    assert "successive halving, eta 2: rungs at [1, 2, 4] epochs" in stderr
    lines = stdout.splitlines()
    rungs = [line for line in lines if line.startswith("rung ")]
    assert [line.split(";")[0] for line in rungs] == [
        "rung 0: 4 settings trained 1 epoch", "rung 1: 2 settings trained 2 epochs",
        "rung 2: 1 setting trained 4 epochs"]
    assert rungs[0].endswith("the best 2 go on") and rungs[1].endswith("the best 1 go on")
    assert "epochs trained: 8 of the full sweep's 16 (50%)" in lines  # 4 x 1 + 2 x 1 + 1 x 2
    settings = [line for line in lines if line.startswith("lr: ")]
    assert sum("(stopped after 1 epoch)" in line for line in settings) == 2
    assert sum("(stopped after 2 epochs)" in line for line in settings) == 1

    results = strict_json(tmp_path / "results.json")
    assert [r["epochs"] for r in results["rungs"]] == [1, 2, 4]
    assert results["epochs_spent"] == 8
    best = strict_json(tmp_path / "best.json")["best"]
    assert best["epochs_trained"] == 4 and best["rung"] == 2
    assert f"best parameters found: lr={best['lr']!r} (chosen by val accuracy)" in stdout
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(int(r["epochs_trained"]) for r in rows) == [1, 1, 2, 4]
    assert sorted(int(r["rung"]) for r in rows) == [0, 0, 1, 2]
    for name in ("sweep.png", "loss_curves.png", "rungs.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG), name


def test_sweep_plots_write_pngs(tmp_path):
    from jaxnet import plots

    rows = [{"lr": lr, "weight_scale": ws, "diverged": lr > 1, "final_loss": None if lr > 1
             else 2.3 / (1 + lr), "epochs_trained": 3} for lr, ws in
            zip(np.geomspace(1e-3, 1e2, 12), np.linspace(0.01, 0.09, 12), strict=True)]
    plots.sweep_line(rows, ["lr", "weight_scale"], "final_loss", tmp_path / "line.png", log_x=True)
    rungs = [{"epochs": 1, "settings": [0, 1, 2, 3], "scores": [0.5, 0.7, None, 0.6],
              "kept": [1, 3]},
             {"epochs": 3, "settings": [1, 3], "scores": [0.9, 0.8], "kept": [1]},
             {"epochs": 9, "settings": [1], "scores": [0.95], "kept": []}]
    plots.sweep_rungs(rungs, "val_accuracy", tmp_path / "rungs.png")
    for name in ("line.png", "rungs.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG), name


@pytest.mark.slow
def test_train_seeds_writes_mean_and_std(tmp_path):
    code, stdout, stderr = run(["train", "--seeds", "3", "--epochs", "2", "--layers", "2",
                                "--hidden", "16", "--quiet", "--out", str(tmp_path)])
    assert code == 0, stderr
    metrics = strict_json(tmp_path / "metrics.json")
    assert metrics["seeds"] == 3 and metrics["diverged"] is False
    for name in ("test_accuracy", "val_accuracy", "train_accuracy"):
        per_seed = metrics[f"{name}_per_seed"]
        assert len(per_seed) == 3 and all(0 <= a <= 1 for a in per_seed)
        assert metrics[f"{name}_mean"] == pytest.approx(np.mean(per_seed), rel=1e-12)
        assert metrics[f"{name}_std"] == pytest.approx(np.std(per_seed), rel=1e-9, abs=1e-15)
    assert metrics["test_accuracy_std"] > 0  # three different seeds
    mean, std = metrics["test_accuracy_mean"], metrics["test_accuracy_std"]
    assert f"test accuracy {mean:.4f} ± {std:.4f}" in stdout
    assert "3 seeds" in stdout


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr", "1e-1:1e-4"], "lower bound 0.1 is above the upper bound 0.0001"),
    (["--lr", "0:1e-2"], "--lr 0:1e-2: a range on a log scale needs positive bounds"),
    (["--lr", "-1"], "--lr -1.0 is invalid: expected a finite number > 0"),
    (["--lr", "1e-3,-1e-2"], "--lr -0.01 is invalid: expected a finite number > 0"),
    (["--weight-scale", "0"], "--weight-scale 0.0 is invalid: expected a finite number > 0"),
    (["--reg", "0:1e-3"], "to include 0, list it: 0,1e-4,1e-3"),
    (["--reg=-1e-3"], "--reg -0.001 is invalid: expected a finite number >= 0"),  # argparse wants = before -1e-3
    (["--dropout", "0.5:0.1"], "lower bound 0.5 is above the upper bound 0.1"),
    (["--lr", ","], "--lr ',' gives zero settings"),
    (["--lr", ""], "gives zero settings"),
    (["--lr", "nan"], "--lr nan is invalid: expected a finite number > 0"),
    (["--lr", "1e-3:inf"], "finite"),
    (["--lr", "fast"], "--lr expects a number, a list like 1e-3,1e-2 or a range LO:HI"),
    (["--zip", "--lr", "1e-3,1e-2", "--reg", "0,1e-4,1e-3"], "equal lengths"),
    (["--random", "4"], "needs at least one axis given as a range LO:HI"),
    (["--random", "4", "--lr", "1e-3,1e-2"], "--random draws each axis from a range"),
    (["--preset", "notebook", "--lr", "1e-3"], "--preset notebook sweeps --lr and --weight-scale"),
    (["--preset", "notebook", "--grid"], "drop --grid/--random"),
    (["--preset", "notebook", "--reg", "0,1e-3"], "equal lengths"),
    (["--patience", "3"], "unrecognized arguments: --patience"),
    (["--init", "he", "--weight-scale", "0.1"], "ignores --weight-scale; use --init normal or drop"),
    (["--init", "he", "--weight-scale", "0.1,0.2"], "ignores --weight-scale; use --init normal"),
    (["--optimizer", "sgd", "--momentum", "0.5,0.9"],
     "--optimizer sgd has no 'momentum' to sweep; drop --momentum"),
    (["--num", "0", "--lr", "1e-4:1e-1"], "expected a positive integer"),
    (["--halving", "1"], "--halving 1 is invalid: expected an integer ETA >= 2"),
    (["--min-epochs", "2"], "--min-epochs 2 sets the first rung of successive halving; "
                               "pass --halving ETA too"),
    (["--halving", "2", "--min-epochs", "5"], "--min-epochs 5 is invalid: expected an integer in "
                                               "[1, --epochs 1]"),
    (["--lr", "1e-3,1e-2", "--devices", "2"], "--devices 2 asks for more devices than the 1 "
                                              "visible"),
    (["--lr", "1e-3,1e-2", "--coordinator", "127.0.0.1:1"],
     "missing --num-processes, --process-id"),
    # what cannot help: one run, or fewer settings than one cut of halving needs
    ([], "this sweep has one setting and one seed, so it would train a single run"),
    (["--lr", "1e-3", "--reg", "0.01:0.01"], "train it with jaxnet train and the same flags"),
    (["--random", "1", "--lr", "1e-3:1e-1"], "this sweep has one setting and one seed"),
    (["--lr", "1e-3,1e-2", "--halving", "3"], "--halving 3 keeps the best 1/3 of the settings at "
     "each cut, but this sweep has 2 settings, fewer than 3; sweep at least 3 settings, use "
     "--halving 2, or drop --halving"),
    (["--seeds", "2", "--halving", "2"], "this sweep has 1 setting, fewer than 2; sweep at least "
                                         "2 settings, or drop --halving"),
])
def test_bad_sweep_input_exits_with_one_clear_line(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run(["sweep", *argv, "--epochs", "1", "--out", "o"])
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert message in stderr
    assert not (tmp_path / "o").exists()  # nothing was run or written


def test_sweep_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: jaxnet sweep")
    for needle in ("V1,V2,...", "LO:HI", "--num", "log-spaced for lr, weight_scale",
                   "--preset {notebook}", "--zip", "--grid", "--random N", "--seeds SEEDS",
                   "--chunk CHUNK", "examples:", "jaxnet sweep --preset notebook",
                   "results.csv", "diverged", "--lr VALUES", "--reg VALUES", "--halving ETA",
                   "--min-epochs R", "successive halving", "--coordinator HOST:PORT",
                   "--num-processes", "--process-id", "--devices"):
        assert needle in text, needle
    assert "--patience" not in text  # sweeps keep each run's best epoch; no early stopping
    assert max(len(line) for line in text.splitlines()) <= 100


@pytest.mark.slow
def test_one_epoch_is_said_in_the_singular(tmp_path):
    small = ["--epochs", "1", "--layers", "2", "--hidden", "8"]
    code, _, stderr = run(["sweep", "--lr", "1e-3,1e-2", *small, "--out", str(tmp_path / "s")])
    assert code == 0 and ", 1 epoch of " in stderr and "1 epochs" not in stderr, stderr
    code, stdout, stderr = run(["train", *small, "--out", str(tmp_path / "t")])
    assert code == 0 and "; 1 epoch of " in stderr and " | 1 epoch (best 1) | " in stdout, stderr
