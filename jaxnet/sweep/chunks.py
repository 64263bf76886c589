"""How a sweep's runs are laid out in compiled calls: chunks, vmapped groups, and running them."""

from __future__ import annotations

import math
import time

import jax
import numpy as np

from jaxnet import distributed

CPU_GROUP = 5  # runs vmapped together inside a chunk on a CPU; measured fastest on 2 cores


def default_group(backend: str | None = None) -> int | None:
    """Runs vmapped together inside a chunk on `backend` (default: JAX's default backend).

    On a CPU, CPU_GROUP: a small group's weights stay in cache while it trains. On GPUs
    and TPUs, None: the whole chunk in one vmap, whose wide batched products fill the chip.
    """
    backend = jax.default_backend() if backend is None else backend
    return CPU_GROUP if backend == "cpu" else None


def _chunk_layout(n_runs: int, chunk: int | None, n_dev: int,
                  group: int | None) -> tuple[int, int, int | None]:
    """(chunks, runs per chunk, runs per group or None for one vmap over the chunk).

    As few chunks as `chunk` allows, of equal size (the last one padded: every chunk reuses
    one compilation), so padding adds less than a run per chunk. With devices, the size is
    rounded up to a multiple of their number. With groups, the chunk is split into equal
    groups, of a size within 2 of `group` that divides it if there is one, else padded:
    a remainder group would be a second compiled body.
    """
    cap = n_runs if chunk is None else max(1, min(chunk, n_runs))
    n_chunks = math.ceil(n_runs / cap)
    size = math.ceil(n_runs / n_chunks)
    if n_dev > 1:
        return n_chunks, math.ceil(size / n_dev) * n_dev, None
    if group is None or group >= size:
        return n_chunks, size, None
    near = sorted(range(max(min(group, 2), group - 2), group + 3), key=lambda g: (abs(g - group), -g))
    exact = [g for g in near if size % g == 0]
    if exact:
        return n_chunks, size, exact[0]
    n_groups = math.ceil(size / group)
    per_group = math.ceil(size / n_groups)
    return n_chunks, n_groups * per_group, per_group


def _batched(one, per_group: int | None):
    """`one(carry, splits, epochs)` jitted over a chunk of runs: `(carries, splits, epochs
    (groups,) int32) -> (carries, metrics)`. One vmap over the chunk (`epochs[0]` for every
    run), or groups of `per_group` vmapped runs one after another (`lax.map`), each group
    training its own `epochs`: a group of 0 epochs (empty slots) costs next to nothing, so
    a later rung of successive halving runs in the first rung's shape, with no compilation
    of its own."""
    def group(carries, splits, epochs):
        return jax.vmap(one, in_axes=(0, None, None))(carries, splits, epochs)

    def train_chunk(carries, splits, epochs):
        if per_group is None:
            return group(carries, splits, epochs[0])
        grouped = jax.tree.map(lambda a: a.reshape(-1, per_group, *a.shape[1:]), carries)
        out = jax.lax.map(lambda ge: group(ge[0], splits, ge[1]), (grouped, epochs))
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)

    return jax.jit(train_chunk)


def _run_chunks(fn, inputs_at, splits, n_runs: int, size: int, per_group: int | None,
                epochs: int, *, keep_state: bool, on_chunk):
    """Trains `n_runs` runs `epochs` more epochs with `fn` (`_batched`), in chunks of `size`
    slots: the last one padded with copies of its last run, and its groups of padding alone
    given 0 epochs. `inputs_at(positions)` builds a chunk's carries. Compiles `fn` for the
    first chunk, unless JAX holds it compiled already (a cached program: an earlier rung or
    sweep of the same shapes).

    Returns:
      ({name: (n_runs, ...) host array}, the host carries (n_runs, ...) or None,
      (compile seconds, run seconds)).
    """
    n_groups = 1 if per_group is None else size // per_group
    outs, carries, compile_s, run_s = [], [], 0.0, 0.0
    for c in range(math.ceil(n_runs / size)):
        pos = np.arange(c * size, min((c + 1) * size, n_runs))
        n_real = len(pos)
        inputs = inputs_at(np.concatenate([pos, np.full(size - n_real, pos[-1])]))
        busy = n_groups if per_group is None else math.ceil(n_real / per_group)
        group_epochs = np.where(np.arange(n_groups) < busy, epochs, 0).astype(np.int32)
        t0 = time.perf_counter()
        if c == 0:
            compiled = fn.lower(inputs, splits, group_epochs).compile()
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        carry, out = compiled(inputs, splits, group_epochs)
        out = distributed.gather(out)
        if keep_state:
            carries.append(jax.tree.map(lambda a, n=n_real: a[:n], distributed.gather(carry)))
        run_s += time.perf_counter() - t0
        outs.append({name: v[:n_real] for name, v in out.items()})
        on_chunk()
    merged = {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}
    carry = jax.tree.map(lambda *a: np.concatenate(a), *carries) if keep_state else None
    return merged, carry, (compile_s, run_s)
