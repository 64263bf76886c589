"""Side-by-side benchmark of jaxnet, a NumPy port of the notebook and PyTorch eager.

Usage: python scripts/bench.py [--quick] [--out bench.json] [--only gemm,step,sweep,dp,e2e]

Prints a table and writes bench.json: a list of rows with impl, work, batch, optimizer, grad,
dtype, dropout, median_s, steps_per_s, examples_per_s, gemm_bound_fraction, compile_s and
notes. Every figure is measured in this run, on this machine.
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

jax.config.update("jax_enable_x64", True)  # float64 rows; float32 rows pass dtypes explicitly

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_reference as ref  # noqa: E402

from jaxnet.data import random_data  # noqa: E402
from jaxnet.sweep import make_settings, sweep  # noqa: E402
from jaxnet.train import TrainConfig, init_train_state, make_epoch, make_optimizer  # noqa: E402

DIMS = (3 * 32 * 32, 100, 100, 100, 100, 10)  # the notebook's default network
OPTIMIZERS = {"momentum": "momentum", "adam": "adam"}  # bench name -> jaxnet name


def jaxnet_step(batch, optimizer, grad, dropout, *, epochs, steps):
    """Steps per second of jitted whole epochs (lax.scan), float32, random CIFAR-shaped data."""
    n = batch * steps
    config = TrainConfig(hidden=DIMS[1:-1], optimizer=optimizer, lr=1e-3, batch_size=batch,
                         dropout=dropout, grad=grad, dtype="float32")
    opt = make_optimizer(config, n)
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (n, DIMS[0]), jnp.float32)
    y = jax.random.randint(ky, (n,), 0, DIMS[-1], jnp.int32)
    ts = init_train_state(config, DIMS, opt)
    epoch = jax.jit(make_epoch(config, opt, n), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = epoch.lower(ts, x, y).compile()
    compile_s = time.perf_counter() - t0
    ts, losses = compiled(ts, x, y)  # warm-up
    losses.block_until_ready()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        ts, losses = compiled(ts, x, y)
        losses.block_until_ready()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), compile_s


def step_rows(args, bounds):
    batches = (50, 256, 4096)
    rows = []
    combos = [(b, opt, grad, drop) for b in batches for opt in OPTIMIZERS
              for grad in ("manual", "autodiff") for drop in (0.0, 0.5)]
    if args.quick:  # every kind of row, fewer combinations
        combos = [(b, "momentum", grad, 0.0) for b in batches for grad in ("manual", "autodiff")]
        combos += [(b, "adam", "manual", 0.0) for b in batches]
        combos += [(b, "momentum", "manual", 0.5) for b in batches]
    for batch, opt, grad, drop in combos:
        steps = _steps_for(batch, args.quick)
        median, compile_s = jaxnet_step(batch, OPTIMIZERS[opt], grad, drop,
                                        epochs=3 if args.quick else 7, steps=steps)
        rows.append(_row("jaxnet", "step", batch, opt, grad, "float32", drop, median,
                         bounds.get(batch), compile_s=compile_s))
        _print_row(rows[-1])
    ref_combos = sorted({(b, o, d) for b, o, _, d in combos})
    for batch, opt, drop in ref_combos:
        steps = max(3, _steps_for(batch, args.quick) // 4)
        times = ref.numpy_step_seconds(DIMS, batch, opt, drop, np.float32, steps=steps)
        rows.append(_row("numpy", "step", batch, opt, "manual", "float32", drop,
                         statistics.median(times), bounds.get(batch)))
        _print_row(rows[-1])
        if ref.torch_available():
            times = ref.torch_step_seconds(DIMS, batch, opt, drop, np.float32, steps=steps)
            rows.append(_row("torch", "step", batch, opt, "autograd", "float32", drop,
                             statistics.median(times), bounds.get(batch),
                             notes=f"torch {ref.torch_version()} eager, {os.cpu_count()} threads"))
            _print_row(rows[-1])
    if not ref.torch_available():
        rows.append({"impl": "torch", "work": "step", "notes": "PyTorch is not installed "
                     "(pip install '.[bench]'); no torch rows"})
        print("torch: not installed (pip install '.[bench]'), skipped")
    return rows


def _steps_for(batch, quick):
    steps = max(8, int(2e5 // batch)) if not quick else max(4, int(5e4 // batch))
    return min(steps, 400)


def gemm_rows(args):
    rows, bounds = [], {}
    gflops = ref.matmul_gflops(2048, jnp.float32, repeats=3 if args.quick else 10)
    print(f"2048^3 float32 product: {gflops:.0f} GFLOP/s")
    for batch in (50, 256, 4096):
        bound = ref.gemm_bound_step_seconds(DIMS, batch, jnp.float32, repeats=3 if args.quick else 10)
        bounds[batch] = bound["seconds"]
        rows.append({"impl": "gemm-bound", "work": "step", "batch": batch, "dtype": "float32",
                     "median_s": bound["seconds"], "steps_per_s": 1 / bound["seconds"],
                     "examples_per_s": batch / bound["seconds"],
                     "gflop_per_step": bound["flops"] / 1e9,
                     "notes": f"sum of the step's lone matrix products; 2048^3 runs at {gflops:.0f} GFLOP/s"})
        _print_row(rows[-1])
    return rows, bounds


def sweep_rows(args):
    """The notebook's sweep: 100 (lr, weight_scale) settings x 100 full-batch SGD steps."""
    n_settings = 20 if args.quick else 100
    lrs = np.geomspace(1e-5, 1e5, 100)[:: 100 // n_settings]
    wss = np.linspace(1e-2, 9e-2, 100)[:: 100 // n_settings]
    rows = []
    for dtype in ("float64", "float32"):
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
            subprocess.run([sys.executable, "-m", "jaxnet", "train", "--quiet", *epochs, *extra],
                           check=True, cwd=tmp, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0
        one = timed(["--out", "one"])
        rows.append({"impl": "jaxnet", "work": "e2e", "dataset": "digits", "median_s": one,
                     "notes": "jaxnet train" + (" --epochs 5" if args.quick else " (defaults)")})
        _print_row(rows[-1])
        vmapped = timed(["--seeds", "5", "--out", "seeds"])
        separate = sum(timed(["--seed", str(s), "--out", f"s{s}"]) for s in range(5))
        rows.append({"impl": "jaxnet", "work": "e2e", "dataset": "digits", "seeds": 5,
                     "median_s": vmapped, "separate_runs_s": separate,
                     "speedup": separate / vmapped,
                     "notes": "--seeds 5 (one vmapped call) vs 5 separate processes"})
        _print_row(rows[-1])
    return rows


_DP_CHILD = """
import json, statistics, sys, time
import jax, jax.numpy as jnp
from jaxnet import distributed
from jaxnet.train import TrainConfig, init_train_state, make_epoch, make_optimizer
n_dev, batch, steps, dims = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), (3072, 100, 100, 100, 100, 10)
env = distributed.setup(devices=n_dev, batch_size=batch)
n = batch * steps
config = TrainConfig(hidden=dims[1:-1], optimizer="momentum", batch_size=batch, dropout=0.0)
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
        out = subprocess.run([sys.executable, "-c", _DP_CHILD, str(n_dev), str(batch), str(steps)],
                             check=True, capture_output=True, text=True, env=env)
        median = json.loads(out.stdout.strip().splitlines()[-1])["median_s"]
        platform_name = jax.devices()[0].platform
        rows.append(_row("jaxnet", "dp", batch, "momentum", "manual", "float32", 0.0, median, None,
                         notes=f"{n_dev} {platform_name} device(s), synchronised batchnorm; "
                               + ("fake CPU devices share the same cores: this shows overhead, "
                                  "not speed-up" if platform_name == "cpu" else "")))
        rows[-1]["devices"] = n_dev
        _print_row(rows[-1])
    return rows


def _row(impl, work, batch, optimizer, grad, dtype, dropout, median, bound, *, compile_s=None,
         notes=None):
    row = {"impl": impl, "work": work, "batch": batch, "optimizer": optimizer, "grad": grad,
           "dtype": dtype, "dropout": dropout, "median_s": median, "steps_per_s": 1 / median,
           "examples_per_s": batch / median,
           "gemm_bound_fraction": bound / median if bound else None}
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
    if r.get("devices"):
        parts.append(f"{r['devices']} device(s)")
    if r.get("steps_per_s") and r["work"] in ("step", "dp"):
        parts.append(f"{r['steps_per_s']:9.1f} steps/s {r['examples_per_s']:10.0f} ex/s")
    elif r.get("median_s") is not None:
        parts.append(f"{r['median_s']:8.2f} s")
    if r.get("gemm_bound_fraction"):
        parts.append(f"{100 * r['gemm_bound_fraction']:5.1f}% of GEMM-bound")
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
    parser.add_argument("--only", default="gemm,step,sweep,dp,e2e", help="comma list of parts to run")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    print(f"jaxnet bench on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} ({jax.devices()[0].platform}), numpy {np.__version__}, "
          f"torch {ref.torch_version() or 'not installed'}{' [quick]' if args.quick else ''}")
    started = time.perf_counter()
    rows, bounds = [], {}
    if "gemm" in parts or "step" in parts:
        gemm, bounds = gemm_rows(args)
        rows += gemm
    if "step" in parts:
        rows += step_rows(args, bounds)
        _ratios(rows)
    if "sweep" in parts:
        rows += sweep_rows(args)
    if "dp" in parts:
        rows += dp_rows(args)
    if "e2e" in parts:
        rows += e2e_rows(args)
    meta = {"impl": "meta", "work": "meta", "cores": os.cpu_count(),
            "device": str(jax.devices()[0]), "jax": jax.__version__, "numpy": np.__version__,
            "torch": ref.torch_version(), "quick": args.quick,
            "seconds": time.perf_counter() - started}
    pathlib.Path(args.out).write_text(json.dumps([meta, *rows], indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {args.out} in {meta['seconds']:.0f} s")


def _ratios(rows):
    """Prints manual/autodiff time ratios and jaxnet's speed-up over the references."""
    steps = [r for r in rows if r.get("work") == "step" and r.get("median_s") and r["impl"] != "gemm-bound"]
    index = {(r["impl"], r["batch"], r["optimizer"], r["grad"], r["dropout"]): r for r in steps}
    for (impl, batch, opt, grad, drop), r in sorted(index.items(), key=lambda kv: str(kv[0])):
        if impl == "jaxnet" and grad == "manual":
            auto = index.get(("jaxnet", batch, opt, "autodiff", drop))
            if auto:
                ratio = r["median_s"] / auto["median_s"]
                r["manual_over_autodiff"] = ratio
                print(f"manual/autodiff time ratio, batch {batch} {opt} drop {drop}: {ratio:.2f}")
            for other in ("numpy", "torch"):
                o = index.get((other, batch, opt, "manual" if other == "numpy" else "autograd", drop))
                if o:
                    r[f"speedup_vs_{other}"] = o["median_s"] / r["median_s"]


if __name__ == "__main__":
    main()
