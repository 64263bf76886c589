"""Subprocess half of tests/test_distributed.py; it runs with its own fake CPU device count.

    python tests/_distributed_worker.py fit OUT --devices 1 4 [--dtype float64] [--optimizer adam]

trains the reference net (digits, hidden (32, 32), dropout 0.5, batch 64) for one epoch
with `fit` once per device count and writes OUT.npz (final params, batchnorm and optimizer
state per count) and OUT.json (the epoch loss, and what the compiled data-parallel epoch
looks like: partitions, collectives, the per-device batch, output shardings).

    python tests/_distributed_worker.py cli OUT --argvs '[["train", ...], ...]'

runs `jaxnet` once per argv and writes OUT.json with each exit status and stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys

import jax
import numpy as np

BATCH = 64
FEATURES = 64  # digits: 8 x 8 pixels


def reference_config(dtype, optimizer):
    from jaxnet.config import TrainConfig

    return TrainConfig(dataset="digits", hidden=(32, 32), dropout=0.5, batch_size=BATCH,
                       epochs=1, dtype=dtype, optimizer=optimizer, seed=3)


def flat(prefix, tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{prefix}{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves}


def epoch_facts(config, data, env):
    """Compiles the epoch exactly as fit does and reports how XLA partitioned it."""
    from jaxnet.train import dims_for, init_train_state, make_epoch, make_optimizer

    n_train = len(data.x_train)
    optimizer = make_optimizer(config, n_train)
    ts = env.replicate(init_train_state(config, dims_for(config, data), optimizer))
    x, y = env.replicate((np.asarray(data.x_train, config.dtype),
                          np.asarray(data.y_train, np.int32)))
    epoch = jax.jit(make_epoch(config, optimizer, n_train, env.batch_sharding),
                    donate_argnums=0)
    compiled = epoch.lower(ts, x, y).compile()
    hlo = compiled.as_text()
    partitions = re.search(r"num_partitions=(\d+)", hlo)
    per_device = BATCH // env.num_devices
    return {
        "num_partitions": int(partitions.group(1)) if partitions else 1,
        "all_reduce": "all-reduce" in hlo,
        # the first layer's matmul sees only this device's rows of the minibatch
        "per_device_batch": bool(re.search(rf"\[{per_device},{FEATURES}\]", hlo)),
        "global_batch": bool(re.search(rf"\[{BATCH},{FEATURES}\]", hlo)),
        "outputs_replicated": all(s.is_fully_replicated
                                  for s in jax.tree.leaves(compiled.output_shardings)),
    }


def run_fit(args):
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxnet import distributed
    from jaxnet.fitting import fit, load_data

    config = reference_config(args.dtype, args.optimizer)
    data = load_data(config)
    arrays = {}
    facts = {"visible": len(jax.devices()),
             "threefry_partitionable": bool(jax.config.jax_threefry_partitionable), "runs": {}}
    for n in args.devices:
        env = distributed.setup(devices=n, batch_size=config.batch_size)
        result = fit(config, data, env=env)
        final = distributed.to_host(result.final)
        for name in ("params", "bn_state", "opt_state"):
            arrays.update(flat(f"{n}/{name}", getattr(final, name)))
        run = {"num_devices": env.num_devices, "loss": result.history[-1]["loss"],
               "state_replicated": all(a.sharding.is_fully_replicated
                                       for a in jax.tree.leaves(result.final))}
        if n > 1:
            run.update(epoch_facts(config, data, env))
        facts["runs"][str(n)] = run
    np.savez(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as f:
        json.dump(facts, f)


def run_cli(args):
    from jaxnet.cli import main

    reports = []
    for argv in json.loads(args.argvs):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        reports.append({"argv": argv, "rc": rc, "stderr": err.getvalue()})
    with open(args.out + ".json", "w") as f:
        json.dump(reports, f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("fit", "cli"))
    p.add_argument("out", help="output path without extension")
    p.add_argument("--devices", type=int, nargs="+", default=[1])
    p.add_argument("--dtype", default="float64")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--argvs", default="[]", help="JSON list of jaxnet argv lists")
    args = p.parse_args()
    {"fit": run_fit, "cli": run_cli}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
