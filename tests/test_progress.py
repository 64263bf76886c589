"""Where training is, in the form that fits where it goes: a bar on a terminal, one line
per epoch to a file or pipe, nothing with --quiet; the test score reported once, for the kept
epoch; the curves plot marks that epoch."""

import io
import json
import math
import re
import warnings

import numpy as np
import pytest

from jaxnet import fitting, plots, train
from jaxnet.cli import main
from jaxnet.cli.common import EpochProgress
from jaxnet.config import TrainConfig

TINY = ["--layers", "2", "--hidden", "8"]
LINE = re.compile(r"epoch (\d+): train loss (\d\.\d{4}), val acc (\d\.\d{4}) \(best (\d\.\d{4}) "
                  r"at epoch (\d+), patience (\d+) left\), \d+(\.\d)? m?s( with compilation)?")


def _report(epoch=12, **extra):
    return {"epoch": epoch, "loss": 0.31, "train_loss": 0.3, "train_accuracy": 0.97,
            "val_loss": 0.2, "val_accuracy": 0.962, "best_epoch": 9, "best_val_accuracy": 0.967,
            "stale_epochs": 3, "seconds": 0.4, **extra}


class _Terminal(io.StringIO):
    def isatty(self):
        return True


# ------------------------------------------------------------------ the reporter


def test_a_line_says_the_epoch_its_scores_the_best_and_the_patience_left():
    progress = EpochProgress(epochs=None, patience=10, stream=io.StringIO())
    assert progress.line(_report()) == ("epoch 12: train loss 0.3100, val acc 0.9620 (best 0.9670 "
                                        "at epoch 9, patience 7 left), 0.4 s")
    assert progress.line(_report(seconds=0.0123), compiled=True).endswith(
        "), 12 ms with compilation")
    fixed = EpochProgress(epochs=30, patience=None, stream=io.StringIO())  # no patience to show
    assert fixed.line(_report()) == ("epoch 12: train loss 0.3100, val acc 0.9620 (best 0.9670 "
                                     "at epoch 9), 0.4 s")
    no_val = _report(val_accuracy=None, val_loss=None, best_val_accuracy=None)
    assert fixed.line(no_val) == "epoch 12: train loss 0.3100, train acc 0.9700, 0.4 s"


def test_to_a_file_one_line_per_epoch_and_quiet_prints_nothing():
    stream = io.StringIO()
    progress = EpochProgress(epochs=None, patience=10, stream=stream)
    for epoch in (1, 2):
        progress.update(_report(epoch))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert lines[0].endswith("with compilation") and not lines[1].endswith("with compilation")
    quiet = io.StringIO()
    progress = EpochProgress(epochs=None, patience=10, quiet=True, stream=quiet)
    progress.update(_report())
    progress.close()
    assert quiet.getvalue() == ""


def test_on_a_terminal_an_adaptive_run_has_no_total_but_its_best_epoch_and_patience():
    terminal = _Terminal()
    progress = EpochProgress(epochs=None, patience=10, done=11, stream=terminal)
    progress.update(_report())
    assert progress.bar.total is None and progress.bar.n == 12  # resumed after epoch 11
    shown = str(progress.bar)
    assert "12epoch" in shown.replace(" ", "") and "/200" not in shown
    assert "best=0.9670 @ 9" in shown and "patience left=7" in shown
    progress.update(_report(13, seconds=0.25))
    assert "epoch time=0.2 s" in str(progress.bar)  # after the first, compiling, epoch
    progress.close()
    fixed = EpochProgress(epochs=30, patience=None, stream=_Terminal())
    assert fixed.bar.total == 30  # a fixed length: a bar to its end
    fixed.close()


def test_early_stopping_after_one_epoch_says_1_epoch():
    progress = train.Progress(None, {}, [{"epoch": 1}, {"epoch": 2}], best_epoch=1, stale=1)
    assert "for 1 epoch; kept the best, epoch 1" in train._stopped(progress, True)


# ------------------------------------------------------------------ the plot


def _history(n=12, best=5):
    losses = np.geomspace(2.3, 0.08, n)  # a decade and a half
    return [{"epoch": e, "loss": float(losses[e - 1]), "train_loss": float(losses[e - 1]),
             "train_accuracy": 0.5 + e / 40, "val_loss": float(losses[e - 1]) * 1.1,
             "val_accuracy": 0.5 + min(e, best) / 40} for e in range(1, n + 1)]


def test_the_curves_mark_the_kept_epoch_and_its_test_score_once():
    fig = plots.curves_figure(_history(), kept_epoch=5, test_accuracy=0.61)
    ax_loss, ax_acc = fig.axes
    for ax in (ax_loss, ax_acc):
        kept = [line for line in ax.lines if line.get_label() == "kept: epoch 5"]
        assert len(kept) == 1 and list(kept[0].get_xdata()) == [5, 5]
    test = [line for line in ax_acc.lines if line.get_label().startswith("test")]
    assert len(test) == 1  # one point, not a curve over the epochs
    assert list(test[0].get_xdata()) == [5] and list(test[0].get_ydata()) == [0.61]
    assert {line.get_label() for line in ax_acc.lines} >= {"train", "val"}


