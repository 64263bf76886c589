"""`jax.random`'s numbers, drawn faster on XLA's CPU backend: the same bits, the same orders.

jaxnet draws its dropout masks (`uniform`), initial weights (`normal`) and epoch shuffles
(`permutation`) here. Each function returns exactly what its `jax.random` namesake returns
(tests/test_rng.py, bit for bit); on XLA's CPU backend it computes that in a form the backend
runs faster, and elsewhere it calls `jax.random` itself (`_hand_written` is the one switch;
GPUs and TPUs were not measured). Keys of other generators, and sizes or dtypes the
hand-written forms do not cover, go to `jax.random` too.

Why, measured with `python scripts/bench_rng.py --tries 5` (a 2-core VM shared with other
jobs, each pair in fresh processes, interleaved, best of 5; XLA compile seconds, then run time
per draw), hand-written against `jax.random`:

- Dropout masks, (50, 100): 0.44 vs 1.24 s, 10 vs 55 us; (100, 4096): 0.46 vs 1.41 s, 738 vs
  1711 us. jax's CPU lowering runs Threefry's five rounds as a loop over whole arrays, each
  round its own kernels reading and writing both counter arrays; written out, XLA fuses the
  hash, the counters and the conversion to floats into one kernel.
- The default network's init (3072-100-100-100-100-10), from the same fused uniforms: 2.0 vs
  2.8 s, 0.94 vs 1.63 ms; vmapped over 100 keys (a sweep's networks): 5.4 vs 7.9 s, 0.56 vs
  1.45 s.
- Shuffles: a permutation of 49152, 1.00 vs 0.84 s, 6.5 vs 19.9 ms; an epoch's whole order
  at batch 64 (`jaxnet.train.epoch_order`, two permutations), 49000 examples: 1.76 vs 1.31 s,
  13 vs 39 ms; the same for 8 runs vmapped: 2.5 vs 1.5 s, 15 vs 64 ms per run; 1257
  examples (about digits'): 2.4 vs 1.4 s, 0.13 vs 0.37 ms. XLA's CPU sort runs jax's pair
  sort several times slower than a sort of keys alone. The saving grows with n (~0.5 us per
  example and epoch) and the extra compile time (0.2-1 s, noisy here) does not: at 49000 one
  fit repays it after ~18 epochs and an 8-run sweep after ~3, while digits never would. So
  `permutation` writes the shuffle out only from `HAND_PERMUTATION_MIN` (2**14) elements on,
  where an epoch's order saves 8 ms or more (scripts/bench.py's step rows shuffle 20000 or
  more examples).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

HAND_PERMUTATION_MIN = 2**14  # smaller shuffles save less than their extra compile time


def _hand_written() -> bool:
    """The one switch: the hand-written draws run only on XLA's CPU backend, where they were
    measured to pay (see the module docstring)."""
    return jax.default_backend() == "cpu"


# Threefry-2x32's rotation schedule (Salmon et al. 2011), as jax.random applies it.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 hash (20 rounds) of the counter pairs (x0, x1) under key (k0, k1)."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r)))
        x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _threefry_key(key):
    """key's two uint32 words when `jax.random` draws from it with Threefry-2x32 in its
    partitionable form (jax's default), else None."""
    if not jax.config.jax_threefry_partitionable:
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key) if str(jax.random.key_impl(key)) == "threefry2x32" else None
    if key.dtype == jnp.uint32 and key.shape == (2,) \
            and jax.config.jax_default_prng_impl == "threefry2x32":
        return key
    return None


def seed_key(seed: int) -> jax.Array:
    """`jax.random.PRNGKey(seed)`, the same uint32 pair, built on the host where it can be:
    under jax's default generator (Threefry-2x32, raw keys) a seed in [0, 2**31) is the pair
    (0, seed). JAX compiles two small programs for it, and on a warm `jaxnet train`, which
    loads its own programs untraced, they were most of what was left to lower (~0.1 s to
    start MLIR). Other seeds and generators: `jax.random.PRNGKey` itself."""
    if (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
            and 0 <= seed < 2**31 and jax.config.jax_default_prng_impl == "threefry2x32"
            and not jax.config.jax_enable_custom_prng):
        return jax.device_put(np.array([0, seed], np.uint32))
    return jax.random.PRNGKey(seed)


def uniform(key, shape, dtype):
    """`jax.random.uniform(key, shape, dtype)`, the same numbers bit for bit."""
    floats = _unit_floats(key, shape, dtype)
    return jax.random.uniform(key, shape, dtype=dtype) if floats is None else floats


def normal(key, shape, dtype):
    """`jax.random.normal(key, shape, dtype)`, the same numbers bit for bit: `uniform`'s
    floats mapped through jax's own transform."""
    floats = _unit_floats(key, shape, dtype)
    return jax.random.normal(key, shape, dtype=dtype) if floats is None else _to_normal(floats)


def _to_normal(floats):
    # jax.random.normal: sqrt(2) * erfinv(u), u uniform in [nextafter(-1, 0), 1).
    dtype = floats.dtype
    lo = jnp.asarray(np.nextafter(np.array(-1, dtype), np.array(0, dtype)), dtype)
    u = jnp.maximum(lo, floats * (jnp.asarray(1, dtype) - lo) + lo)
    return jnp.asarray(np.sqrt(2), dtype) * jax.lax.erf_inv(u)


