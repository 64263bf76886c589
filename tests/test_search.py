"""jaxnet.search: the candidates, the choice on the validation split only, the winner saved as
a normal run, the refusals, `jaxnet train --search` and `MLPClassifier(search=True)`."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import one_line_error, train_only
from sklearn.datasets import load_iris

import jaxnet
from jaxnet import fitting, search
from jaxnet.cli import main
from jaxnet.config import TrainConfig
from jaxnet.errors import ConfigError
from jaxnet.estimator import MLPClassifier

# Small: two architectures (two compiled programs before sweeps vary widths), two learning
# rates, four epochs on digits (1257 training rows, batch 128).
SPACE = {"hidden": ((8,), (16,)), "lr": (1e-3, 3e-2), "dropout": (0.0,)}
CONFIG = TrainConfig(epochs=4, batch_size=128, seed=1)


@pytest.fixture(scope="module")
def digits():
    return fitting.load_data(CONFIG)


# ---------------------------------------------------------------------------- candidates


def test_default_space_is_every_combination_simplest_first():
    rows = search.candidates()
    assert len(rows) == np.prod([len(v) for v in search.SPACE.values()])
    assert rows[0] == {"hidden": search.SPACE["hidden"][0], "lr": search.SPACE["lr"][0],
                       "dropout": search.SPACE["dropout"][0]}
    assert all(isinstance(r["hidden"], tuple) for r in rows)
    assert search.candidates({"hidden": (8, (4, 4))})[0] == {"hidden": (8,)}


def test_candidates_train_the_same_steps_on_every_table_at_most_the_runs_epochs():
    assert search.STEPS == 400
    assert search.search_epochs(TrainConfig(), 1257) == 20  # digits: 20 steps of 64 an epoch
    assert search.search_epochs(TrainConfig(), 398) == 58  # breast cancer: 7 steps
    assert search.search_epochs(TrainConfig(), 105) == 200  # iris: 2 steps; max_epochs
    assert search.search_epochs(TrainConfig(max_epochs=50), 105) == 50
    assert search.search_epochs(TrainConfig(epochs=4), 1257) == 4


@pytest.mark.parametrize("space, match", [
    ({"lr": (1e-3,)}, "needs a 'hidden' entry"),
    ({"hidden": ()}, "at least one value"),
    ({"hidden": ((0,),)}, "positive widths"),
])
def test_bad_spaces_are_refused(space, match):
    with pytest.raises(ConfigError, match=match):
        search.candidates(space)


def test_refusals_before_any_training(digits):
    with pytest.raises(ConfigError, match="no validation split.*val_fraction above 0"):
        search.search(CONFIG, train_only(digits), space=SPACE)


# ---------------------------------------------------------------------------- the search


@pytest.mark.slow
def test_the_choice_uses_the_val_split_only_and_the_winner_is_a_normal_run(digits, tmp_path):
    found = search.search(CONFIG, digits, space=SPACE, out_dir=tmp_path / "a")
    # The test split turned upside down (every label moved to another class): the test
    # accuracy of the refit changes, the search's table and choice do not.
    flipped = dataclasses.replace(digits, y_test=(digits.y_test + 1) % digits.num_classes)
    again = search.search(CONFIG, flipped, space=SPACE)
    assert again.table == found.table and again.chosen == found.chosen
    assert again.fit.metrics["test_accuracy"] < found.fit.metrics["test_accuracy"]

    assert len(found.table) == 4 and found.programs in (1, 2) and found.rungs >= 2
    best = max((r for r in found.table if r["rung"] == found.rungs - 1),
               key=lambda r: (r["val_accuracy"], -r["final_loss"]))
    assert found.chosen == {k: best[k] for k in ("hidden", "lr", "dropout")}
    assert found.config == dataclasses.replace(CONFIG, **found.chosen)
    # The refit is the searched run trained alone: its kept epoch scores the same on val.
    np.testing.assert_allclose(found.fit.metrics["val_accuracy"], best["val_accuracy"],
                               atol=2 / len(digits.y_val))

    run = tmp_path / "a"
    assert {"checkpoint.safetensors", "metrics.json", "curves.png"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["search"]["chosen"] == {**found.chosen, "hidden": list(found.chosen["hidden"])}
    assert metrics["search"]["candidates"] == 4 and len(metrics["search"]["table"]) == 4
    assert metrics["config"]["hidden"] == list(found.chosen["hidden"])
    model = jaxnet.load(run)
    assert model.config == found.config
    x, y = digits.x_test[:50], digits.y_test[:50]
    assert np.mean(model.predict(x) == y) > 0.5


@pytest.mark.slow
def test_cli_search_prints_the_choice_and_saves_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search, "SPACE", SPACE)
    argv = ["train", "--search", "--epochs", "4", "--batch-size", "128", "--out", "run", "--quiet"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    first, summary = out.splitlines()
    assert first.startswith("search: 4 candidates, ") and "compiled program" in first
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    chosen = metrics["search"]["chosen"]
    assert (f"chosen: --hidden {','.join(map(str, chosen['hidden']))} --lr {chosen['lr']:g} "
            f"--dropout {chosen['dropout']:g}") in first
    assert "test accuracy" in summary and "outputs in run" in summary
    assert jaxnet.load(tmp_path / "run").config.hidden == tuple(chosen["hidden"])


@pytest.mark.parametrize("flags", [["--hidden", "32"], ["--layers", "2"], ["--lr", "0.1"],
                                   ["--dropout", "0"], ["--seeds", "2"], ["--resume", "x"],
                                   ["--devices", "1"]])
def test_cli_search_refuses_what_it_chooses_or_cannot_honour(flags, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--search", *flags, "--out", "run"]) == 2
    err = one_line_error(capsys)
    assert f"{flags[0]} cannot be given with it" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- estimator


@pytest.mark.slow
def test_estimator_search_trains_the_chosen_network(monkeypatch):
    monkeypatch.setattr(search, "SPACE", {"hidden": ((8,),), "lr": (1e-2, 1e-3),
                                          "dropout": (0.0, 0.2)})
    x, y = load_iris(return_X_y=True)
    clf = MLPClassifier(search=True, epochs=5, random_state=0).fit(x, y)
    assert clf.search_["candidates"] == 4
    chosen = clf.search_["chosen"]
    assert clf.model_.config.hidden == tuple(chosen["hidden"])
    assert (clf.model_.config.lr, clf.model_.config.dropout) == (chosen["lr"], chosen["dropout"])
    assert clf.n_iter_ == 5 and clf.predict(x).shape == (150,)
    assert MLPClassifier().get_params()["search"] is False


@pytest.mark.parametrize("params, match", [({"hidden": (8,)}, "cannot take hidden;"),
                                           ({"lr": 0.1, "dropout": 0.0}, "cannot take lr, dropout;"),
                                           ({"val_fraction": 0.0}, "no validation split"),
                                           ({"n_members": 3}, "n_members=3 trains an ensemble")])
def test_estimator_search_refusals(params, match):
    x, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=match):
        MLPClassifier(search=True, epochs=2, **params).fit(x, y)
