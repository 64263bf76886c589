"""What a sweep may vary (its axes), the settings built from them, the checks on its arguments."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from jaxnet import optim, ranges
from jaxnet.config import TrainConfig, check_unused
from jaxnet.constants import DEFAULT_EPOCHS, LOG_AXES, SWEEPABLE
from jaxnet.errors import ConfigError

# Values a sweep may vary per run, and where each one lives.
OPTIMIZER_AXES = {"lr": "learning_rate", "momentum": "momentum", "beta1": "b1",
                  "beta2": "b2", "weight_decay": "weight_decay"}
STEP_AXES = ("reg", "dropout")  # read by the train step from TrainState.hyper
POSITIVE_AXES = ("lr", "weight_scale")  # must be > 0; reg and weight_decay may be 0
MODES = ("zip", "grid", "random")


def make_settings(axes: dict[str, Sequence[float]], mode: str = "grid", *, n_random: int = 0,
                  seed: int = 0) -> list[dict]:
    """Expands value lists (or (low, high) ranges for "random") into a list of settings.

    Args:
      axes: name -> values. "zip" pairs equal-length lists (the notebook's way), "grid"
        takes every combination, "random" draws `n_random` settings with each axis given as
        (low, high): log-uniform for LOG_AXES, uniform otherwise.
      mode: "zip", "grid" or "random".

    Returns:
      A list of {name: float} dicts.
    """
    unknown = set(axes) - set(SWEEPABLE)
    if unknown:
        raise ConfigError(f"cannot sweep {sorted(unknown)}; sweepable: {', '.join(SWEEPABLE)}")
    if mode not in MODES:
        raise ConfigError(f"`mode={mode!r}` is invalid: expected one of {', '.join(MODES)}")
    names = list(axes)
    if mode == "random":
        if n_random <= 0:
            raise ConfigError(f"`n_random={n_random}` is invalid: mode 'random' needs a positive "
                              "number of settings to draw")
        rng = np.random.default_rng(seed)
        columns = {}
        for name, bounds in axes.items():
            lo, hi = float(min(bounds)), float(max(bounds))
            if name in LOG_AXES and lo <= 0:
                raise ConfigError(f"`{name}=({lo:g}, {hi:g})` is invalid: a log-uniform range needs "
                                  "positive bounds")
            if name in LOG_AXES:
                columns[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n_random))
            else:
                columns[name] = rng.uniform(lo, hi, n_random)
        return [{n: float(columns[n][i]) for n in names} for i in range(n_random)]
    values = [list(map(float, axes[n])) for n in names]
    if any(len(v) == 0 for v in values):
        raise ConfigError("every swept axis needs at least one value; the sweep has zero settings")
    if mode == "zip":
        lengths = {n: len(v) for n, v in zip(names, values, strict=True)}
        if len(set(lengths.values())) > 1:
            raise ConfigError("mode 'zip' pairs the axes one to one, so they need equal lengths; "
                              f"got {lengths}")
        return [dict(zip(names, combo, strict=True)) for combo in zip(*values, strict=True)]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def check_sweep(config: TrainConfig, settings: list[dict], *, seeds: int = 1,
                group: int | str | None = "auto", halving: int | None = None,
                min_epochs: int | None = None) -> None:
    """Raises ConfigError for whatever `sweep` would refuse, before any data or compiling.

    Takes `sweep`'s arguments (a config with epochs=None trains DEFAULT_EPOCHS).
    """
    config.validate()
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=DEFAULT_EPOCHS)
    _check_settings(config, settings)
    _check_options(config, seeds, group, halving, min_epochs)


def _check_settings(config: TrainConfig, settings: list[dict]):
    if not settings:
        raise ConfigError("the sweep has zero settings; give at least one value per axis")
    keys = set(settings[0])
    opt_axes = set(optim.INJECTED[config.optimizer])
    for i, s in enumerate(settings):
        if set(s) != keys:
            raise ConfigError(
                f"settings[{i}] sets {sorted(s)} but settings[0] sets {sorted(keys)}; every "
                "setting must give a value for the same swept axes (make_settings builds such "
                "lists; put values that stay fixed on the config instead)")
        for k, v in s.items():
            if k not in SWEEPABLE:
                raise ConfigError(f"cannot sweep {k!r}; sweepable: {', '.join(SWEEPABLE)}")
            if k in OPTIMIZER_AXES and OPTIMIZER_AXES[k] not in opt_axes:
                raise ConfigError(f"`optimizer={config.optimizer!r}` has no {k!r} to sweep; "
                                  f"drop `{k}` or choose an optimizer that has it")
            ranges.check(k, v)
    check_unused(config.init, keys)


def _check_options(config: TrainConfig, seeds, group, halving, min_epochs):
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"`seeds={seeds!r}` is invalid: expected an integer >= 1")
    if not (group in ("auto", None) or (isinstance(group, int) and not isinstance(group, bool)
                                        and group >= 1)):
        raise ConfigError(f"`group` must be 'auto', None or an integer >= 1, got {group!r}")
    if halving is None:
        if min_epochs is not None:
            raise ConfigError(f"`min_epochs={min_epochs}` sets the first rung of successive "
                              "halving; pass `halving=ETA` too (e.g. 3), or drop `min_epochs`")
        return
    if isinstance(halving, bool) or not isinstance(halving, int) or halving < 2:
        raise ConfigError(f"`halving={halving!r}` is invalid: expected an integer ETA >= 2 (each "
                          "rung keeps the best 1/ETA of the settings), e.g. 3")
    if min_epochs is not None and (isinstance(min_epochs, bool) or not isinstance(min_epochs, int)
                                   or not 1 <= min_epochs <= config.epochs):
        raise ConfigError(f"`min_epochs={min_epochs!r}` is invalid: expected an integer in [1, "
                          f"`epochs={config.epochs}`], the epochs every run trains before the "
                          "first cut; lower `min_epochs` or raise `epochs`")
