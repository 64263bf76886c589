"""Reference implementations for the benchmark: NumPy port, PyTorch eager and a GEMM bound.

Flax, Equinox and plain JAX live in bench_peers.py.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

try:
    import torch
except ImportError:  # torch is an optional benchmark dependency
    torch = None

OPTIMIZERS = ("sgd", "momentum", "adam")
BN_MOMENTUM = 0.9  # running = BN_MOMENTUM * running + (1 - BN_MOMENTUM) * batch
BN_EPS = 1e-5


# --------------------------------------------------------------------------------------
# NumPy: the notebook's layer functions, with its bugs fixed.
# Weights use the notebook's (in, out) layout: `x.dot(w)`.
# --------------------------------------------------------------------------------------


def affine_forward(x, w, b):
    """Affine layer `x.dot(w) + b` with `w` of shape (D_in, D_out).

    Returns:
      out: (N, D_out), and the cache `(x, w)` with `x` flattened to (N, D_in).
    """
    x = x.reshape(x.shape[0], -1)
    return x.dot(w) + b, (x, w)


def affine_backward(dout, cache, *, compute_dx=True):
    """Backward of `affine_forward`.

    Returns:
      dx: (N, D_in), or None when `compute_dx` is False; dw: (D_in, D_out); db: (D_out,).
    """
    x, w = cache
    dx = dout.dot(w.T) if compute_dx else None
    return dx, x.T.dot(dout), np.sum(dout, axis=0)


def relu_forward(x):
    """ReLU; the cache is the mask `x > 0`."""
    mask = x > 0
    return x * mask, mask


def relu_backward(dout, mask):
    """Backward of `relu_forward`."""
    return dout * mask


def batchnorm_forward(x, gamma, beta, eps=BN_EPS):
    """Training-mode batch normalisation with the batch mean and biased batch variance.

    Returns:
      out: (N, H), and the cache `(x_norm, gamma, inv_std, mean, var)`.
    """
    mean = np.mean(x, axis=0)
    var = np.var(x, axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    x_norm = (x - mean) * inv_std
    return gamma * x_norm + beta, (x_norm, gamma, inv_std, mean, var)


def batchnorm_backward(dout, cache):
    """Backward of `batchnorm_forward` (the compact formula; dgamma = sum(dout * x_norm)).

    Returns:
      dx: (N, H), dgamma: (H,), dbeta: (H,).
    """
    x_norm, gamma, inv_std, _, _ = cache
    n = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_norm, axis=0)
    dx = (gamma * inv_std / n) * (n * dout - dbeta - x_norm * dgamma)
    return dx, dgamma, dbeta


def dropout_forward(x, p, rng):
    """Inverted dropout with drop probability `p`; the cache is the scaled mask."""
    keep = rng.random(x.shape, dtype=x.dtype) >= p
    mask = keep.astype(x.dtype) * (1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, mask):
    """Backward of `dropout_forward`."""
    return dout * mask


def softmax_loss(scores, y):
    """Mean softmax cross-entropy with log-sum-exp (never `log(0)`).

    Returns:
      loss: scalar of the scores' dtype, and dscores: (N, C).
    """
    n = scores.shape[0]
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -np.mean(log_probs[rows, y])
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    return loss, dscores / n


class NumpyNet:
    """The notebook's (affine-batchnorm-relu-dropout) x (L-1) -> affine-softmax net in NumPy.

    Attributes:
      dims: layer sizes `(D, h1, ..., C)`.
      params: dict with the notebook's keys `W1, b1, gamma1, beta1, ..., WL, bL`; weights
        have the `(in, out)` layout.
      running: dict `mean1, var1, ...` of batchnorm running averages.
      rng: `np.random.Generator` used for dropout masks when no `rng` is passed.
    """

    def __init__(self, dims, *, weight_scale=5e-2, dtype=np.float32, seed=0, dropout=0.0,
                 reg=0.0):
        """Builds a network with `weight_scale * randn` weights.

        Args:
          dims: layer sizes `(D, h1, ..., h_{L-1}, C)`.
          weight_scale: standard deviation of the weights.
          dtype: float dtype of every array.
          seed: seed of the weights (drawn in float64, then cast, so float32 and float64
            nets start from the same values) and of the dropout generator.
          dropout: drop probability in [0, 1).
          reg: L2 strength on the weights.
        """
        self.dims = tuple(int(d) for d in dims)
        if len(self.dims) < 2:
            raise ValueError(f"dims needs at least an input and an output size, got {dims!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dtype = np.dtype(dtype)
        self.dropout = float(dropout)
        self.reg = float(reg)
        self.num_layers = len(self.dims) - 1
        init_rng = np.random.default_rng(seed)
        self.rng = np.random.default_rng([seed, 1])
        self.params, self.running = {}, {}
        for i in range(1, self.num_layers + 1):
            fan_in, fan_out = self.dims[i - 1], self.dims[i]
            w = float(weight_scale) * init_rng.standard_normal((fan_in, fan_out))
            self.params[f"W{i}"] = w.astype(self.dtype)
            self.params[f"b{i}"] = np.zeros(fan_out, self.dtype)
            if i < self.num_layers:
                self.params[f"gamma{i}"] = np.ones(fan_out, self.dtype)
                self.params[f"beta{i}"] = np.zeros(fan_out, self.dtype)
                self.running[f"mean{i}"] = np.zeros(fan_out, self.dtype)
                self.running[f"var{i}"] = np.ones(fan_out, self.dtype)

    @classmethod
    def from_jaxnet(cls, params, state, **kw):
        """Builds a NumpyNet holding a copy of jaxnet's `params` and `state`.

        Args:
          params, state: trees from `jaxnet.init` (weights `(out, in)`, transposed here).
          **kw: constructor arguments (`dropout`, `reg`, `dtype`, ...); `dtype` defaults to
            the dtype of `params`.

        Returns:
          The new NumpyNet.
        """
        dims = (params[0]["w"].shape[-1], *(layer["w"].shape[-2] for layer in params))
        kw.setdefault("dtype", np.asarray(params[0]["w"]).dtype)
        net = cls(dims, **kw)
        for i, layer in enumerate(params, start=1):
            for name, value in layer.items():
                value = np.asarray(value, net.dtype)
                net.params[("W" if name == "w" else name) + str(i)] = (
                    np.ascontiguousarray(value.T) if name == "w" else value.copy())
        for i, stats in enumerate(state, start=1):
            net.running[f"mean{i}"] = np.asarray(stats["mean"], net.dtype).copy()
            net.running[f"var{i}"] = np.asarray(stats["var"], net.dtype).copy()
        return net

    def to_jaxnet(self, tree=None):
        """Converts `self.params` (or a grads dict of the same keys) to jaxnet's layout.

        Returns:
          A tuple of per-layer dicts `{"w": (out, in), "b", "gamma", "beta"}`, the last
          layer `{"w", "b"}`.
        """
        tree = self.params if tree is None else tree
        layers = []
        for i in range(1, self.num_layers + 1):
            layer = {"w": tree[f"W{i}"].T, "b": tree[f"b{i}"]}
            if i < self.num_layers:
                layer.update(gamma=tree[f"gamma{i}"], beta=tree[f"beta{i}"])
            layers.append(layer)
        return tuple(layers)

    def running_to_jaxnet(self):
        """The running averages as jaxnet's state: a tuple of `{"mean", "var"}` dicts."""
        return tuple({"mean": self.running[f"mean{i}"], "var": self.running[f"var{i}"]}
                     for i in range(1, self.num_layers))

    def loss_and_grads(self, x, y, rng=None):
        """Training-mode loss and gradients; updates the running averages.

        Args:
          x: (N, ...) inputs with `D` features per example; cast to the net's dtype.
          y: (N,) integer labels.
          rng: `np.random.Generator` for the dropout masks (default: `self.rng`).

        Returns:
          loss: float, mean cross-entropy plus `0.5 * reg * sum(W**2)`, and grads: dict
          with the keys of `self.params`.
        """
        rng = self.rng if rng is None else rng
        p = self.params
        h = np.asarray(x).reshape(len(x), -1).astype(self.dtype, copy=False)
        y = np.asarray(y)
        caches = []
        for i in range(1, self.num_layers):
            h, affine_cache = affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            h, bn_cache = batchnorm_forward(h, p[f"gamma{i}"], p[f"beta{i}"])
            self.running[f"mean{i}"] = (BN_MOMENTUM * self.running[f"mean{i}"]
                                        + (1 - BN_MOMENTUM) * bn_cache[3])
            self.running[f"var{i}"] = (BN_MOMENTUM * self.running[f"var{i}"]
                                       + (1 - BN_MOMENTUM) * bn_cache[4])
            h, relu_cache = relu_forward(h)
            drop_cache = None
            if self.dropout > 0:
                h, drop_cache = dropout_forward(h, self.dropout, rng)
            caches.append((affine_cache, bn_cache, relu_cache, drop_cache))
        scores, last_cache = affine_forward(h, p[f"W{self.num_layers}"], p[f"b{self.num_layers}"])
        loss, dh = softmax_loss(scores, y)

        grads = {}
        L = self.num_layers
        dh, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dh, last_cache, compute_dx=L > 1)
        for i in reversed(range(1, L)):
            affine_cache, bn_cache, relu_cache, drop_cache = caches[i - 1]
            if drop_cache is not None:
                dh = dropout_backward(dh, drop_cache)
            dh = relu_backward(dh, relu_cache)
            dh, grads[f"gamma{i}"], grads[f"beta{i}"] = batchnorm_backward(dh, bn_cache)
            dh, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(dh, affine_cache,
                                                                 compute_dx=i > 1)
        if self.reg:
            for i in range(1, L + 1):
                w = p[f"W{i}"]
                loss = loss + 0.5 * self.reg * np.sum(w * w)
                grads[f"W{i}"] = grads[f"W{i}"] + self.reg * w
        return float(loss), grads


