"""Test accuracy of jaxnet's defaults and --search next to scikit-learn's MLPClassifier().

Usage: python scripts/bench_tabular.py [--seeds 5] [--datasets iris,breast_cancer,wine,digits]
                                       [--methods default,ensemble,search] [--set batch_size=32 ...]
                                       [--out tabular.json]

For every dataset and seed, jaxnet splits the raw data (stratified, 70% train / 10% val / 20%
test, the split seeded by the seed) exactly as `jaxnet train --dataset npz --data FILE --seed S`
does. jaxnet then trains each of JAXNET_METHODS on it: "default" its defaults
(`jaxnet.fitting.fit(TrainConfig(dataset="npz", ...))`: standardised inputs, early stopping on the
val split, best epoch kept), "ensemble" `jaxnet.fitting.fit_ensemble` with 5 members (what `jaxnet train --seeds 5`
runs: the mean of 5 seeds' probabilities, each member its own best epoch of 30), "search"
`jaxnet.search.search` (what `jaxnet train --search` runs: the candidates chosen on the val
split, the winner refit). `make_pipeline(StandardScaler(),
MLPClassifier(random_state=S))` with scikit-learn's defaults trains on the same train + val
examples (it holds out nothing by default). All are scored on the same test split. Prints a
markdown table of mean ± std over the seeds (and the mean wall seconds of a fit; the first seed
of a dataset compiles, later seeds reuse its compiled programs) and writes every run to --out.

`customers` is a CSV table with column kinds (scripts/make_table.py, 3,000 rows: an identifier,
a date, categories and numbers with empty cells, an imbalanced string label). jaxnet trains on
the file as `jaxnet train --data customers.csv --target churn --seed S` does (its own column
kinds, imputation and one-hot encoding). scikit-learn gets what a careful user builds by hand on
the same train + val rows: the identifier dropped, the date as the same year / day-of-year /
weekday numbers, `SimpleImputer(median, add_indicator) + StandardScaler` on numbers,
`SimpleImputer(constant) + OneHotEncoder(handle_unknown="ignore")` on categories, then
`MLPClassifier(random_state=S)`.
`--set FIELD=VALUE` changes a TrainConfig field for jaxnet, to measure another default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import tempfile
import time
import warnings

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from jaxnet import fitting, search
from jaxnet.config import TrainConfig

LOADERS = {"iris": sk_datasets.load_iris, "breast_cancer": sk_datasets.load_breast_cancer,
           "wine": sk_datasets.load_wine, "digits": sk_datasets.load_digits}
TABLES = ("customers",)  # CSV tables with column kinds, from scripts/make_table.py
HERE = pathlib.Path(__file__).resolve().parent


def _default(config, data) -> dict:
    metrics = fitting.fit(config, data).metrics
    return {"test_accuracy": metrics["test_accuracy"], "epochs": metrics["epochs_run"],
            "best_epoch": metrics["best_epoch"]}


def _search(config, data) -> dict:
    found = search.search(config, data)
    return {"test_accuracy": found.fit.metrics["test_accuracy"],
            "epochs": found.fit.metrics["epochs_run"], "best_epoch": found.fit.metrics["best_epoch"],
            "chosen": {**found.chosen, "hidden": list(found.chosen["hidden"])},
            "programs": found.programs}


ENSEMBLE_MEMBERS = 5


def _ensemble(config, data) -> dict:
    metrics = fitting.fit_ensemble(config, ENSEMBLE_MEMBERS, data).metrics
    return {"test_accuracy": metrics["ensemble"]["test_accuracy"],
            "members_test_accuracy": metrics["test_accuracy_mean"],
            "best_epochs": metrics["ensemble"]["best_epochs"]}


# jaxnet's columns: name -> (title, function(config, raw Dataset) -> {"test_accuracy", ...}).
JAXNET_METHODS = {"default": ("jaxnet defaults", _default),
                  "ensemble": (f"jaxnet --seeds {ENSEMBLE_MEMBERS}", _ensemble),
                  "search": ("jaxnet --search", _search)}


def jaxnet_runs(config, data, methods) -> dict:
    """Each of `methods` on `data`: its row entries, prefixed by the method's name."""
    row = {}
    for name in methods:
        started = time.perf_counter()
        result = JAXNET_METHODS[name][1](config, data)
        row[f"{name}_seconds"] = time.perf_counter() - started
        row.update({f"{name}_{k}": v for k, v in result.items()})
    return row


def _make_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_table", HERE / "make_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_table