def test_a_log_loss_axis_has_readable_ticks_and_a_narrow_range_a_linear_one():
    fig = plots.curves_figure(_history())
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    assert ax.get_yscale() == "log" and len(ticks) >= 4, ticks  # 0.1, 0.2, 0.5, 1, 2
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert "0.5" in labels and "2" in labels, labels
    narrow = [{**row, "loss": 0.3 + row["epoch"] / 100, "val_loss": 0.35} for row in _history()]
    assert plots.curves_figure(narrow).axes[0].get_yscale() == "linear"


@pytest.mark.parametrize("top", [1e8, 1e120, 1.7e308])
def test_a_diverging_loss_keeps_a_labelled_log_axis_without_overflow(top):
    losses = np.geomspace(2.3, top, 12)  # past ~7 decades the 1-2-5 ticks used to vanish
    history = [{**row, "loss": float(loss), "val_loss": float(loss)}
               for row, loss in zip(_history(), losses, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib overflowed float64 near 1e308
        fig = plots.curves_figure(history)
        fig.canvas.draw()
    ax = fig.axes[0]
    high = ax.get_ylim()[1]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ax.get_yscale() == "log" and len(labels) >= 3, labels
    assert high <= plots.LOG_AXIS_TOP and (high >= top or top > plots.LOG_AXIS_TOP)


def test_the_halving_legend_says_1_epoch(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    rows = [{"lr": lr, "val_accuracy": acc, "diverged": False, "epochs_trained": epochs}
            for lr, acc, epochs in ((0.1, 0.5, 1), (0.2, 0.6, 2), (0.3, 0.7, 2))]
    plots.sweep_line(rows, ["lr"], "val_accuracy", tmp_path / "sweep.png")
    assert [line.get_label() for line in figures[0].axes[0].lines] == [
        "trained 1 epoch", "trained 2 epochs"]


# ------------------------------------------------------------------ real runs


@pytest.mark.slow
def test_a_pipe_run_prints_one_line_per_epoch_matching_its_history(tmp_path, monkeypatch,
                                                                   capsys):
    # In this process: capsys's stderr is no terminal (isatty() is False), as a pipe's.
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--max-epochs", "4", "--out", "run"]) == 0
    stdout, stderr = capsys.readouterr()
    banner, *lines = stderr.splitlines()
    assert banner.startswith("training (64, 8, 10) on digits")
    assert stdout.startswith("test accuracy ") and len(stdout.splitlines()) == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    history = metrics["history"]
    assert len(lines) == len(history) == 4
    for line, row in zip(lines, history, strict=True):
        match = LINE.fullmatch(line)
        assert match, line
        epoch, loss, val, best_val, best = match.groups()[:5]
        assert int(epoch) == row["epoch"]
        assert float(loss) == pytest.approx(row["loss"], abs=5e-5)
        assert float(val) == pytest.approx(row["val_accuracy"], abs=5e-5)
        assert float(best_val) == max(float(LINE.fullmatch(x)[3]) for x in lines[:row["epoch"]])
        assert 1 <= int(best) <= row["epoch"]
    assert [bool(LINE.fullmatch(x)[7]) for x in lines] == [True, False, False, False]
    assert int(LINE.fullmatch(lines[-1])[5]) == metrics["best_epoch"]


@pytest.mark.slow
def test_quiet_prints_only_the_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--epochs", "2", "--out", "run", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("test accuracy ") and len(out.splitlines()) == 1


@pytest.mark.slow
def test_the_history_scores_train_and_val_per_epoch_and_the_test_set_once():
    config = TrainConfig(hidden=(8,), epochs=5)
    raw = fitting.load_data(config)
    result = fitting.fit(config, raw)
    for row in result.history:
        assert set(row) == {"epoch", "loss", "train_loss", "train_accuracy", "val_loss",
                            "val_accuracy"}
    kept = result.history[result.metrics["best_epoch"] - 1]
    assert result.metrics["val_accuracy"] == pytest.approx(kept["val_accuracy"], abs=1e-7)
    data = result.preprocessing.apply(raw, dtype=np.dtype(np.float32))
    loss, acc = train.evaluate(result.params, result.bn_state, data.x_test, data.y_test,
                               config=config)
    assert result.metrics["test_accuracy"] == pytest.approx(float(acc), abs=1e-7)
    assert result.metrics["test_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert math.isfinite(result.metrics["test_loss"])
    # One evaluation program for the epochs and the summary: no second compilation.
    eval_fn = fitting._jitted(fitting.program_config(config), len(raw.x_train), None)[2]
    assert eval_fn.plain._cache_size() == 1  # the jitted program (no kept-program folder)
