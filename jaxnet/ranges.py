"""The one table of the values each setting may take, as scikit-learn's `_parameter_constraints`.

TrainConfig.validate, sweep axes, the model and the data splits all check here, and their
errors name the setting (`lr`), never a flag: the CLI shows its flags instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

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


def one_of(choices) -> tuple[str, Callable]:
    """The rule of a setting that takes one of `choices` (scikit-learn's StrOptions)."""
    return f"one of {', '.join(choices)}", lambda v: v in choices


# name -> (what is expected, check): the numbers a user sets. TrainConfig adds its choices
# (dataset, init, optimizer, ...) with `one_of`, where the lists of choices live.
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
    "epochs": ("None or an integer >= 1", lambda v: v is None or (_integer(v) and v >= 1)),
    "max_epochs": ("an integer >= 1", lambda v: _integer(v) and v >= 1),
    "patience": ("None or an integer >= 1", lambda v: v is None or (_integer(v) and v >= 1)),
    "seed": ("an integer", _integer),
    "hidden": ("positive integer widths, one per hidden layer, like (100, 100)",
               lambda v: all(_integer(h) and h >= 1 for h in v)),
}


def expected(name: str, rules=RULES) -> str:
    """The words that describe the values `name` may take, e.g. "a finite number > 0"."""
    return rules[name][0]


def is_valid(name: str, value, rules=RULES) -> bool:
    return bool(rules[name][1](value))


def check(name: str, value, rules=RULES) -> None:
    """Raises ConfigError naming the setting `name`, the bad value and what is expected.

    Args:
      name: a key of `rules` (a TrainConfig field or a sweep axis).
      value: the value to check.
      rules: the table to look in (TrainConfig.validate passes RULES with its choices).
    """
    if not is_valid(name, value, rules):
        raise ConfigError(f"`{name}={value!r}` is invalid: expected {expected(name, rules)}")


def check_fractions(val_fraction, test_fraction) -> None:
    """Raises ConfigError unless both split fractions are in [0, 1) and leave data to train on."""
    check("val_fraction", val_fraction)
    check("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"`test_fraction={test_fraction!r}` is invalid: expected `val_fraction` "
                          f"+ `test_fraction` < 1; with `val_fraction={val_fraction!r}` that "
                          "leaves no training data")
