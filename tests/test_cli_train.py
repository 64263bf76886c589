"""The `jaxnet train` command: outputs, resume, interactive questions, errors, summary."""

import builtins
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_line_error

from jaxnet import checkpoint as ckpt
from jaxnet import fitting
from jaxnet.cli import interrupt, main
from jaxnet.cli.train import ask_architecture, summary_line
from jaxnet.config import TrainConfig
from jaxnet.fitting import TrainResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRIC_KEYS = {"train_accuracy", "val_accuracy", "test_accuracy", "final_loss", "best_epoch",
               "epochs_run", "diverged", "examples_per_second", "wall_seconds", "history",
               "config"}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------ real runs


@pytest.mark.slow
def test_train_writes_metrics_checkpoint_and_curves_then_resumes(in_tmp, capsys):
    argv = ["train", "--epochs", "2", "--layers", "3", "--hidden", "32", "--out", "run", "--quiet"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert len(out.splitlines()) == 1, out  # --quiet: only the summary line
    assert "test accuracy" in out and "2 epochs (best" in out and "outputs in run" in out
    assert "examples/s" in out

    run = in_tmp / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert metrics["config"]["hidden"] == [32, 32] and metrics["config"]["epochs"] == 2
    assert metrics["diverged"] is False and 0.5 < metrics["test_accuracy"] <= 1
    assert metrics["examples_per_second"] > 0 and metrics["wall_seconds"] > 0
    assert ckpt.load_metadata(run)["epoch"] == 2
    png = (run / "curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000

    assert main(["train", "--resume", "run", "--epochs", "3"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "3 epochs" in out, out
    banner, *epochs = err.splitlines()
    assert banner.startswith("resuming from epoch 2: (64, 32, 32, 10) on digits")
    assert len(epochs) == 1 and epochs[0].startswith("epoch 3: train loss ")  # one per epoch
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["epochs_run"] == 3 and resumed["config"]["epochs"] == 3
    assert resumed["history"][:2] == metrics["history"]
    assert ckpt.load_metadata(run)["epoch"] == 3


@pytest.mark.slow
def test_python_dash_m_jaxnet_train_with_interactive_answers(tmp_path):
    """A real process: the notebook's questions answered on stdin (2 layers, width 16)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jaxnet", "train", "--interactive", "--epochs", "1",
         "--out", "run", "--quiet"],
        input="2\n16\n", capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "how many layers" in proc.stdout and "size of layer 1?" in proc.stdout
    assert "test accuracy" in proc.stdout and "1 epoch (best 1)" in proc.stdout
    assert "examples/s n/a" in proc.stdout  # one epoch is all compile time
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["hidden"] == [16]
    assert metrics["examples_per_second"] is None
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(PNG_MAGIC)


# ------------------------------------------------------------------ interactive


def _answers(monkeypatch, answers):
    """Feeds `answers` to input(); None stands for end of input. Returns the prompts asked."""
    prompts, pending = [], list(answers)

    def fake_input(prompt=""):
        prompts.append(prompt)
        answer = pending.pop(0) if pending else None
        if answer is None:
            raise EOFError
        return answer

    monkeypatch.setattr(builtins, "input", fake_input)
    return prompts


def test_interactive_asks_again_after_a_wrong_answer_and_end_of_input_is_an_error(
        in_tmp, monkeypatch, capsys):
    prompts = _answers(monkeypatch, ["abc", "-3", "2", None])
    assert main(["train", "--interactive"]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out == ""
    assert prompts == ["how many layers do you want in your network? [5] "] * 3 + [
        "size of layer 1? [100] "]
    lines = err.strip().splitlines()
    assert "'abc' is not a whole number" in lines[0]
    assert "-3 is not positive" in lines[1]
    assert lines[2].startswith("error: --interactive: input ended before answering")
    assert len(lines) == 3
    assert not (in_tmp / "runs").exists()


def test_interactive_answers_and_defaults_give_the_hidden_sizes(monkeypatch):
    _answers(monkeypatch, ["3", "", "64"])
    assert ask_architecture(write=lambda text: None) == (3, [100, 64])
    _answers(monkeypatch, ["", "", "", "", ""])
    assert ask_architecture(write=lambda text: None) == (5, [100] * 4)


def test_interactive_with_layer_flags_is_an_error_before_asking(in_tmp, monkeypatch, capsys):
    prompts = _answers(monkeypatch, ["2", "16"])
    assert main(["train", "--interactive", "--layers", "3"]) == 2
    assert "drop --layers/--hidden" in one_line_error(capsys)
    assert prompts == []


# ------------------------------------------------------------------ bad flags


@pytest.mark.parametrize("argv, expected", [
    (["train", "--optimizer", "adagrad"], "invalid choice: 'adagrad'"),
    (["train", "--hidden", "-5"], "hidden sizes must be positive"),
    (["train", "--hidden", "100,abc"], "a list like 256,128,64"),
    (["train", "--layers", "3", "--hidden", "10,20,30"], "--layers 3 needs 2"),
    (["train", "--layers", "1", "--hidden", "10"], "without hidden layers"),
    (["train", "--layers", "0"], "expected a positive integer"),
    (["train", "--dataset", "npz", "--data", "missing.npz"], "missing.npz: not found"),
    (["train", "--dataset", "npz"], "needs --data PATH"),
    (["train", "--dataset", "digits", "--data", "x.npz"], "built in and takes no path"),
    (["train", "--data", "x.npz"], "x.npz: not found"),  # the extension selects npz
    (["train", "--data", "x.csv", "--target", "y"], "x.csv: not found"),  # and csv
    (["train", "--dataset", "digits", "--data", "x.csv", "--target", "y"], "dataset 'digits' is not csv"),
    (["train", "--data", "x.txt"], "built in and takes no path"),
    (["train", "--target", "y"], "is not csv; drop --target, or use the csv dataset"),
    (["train", "--dropout", "1.5"], "--dropout 1.5 is invalid: expected a drop probability"),
    (["train", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["train", "--lr", "-1"], "--lr -1.0 is invalid: expected a finite number > 0"),
    (["train", "--epochs", "0"], "expected a positive integer, got 0"),
    (["train", "--batch-size", "1"], "--batch-size 1 is invalid"),
    (["train", "--val-fraction", "0.9", "--test-fraction", "0.2"], "--test-fraction 0.2 is invalid: expected --val-fraction + --test-fraction < 1"),
    (["train", "--resume", "nowhere"], "--resume nowhere: no such folder"),
    (["train", "--resume", "nowhere", "--lr", "0.1"], "--lr cannot be given with it"),
    (["train", "--resume", "nowhere", "--dropout", "0"], "--dropout cannot be given with it"),
    (["train", "--resume", "nowhere", "--reg", "0"], "--reg cannot be given with it"),
    (["train", "--resume", "nowhere", "--out", "b"], "--out cannot be given with it"),
    (["train", "--init", "he", "--weight-scale", "0.1"],
     "--init he draws sqrt(2/fan_in) * randn and ignores --weight-scale; use --init normal"),
    (["train", "--weight-scale", "0"], "--weight-scale 0.0 is invalid"),
    (["train", "--seeds", "2", "--patience", "2"],
     "--patience 2 stops one run early, but the 2 seeds train together"),
    (["train", "--seeds", "2", "--max-epochs", "9"], "drop --max-epochs, or train seeds one by one"),
    (["train", "--coordinator", "h", "--num-processes", "2", "--process-id", "0"],
     "--coordinator h is invalid: expected HOST:PORT"),
    (["train", "--process-id", "0"], "missing --coordinator, --num-processes"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_flags_give_one_line_on_stderr(in_tmp, capsys, argv, expected):
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert expected in err, err
    assert not (in_tmp / "runs").exists()


def test_resume_from_a_folder_without_a_checkpoint(in_tmp, capsys):
    (in_tmp / "empty").mkdir()
    assert main(["train", "--resume", "empty"]) == 2
    assert "no checkpoint found" in one_line_error(capsys)


def test_resume_with_fewer_epochs_than_done_is_an_error(in_tmp, capsys):
    config = TrainConfig(hidden=(8,), epochs=3)
    ckpt.save_checkpoint(in_tmp / "run", {}, {
        "config": config.to_dict(), "epoch": 3, "history": [], "best_epoch": 3,
        "best_score": 0.9, "stale_epochs": 0})
    assert main(["train", "--resume", "run", "--epochs", "2"]) == 2
    assert "already holds 3 epochs but --epochs 2; pass --epochs >= 3" in one_line_error(capsys)


# ------------------------------------------------------------------ the summary (fit faked)


def _fake_fit(monkeypatch, *, eps=116986.4, test=0.97777, diverged=False, message=None,
              interrupt=False):
    calls = {}

    def fake_fit(config, data, *, out_dir=None, resume=False, on_epoch=None, env=None):
        calls.update(config=config, out_dir=out_dir, resume=resume)
        if interrupt:  # after epoch 4 was saved
            ckpt.save_checkpoint(out_dir, {"w": np.zeros(2, np.float32)}, {"epoch": 4})
            raise interrupt
        history = [{"epoch": i + 1, "loss": 1.0 / (i + 1), "train_accuracy": 0.9,
                    "val_accuracy": 0.98} for i in range(config.epochs or 30)]
        metrics = {"final_loss": 0.1, "best_epoch": 26, "epochs_run": len(history),
                   "diverged": diverged, "train_accuracy": 0.99, "val_accuracy": 0.98,
                   "test_accuracy": test, "examples_per_second": eps, "history": history,
                   "config": config.to_dict(), "wall_seconds": 4.2, "message": message}
        fitting.write_outputs(out_dir, metrics)  # as the real fit does
        return TrainResult(None, None, None, history, metrics, diverged, message)

    monkeypatch.setattr("jaxnet.fitting.fit", fake_fit)
    return calls


def test_jaxnet_train_without_arguments_prints_a_readable_summary(in_tmp, monkeypatch, capsys):
    calls = _fake_fit(monkeypatch)
    assert main(["train"]) == 0
    out, err = capsys.readouterr()
    assert calls["config"] == TrainConfig()  # the notebook's defaults
    run = calls["out_dir"]
    assert err == (f"training (64, 100, 100, 100, 100, 10) on digits: 1257 train / 180 val / "
                   f"360 test, 64 features, 10 classes; until no improvement (up to 200 epochs) of adam "
                   f"(lr 0.001, constant), "
                   f"batch 64, float32, 1 device(s); outputs in {run}\n")
    assert run.parent.name == "runs" and run.name.startswith("train-")
    assert out == (f"test accuracy 97.78% | 30 epochs (best 26) | "
                   f"{json.loads((run / 'metrics.json').read_text())['wall_seconds']:.1f} s | "
                   f"116,986 examples/s | outputs in {run}\n")
    assert (run / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_summary_without_a_throughput_keeps_every_other_part(in_tmp, monkeypatch, capsys):
    _fake_fit(monkeypatch, eps=None)
    assert main(["train", "--epochs", "1", "--out", "run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test accuracy 97.78% | 1 epoch (best 26) | ")
    assert " s | examples/s n/a" in out and out.endswith("| outputs in run\n")


def test_summary_line_variants():
    base = {"epochs_run": 4, "best_epoch": 2, "wall_seconds": 3.14159, "diverged": False,
            "examples_per_second": 2500.0, "train_accuracy": 1.0, "val_accuracy": None,
            "test_accuracy": None}
    assert summary_line(base, "out") == (
        "train accuracy 100.00% (no test set) | 4 epochs (best 2) | 3.1 s | 2,500 examples/s | "
        "outputs in out")
    diverged = {**base, "diverged": True, "test_accuracy": 0.1, "epochs_run": 0, "best_epoch": 0,
                "examples_per_second": None}
    assert summary_line(diverged, "out") == (
        "test accuracy 10.00% | 0 epochs (best 0) | diverged | 3.1 s | "
        "examples/s n/a (needs 2+ epochs) | outputs in out")


def test_divergence_exits_1_with_the_message_even_when_quiet(in_tmp, monkeypatch, capsys):
    _fake_fit(monkeypatch, diverged=True,
              message="training diverged: lower the learning rate (e.g. `lr=0.01`)")
    assert main(["train", "--out", "run", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert err == "training diverged: lower the learning rate (e.g. --lr 0.01)\n"  # as a flag
    assert len(out.splitlines()) == 1 and "diverged" in out
    assert json.loads((in_tmp / "run" / "metrics.json").read_text())["diverged"] is True


def test_quiet_hides_the_early_stopping_note(in_tmp, monkeypatch, capsys):
    _fake_fit(monkeypatch, message="early stopping after epoch 5")
    assert main(["train", "--out", "run", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1
    assert main(["train", "--out", "run", "--overwrite"]) == 0
    assert capsys.readouterr().err.splitlines()[1:] == ["early stopping after epoch 5"]


@pytest.mark.parametrize(("raised", "status", "what"), [
    (KeyboardInterrupt(), 130, "interrupted"),
    (interrupt.Interrupted(signal.SIGINT), 130, "interrupted"),
    (interrupt.Interrupted(signal.SIGTERM), 143, "interrupted by SIGTERM"),
])
def test_interrupt_names_the_epoch_saved_and_the_folder_to_resume(in_tmp, monkeypatch, capsys,
                                                                  raised, status, what):
    _fake_fit(monkeypatch, interrupt=raised)
    assert main(["train", "--out", "run", "--quiet"]) == status
    out, err = capsys.readouterr()
    assert err == f"{what}; epoch 4 is saved in run; continue with: jaxnet train --resume run\n"
    assert out == ""  # no summary for a run that did not finish


def test_flags_map_onto_the_config(in_tmp, monkeypatch):
    calls = _fake_fit(monkeypatch)
    argv = ["train", "--layers", "3", "--hidden", "64,32", "--optimizer", "sgd", "--lr", "0.05",
            "--lr-schedule", "step", "--batch-size", "32", "--epochs", "3", "--dropout", "0",
            "--patience", "2", "--grad", "autodiff", "--seed", "7", "--weight-scale", "0.1",
            "--lr-decay", "0.5", "--out", "run"]
    assert main(argv) == 0
    assert calls["config"] == TrainConfig(hidden=(64, 32), optimizer="sgd", lr=0.05,
                                          lr_schedule="step", batch_size=32, epochs=3,
                                          dropout=0.0, patience=2, grad="autodiff", seed=7,
                                          weight_scale=0.1, lr_decay=0.5)
    assert main(["train", "--layers", "3", "--hidden", "16", "--out", "run", "--overwrite"]) == 0
    assert calls["config"].hidden == (16, 16)