class NumpyOptimizer:
    """SGD, SGD with momentum or Adam on a dict of arrays, with state kept across steps.

    Conventions follow optax: momentum is `v = momentum * v + g; p -= lr * v`
    (`optax.sgd(lr, momentum)`), Adam is `optax.adam` with bias correction and `eps`
    outside the square root.
    """

    def __init__(self, name, lr, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
        """Creates the optimizer; its state is built on the first `update`.

        Args:
          name: "sgd", "momentum" or "adam".
          lr: learning rate.
          momentum: velocity decay of "momentum".
          beta1, beta2, eps: Adam's moment decays and denominator epsilon.
        """
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
        self.name = name
        # Python floats keep float32 arrays float32 (NumPy scalars would promote).
        self.lr, self.momentum = float(lr), float(momentum)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.count = 0
        self.velocity, self.mu, self.nu = {}, {}, {}

    def update(self, params, grads):
        """Applies one step to `params` in place.

        Args:
          params: dict of arrays, updated in place.
          grads: dict with the same keys.
        """
        self.count += 1
        lr = self.lr
        if self.name == "adam":
            correction1 = 1 - self.beta1 ** self.count
            correction2 = 1 - self.beta2 ** self.count
        for k, g in grads.items():
            if self.name == "sgd":
                params[k] -= lr * g
            elif self.name == "momentum":
                v = self.velocity.get(k)
                v = g.copy() if v is None else self.momentum * v + g
                self.velocity[k] = v
                params[k] -= lr * v
            else:
                mu = self.mu.get(k, np.zeros_like(g))
                nu = self.nu.get(k, np.zeros_like(g))
                mu = self.beta1 * mu + (1 - self.beta1) * g
                nu = self.beta2 * nu + (1 - self.beta2) * (g * g)
                self.mu[k], self.nu[k] = mu, nu
                params[k] -= lr * (mu / correction1) / (np.sqrt(nu / correction2) + self.eps)


def _random_batch(dims, batch, seed):
    rng = np.random.default_rng([seed, 2])
    return rng.standard_normal((batch, dims[0])), rng.integers(0, dims[-1], size=batch)


def numpy_step_seconds(dims, batch, optimizer, dropout, dtype, *, steps, warmup=3, seed=0,
                       lr=1e-2):
    """Wall times of full NumPy training steps (forward, backward, update).

    Args:
      dims: layer sizes `(D, ..., C)`.
      batch: examples per step (random normal inputs and random labels, reused each step).
      optimizer: "sgd", "momentum" or "adam".
      dropout: drop probability.
      dtype: float dtype of the network and data.
      steps: number of timed steps.
      warmup: untimed steps run first.
      seed: seed of the weights and data.
      lr: learning rate.

    Returns:
      The `steps` per-step times in seconds (`time.perf_counter`).
    """
    net = NumpyNet(dims, dtype=dtype, seed=seed, dropout=dropout)
    opt = NumpyOptimizer(optimizer, lr)
    x, y = _random_batch(net.dims, batch, seed)
    x = x.astype(net.dtype)
    times = []
    with np.errstate(all="ignore"):
        for i in range(warmup + steps):
            start = time.perf_counter()
            _, grads = net.loss_and_grads(x, y)
            opt.update(net.params, grads)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def _check_sweep(x, learning_rates, weight_scales, dims, iterations):
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if len(learning_rates) != len(weight_scales):
        raise ValueError(
            f"learning_rates and weight_scales are zipped and must have the same length, got "
            f"{len(learning_rates)} and {len(weight_scales)}")
    d_in = math.prod(np.shape(x)[1:])
    if dims[0] != d_in:
        raise ValueError(f"dims[0]={dims[0]} but x has {d_in} features per example")


def numpy_notebook_sweep(x, y, learning_rates, weight_scales, iterations, dims, dtype, *,
                         seed=0):
    """The notebook's sweep: full-batch SGD for each (learning rate, weight scale) pair.

    Each setting starts afresh from `weight_scale * randn` with the same `seed` (reg 0, no
    dropout) and runs `iterations` plain SGD steps on every parameter, the last layer
    included. Divergent settings give nan/inf and never raise.

    Args:
      x: (N, ...) inputs; y: (N,) integer labels.
      learning_rates, weight_scales: equal-length sequences, zipped as in the notebook.
      iterations: SGD steps per setting (>= 1).
      dims: layer sizes `(D, ..., C)`, with D the features of `x`.
      dtype: float dtype.
      seed: seed of the initial weights.

    Returns:
      float64 array of the loss of the last iteration's forward pass (before its
      update), one per setting.
    """
    dims = tuple(dims)
    _check_sweep(x, learning_rates, weight_scales, dims, iterations)
    x = np.asarray(x).reshape(len(x), -1).astype(dtype)
    losses = np.full(len(learning_rates), np.nan)
    with np.errstate(all="ignore"):
        for s, (lr, ws) in enumerate(zip(learning_rates, weight_scales, strict=True)):
            net = NumpyNet(dims, weight_scale=float(ws), dtype=dtype, seed=seed)
            opt = NumpyOptimizer("sgd", float(lr))
            for _ in range(iterations):
                loss, grads = net.loss_and_grads(x, y)
                opt.update(net.params, grads)
            losses[s] = loss
    return losses


# --------------------------------------------------------------------------------------
# PyTorch eager.
# --------------------------------------------------------------------------------------


def torch_available() -> bool:
    """Whether `import torch` worked."""
    return torch is not None


def torch_version() -> str | None:
    """The installed torch version, or None."""
    return None if torch is None else torch.__version__


def _torch_dtype(dtype):
    if torch is not None and isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, np.dtype(dtype).name)


