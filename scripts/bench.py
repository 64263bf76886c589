"""Side-by-side benchmark of jaxnet, Flax, Equinox, plain JAX, a NumPy port and PyTorch eager.

Usage: python scripts/bench.py [--quick] [--out bench.json]
                               [--only gemm,step,peers,compile,sweep,dp,e2e,latency]
                               [--before DIR]

Prints a table and writes bench.json: a list of rows with impl (jaxnet, jax, flax, equinox,
numpy, torch, gemm-bound), work, batch, optimizer, grad, dtype, dropout, shuffled, median_s,
steps_per_s, examples_per_s, gemm_bound_fraction, peak_fraction, compile_s and notes. Every
figure is measured in this run, on this machine.

Parts: "step" is jaxnet's jitted epoch (shuffles and gathers each minibatch) next to the
NumPy and PyTorch steps; "peers" is jaxnet's step scanned over one fixed batch next to
Flax, Equinox and plain JAX doing the same (`python scripts/bench.py --only peers`);
"compile" is the XLA compile time of each step-row configuration's shuffled epoch, each try
in a fresh process; "latency" is what a person waits for, process start to exit: `jaxnet
--version`, `--help`, and `jaxnet train` with a cold and a warm compilation cache, next to a
scikit-learn script on the same data (`python scripts/bench.py --only latency`). Flax,
Equinox and PyTorch come with `pip install '.[bench]'`; rows of a missing one are skipped
with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_peers as peers
import bench_reference as ref

from jaxnet import TrainConfig
from jaxnet.data import random_data
from jaxnet.sweep import make_settings, sweep
from jaxnet.train import (
    init_train_state,
    make_epoch,
    make_optimizer,
    make_train_step,
)

# Everything runs in 32-bit JAX, as a float32 user's process does (under x64, Flax's and
# Equinox's dropout would draw float64 uniforms), except the float64 sweep rows, which
# switch 64-bit JAX on for themselves (`jax.enable_x64(True)` in `sweep_rows`): importing
# this module changes no process-wide flag.

DIMS = (3 * 32 * 32, 100, 100, 100, 100, 10)  # the notebook's default network
BATCHES = (50, 256, 4096)
OPTIMIZERS = {"momentum": "momentum", "adam": "adam"}  # bench name -> jaxnet name
LR = 1e-3  # every JAX row's learning rate (NumPy and PyTorch keep their 1e-2: same work)
REPO = pathlib.Path(__file__).resolve().parent.parent  # the checkout the jaxnet rows run
PARTS = ("gemm", "step", "peers", "compile", "sweep", "dp", "e2e", "latency")
BATCH_PARTS = ("gemm", "step", "peers", "compile")  # the parts `--batches` selects rows of


def _jaxnet_config(batch, optimizer, grad, dropout):
    # reg=0: the peers have no L2 term either.
    return TrainConfig(hidden=DIMS[1:-1], optimizer=OPTIMIZERS[optimizer], lr=LR,
                       batch_size=batch, dropout=dropout, reg=0.0, grad=grad, dtype="float32")


def _data(n, seed=0):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return (jax.random.normal(kx, (n, DIMS[0]), jnp.float32),
            jax.random.randint(ky, (n,), 0, DIMS[-1], jnp.int32))


def jaxnet_epoch_run(batch, optimizer, grad, dropout, *, steps, shapes_only=False):
    """jaxnet's jitted epoch over `steps` shuffled minibatches of random CIFAR-shaped data.

    Returns:
      `(run, data, carry)` for `bench_peers.interleaved_seconds`; with `shapes_only`, the data
      is its `jax.ShapeDtypeStruct`s (enough to compile the epoch).
    """
    n = batch * steps
    config = _jaxnet_config(batch, optimizer, grad, dropout)
    opt = make_optimizer(config, n)
    epoch = make_epoch(config, opt, n)
    run = jax.jit(lambda data, ts: epoch(ts, *data), donate_argnums=1)
    data = ((jax.ShapeDtypeStruct((n, DIMS[0]), jnp.float32), jax.ShapeDtypeStruct((n,), jnp.int32))
            if shapes_only else _data(n))
    return run, data, init_train_state(config, DIMS, opt)


def jaxnet_fixed_run(batch, optimizer, grad, dropout, *, steps):
    """`jaxnet.train.make_train_step` scanned `steps` times over one fixed batch, the way
    `bench_peers.make_run` runs the peers.

    Returns:
      `(run, batch_arrays, carry)` for `bench_peers.interleaved_seconds`.
    """
    config = _jaxnet_config(batch, optimizer, grad, dropout)
    opt = make_optimizer(config, batch * steps)
    step = make_train_step(config, opt)

    def run(data, ts):
        key, sub = jax.random.split(ts.key)
        ts, metrics = jax.lax.scan(lambda c, k: step(c, data, k), ts._replace(key=key),
                                   jax.random.split(sub, steps))
        return ts, metrics["loss"]

    return jax.jit(run, donate_argnums=1), _data(batch), init_train_state(config, DIMS, opt)


def _combos(quick, batches=BATCHES):
    """(batch, optimizer, grad, dropout) of the jaxnet epoch rows, (batch, optimizer,
    dropout) of the peer rows, for the batch sizes in `batches`."""
    combos = [(b, opt, grad, drop) for b in BATCHES for opt in OPTIMIZERS
              for grad in ("manual", "autodiff") for drop in (0.0, 0.5)]
    peer_combos = sorted({(b, o, d) for b, o, _, d in combos})
    if quick:  # every kind of row, fewer combinations
        combos = [(b, "momentum", grad, 0.0) for b in BATCHES for grad in ("manual", "autodiff")]
        combos += [(b, "adam", "manual", 0.0) for b in BATCHES]
        combos += [(b, "momentum", "manual", 0.5) for b in BATCHES]
        peer_combos = [(b, "momentum", 0.0) for b in BATCHES] + [(256, "adam", 0.5)]
    return ([c for c in combos if c[0] in batches],
            [c for c in peer_combos if c[0] in batches])


def step_rows(args, parts, bounds, peak_gflops):
    """Rows of the "step" part (jaxnet epochs, NumPy, PyTorch) and the "peers" part (jaxnet
    step, plain JAX, Flax, Equinox on one fixed batch), grouped by batch, optimizer, dropout."""
    combos, peer_combos = _combos(args.quick, args.batches)
    rounds = 3 if args.quick else 7
    rows = []

    def add(impl, batch, opt, grad, drop, median, *, shuffled, compile_s=None, notes=None):
        rows.append(_row(impl, "step", batch, opt, grad, "float32", drop, median,
                         bounds.get(batch), shuffled=shuffled, peak_gflops=peak_gflops,
                         compile_s=compile_s, notes=notes))
        _print_row(rows[-1])

    step_groups = sorted({(b, o, d) for b, o, _, d in combos}) if "step" in parts else []
    groups = sorted(set(step_groups) | (set(peer_combos) if "peers" in parts else set()))
    for batch, opt, drop in groups:
        steps = _steps_for(batch, args.quick)
        # Every JAX row of the group is timed side by side (interleaved rounds), so the
        # ratios to the fastest peer do not depend on when in the process each row ran.
        runs = {}
        if (batch, opt, drop) in step_groups:
            for grad in [g for b, o, g, d in combos if (b, o, d) == (batch, opt, drop)]:
                runs[("jaxnet", grad, True)] = jaxnet_epoch_run(batch, opt, grad, drop, steps=steps)
        if "peers" in parts and (batch, opt, drop) in peer_combos:
            for grad in ("manual", "autodiff"):
                runs[("jaxnet", grad, False)] = jaxnet_fixed_run(batch, opt, grad, drop, steps=steps)
            x, y = _data(batch)
            for impl in filter(peers.available, peers.PEERS):
                run, carry = peers.make_run(impl, DIMS, opt, drop, steps, lr=LR)
                runs[(impl, "autodiff", False)] = (run, (x, y), carry)
        timed = peers.interleaved_seconds(runs, steps=steps, rounds=rounds)
        for (impl, grad, shuffled), (median, compile_s, _) in timed.items():
            notes = (_JAXNET_NOTES[shuffled] if impl == "jaxnet"
                     else _PEER_NOTES[impl].format(peers.version(impl)))
            add(impl, batch, opt, grad, drop, median, shuffled=shuffled, compile_s=compile_s,
                notes=notes)
        del runs, timed  # frees the group's data (up to 2.4 GB per epoch) before NumPy's rows
        if (batch, opt, drop) in step_groups:
            ref_steps = max(3, steps // 4)
            times = ref.numpy_step_seconds(DIMS, batch, opt, drop, np.float32, steps=ref_steps)
            add("numpy", batch, opt, "manual", drop, statistics.median(times), shuffled=False)
            if ref.torch_available():
                times = ref.torch_step_seconds(DIMS, batch, opt, drop, np.float32, steps=ref_steps)
                add("torch", batch, opt, "autograd", drop, statistics.median(times),
                    shuffled=False,
                    notes=f"torch {ref.torch_version()} eager, {os.cpu_count()} threads")
    missing = [("torch", ref.torch_available())] if "step" in parts else []
    if "peers" in parts:
        missing += [(impl, peers.available(impl)) for impl in peers.PEERS]
    for impl, present in missing:
        if not present:
            rows.append({"impl": impl, "work": "step", "notes": f"{impl} is not installed "
                         f"(pip install '.[bench]'); no {impl} rows"})
            print(f"{impl}: not installed (pip install '.[bench]'), skipped")
    return rows


_JAXNET_NOTES = {  # by `shuffled`
    True: "jitted epoch: shuffle, x[idx] gather per step, lax.scan",
    False: "make_train_step in lax.scan over one batch",
}
_PEER_NOTES = {
    "jax": "jax {}: value_and_grad of a hand-written apply, optax, jit(lax.scan)",
    "flax": "flax {} linen, mutable batch_stats, optax, jit(lax.scan)",
    "equinox": "equinox {}: vmapped model, eqx.nn.State, optax, filter_jit(lax.scan)",
}


def _steps_for(batch, quick):
    steps = max(8, int(2e5 // batch)) if not quick else max(4, int(5e4 // batch))
    return min(steps, 400)


def gemm_rows(args, gflops):
    rows, bounds = [], {}
    for batch in args.batches:
        bound = ref.gemm_bound_step_seconds(DIMS, batch, jnp.float32, repeats=3 if args.quick else 10)
        bounds[batch] = bound["seconds"]
        rows.append({"impl": "gemm-bound", "work": "step", "batch": batch, "dtype": "float32",
                     "median_s": bound["seconds"], "steps_per_s": 1 / bound["seconds"],
                     "examples_per_s": batch / bound["seconds"],
                     "gflop_per_step": bound["flops"] / 1e9,
                     "peak_fraction": bound["flops"] / bound["seconds"] / (gflops * 1e9),
                     "notes": f"sum of the step's lone matrix products; peak {gflops:.0f} GFLOP/s"})
        _print_row(rows[-1])
    return rows, bounds


def sweep_rows(args):
    """The notebook's sweep: 100 (lr, weight_scale) settings x 100 full-batch SGD steps."""
    n_settings = 20 if args.quick else 100
    lrs = np.geomspace(1e-5, 1e5, 100)[:: 100 // n_settings]
    wss = np.linspace(1e-2, 9e-2, 100)[:: 100 // n_settings]
    rows = []
    for dtype in ("float64", "float32"):
        with jax.enable_x64(dtype == "float64"):
            rows += _notebook_sweep_rows(args, dtype, n_settings, lrs, wss)
    return rows


def _notebook_sweep_rows(args, dtype, n_settings, lrs, wss):
    """The jaxnet, NumPy and (float32, full run) PyTorch rows of the notebook sweep in `dtype`."""
    rows = []
    data = random_data(dtype=np.dtype(dtype))
    config = TrainConfig(dataset="random", hidden=DIMS[1:-1], optimizer="sgd", batch_size=50,
                         epochs=100, dropout=0.0, reg=0.0, init="normal", dtype=dtype)
    settings = make_settings({"lr": lrs, "weight_scale": wss}, "zip")
    t0 = time.perf_counter()
    result = sweep(config, data, settings)
    total = time.perf_counter() - t0
    jax_row = {"impl": "jaxnet", "work": "sweep", "batch": 50, "optimizer": "sgd",
               "grad": "manual", "dtype": dtype, "settings": n_settings, "iterations": 100,
               "median_s": result.run_seconds, "compile_s": result.compile_seconds,
               "total_s": total,
               "notes": "one vmapped jit over the settings; median_s excludes compile"}
    rows.append(jax_row)
    _print_row(jax_row)
    t0 = time.perf_counter()
    losses = ref.numpy_notebook_sweep(data.x_train, data.y_train, lrs, wss, 100, DIMS,
                                      np.dtype(dtype))
    np_s = time.perf_counter() - t0
    # Different random initial weights (NumPy's randn vs JAX's), so compare outcomes,
    # not per-setting losses: the best loss and how many settings blew up.
    np_ok = np.isfinite(losses) & (losses < 1e3)
    ours_best = result.best["final_loss"] if result.best else float("nan")
    jax_row["notes"] += (f"; best loss {ours_best:.3g}, "
                         f"{sum(r['diverged'] for r in result.runs)} diverged")
    agree = (f"best loss {np.min(losses[np_ok]):.3g}, {int((~np_ok).sum())} non-finite "
             "or > 1e3") if np_ok.any() else "all settings blew up"
    rows.append({"impl": "numpy", "work": "sweep", "batch": 50, "optimizer": "sgd",
                 "grad": "manual", "dtype": dtype, "settings": n_settings, "iterations": 100,
                 "median_s": np_s, "speedup_of_jaxnet": np_s / result.run_seconds,
                 "notes": f"Python loop over settings; {agree}"})
    _print_row(rows[-1])
    if dtype == "float32" and ref.torch_available() and not args.quick:
        t0 = time.perf_counter()
        ref.torch_notebook_sweep(data.x_train, data.y_train, lrs, wss, 100, DIMS, np.float32)
        rows.append({"impl": "torch", "work": "sweep", "batch": 50, "optimizer": "sgd",
                     "grad": "autograd", "dtype": dtype, "settings": n_settings,
                     "iterations": 100, "median_s": time.perf_counter() - t0,
                     "notes": "Python loop over settings, eager"})
        _print_row(rows[-1])
    return rows


def e2e_rows(args):
    """Process start to exit of `jaxnet train` (defaults, digits), and 5 seeds two ways."""
    rows = []
    epochs = ["--epochs", "5"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        def timed(extra):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "jaxnet", "train", "--quiet", *epochs, *extra,
                            "--no-compile-cache"],  # every run compiles (see the latency part)
                           check=True, cwd=tmp, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0
        one = timed(["--out", "one"])
        rows.append({"impl": "jaxnet", "work": "e2e", "dataset": "digits", "median_s": one,
                     "notes": "jaxnet train" + (" --epochs 5" if args.quick else " (defaults)")
                     + ", no compilation cache"})
        _print_row(rows[-1])
        vmapped = timed(["--seeds", "5", "--out", "seeds"])
        separate = sum(timed(["--seed", str(s), "--out", f"s{s}"]) for s in range(5))
        rows.append({"impl": "jaxnet", "work": "e2e", "dataset": "digits", "seeds": 5,
                     "median_s": vmapped, "separate_runs_s": separate,
                     "speedup": separate / vmapped,
                     "notes": "--seeds 5 (one vmapped call) vs 5 separate processes"})
        _print_row(rows[-1])
    return rows


# scikit-learn's way to the same result as `jaxnet train`: load, split, scale, fit, score.
_SKLEARN_SCRIPT = """
import sys, warnings
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
if sys.argv[1] == "digits":
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
else:
    import pandas as pd
    table = pd.read_csv(sys.argv[1])
    x, y = table.drop(columns="species").to_numpy(), table["species"].to_numpy()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                    random_state=0)
warnings.simplefilter("ignore", ConvergenceWarning)  # iris: 200 epochs without converging
model = make_pipeline(StandardScaler(), MLPClassifier(random_state=0)).fit(x_train, y_train)
print(f"test accuracy {model.score(x_test, y_test):.4f}")
"""


def latency_rows(args):
    """Process start to exit of what a person waits for, best of 3 fresh processes per
    command (1 with --quick), the commands interleaved: `jaxnet --version`, `--help`, `train
    --help`; `jaxnet train` (defaults) on digits and on iris written as a 150-row CSV, with a
    cold compilation cache (a new empty folder each time) and a warm one (filled by one
    untimed run first); scikit-learn's StandardScaler + MLPClassifier() script on each.
    With `--before DIR` (another checkout of jaxnet, e.g. a worktree of an older commit),
    its `jaxnet train` rows run too, in the same rounds, for a before-and-after table."""
    from sklearn.datasets import load_iris

    repeats = 1 if args.quick else 3
    checkouts = {None: str(REPO)}
    if args.before:
        checkouts["before"] = str(pathlib.Path(args.before).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        iris = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
        csv_path = tmp / "iris.csv"
        iris.to_csv(csv_path, index=False)
        jaxnet = [sys.executable, "-m", "jaxnet"]
        data = {"digits": [], "iris-csv": ["--data", str(csv_path), "--target", "species"]}
        cases = [("version", "jaxnet --version", None, None, [*jaxnet, "--version"], None),
                 ("help", "jaxnet --help", None, None, [*jaxnet, "--help"], None),
                 ("train-help", "jaxnet train --help", None, None, [*jaxnet, "train", "--help"],
                  None)]
        for name, flags in data.items():
            for checkout in checkouts:
                for cache in ("cold", "warm"):
                    cases.append(("train", "jaxnet train" + (f" ({checkout})" if checkout else ""),
                                  name, cache, [*jaxnet, "train", "--quiet", *flags], checkout))
            cases.append(("sklearn", "scikit-learn script", name, None,
                          [sys.executable, "-c", _SKLEARN_SCRIPT,
                           "digits" if name == "digits" else str(csv_path)], None))
        runs = 0

        def seconds(case):
            nonlocal runs
            task, _, _, cache, argv, checkout = case
            runs += 1
            env = {**os.environ, "JAXNET_CACHE_DIR": "", "PYTHONPATH": checkouts[checkout]}
            if cache:
                folder = f"warm-{checkout}" if cache == "warm" else f"cold{runs}"
                env["JAXNET_CACHE_DIR"] = str(tmp / folder)
            out = ["--out", str(tmp / f"run{runs}")] if task == "train" else []
            t0 = time.perf_counter()
            subprocess.run([*argv, *out], check=True, cwd=tmp, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - t0

        for case in cases:
            if case[3] == "warm":
                seconds(case)  # fills the warm cache
        times = [[] for _ in cases]
        for _ in range(repeats):
            for i, case in enumerate(cases):
                times[i].append(seconds(case))
    rows = []
    for (task, command, dataset, cache, _, checkout), ts in zip(cases, times, strict=True):
        rows.append({"impl": "sklearn" if task == "sklearn" else "jaxnet", "work": "latency",
                     "task": task, "command": command, "dataset": dataset, "cache": cache,
                     "checkout": checkout,
                     "best_s": min(ts), "times_s": ts,
                     "notes": f"process start to exit, best of {repeats}"})
    print(latency_table(rows), flush=True)
    return rows


# What issue 30 asks of each latency row: at most these seconds, or at most this many times
# scikit-learn's script on the same data.
LATENCY_TARGETS = {("version", None): (0.6, None), ("help", None): (0.6, None),
                   ("train", "digits", "cold"): (None, 2.0), ("train", "digits", "warm"): (None, 1.0),
                   ("train", "iris-csv", "warm"): (None, 1.5)}


def latency_table(rows) -> str:
    """The latency rows as a Markdown table: each command's seconds (best of the fresh
    processes), its time over scikit-learn's script on the same data, issue 30's target."""
    latency = [r for r in rows if r.get("work") == "latency"]
    if not latency:
        return ""
    sklearn = {r["dataset"]: r["best_s"] for r in latency if r["impl"] == "sklearn"}
    lines = ["| command | data | cache | seconds (best) | / scikit-learn | target |",
             "|---|---|---|---|---|---|"]
    for r in latency:
        key = ((r["task"], r.get("dataset"), r.get("cache")) if r["task"] == "train"
               else (r["task"], None))
        if r.get("checkout"):  # another checkout's row (--before): no target of its own
            key = None
        seconds, times = LATENCY_TARGETS.get(key, (None, None))
        over = r["best_s"] / sklearn[r["dataset"]] if r.get("dataset") in sklearn else None
        target = f"<= {seconds} s" if seconds else f"<= {times}x" if times else ""
        lines.append(f"| {r['command']} | {r.get('dataset') or ''} | {r.get('cache') or ''} | "
                     f"{r['best_s']:.2f} | {'' if over is None else f'{over:.2f}x'} | {target} |")
    return "\n".join(lines)


def _child(code, *args, env=None) -> dict:
    """Runs `code` in a fresh Python process with `args`; the JSON of its last output line."""
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


_DP_CHILD = """
import json, statistics, sys, time
import jax, jax.numpy as jnp
from jaxnet import TrainConfig, distributed
from jaxnet.train import init_train_state, make_epoch, make_optimizer
n_dev, batch, steps, dims = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), (3072, 100, 100, 100, 100, 10)
env = distributed.setup(devices=n_dev, batch_size=batch)
n = batch * steps
config = TrainConfig(hidden=dims[1:-1], optimizer="momentum", batch_size=batch, dropout=0.0, reg=0.0)
opt = make_optimizer(config, n)
x = jax.random.normal(jax.random.PRNGKey(0), (n, dims[0]), jnp.float32)
y = jax.random.randint(jax.random.PRNGKey(1), (n,), 0, 10, jnp.int32)
ts, x, y = env.replicate((init_train_state(config, dims, opt), x, y))
epoch = jax.jit(make_epoch(config, opt, n, env.batch_sharding), donate_argnums=0)
ts, losses = epoch(ts, x, y); losses.block_until_ready()
times = []
for _ in range(3):
    t0 = time.perf_counter(); ts, losses = epoch(ts, x, y); losses.block_until_ready()
    times.append((time.perf_counter() - t0) / steps)
print(json.dumps({"median_s": statistics.median(times)}))
"""


def dp_rows(args):
    """Data-parallel throughput at batch 4096 on 1, 2 and 4 (fake CPU) devices."""
    rows = []
    batch, steps = 4096, 4 if args.quick else 12
    for n_dev in (1, 2, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_dev}"}
        median = _child(_DP_CHILD, n_dev, batch, steps, env=env)["median_s"]
        platform_name = jax.devices()[0].platform
        rows.append(_row("jaxnet", "dp", batch, "momentum", "manual", "float32", 0.0, median, None,
                         shuffled=True,
                         notes=f"{n_dev} {platform_name} device(s), synchronised batchnorm; "
                               + ("fake CPU devices share the same cores: this shows overhead, "
                                  "not speed-up" if platform_name == "cpu" else "")))
        rows[-1]["devices"] = n_dev
        _print_row(rows[-1])
    return rows


_COMPILE_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp
import bench
batch, opt, grad, drop, steps = int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
jax.jit(lambda a: a @ a.T + 1).lower(jnp.ones((8, 8))).compile()  # the backend's one-time setup
run, data, ts = bench.jaxnet_epoch_run(batch, opt, grad, drop, steps=steps, shapes_only=True)
jax.block_until_ready(ts)
t0 = time.perf_counter()
run.lower(data, ts).compile()  # trace, lower and compile, as the step rows time it
print(json.dumps({"compile_s": time.perf_counter() - t0}))
"""


def compile_rows(args):
    """XLA compile seconds of jaxnet's shuffled epoch for each step-row configuration, each
    try in a fresh process, as a user's run compiles it (in the "step" part the bench's own
    state runs alongside: gigabytes of data, PyTorch's threads). Tries are interleaved over
    the configurations; a row keeps the best and all."""
    combos, _ = _combos(args.quick, args.batches)
    tries = 1 if args.quick else 3
    scripts = str(pathlib.Path(__file__).resolve().parent)
    seconds = {combo: [] for combo in combos}
    for _ in range(tries):
        for combo in combos:
            batch, opt, grad, drop = combo
            seconds[combo].append(_child(_COMPILE_CHILD, scripts, batch, opt, grad, drop,
                                         _steps_for(batch, args.quick))["compile_s"])
    rows = []
    for (batch, opt, grad, drop), times in seconds.items():
        rows.append({"impl": "jaxnet", "work": "compile", "batch": batch, "optimizer": opt,
                     "grad": grad, "dtype": "float32", "dropout": drop, "shuffled": True,
                     "compile_s": min(times), "compile_tries_s": times,
                     "notes": f"shuffled epoch, fresh process per try, best of {len(times)}"})
        _print_row(rows[-1])
    return rows


def _row(impl, work, batch, optimizer, grad, dtype, dropout, median, bound, *, shuffled,
         peak_gflops=None, compile_s=None, notes=None):
    """A step row; `peak_fraction` is the step's matrix flops per second over the peak."""
    flops = ref.step_matmul_flops(DIMS, batch)
    row = {"impl": impl, "work": work, "batch": batch, "optimizer": optimizer, "grad": grad,
           "dtype": dtype, "dropout": dropout, "shuffled": shuffled, "median_s": median,
           "steps_per_s": 1 / median, "examples_per_s": batch / median,
           "gflop_per_step": flops / 1e9,
           "gemm_bound_fraction": bound / median if bound else None,
           "peak_fraction": flops / median / (peak_gflops * 1e9) if peak_gflops else None}
    if compile_s is not None:
        row["compile_s"] = compile_s
    if notes:
        row["notes"] = notes
    return row


def _print_row(r):
    parts = [f"{r.get('impl', ''):10s}", f"{r.get('work', ''):5s}"]
    for key, fmt in (("batch", "batch {}"), ("optimizer", "{}"), ("grad", "{}"), ("dtype", "{}"),
                     ("dropout", "drop {}"), ("settings", "{} settings")):
        if r.get(key) is not None:
            parts.append(fmt.format(r[key]))
    if r.get("shuffled") is not None:
        parts.append("shuffled" if r["shuffled"] else "fixed   ")
    if r.get("devices"):
        parts.append(f"{r['devices']} device(s)")
    if r.get("steps_per_s") and r["work"] in ("step", "dp"):
        parts.append(f"{r['steps_per_s']:9.1f} steps/s {r['examples_per_s']:10.0f} ex/s")
    elif r.get("median_s") is not None:
        parts.append(f"{r['median_s']:8.2f} s")
    if r.get("gemm_bound_fraction"):
        parts.append(f"{100 * r['gemm_bound_fraction']:5.1f}% of GEMM-bound")
    if r.get("peak_fraction"):
        parts.append(f"{100 * r['peak_fraction']:5.1f}% of peak")
    if r.get("compile_s") is not None:
        parts.append(f"compile {r['compile_s']:.2f} s")
    for key in ("speedup_of_jaxnet", "speedup"):
        if r.get(key):
            parts.append(f"jaxnet {r[key]:.1f}x faster")
    if r.get("notes") and r["work"] != "step":
        parts.append(f"({r['notes']})")
    print("  ".join(parts), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer combinations and repeats (< 5 min)")
    parser.add_argument("--out", default="bench.json", help="where to write the rows (default bench.json)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma list of parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--before", metavar="DIR",
                        help="latency part: also time `jaxnet train` from the jaxnet checkout "
                             "in DIR (e.g. a worktree of an older commit), side by side")
    parser.add_argument("--batches",
                        help="comma list of the batch sizes to time in the "
                             f"{', '.join(BATCH_PARTS)} parts, of "
                             f"{', '.join(map(str, BATCHES))} (default: all)")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}; "
                     f"choose from {', '.join(PARTS)}")
    if args.batches is None:
        args.batches = BATCHES
    else:
        if not parts & set(BATCH_PARTS):
            parser.error(f"--batches: the parts run ({', '.join(sorted(parts))}) have no batch "
                         f"sizes to choose; it applies to {', '.join(BATCH_PARTS)}")
        try:
            args.batches = tuple(sorted({int(b) for b in args.batches.split(",")}))
        except ValueError:
            parser.error(f"--batches: {args.batches!r} is not a comma list of whole numbers")
        unknown = sorted(set(args.batches) - set(BATCHES))
        if unknown:
            parser.error(f"--batches: no rows for batch {', '.join(map(str, unknown))}; "
                         f"choose from {', '.join(map(str, BATCHES))}")
    versions = {impl: peers.version(impl) for impl in ("flax", "equinox")}
    print(f"jaxnet bench on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} ({jax.devices()[0].platform}), numpy {np.__version__}, "
          f"torch {ref.torch_version() or 'not installed'}, "
          + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items())
          + (" [quick]" if args.quick else ""))
    started = time.perf_counter()
    rows, bounds, peak = [], {}, None
    if parts & {"gemm", "step", "peers"}:
        repeats = 5 if args.quick else 15
        peak = ref.matmul_gflops(2048, jnp.float32, repeats=repeats, best=True)
        print(f"peak: 2048^3 float32 jnp.dot, best of {repeats}: {peak:.0f} GFLOP/s")
    if "gemm" in parts or "step" in parts:
        gemm, bounds = gemm_rows(args, peak)
        rows += gemm
    if "step" in parts or "peers" in parts:
        with jax.enable_x64(False):  # float32 steps even when imported into an x64 process
            rows += step_rows(args, parts, bounds, peak)
        _ratios(rows)
    if "compile" in parts:
        rows += compile_rows(args)
    if "sweep" in parts:
        rows += sweep_rows(args)
    if "dp" in parts:
        rows += dp_rows(args)
    if "e2e" in parts:
        rows += e2e_rows(args)
    if "latency" in parts:
        rows += latency_rows(args)
    meta = {"impl": "meta", "work": "meta", "cores": os.cpu_count(),
            "device": str(jax.devices()[0]), "jax": jax.__version__, "numpy": np.__version__,
            "torch": ref.torch_version(), **versions, "peak_gflops": peak, "quick": args.quick,
            "seconds": time.perf_counter() - started}
    pathlib.Path(args.out).write_text(json.dumps([meta, *rows], indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {args.out} in {meta['seconds']:.0f} s")


def _ratios(rows):
    """Prints manual/autodiff time ratios, the fixed-batch comparison with the peers and
    each jaxnet row's speed over the fastest peer's fixed-batch step (`over_fastest_peer`,
    the issue's target: >= 1 for the shuffled epoch), and stores jaxnet's speed-up over the
    others on its rows (`speedup_vs_<impl>`)."""
    steps = [r for r in rows if r.get("work") == "step" and r.get("median_s") and r["impl"] != "gemm-bound"]
    index = {(r["impl"], r["batch"], r["optimizer"], r["grad"], r["dropout"], r["shuffled"]): r
             for r in steps}
    others = {"numpy": "manual", "torch": "autograd", **dict.fromkeys(peers.PEERS, "autodiff")}
    for key, r in sorted(index.items(), key=lambda kv: str(kv[0])):
        impl, batch, opt, grad, drop, shuffled = key
        if impl != "jaxnet":
            continue
        if grad == "manual":
            auto = index.get(("jaxnet", batch, opt, "autodiff", drop, shuffled))
            if auto:
                ratio = r["median_s"] / auto["median_s"]
                r["manual_over_autodiff"] = ratio
                print(f"manual/autodiff time ratio, batch {batch} {opt} drop {drop} "
                      f"{'shuffled' if shuffled else 'fixed batch'}: {ratio:.2f}")
        for other, other_grad in others.items():
            o = index.get((other, batch, opt, other_grad, drop, False))
            if o:
                r[f"speedup_vs_{other}"] = o["median_s"] / r["median_s"]
    for (batch, opt, drop) in sorted({(r["batch"], r["optimizer"], r["dropout"]) for r in steps
                                      if r["impl"] in peers.PEERS}):
        line = [f"{label} {index[key]['steps_per_s']:.1f}" for label, key in (
            ("jaxnet manual", ("jaxnet", batch, opt, "manual", drop, False)),
            ("jaxnet autodiff", ("jaxnet", batch, opt, "autodiff", drop, False)),
            *((p, (p, batch, opt, "autodiff", drop, False)) for p in peers.PEERS)) if key in index]
        print(f"fixed batch {batch} {opt} drop {drop}, steps/s: {', '.join(line)}")
        peer_rows = [index[key] for key in ((p, batch, opt, "autodiff", drop, False)
                                            for p in peers.PEERS) if key in index]
        fastest = max(peer_rows, key=lambda r: r["steps_per_s"])
        for grad in ("manual", "autodiff"):
            for shuffled in (True, False):
                ours = index.get(("jaxnet", batch, opt, grad, drop, shuffled))
                if ours:
                    ours["over_fastest_peer"] = ours["steps_per_s"] / fastest["steps_per_s"]
                    print(f"  jaxnet {grad} {'shuffled epoch' if shuffled else 'fixed batch'} / "
                          f"fastest peer ({fastest['impl']}, fixed batch): "
                          f"{ours['over_fastest_peer']:.2f}")


if __name__ == "__main__":
    main()
