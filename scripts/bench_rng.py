"""Times jaxnet.rng's hand-written draws against `jax.random`'s, side by side.

Usage: python scripts/bench_rng.py [--tries 5] [--draws mask-50x100,...]

Each (draw, implementation) pair runs in a fresh process; the pairs run interleaved, the
implementations' order alternating, `--tries` rounds; the best compile and run seconds of
each pair are printed (compile: `jit(f).lower(...).compile()`; run: best of 20 calls).
Draws: dropout masks as a step draws them ((50, 100) and (100, 4096), 100 draws scanned),
a permutation of 49152, an epoch's whole shuffle at batch 64 (`jaxnet.train.epoch_order`:
49000 examples (about CIFAR-10's training set), 1257 (about digits'), and 49000 for 8 runs vmapped; run
time per run), and the default network's init (once, and vmapped over 100 keys as a sweep
builds it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

DRAWS = ("mask-50x100", "mask-100x4096", "permutation-49152", "order-49000", "order-1257",
         "order-49000-8", "init", "init-vmap100")
IMPLS = ("hand", "jax")
MASKS_PER_RUN = 100


def _program(draw, impl):
    """(function to jit, its arguments, draws per call) of one pair."""
    import jax
    import jax.numpy as jnp

    from jaxnet import model, rng
    from jaxnet.train import epoch_order

    if impl == "jax":  # jaxnet's own callers reach these names
        rng.uniform = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype)
        rng.normal = lambda key, shape, dtype: jax.random.normal(key, shape, dtype)
        rng.permutation = jax.random.permutation
    elif hasattr(rng, "_hand"):  # after the switch: hand-written where the backend allows
        pass
    key = jax.random.key(0)
    if draw.startswith("mask"):
        shape = tuple(int(d) for d in draw.split("-")[1].split("x"))

        def masks(keys):
            def one(total, k):
                return total + jnp.sum(rng.uniform(k, shape, jnp.float32) >= 0.5), None
            return jax.lax.scan(one, jnp.int32(0), keys)[0]
        return masks, (jax.random.split(key, MASKS_PER_RUN),), MASKS_PER_RUN
    if draw.startswith("permutation"):
        n = int(draw.split("-")[1])
        return (lambda k: rng.permutation(k, n)), (key,), 1
    if draw.startswith("order"):  # an epoch's whole shuffle at batch 64: up to 2 permutations
        n, runs = (int(v) for v in [*draw.split("-")[1:], "1"][:2])
        order = jax.vmap(lambda k: epoch_order(k, n, 64))
        return order, (jax.random.split(key, runs),), runs
    dims = (3072, 100, 100, 100, 100, 10)
    if draw == "init":
        return (lambda k: model.init(k, dims)), (key,), 1
    return jax.vmap(lambda k: model.init(k, dims)), (jax.random.split(key, 100),), 1


def _child(draw, impl):
    import jax

    jax.jit(lambda x: x + 1).lower(1.0).compile()  # the backend's one-time start, untimed
    f, args, per_call = _program(draw, impl)
    start = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append((time.perf_counter() - start) / per_call)
    return {"compile_s": compile_s, "run_s": min(runs), "backend": jax.default_backend()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5, help="fresh processes per pair")
    parser.add_argument("--draws", default=",".join(DRAWS), help=f"comma list of {DRAWS}")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    draws = args.draws.split(",")
    best: dict = {}
    for t in range(args.tries):
        for draw in draws:
            for impl in (IMPLS if t % 2 == 0 else IMPLS[::-1]):
                out = subprocess.run([sys.executable, __file__, "--child", draw, impl],
                                     capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                old = best.setdefault((draw, impl), row)
                for k in ("compile_s", "run_s"):
                    old[k] = min(old[k], row[k])
    for draw in draws:
        hand, jax_ = best[(draw, "hand")], best[(draw, "jax")]
        print(f"{draw:18s} [{hand['backend']}] compile s: hand {hand['compile_s']:.3f} "
              f"jax {jax_['compile_s']:.3f}; run us per draw: hand {1e6 * hand['run_s']:.1f} "
              f"jax {1e6 * jax_['run_s']:.1f}  (best of {args.tries} processes)")


if __name__ == "__main__":
    main()
