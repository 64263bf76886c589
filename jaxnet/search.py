"""Right-sized networks for small tables: a successive-halving search, its winner saved as a run."""

from __future__ import annotations

import dataclasses
import itertools
import math
import pathlib
import time
from collections.abc import Callable, Sequence

from jaxnet import checkpoint as ckpt
from jaxnet import fitting, runlock, train
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.errors import ConfigError

# What the search varies (the rest of the config stays as given). Measured on iris, wine,
# breast_cancer and digits (scripts/bench_tabular.py): the run time of a small-table sweep
# is a fraction of a second, its compilation seconds, so the space is wide in the values one
# compiled program holds (lr, dropout) and narrow in architectures (one program per depth:
# (64,) and (256,) share one, padded and masked). Listed simplest first: settings
# that tie (same val accuracy and final loss) keep this order, so a tie goes to the smaller.
SPACE: dict[str, tuple] = {
    "hidden": ((64,), (256,), (128, 128)),
    "lr": (1e-3, 3e-3, 1e-2),
    "dropout": (0.0, 0.2),
}
SEARCHED = tuple(SPACE)  # the fields a search sets (a config's own values are replaced)
HALVING = 3  # ETA: each rung keeps the best third
# A candidate's full length in optimizer steps (rounded up to whole epochs, at most the run's
# epochs): the same work on every table, whatever its size (iris: 200 epochs of 2 steps,
# digits: 20 of 20). The winner is then trained as the config says (e.g. until no
# improvement), so the search's candidates need only be long enough to rank.
STEPS = 400


def search_epochs(config: TrainConfig, n_train: int) -> int:
    """The epochs of a candidate that is never cut: STEPS steps, at most `config.num_epochs`."""
    return max(1, min(config.num_epochs,
                      math.ceil(STEPS / train.steps_per_epoch(config, n_train))))


@dataclasses.dataclass
class SearchResult:
    """What `search` returns: the winner, trained as a normal run, and the search's record."""

    config: TrainConfig  # the winner's config, as `fit` trained it
    chosen: dict  # the winner's searched values: {"hidden": (..), "lr": .., "dropout": ..}
    fit: fitting.TrainResult  # the winner's run (its metrics hold `summary()` under "search")
    table: list[dict]  # one row per candidate: its values, val accuracy, epochs, rung reached
    rungs: int  # rungs of successive halving
    programs: int  # compiled training programs the search used (the refit's not counted)
    search_seconds: float  # the search alone (without the refit)

    epochs: int  # a candidate's full length (`search_epochs`)

    def summary(self) -> dict:
        """The search as metrics.json records it (JSON types)."""
        return {"chosen": _jsonable(self.chosen), "candidates": len(self.table),
                "rungs": self.rungs, "programs": self.programs, "halving": HALVING,
                "epochs": self.epochs,
                "criterion": "val_accuracy", "search_seconds": self.search_seconds,
                "table": [_jsonable(row) for row in self.table]}

    def __repr__(self) -> str:
        return (f"SearchResult(chosen={self.chosen}, candidates={len(self.table)}, "
                f"rungs={self.rungs}, programs={self.programs}, fit={self.fit!r})")


def candidates(space: dict[str, Sequence] | None = None) -> list[dict]:
    """Every combination of `space`'s values (default `SPACE`), in its order.

    Args:
      space: field -> values; "hidden" values are tuples of widths, the others sweepable
        numbers (`jaxnet.sweep.SWEEPABLE`).

    Returns:
      A list of {field: value} dicts, "hidden" as a tuple of ints.
    """
    space = SPACE if space is None else space
    if "hidden" not in space:
        raise ConfigError("a search `space` needs a 'hidden' entry (the architectures to "
                          "try, e.g. ((64,), (128, 128))); give one")
    names = list(space)
    values = [list(space[n]) for n in names]
    if any(not v for v in values):
        raise ConfigError(f"every entry of the search `space` needs at least one value; got {space}")
    rows = []
    for combo in itertools.product(*values):
        row = dict(zip(names, combo, strict=True))
        hidden = row["hidden"]
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        if not hidden or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden):
            raise ConfigError(f"the search `space` lists hidden={row['hidden']!r}; each "
                              "architecture is a tuple of positive widths, like (64,) or (128, 128)")
        rows.append({**row, "hidden": hidden})
    return rows


