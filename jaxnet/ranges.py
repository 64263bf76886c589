"""Range rules: the one table that says which values each number a user sets may take."""

from __future__ import annotations

import math
import numbers

from jaxnet.errors import ConfigError


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive(v):
    return _number(v) and math.isfinite(v) and v > 0


def _non_negative(v):
    return _number(v) and math.isfinite(v) and v >= 0


def _unit(v):
    return _number(v) and 0 <= v < 1


POSITIVE = ("a finite number > 0", _positive)
NON_NEGATIVE = ("a finite number >= 0", _non_negative)
UNIT = ("a number in [0, 1)", _unit)

# name -> (what is expected, check). Every layer (config, sweep axes, CLI, data, model) asks here.
RULES = {
    "lr": POSITIVE,
    "weight_scale": POSITIVE,
    "eps": POSITIVE,
    "bn_eps": POSITIVE,
    "reg": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "dropout": ("a drop probability in [0, 1), e.g. 0.2 (0 turns dropout off)", _unit),
    "momentum": UNIT,
    "beta1": UNIT,
    "beta2": UNIT,
    "rms_decay": UNIT,
    "bn_momentum": UNIT,
    "lr_decay": ("a number in (0, 1], e.g. 0.95", lambda v: _number(v) and 0 < v <= 1),
    "val_fraction": ("a fraction in [0, 1) (0 turns the split off)", _unit),
    "test_fraction": ("a fraction in [0, 1) (0 turns the split off)", _unit),
    "batch_size": ("an integer >= 2 (batchnorm needs two examples for a variance)",
                   lambda v: _integer(v) and v >= 2),
    "epochs": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "max_epochs": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "patience": ("None or an integer >= 1", lambda v: v is None or (_integer(v) and v >= 1)),
    "seed": ("an integer", _integer),
    "hidden": ("positive integer widths, one per hidden layer, like (100, 100)",
               lambda v: all(_integer(h) and h >= 1 for h in v)),
}


def expected(name: str) -> str:
    """The words that describe the values `name` may take, e.g. "a finite number > 0"."""
    return RULES[name][0]


def is_valid(name: str, value) -> bool:
    return bool(RULES[name][1](value))


def check(name: str, value, *, fix: str = "") -> None:
    """Raises ConfigError naming `name`, the bad value and what is expected.

    Args:
      name: a key of RULES (a TrainConfig field or a sweep axis).
      value: the value to check.
      fix: appended to the message, e.g. "; change TrainConfig.lr (the --lr flag)".
    """
    if not is_valid(name, value):
        raise ConfigError(f"{name}={value!r} is invalid: expected {expected(name)}{fix}")