def _torch_model(dims, dropout, dtype, weight_scale, generator):
    nn = torch.nn
    modules = []
    for i in range(len(dims) - 1):
        linear = nn.Linear(dims[i], dims[i + 1], dtype=dtype)
        with torch.no_grad():
            linear.weight.normal_(0.0, float(weight_scale), generator=generator)
            linear.bias.zero_()
        modules.append(linear)
        if i < len(dims) - 2:
            modules += [nn.BatchNorm1d(dims[i + 1], momentum=1 - BN_MOMENTUM, eps=BN_EPS,
                                       dtype=dtype), nn.ReLU()]
            if dropout > 0:
                modules.append(nn.Dropout(dropout))
    return nn.Sequential(*modules).train()


def _torch_optimizer(name, params, lr):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def _require_torch():
    if torch is None:
        raise RuntimeError("PyTorch is not installed: pip install torch (CPU wheel)")
    torch.set_num_threads(os.cpu_count() or 1)


def torch_step_seconds(dims, batch, optimizer, dropout, dtype, *, steps, warmup=3, seed=0,
                       lr=1e-2):
    """Wall times of full PyTorch eager training steps on CPU.

    The model is `nn.Sequential` of Linear, BatchNorm1d, ReLU, Dropout (when `dropout > 0`)
    and a final Linear, in training mode, with `F.cross_entropy`; one step is zero_grad,
    forward, backward and the optimizer step.

    Args:
      dims, batch, optimizer, dropout, dtype, steps, warmup, seed, lr: as in
        `numpy_step_seconds`.

    Returns:
      The `steps` per-step times in seconds (`time.perf_counter`).
    """
    _require_torch()
    dims = tuple(int(d) for d in dims)
    tdtype = _torch_dtype(dtype)
    torch.manual_seed(seed)  # dropout masks use torch's global generator
    gen = torch.Generator().manual_seed(seed)
    model = _torch_model(dims, dropout, tdtype, 5e-2, gen)
    opt = _torch_optimizer(optimizer, model.parameters(), lr)
    x_np, y_np = _random_batch(dims, batch, seed)
    x = torch.from_numpy(x_np).to(tdtype)
    y = torch.from_numpy(y_np).long()
    cross_entropy = torch.nn.functional.cross_entropy
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def torch_notebook_sweep(x, y, learning_rates, weight_scales, iterations, dims, dtype, *,
                         seed=0):
    """The notebook's sweep in PyTorch eager: a Python loop over settings, plain SGD.

    Args and returns as `numpy_notebook_sweep` (losses of the last forward pass; nan/inf
    for divergent settings).
    """
    _require_torch()
    dims = tuple(int(d) for d in dims)
    _check_sweep(x, learning_rates, weight_scales, dims, iterations)
    tdtype = _torch_dtype(dtype)
    xt = torch.from_numpy(np.asarray(x).reshape(len(x), -1)).to(tdtype)
    yt = torch.from_numpy(np.asarray(y)).long()
    cross_entropy = torch.nn.functional.cross_entropy
    losses = np.full(len(learning_rates), np.nan)
    for s, (lr, ws) in enumerate(zip(learning_rates, weight_scales, strict=True)):
        gen = torch.Generator().manual_seed(seed)
        model = _torch_model(dims, 0.0, tdtype, float(ws), gen)
        opt = torch.optim.SGD(model.parameters(), lr=float(lr))
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            loss = cross_entropy(model(xt), yt)
            loss.backward()
            opt.step()
        losses[s] = loss.item()
    return losses


