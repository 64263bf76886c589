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
ARCH_AXES = ("hidden",)  # axes whose values are architectures (tuples of widths), not numbers
# A width sweep pads the runs of one depth to the widest of them, in one compiled program,
# as long as the widest layer is at most this many times the narrowest's (`arch_groups`).
# Measured (scripts/bench_width.py, digits, 2 hidden layers, 5 runs, 2-core CPU, best of 3
# fresh processes): a padded run trains at the speed of the padded network, so width 32
# padded to 128 ran at 0.57x of width 32 alone, padded to 256 at 0.23x; one more program
# compiles in ~4 s. Within 4x, padding costs at most ~2x on the narrow runs, which a short
# sweep repays against the compilation it saves; beyond, the waste grows with the square
# of the width.
MAX_PAD_RATIO = 4


def make_settings(axes: dict[str, Sequence[float]], mode: str = "grid", *, n_random: int = 0,
                  seed: int = 0) -> list[dict]:
    """Expands value lists (or (low, high) ranges for "random") into a list of settings.

    Args:
      axes: name -> values. "zip" pairs equal-length lists (the notebook's way), "grid"
        takes every combination, "random" draws `n_random` settings with each axis given as
        (low, high): log-uniform for LOG_AXES, uniform otherwise. "hidden" takes a list of
        architectures, each a tuple of hidden widths like (64, 64) (an int is one hidden
        layer); "random" draws it uniformly from that list.
      mode: "zip", "grid" or "random".

    Returns:
      A list of {name: float} dicts ("hidden": a tuple of ints).
    """
    unknown = set(axes) - set(SWEEPABLE)
    if unknown:
        raise ConfigError(f"cannot sweep {sorted(unknown)}; sweepable: {', '.join(SWEEPABLE)}")
    if mode not in MODES:
        raise ConfigError(f"`mode={mode!r}` is invalid: expected one of {', '.join(MODES)}")
    names = list(axes)
    arch = {name: [_architecture(name, v) for v in axes[name]] for name in ARCH_AXES
            if name in axes}
    if any(not v for v in arch.values()):
        raise ConfigError("every swept axis needs at least one value; the sweep has zero settings")
    if mode == "random":
        if n_random <= 0:
            raise ConfigError(f"`n_random={n_random}` is invalid: mode 'random' needs a positive "
                              "number of settings to draw")
        rng = np.random.default_rng(seed)
        columns = {}
        for name, bounds in axes.items():
            if name in arch:
                picks = rng.integers(len(arch[name]), size=n_random)
                columns[name] = [arch[name][i] for i in picks]
                continue
            lo, hi = float(min(bounds)), float(max(bounds))
            if name in LOG_AXES and lo <= 0:
                raise ConfigError(f"`{name}=({lo:g}, {hi:g})` is invalid: a log-uniform range needs "
                                  "positive bounds")
            if name in LOG_AXES:
                columns[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n_random))
            else:
                columns[name] = rng.uniform(lo, hi, n_random)
        return [{n: columns[n][i] if n in arch else float(columns[n][i]) for n in names}
                for i in range(n_random)]
    values = [arch[n] if n in arch else list(map(float, axes[n])) for n in names]
    if any(len(v) == 0 for v in values):
        raise ConfigError("every swept axis needs at least one value; the sweep has zero settings")
    if mode == "zip":
        lengths = {n: len(v) for n, v in zip(names, values, strict=True)}
        if len(set(lengths.values())) > 1:
            raise ConfigError("mode 'zip' pairs the axes one to one, so they need equal lengths; "
                              f"got {lengths}")
        return [dict(zip(names, combo, strict=True)) for combo in zip(*values, strict=True)]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def _architecture(name, value) -> tuple[int, ...]:
    """A "hidden" value as a tuple of ints: (64, 64), [64, 64] or 64 (one hidden layer)."""
    widths = (value,) if np.ndim(value) == 0 and not isinstance(value, str) else value
    try:
        widths = tuple(widths)
    except TypeError:
        widths = None
    if widths is None or not ranges.is_valid(name, widths):
        raise ConfigError(f"`{name}={value!r}` is invalid: expected "
                          f"{ranges.expected(name)}, e.g. (64, 64)")
    return tuple(int(w) for w in widths)


def arch_groups(settings: list[dict], hidden: tuple[int, ...],
                max_ratio: float = MAX_PAD_RATIO) -> list[tuple[tuple[int, ...], list[int]]]:
    """How a sweep's settings share compiled programs: `(padded hidden widths, indices of the
    settings)` per program.

    Without a "hidden" axis, one program of `hidden` (the config's). With one, the settings
    of each depth (number of hidden layers) go to programs of their own; within a depth,
    the architectures, sorted by their widest layer, fill a program while its widest layer
    is at most `max_ratio` times the narrowest architecture's widest layer; each program is
    padded to the widest width at each layer of its architectures. A padded run costs about
    what its padded network costs, so padding a network far narrower than the widest
    wastes more time than a second compilation costs (MAX_PAD_RATIO, measured).
    """
    if not settings or "hidden" not in settings[0]:
        return [(tuple(hidden), list(range(len(settings))))]
    by_depth: dict[int, dict[tuple[int, ...], list[int]]] = {}
    for i, s in enumerate(settings):
        by_depth.setdefault(len(s["hidden"]), {}).setdefault(tuple(s["hidden"]), []).append(i)
    groups = []
    for depth in sorted(by_depth):
        archs = sorted(by_depth[depth], key=lambda a: (max(a, default=0), a))
        current: list[tuple[int, ...]] = []
        for arch in [*archs, None]:
            if current and (arch is None
                            or max(arch, default=0) > max_ratio * max(current[0], default=0)):
                padded = tuple(max(a[i] for a in current) for i in range(depth))
                groups.append((padded, sorted(i for a in current for i in by_depth[depth][a])))
                current = []
            if arch is not None:
                current.append(arch)
    return groups


def check_sweep(config: TrainConfig, settings: list[dict], *, seeds: int = 1,
                group: int | str | None = "auto", halving: int | None = None,
                min_epochs: int | None = None, keep_params: bool = False) -> None:
    """Raises ConfigError for whatever `sweep` would refuse, before any data or compiling.

    Takes `sweep`'s arguments (a config with epochs=None trains DEFAULT_EPOCHS).
    """
    config.validate()
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=DEFAULT_EPOCHS)
    _check_settings(config, settings)
    _check_options(config, seeds, group, halving, min_epochs)
    if keep_params and len({tuple(s.get("hidden", ())) for s in settings}) > 1:
        raise ConfigError("`keep_params=True` stacks the runs' parameters, which needs one "
                          "architecture; sweep one `hidden` at a time to keep parameters")


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
            if k in ARCH_AXES:
                if not isinstance(v, tuple) or _architecture(k, v) != v:
                    raise ConfigError(f"settings[{i}] has `{k}={v!r}`: a swept architecture "
                                      "must be a tuple of positive ints, like (64, 64) "
                                      "(make_settings builds them)")
                continue
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