def sklearn_pipeline(seed: int):
    """scikit-learn's hand-built pipeline for the customers table."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = ["age", "tenure_months", "monthly_spend", "support_calls", "year", "dayofyear",
               "dayofweek"]
    columns = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                  StandardScaler()), numbers),
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                     OneHotEncoder(handle_unknown="ignore")),
         ["plan", "region", "autopay"]),
    ])
    return make_pipeline(columns, MLPClassifier(random_state=seed))


def table_run(name: str, path: pathlib.Path, frame, seed: int, overrides: dict,
              methods) -> dict:
    """jaxnet on the CSV file and scikit-learn's hand-built pipeline on split `seed`."""
    import pandas as pd

    from jaxnet.data.columns import DataNote
    from jaxnet.data.csv import read_frame
    from jaxnet.data.split import split_indices

    config = TrainConfig(data_path=str(path), target="churn", seed=seed, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        y = read_frame(path, target="churn").y  # the labels jaxnet splits, as it splits them
        train, val, test = split_indices(y, config.val_fraction, config.test_fraction, seed,
                                         str(path))
        data = fitting.load_data(config)
        jaxnet = jaxnet_runs(config, data, methods)
    x = frame.drop(columns=["customer_id", "churn"])
    dates = pd.to_datetime(x.pop("signup_date"))
    x = x.assign(year=dates.dt.year, dayofyear=dates.dt.day_of_year,
                 dayofweek=dates.dt.day_of_week)
    fit_rows = np.concatenate([train, val])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = sklearn_pipeline(seed).fit(x.iloc[fit_rows], y[fit_rows])
    sklearn_seconds = time.perf_counter() - started
    return {"dataset": name, "seed": seed, "n_train": len(train), "n_val": len(val),
            "n_test": len(test), **jaxnet,
            "sklearn_test_accuracy": float(pipe.score(x.iloc[test], y[test])),
            "sklearn_iterations": int(pipe[-1].n_iter_), "sklearn_seconds": sklearn_seconds}


def _override(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields or not value:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with a TrainConfig field, got {text!r}")
    default = fields[name].default
    if value == "None":
        return name, None
    if isinstance(default, bool):
        return name, value.lower() in ("1", "true", "yes")
    if isinstance(default, tuple):
        return name, tuple(int(v) for v in value.split(","))
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            continue
    return name, value


def one_run(name: str, path: pathlib.Path, seed: int, overrides: dict, methods) -> dict:
    """jaxnet's methods and StandardScaler + MLPClassifier on split `seed` of `path`'s data."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    config = TrainConfig(dataset="npz", data_path=str(path), seed=seed, **overrides)
    data = fitting.load_data(config)
    jaxnet = jaxnet_runs(config, data, methods)

    x_fit = np.concatenate([data.x_train, data.x_val])
    y_fit = np.concatenate([data.y_train, data.y_val])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = make_pipeline(StandardScaler(), MLPClassifier(random_state=seed)).fit(x_fit, y_fit)
    sklearn_seconds = time.perf_counter() - started
    return {"dataset": name, "seed": seed, "n_train": len(data.x_train), "n_val": len(data.x_val),
            "n_test": len(data.x_test), **jaxnet,
            "sklearn_test_accuracy": float(mlp.score(data.x_test, data.y_test)),
            "sklearn_iterations": int(mlp[-1].n_iter_), "sklearn_seconds": sklearn_seconds}


def _pm(values) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def table(rows: list[dict], names: list[str], methods) -> str:
    """Test accuracy % (mean ± std over the seeds), then mean wall seconds per fit."""
    titles = [JAXNET_METHODS[m][0] for m in methods]
    lines = ["| dataset | train / val / test | " + " | ".join(titles) + " | MLPClassifier() | "
             + " | ".join(f"{t} s" for t in titles) + " | sklearn s |",
             "|---|---|" + "---|" * (2 * len(methods) + 2)]
    for name in names:
        rs = [r for r in rows if r["dataset"] == name]
        sizes = f"{rs[0]['n_train']} / {rs[0]['n_val']} / {rs[0]['n_test']}"
        accuracies = [_pm([r[f"{m}_test_accuracy"] for r in rs]) for m in (*methods, "sklearn")]
        seconds = [f"{np.mean([r[f'{m}_seconds'] for r in rs]):.1f}" for m in (*methods, "sklearn")]
        lines.append(f"| {name} | {sizes} | " + " | ".join(accuracies + seconds) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..K-1 (default 5)")
    parser.add_argument("--datasets", default=",".join((*LOADERS, *TABLES)),
                        help=f"comma list of {', '.join((*LOADERS, *TABLES))} (default: all)")
    parser.add_argument("--methods", default=",".join(JAXNET_METHODS),
                        help=f"jaxnet's columns, a comma list of {', '.join(JAXNET_METHODS)}")
    parser.add_argument("--set", type=_override, action="append", default=[], metavar="FIELD=VALUE",
                        help="change a jaxnet TrainConfig default (repeatable)")
    parser.add_argument("--out", default="tabular.json", help="every run as JSON (default tabular.json)")
    args = parser.parse_args(argv)
    names = args.datasets.split(",")
    if unknown := set(names) - set(LOADERS) - set(TABLES):
        parser.error(f"--datasets: unknown {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join((*LOADERS, *TABLES))}")
    methods = args.methods.split(",")
    if unknown := set(methods) - set(JAXNET_METHODS):
        parser.error(f"--methods: unknown {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(JAXNET_METHODS)}")
    overrides = dict(args.set)
    print(f"jaxnet vs MLPClassifier() on {platform.machine()}, {os.cpu_count()} cores; "
          f"{args.seeds} seeds; jaxnet overrides: {overrides or 'none (defaults)'}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name in TABLES:
                frame = _make_table()(3000, seed=0)
                path = pathlib.Path(tmp) / f"{name}.csv"
                frame.to_csv(path, index=False)
            else:
                x, y = LOADERS[name](return_X_y=True)
                path = pathlib.Path(tmp) / f"{name}.npz"
                np.savez(path, x=x, y=y)
            for seed in range(args.seeds):
                row = (table_run(name, path, frame, seed, overrides, methods) if name in TABLES
                       else one_run(name, path, seed, overrides, methods))
                rows.append(row)
                scores = ", ".join(f"{m} {100 * row[f'{m}_test_accuracy']:.2f}% "
                                   f"({row[f'{m}_seconds']:.1f} s)" for m in methods)
                print(f"  {name} seed {seed}: {scores}, MLPClassifier "
                      f"{100 * row['sklearn_test_accuracy']:.2f}%", flush=True)
    print(table(rows, names, methods))
    pathlib.Path(args.out).write_text(json.dumps({"overrides": overrides, "methods": methods,
                                                  "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