# --------------------------------------------------------------------------------------
# GEMM bound with JAX.
# --------------------------------------------------------------------------------------


_PRODUCTS = {
    "x@w.T": lambda a, b: jnp.dot(a, b.T),
    "dy.T@x": lambda a, b: jnp.dot(a.T, b),
    "dy@w": lambda a, b: jnp.dot(a, b),
}


def _median_seconds(kind, a, b, repeats, inner=None, warmup=1, *, reduce=statistics.median):
    """Median seconds of one product, with the dispatch cost amortised.

    The product runs `inner` times inside one jitted `lax.scan`, each time on a different
    left operand (stacked in memory, so nothing can be hoisted out of the loop), and the
    call's time is divided by `inner`. `reduce` (`min` for a best case) replaces the median.
    """
    product = _PRODUCTS[kind]
    m, k = a.shape
    if inner is None:  # enough work per call (>= ~50 MFLOP) to hide the dispatch
        inner = int(min(64, max(1, 5e7 // (2 * m * k * max(b.shape)))))
    stack = jnp.stack([a + i for i in range(inner)])

    @jax.jit
    def run(stack, b):
        def body(acc, lhs):
            return acc + product(lhs, b)[0, 0], None
        return jax.lax.scan(body, jnp.zeros((), a.dtype), stack)[0]

    for _ in range(warmup):
        run(stack, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(stack, b).block_until_ready()
        times.append((time.perf_counter() - start) / inner)
    return reduce(times)


def gemm_bound_step_seconds(dims, batch, dtype=jnp.float32, *, repeats=20) -> dict:
    """Time of the matrix products of one training step, each run as a lone jitted dot.

    For each affine layer (n_in, n_out): the forward `x @ w.T`, the weight gradient
    `dy.T @ x` and, for every layer but the first, the input gradient `dy @ w`. Each time
    is the median of `repeats` calls after warm-up, with the dispatch amortised over
    several products per call (see `_median_seconds`).

    Args:
      dims: layer sizes `(D, ..., C)`.
      batch: examples per step.
      dtype: dtype of the operands.
      repeats: timed calls per product.

    Returns:
      {"seconds": sum of the medians, "flops": total flops (2*m*k*n per product),
      "per_product": [{"name", "shape": (m, k, n) for (m, k) @ (k, n), "seconds",
      "gflops"}, ...]}.
    """
    dims = tuple(int(d) for d in dims)
    key = jax.random.PRNGKey(0)
    per_product = []
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(dims)):
        kx, kw, ky, key = jax.random.split(key, 4)
        x = jax.random.normal(kx, (batch, n_in), dtype)
        w = jax.random.normal(kw, (n_out, n_in), dtype)
        dy = jax.random.normal(ky, (batch, n_out), dtype)
        products = [(f"layer{layer}.forward x@w.T", "x@w.T", x, w, (batch, n_in, n_out)),
                    (f"layer{layer}.dw dy.T@x", "dy.T@x", dy, x, (n_out, batch, n_in))]
        if layer > 0:
            products.append((f"layer{layer}.dx dy@w", "dy@w", dy, w, (batch, n_out, n_in)))
        for name, fn, a, b, shape in products:
            seconds = _median_seconds(fn, a, b, repeats)
            per_product.append({"name": name, "shape": shape, "seconds": seconds,
                                "gflops": 2 * math.prod(shape) / seconds / 1e9})
    return {"seconds": sum(p["seconds"] for p in per_product),
            "flops": sum(2 * math.prod(p["shape"]) for p in per_product),
            "per_product": per_product}


def matmul_gflops(n=2048, dtype=jnp.float32, *, repeats=10, best=False) -> float:
    """Rate of one (n, n) @ (n, n) jitted product in GFLOP/s, counting 2 * n**3 flops.

    Args:
      n: matrix size.
      dtype: operand dtype.
      repeats: timed calls.
      best: rate of the fastest call (the machine's peak) instead of the median call.

    Returns:
      GFLOP/s.
    """
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    seconds = _median_seconds("dy@w", a, b, repeats, reduce=min if best else statistics.median)
    return 2 * n**3 / seconds / 1e9


def step_matmul_flops(dims, batch) -> int:
    """Flops of one training step's matrix products (2*m*k*n each).

    The same products as `gemm_bound_step_seconds`: per affine layer the forward and the
    weight gradient, and the input gradient for every layer but the first. Elementwise
    work (batchnorm, softmax, the optimizer) is not counted; at these widths it is a few
    percent of the total.

    Args:
      dims: layer sizes `(D, ..., C)`.
      batch: examples per step.
    """
    return sum(2 * batch * n_in * n_out * (2 if layer == 0 else 3)
               for layer, (n_in, n_out) in enumerate(itertools.pairwise(dims)))
