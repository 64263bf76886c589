"""Flax, Equinox and plain-JAX training steps for the benchmark, scanned over one fixed batch."""

from __future__ import annotations

import itertools
import statistics
import time

import jax
import jax.numpy as jnp
import optax

try:
    import flax
    import flax.linen as nn
    from flax.training import train_state
except ImportError:  # optional benchmark dependency (pip install '.[bench]')
    flax = None
try:
    import equinox as eqx
except ImportError:  # optional benchmark dependency (pip install '.[bench]')
    eqx = None

PEERS = ("jax", "flax", "equinox")
BN_MOMENTUM = 0.9  # running = BN_MOMENTUM * running + (1 - BN_MOMENTUM) * batch, as jaxnet
BN_EPS = 1e-5
# bench.py turns on 64-bit JAX for its float64 rows, so every array here names its dtype.
DTYPE = jnp.float32

_MODULES = {"flax": flax, "equinox": eqx}


def available(impl) -> bool:
    """Whether `impl` (one of PEERS) can run: plain JAX always, Flax and Equinox if installed."""
    return impl == "jax" or _MODULES[impl] is not None


def version(impl) -> str | None:
    """The installed version of `impl`'s library (jax for "jax"), or None when missing."""
    module = jax if impl == "jax" else _MODULES[impl]
    return None if module is None else module.__version__


def make_optimizer(name, lr):
    """optax SGD with momentum 0.9 ("momentum") or Adam with optax's defaults ("adam")."""
    if name == "momentum":
        return optax.sgd(lr, momentum=0.9)
    if name == "adam":
        return optax.adam(lr)
    raise ValueError(f"optimizer must be 'momentum' or 'adam', got {name!r}")


def make_run(impl, dims, optimizer, dropout, steps, *, lr=1e-3, weight_scale=5e-2, seed=0):
    """A jitted run of `steps` training steps on one batch, inside one `lax.scan`.

    The network is `(affine -> batchnorm -> relu -> dropout) x (L-1) -> affine`, trained
    on mean softmax cross-entropy, with `weight_scale * randn` weights, zero biases and
    jaxnet's batchnorm settings. Each library is used the way its own examples write a
    training step:

    - "jax": `jax.value_and_grad` of a hand-written apply over a list of layer dicts.
    - "flax": linen `nn.Dense`/`nn.BatchNorm`/`nn.Dropout`, `mutable=["batch_stats"]` and
      a `flax.training.train_state.TrainState` carrying `batch_stats`, under `jax.jit`.
    - "equinox": `eqx.nn.Linear`/`eqx.nn.BatchNorm(mode="batch")`/`eqx.nn.Dropout` with
      `eqx.nn.State`, the model vmapped over the batch (`axis_name="batch"`), per-example
      dropout keys, `eqx.filter_value_and_grad` and `eqx.filter_jit`.

    Args:
      impl: one of PEERS.
      dims: layer sizes `(D, ..., C)`.
      optimizer: "momentum" or "adam" (see `make_optimizer`).
      dropout: drop probability; 0 leaves dropout out.
      steps: steps per call.
      lr: learning rate.
      weight_scale: standard deviation of the initial weights.
      seed: seeds the weights and the dropout keys.

    Returns:
      `(run, carry)`: `run((x, y), carry) -> (carry, losses)` with x (N, D) float32, y (N,)
      int32 and losses (steps,), the loss before each update; the carry is donated. `run`
      has `.lower(batch, carry).compile()`.
    """
    if not available(impl):
        raise RuntimeError(f"{impl} is not installed: pip install '.[bench]'")
    dims = tuple(int(d) for d in dims)
    init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    tx = make_optimizer(optimizer, lr)
    build = {"jax": _jax_run, "flax": _flax_run, "equinox": _equinox_run}[impl]
    return build(dims, tx, float(dropout), steps, weight_scale, init_key, run_key)