def uniform_within(key, shape, dtype, size):
    """`jax.random.uniform(key, size, dtype)` in the leading corner `[:size[0], :size[1],
    ...]` of an array of `shape`, bit for bit; other numbers (of no use) elsewhere.

    For width sweeps (`jaxnet.sweep`): a run of a narrower network, padded to the widest,
    draws its own network's dropout masks and initial weights. `size` (one int per axis, each
    at most `shape`'s) may be traced: runs of several widths share one program. Written out
    on every backend (jax's counters are the flat index within `size`); it needs jax's
    default generator (Threefry-2x32, partitionable) and float32 or float64.
    """
    floats = _unit_floats(key, shape, dtype, within=size)
    if floats is None:
        raise ValueError(
            "drawing a narrower network's numbers inside a padded array (a width sweep) needs "
            "jax's default generator: jax_default_prng_impl='threefry2x32' with "
            f"jax_threefry_partitionable=True, and float32 or float64 (got {jnp.dtype(dtype)})")
    return floats


def normal_within(key, shape, dtype, size):
    """`jax.random.normal(key, size, dtype)` in the leading corner of `shape`, as
    `uniform_within` draws it."""
    return _to_normal(uniform_within(key, shape, dtype, size))


def _unit_floats(key, shape, dtype, within=None):
    """jax.random's floats in [0, 1) for `uniform` and `normal`, or None where they hand the
    draw to `jax.random`: off the CPU, for other generators, dtypes, or 2**32 entries or more.
    `within` (`uniform_within`'s `size`) draws on every backend, counting within it."""
    dtype = jnp.dtype(dtype)
    words = _threefry_key(key) if _hand_written() or within is not None else None
    size = math.prod(shape)
    if (words is None or size >= 2**32 or dtype not in (jnp.float32, jnp.float64)
            or (dtype == jnp.float64 and not jax.config.jax_enable_x64)):
        return None
    # jax.random's counters: a 64-bit iota over the flat index, split in (high, low) words.
    if within is None:
        low = jax.lax.iota(jnp.uint32, size).reshape(shape)
    else:  # the flat index of each entry in an array of shape `within`
        low, stride = jnp.zeros(shape, jnp.uint32), jnp.uint32(1)
        for axis in reversed(range(len(shape))):
            low = low + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * stride
            stride = stride * jnp.asarray(within[axis]).astype(jnp.uint32)
    hi, lo = _threefry2x32(words[0], words[1], jnp.zeros(shape, jnp.uint32), low)
    if dtype == jnp.float32:  # 23 mantissa bits of hi ^ lo under the exponent of 1.0
        bits = ((hi ^ lo) >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
        return jax.lax.bitcast_convert_type(bits, dtype) - jnp.float32(1)
    bits = (hi.astype(jnp.uint64) << jnp.uint64(32)) | lo.astype(jnp.uint64)
    bits = (bits >> jnp.uint64(12)) | jnp.uint64(0x3FF0000000000000)
    return jax.lax.bitcast_convert_type(bits, dtype) - jnp.float64(1)


def permutation(key, n: int) -> jax.Array:
    """`jax.random.permutation(key, n)`, the same order; hand-written (`_scatter_permutation`)
    from `HAND_PERMUTATION_MIN` elements on, where its faster shuffles repay its longer compile
    (module docstring)."""
    if _hand_written() and n >= HAND_PERMUTATION_MIN:
        return _scatter_permutation(key, n)
    return jax.random.permutation(key, n)


def _scatter_permutation(key, n: int) -> jax.Array:
    """jax.random.permutation's order by scatters: jax shuffles `arange(n)` in rounds, each a
    stable sort of the values by fresh random uint32 keys, and XLA's CPU sort runs that pair
    sort several times slower than a sort of the keys alone. Each round here sorts the keys
    alone and scatters every value to where the stable sort would put it
    (`_stable_positions`). The rounds' keys come from `jax.random` itself, so this holds for
    any of its generators."""
    # jax.random's round count: enough 32-bit keys that repeated ones are negligible.
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(np.iinfo(np.uint32).max))

    def one_round(_, carry):  # a loop, not unrolled: half the compile time of two rounds
        key, x = carry
        key, sub = jax.random.split(key)
        where = _stable_positions(jax.random.bits(sub, (n,), jnp.uint32))
        return key, jnp.zeros_like(x).at[where].set(x, unique_indices=True)

    return jax.lax.fori_loop(0, rounds, one_round, (key, jnp.arange(n)))[1]


def _stable_positions(keys) -> jax.Array:
    """Where a stable sort by `keys` ((n,) uint32) puts each element: the number of smaller
    keys, plus, among equal keys, the number of equal ones at lower indices."""
    n = keys.shape[0]
    start = jnp.searchsorted(jnp.sort(keys), keys, side="left", method="scan").astype(jnp.int32)
    index = jax.lax.iota(jnp.int32, n)

    def next_place(state):  # at each start, the lowest index still waiting takes a place
        place, offset, waiting = state
        lowest = jnp.full(n, n, jnp.int32).at[start].min(jnp.where(waiting, index, n))
        now = waiting & (lowest[start] == index)
        return place + 1, jnp.where(now, place, offset), waiting & ~now

    # One pass per copy of the most repeated key: 1 for distinct keys, usually 2 otherwise.
    _, offset, _ = jax.lax.while_loop(
        lambda state: jnp.any(state[2]), next_place,
        (jnp.int32(0), jnp.zeros(n, jnp.int32), jnp.ones(n, bool)))
    return start + offset
