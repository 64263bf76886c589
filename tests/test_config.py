"""Validation in one layer: the library's errors name settings, the CLI shows its flags."""

import argparse
import dataclasses
import re

import numpy as np
import pytest

from jaxnet import config as cfg
from jaxnet import data, distributed, fitting, ranges
from jaxnet.cli import build_parser, common
from jaxnet.config import TrainConfig
from jaxnet.errors import ConfigError
from jaxnet.estimator import MLPClassifier
from jaxnet.sweep import check_sweep, make_settings

FLAG = re.compile(r"(?<![\w=])--[a-z]")  # a CLI flag (not XLA_FLAGS=--xla_...)
SMALL = TrainConfig(hidden=(8,), epochs=4)


def _resume_meta(epochs_done):
    return {"config": SMALL.to_dict(), "epoch": epochs_done, "history": [], "best_epoch": 1,
            "best_score": 0.5, "stale_epochs": 0}


# (what raises, the setting at fault, words of the message)
LIBRARY_ERRORS = [
    (lambda: TrainConfig(lr=0.0).validate(), "lr", "lr=0.0 is invalid: expected a finite "
     "number > 0"),
    (lambda: TrainConfig(batch_size=1).validate(), "batch_size", "batch_size=1 is invalid"),
    (lambda: TrainConfig(dataset="mnist").validate(), "dataset",
     "dataset='mnist' is invalid: expected one of digits"),
    (lambda: TrainConfig(val_fraction=0.5, test_fraction=0.5).validate(), "test_fraction",
     "expected val_fraction + test_fraction < 1"),
    (lambda: data.load_dataset("digits", val_fraction=0.6, test_fraction=0.5), "test_fraction",
     "expected val_fraction + test_fraction < 1"),
    (lambda: cfg.check_unused("he", {"weight_scale"}), "init",
     "init='he' draws sqrt(2/fan_in) * randn and ignores weight_scale"),
    (lambda: check_sweep(SMALL, [{}], halving=1), "halving", "halving=1 is invalid"),
    (lambda: check_sweep(SMALL, [{}], min_epochs=2), "min_epochs", "pass halving=ETA too"),
    (lambda: check_sweep(SMALL, [{}], halving=2, min_epochs=5), "min_epochs",
     "expected an integer in [1, epochs=4]"),
    (lambda: check_sweep(dataclasses.replace(SMALL, init="he"), [{"weight_scale": 0.1}]),
     "init", "ignores weight_scale"),
    (lambda: check_sweep(dataclasses.replace(SMALL, optimizer="sgd"), [{"momentum": 0.5}]),
     "optimizer", "optimizer='sgd' has no 'momentum' to sweep; drop momentum"),
    (lambda: check_sweep(SMALL, [{"lr": -1.0}]), "lr", "lr=-1.0 is invalid"),
    (lambda: make_settings({"lr": (1e-3, 1e-1)}, "random", n_random=0), "n_random",
     "n_random=0 is invalid"),
    (lambda: make_settings({"reg": (0.0, 1e-3)}, "random", n_random=2), "reg",
     "a log-uniform range needs positive bounds"),
    (lambda: distributed.check_processes("host:1", None, 0), "coordinator",
     "missing num_processes"),
    (lambda: distributed.check_processes("host", 2, 0), "coordinator",
     "coordinator='host' is invalid: expected HOST:PORT"),
    (lambda: distributed.setup(devices=10_000), "devices", "devices=10000 asks for more"),
    (lambda: fitting.check_seeds(dataclasses.replace(SMALL, patience=2), 3), "patience",
     "drop patience"),
    (lambda: fitting.check_resumable(dataclasses.replace(SMALL, epochs=2), _resume_meta(3), "run"),
     "epochs", "already holds 3 epochs but epochs=2; pass epochs >= 3"),
    (lambda: fitting.fit(SMALL, resume=True), "resume", "resume=True needs out_dir"),
    (lambda: MLPClassifier(dropout=1.5).fit(np.zeros((4, 2)), [0, 1, 0, 1]), "dropout",
     "dropout=1.5 is invalid: expected a drop probability"),
]


@pytest.mark.parametrize(("call", "field", "words"), LIBRARY_ERRORS)
def test_library_errors_name_the_setting_never_a_flag(call, field, words):
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert words in message, message
    assert not FLAG.search(message), message
    assert "`" not in message, message  # the marks are for rendering, not shown
    assert info.value.field == field


def test_an_estimator_error_names_its_parameter():
    # MLPClassifier's parameters are TrainConfig's fields: one table checks both.
    with pytest.raises(ValueError, match=r"^lr=-1 is invalid: expected a finite number > 0$"):
        MLPClassifier(lr=-1).fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_the_cli_renders_settings_as_its_flags():
    err = ConfigError("`lr=0.0` is invalid; `init='he'` ignores `weight_scale`; "
                      "`data_path` and `bn_eps=0` and `group`")
    args = argparse.Namespace(lr=None, init=None, weight_scale=None, data=None, bn_eps=None)
    assert common.in_flags(err, args) == (
        "--lr 0.0 is invalid; --init he ignores --weight-scale; --data and --bn-eps 0 and group")
    # A setting the command has no flag for keeps its name; so does every one without args.
    assert common.in_flags(err, argparse.Namespace()) == str(err) == (
        "lr=0.0 is invalid; init='he' ignores weight_scale; data_path and bn_eps=0 and group")
    assert err.fields == ("lr", "init", "weight_scale", "data_path", "bn_eps", "group")
    # Messages that are not errors (a diverged run's) go through the same mapping.
    assert common.in_flags("lower `lr` (e.g. `lr=0.01`)", args) == "lower --lr (e.g. --lr 0.01)"


def test_every_flag_is_its_setting_with_dashes():
    """The one mapping (`common.flag`) holds for every flag of every command."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for parser in commands.choices.values():
        for action in parser._actions:
            if action.option_strings and action.dest not in ("help",):
                assert common.flag(action.dest) in action.option_strings, action.option_strings
                checked += 1
    assert checked > 50
    assert common.flag("data_path") == "--data" and common.flag("out_dir") == "--out"


def test_every_train_config_number_and_choice_has_a_rule():
    free = {"data_path", "target", "categorical", "drop", "impute", "standardize"}  # any
    # path, column names or bool
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(cfg.CONSTRAINTS) == fields - free
    assert set(ranges.RULES) <= fields  # sweep axes and the model ask about config fields
    TrainConfig().validate()  # the defaults pass their own rules