def interleaved_seconds(runs, *, steps, rounds):
    """Seconds per step of several scanned runs timed side by side, compile excluded.

    Each run is compiled and called once untimed; then every round calls each run once, in
    turn. A VM's speed drifts within one process (up to 2x here): timed one after another,
    two runs can differ by the drift alone, while interleaved they share it.

    Args:
      runs: name -> `(run, batch, carry)`: a jitted `run(batch, carry) -> (carry, losses)`
        taking `steps` steps per call with its carry donated (`make_run`, or jaxnet's step
        or epoch wrapped alike), its first argument (passed unchanged to every call) and
        its initial carry.
      steps: steps per call.
      rounds: timed calls of each run.

    Returns:
      name -> `(seconds_per_step, compile_seconds, first_losses)`: the median over the
      rounds, the time to lower and compile, and the losses of the untimed call (from the
      initial carry) as a (steps,) array.
    """
    # Inputs drawn on the device may still be computing (a shuffled epoch's data is up to
    # 2.4 GB of normals); timed alongside, that work added ~1.7 s to its compile time.
    jax.block_until_ready([(batch, carry) for _, batch, carry in runs.values()])
    compiled, carries, out = {}, {}, {}
    for name, (run, batch, carry) in runs.items():
        start = time.perf_counter()
        compiled[name] = run.lower(batch, carry).compile()
        compile_s = time.perf_counter() - start
        carries[name], first_losses = compiled[name](batch, carry)
        out[name] = [compile_s, first_losses.block_until_ready(), []]
    for _ in range(rounds):
        for name, (_, batch, _) in runs.items():
            start = time.perf_counter()
            carries[name], losses = compiled[name](batch, carries[name])
            losses.block_until_ready()
            out[name][2].append((time.perf_counter() - start) / steps)
    return {name: (statistics.median(times), compile_s, first_losses)
            for name, (compile_s, first_losses, times) in out.items()}


def _scan_keys(key, steps):
    key, sub = jax.random.split(key)
    return key, jax.random.split(sub, steps)


def _xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


# --------------------------------------------------------------------------------------
# Plain JAX: a hand-written apply, weights in the (in, out) layout, jax.value_and_grad.
# --------------------------------------------------------------------------------------


def _jax_init(key, dims, weight_scale):
    params, stats = [], []
    keys = jax.random.split(key, len(dims) - 1)
    for i, (k, (n_in, n_out)) in enumerate(zip(keys, itertools.pairwise(dims), strict=True)):
        layer = {"w": weight_scale * jax.random.normal(k, (n_in, n_out), DTYPE),
                 "b": jnp.zeros((n_out,), DTYPE)}
        if i < len(dims) - 2:
            layer.update(gamma=jnp.ones((n_out,), DTYPE), beta=jnp.zeros((n_out,), DTYPE))
            stats.append({"mean": jnp.zeros((n_out,), DTYPE), "var": jnp.ones((n_out,), DTYPE)})
        params.append(layer)
    return params, stats


def _jax_loss(params, stats, x, y, key, dropout):
    """Training-mode loss and the updated running statistics."""
    keys = jax.random.split(key, len(stats))
    new_stats = []
    h = x
    for layer, running, k in zip(params[:-1], stats, keys, strict=True):
        h = h @ layer["w"] + layer["b"]
        mean, var = jnp.mean(h, axis=0), jnp.var(h, axis=0)
        h = (h - mean) * jax.lax.rsqrt(var + BN_EPS) * layer["gamma"] + layer["beta"]
        new_stats.append({"mean": BN_MOMENTUM * running["mean"] + (1 - BN_MOMENTUM) * mean,
                          "var": BN_MOMENTUM * running["var"] + (1 - BN_MOMENTUM) * var})
        h = jax.nn.relu(h)
        if dropout:
            keep = jax.random.bernoulli(k, 1 - dropout, h.shape)
            h = jnp.where(keep, h / (1 - dropout), 0)
    logits = h @ params[-1]["w"] + params[-1]["b"]
    return _xent(logits, y), new_stats


def _jax_run(dims, tx, dropout, steps, weight_scale, init_key, run_key):
    params, stats = _jax_init(init_key, dims, weight_scale)
    grad_fn = jax.value_and_grad(_jax_loss, has_aux=True)

    def step(carry, key, x, y):
        params, stats, opt_state = carry
        (loss, stats), grads = grad_fn(params, stats, x, y, key, dropout)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), stats, opt_state), loss

    def run(batch, carry):
        state, key = carry
        key, keys = _scan_keys(key, steps)
        state, losses = jax.lax.scan(lambda c, k: step(c, k, *batch), state, keys)
        return (state, key), losses

    return jax.jit(run, donate_argnums=1), ((params, stats, tx.init(params)), run_key)


# --------------------------------------------------------------------------------------
# Flax linen.
# --------------------------------------------------------------------------------------