def check_search(config: TrainConfig, *, space: dict | None = None) -> None:
    """Raises ConfigError for what `search` would refuse, before any data or compiling."""
    config.validate()
    candidates(space)


def search(config: TrainConfig, data: Dataset | None = None, *,
           space: dict[str, Sequence] | None = None, out_dir=None,
           on_epoch: Callable[[dict], None] | None = None) -> SearchResult:
    """Picks a network for `data` by successive halving, then trains the winner as a run.

    Every candidate of `space` (`candidates`) trains up to `search_epochs` epochs under
    `jaxnet.sweep.sweep(..., halving=HALVING)`: the best third by validation accuracy (each
    run's best epoch; ties: the lower final training loss, then the space's order) go on
    after each rung. The sweep sees the training and validation splits only: the test split
    never takes part in the choice. The winner is then trained afresh by `fitting.fit` as
    the config says otherwise (`epochs`, or until no improvement, `patience`, ...), so
    `out_dir` holds a normal run (checkpoint, metrics.json, curves.png; `jaxnet.load` reads
    it) whose metrics.json records `SearchResult.summary()` under "search". (With
    `config.epochs` at most `search_epochs`, the refit is the winning candidate's run.)

    Args:
      config: everything but the searched fields (`SEARCHED`: hidden, lr, dropout), which
        the space's values replace.
      data: a loaded raw Dataset with a validation split; None loads `config.dataset`.
      space: field -> values to try (default `SPACE`); "hidden" is required.
      out_dir: the winner's run folder (None: nothing written). Held (`jaxnet.runlock`)
        from the start of the search to its end.
      on_epoch: `fitting.fit`'s progress callback, for the winner's refit.

    Returns:
      A SearchResult.

    Raises:
      ConfigError: a bad config or space, data without a validation split, or every
        candidate diverged.
    """
    check_search(config, space=space)
    settings = candidates(space)
    with runlock.hold(out_dir, "jaxnet.search"):
        data = fitting.load_data(config) if data is None else data
        if data.x_val is None or len(data.x_val) == 0:
            raise ConfigError(f"the {data.name} data has no validation split, and the search "
                              "picks on the validation split only (never on the test split); "
                              "set `val_fraction` above 0")
        started = time.perf_counter()
        prepared, _ = fitting.prepare(config, data)
        # The search sees no test split, so nothing about it can sway the choice.
        prepared = dataclasses.replace(prepared, x_test=None, y_test=None)
        epochs = search_epochs(config, len(prepared.x_train))
        table, best, rungs, programs = _search_sweep(
            dataclasses.replace(config, standardize=False, epochs=epochs, patience=None),
            prepared, settings)
        search_seconds = time.perf_counter() - started
        if best is None:
            raise ConfigError(f"every one of the {len(settings)} candidates diverged; lower "
                              "the learning rates in the search `space`")
        chosen = {k: best[k] for k in settings[0]}
        winner = dataclasses.replace(config, **chosen).validate()
        result = fitting.fit(winner, data, out_dir=out_dir, on_epoch=on_epoch)
        found = SearchResult(winner, chosen, result, table, rungs, programs, search_seconds,
                             epochs)
        result.metrics["search"] = found.summary()
        if out_dir is not None:
            ckpt.write_json(pathlib.Path(out_dir) / fitting.METRICS_FILE, result.metrics)
    return found


def _search_sweep(config: TrainConfig, data: Dataset, settings: list[dict]):
    """(table, best row, rungs, compiled programs) of the halving sweep over `settings`:
    one `jaxnet.sweep.sweep` call, one compiled program per depth (narrower widths padded
    and masked, `jaxnet.sweep.arch_groups`), halving across every candidate."""
    from jaxnet.sweep import arch_groups, sweep

    result = sweep(config, data, settings, halving=HALVING)
    rows = [{**row, "hidden": tuple(row["hidden"])} for row in result.settings]
    best = None if result.best is None else {**result.best, "hidden": tuple(result.best["hidden"])}
    keep = ("hidden", *(k for k in settings[0] if k != "hidden"), "val_accuracy",
            "final_loss", "diverged", "epochs_trained", "rung")
    table = [{k: row[k] for k in keep if k in row} for row in rows]
    return table, best, len(result.rungs), len(arch_groups(settings, config.hidden))


def _jsonable(row: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}