if flax is not None:

    class _FlaxMLP(nn.Module):
        dims: tuple[int, ...]
        dropout: float
        weight_scale: float

        @nn.compact
        def __call__(self, x, *, train):
            kernel_init = nn.initializers.normal(self.weight_scale)
            for width in self.dims[1:-1]:
                x = nn.Dense(width, kernel_init=kernel_init)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                                 epsilon=BN_EPS)(x)
                x = nn.relu(x)
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            return nn.Dense(self.dims[-1], kernel_init=kernel_init)(x)

    class _FlaxState(train_state.TrainState):
        batch_stats: dict


def _flax_run(dims, tx, dropout, steps, weight_scale, init_key, run_key):
    model = _FlaxMLP(dims, dropout, weight_scale)
    variables = model.init(init_key, jnp.zeros((2, dims[0]), DTYPE), train=False)
    state = _FlaxState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                              batch_stats=variables["batch_stats"])

    def train_step(state, key, x, y):
        def loss_fn(params):
            logits, updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, x, train=True,
                rngs={"dropout": key}, mutable=["batch_stats"])
            return _xent(logits, y), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"]), loss

    def run(batch, carry):
        state, key = carry
        key, keys = _scan_keys(key, steps)
        state, losses = jax.lax.scan(lambda s, k: train_step(s, k, *batch), state, keys)
        return (state, key), losses

    return jax.jit(run, donate_argnums=1), (state, run_key)


# --------------------------------------------------------------------------------------
# Equinox.
# --------------------------------------------------------------------------------------

if eqx is not None:

    class _EqxMLP(eqx.Module):
        linears: tuple
        norms: tuple
        dropout: eqx.nn.Dropout

        def __init__(self, dims, dropout, weight_scale, key):
            linears = []
            for k, (n_in, n_out) in zip(jax.random.split(key, len(dims) - 1),
                                        itertools.pairwise(dims), strict=True):
                linear_key, weight_key = jax.random.split(k)
                linear = eqx.nn.Linear(n_in, n_out, dtype=DTYPE, key=linear_key)
                # eqx.nn.Linear draws uniform weights and biases; use jaxnet's init instead.
                linears.append(eqx.tree_at(
                    lambda lin: (lin.weight, lin.bias), linear,
                    (weight_scale * jax.random.normal(weight_key, (n_out, n_in), DTYPE),
                     jnp.zeros((n_out,), DTYPE))))
            self.linears = tuple(linears)
            self.norms = tuple(
                eqx.nn.BatchNorm(width, axis_name="batch", eps=BN_EPS, momentum=BN_MOMENTUM,
                                 mode="batch", dtype=DTYPE) for width in dims[1:-1])
            self.dropout = eqx.nn.Dropout(dropout)

        def __call__(self, x, state, key):
            """One example: x (D,) -> logits (C,); `key` is None when dropout is off."""
            n_hidden = len(self.norms)
            keys = [None] * n_hidden if key is None else jax.random.split(key, n_hidden)
            for linear, norm, k in zip(self.linears[:-1], self.norms, keys, strict=True):
                x, state = norm(linear(x), state)
                x = self.dropout(jax.nn.relu(x), key=k)
            return self.linears[-1](x), state


def _eqx_loss(model, state, x, y, key):
    keys = None if key is None else jax.random.split(key, x.shape[0])
    batched = jax.vmap(model, axis_name="batch", in_axes=(0, None, None if key is None else 0),
                       out_axes=(0, None))
    logits, state = batched(x, state, keys)
    return _xent(logits, y), state


def _equinox_run(dims, tx, dropout, steps, weight_scale, init_key, run_key):
    model, bn_state = eqx.nn.make_with_state(_EqxMLP)(dims, dropout, weight_scale, init_key)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))
    grad_fn = eqx.filter_value_and_grad(_eqx_loss, has_aux=True)

    def run(batch, carry):
        model, bn_state, opt_state, key = carry
        x, y = batch
        # The scan carries arrays only: split the model once, rebuild it in each step.
        params, static = eqx.partition(model, eqx.is_array)

        def step(carry, k):
            params, bn_state, opt_state = carry
            model = eqx.combine(params, static)
            (loss, bn_state), grads = grad_fn(model, bn_state, x, y, k if dropout else None)
            updates, opt_state = tx.update(grads, opt_state, params)
            model = eqx.apply_updates(model, updates)
            return (eqx.filter(model, eqx.is_array), bn_state, opt_state), loss

        key, keys = _scan_keys(key, steps)
        (params, bn_state, opt_state), losses = jax.lax.scan(
            step, (params, bn_state, opt_state), keys)
        return (eqx.combine(params, static), bn_state, opt_state, key), losses

    return (eqx.filter_jit(run, donate="all-except-first"),
            (model, bn_state, opt_state, run_key))
