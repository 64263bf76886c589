"""Training on a few wide examples: the first layer's weights kept in the span of the inputs.

Plain SGD, momentum and Nesterov only ever add multiples of their gradients to the weights,
and the first layer's gradient `dh1.T @ x[idx]` is a combination of training examples. So
from its initial weights `w0` the first layer stays `w0 + c @ x`, with `c` of shape (H1, N)
for N training examples, and its product on a minibatch is

    x[idx] @ (w0 + c @ x).T = p0[idx] + g[idx] @ c.T,   p0 = x @ w0.T,  g = x @ x.T.

The optimizer updates `c` with the gradient `dh1` scattered to the examples' columns (the
same steps as the (H1, D) weights would take, expressed in their coordinates), and the
(H1, D) weights are built only where they are reported. When N is well below the input
width D (the notebook's sweep: 50 examples of 3072 values), each step then costs O(N) per
hidden unit instead of O(D), and the weights of a hundred runs no longer stream through
memory at every step. The numbers are those of ordinary training up to round-off (tested
in float64); sweeps choose this form by themselves where it is exact and cheaper (`why_not`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet import model
from jaxnet.config import TrainConfig
from jaxnet.errors import ConfigError
from jaxnet.train import TrainState, apply_gradients, batch_size, epoch_plan

LINEAR_OPTIMIZERS = ("sgd", "momentum", "nesterov")  # updates linear in the gradients
MAX_EXAMPLES = 8192  # the Gram matrix g is (N, N): 256 MB in float32 at this size


class SpanRun(NamedTuple):
    """A run whose first-layer weights are `w0 + ts.params[0]["w"] @ x` (see the module)."""

    ts: TrainState  # params[0]["w"] is c, (H1, N); the optimizer state follows it
    w0: jax.Array  # (H1, D) the initial first-layer weights, never updated


def why_not(config: TrainConfig, swept: set[str], n_train: int, n_features: int) -> str | None:
    """None when training in the span is exact and cheaper for this sweep; else the reason."""
    if config.optimizer not in LINEAR_OPTIMIZERS:
        return (f"optimizer {config.optimizer!r} scales each weight by its own history; only "
                f"{', '.join(LINEAR_OPTIMIZERS)} keep the weights in the span of the inputs")
    if "reg" in swept or config.reg != 0:
        return "an L2 term (reg) pulls the weights out of the span of the inputs; use reg=0"
    if 2 * n_train > n_features:
        return (f"{n_train} training examples of {n_features} features: the span form pays "
                "off only with at most half as many examples as features")
    if n_train > MAX_EXAMPLES:
        return f"{n_train} training examples: the Gram matrix would exceed {MAX_EXAMPLES}^2"
    return None


def choose(config: TrainConfig, swept: set[str], n_train: int, n_features: int,
           requested: bool | None) -> bool:
    """Whether a sweep trains in the span: `requested` (None: where `why_not` finds nothing
    against it); True where it cannot be exact is a ConfigError naming the reason."""
    reason = why_not(config, swept, n_train, n_features)
    if requested and reason:
        raise ConfigError(f"in_span=True cannot train this sweep in the span of the inputs: "
                          f"{reason}; pass in_span=None (automatic) or False")
    return reason is None if requested is None else requested


def to_span(params, n_train: int):
    """(params with the first layer's weights replaced by zero coefficients (H1, N), w0)."""
    w0 = params[0]["w"]
    return (dict(params[0], w=jnp.zeros((w0.shape[0], n_train), w0.dtype)), *params[1:]), w0


def full_params(params, w0, x):
    """The ordinary params: the first layer's weights `w0 + c @ x` built from coefficients."""
    return (dict(params[0], w=w0 + params[0]["w"] @ x), *params[1:])


def make_epoch(config: TrainConfig, optimizer, n_train: int):
    """The pure epoch `(train_state, p0, y, gram) -> (train_state, losses)` of a run in the
    span form: `p0 = x @ w0.T` (N, H1) and `gram = x @ x.T` (N, N) for the training set x.
    The same steps, shuffles and dropout masks as `jaxnet.train.make_epoch`
    (keep_finite=False)."""
    batch = batch_size(config, n_train)

    def step(ts: TrainState, p0, gram, y, idx, key):
        c = ts.params[0]["w"]
        if idx is None:  # full batch
            first, yb = p0 + gram @ c.T, y
        else:
            first, yb = p0[idx] + gram[idx] @ c.T, y[idx]
        dropout = ts.hyper.get("dropout", config.dropout)
        (loss, bn_state), grads = model.value_and_grad_from_first(
            ts.params, ts.bn_state, first, yb, grad=config.grad, key=key, train=True,
            dropout=dropout, momentum=config.bn_momentum, eps=config.bn_eps,
            class_weight=ts.hyper.get("class_weight"), widths=ts.hyper.get("widths"))
        d_first = grads[0]["w"]  # (B, H1): the (H1, D) gradient is d_first.T @ x[idx]
        if idx is None:
            dc = d_first.T
        else:
            dc = jnp.zeros((n_train, d_first.shape[1]), d_first.dtype).at[idx].add(d_first).T
        grads = (dict(grads[0], w=dc), *grads[1:])
        return apply_gradients(ts, optimizer, grads, bn_state), loss

    def epoch(ts: TrainState, p0, y, gram):
        start, step_keys, order = epoch_plan(ts, n_train, batch)
        if order is None:
            return jax.lax.scan(lambda carry, k: step(carry, p0, gram, y, None, k), start,
                                step_keys)
        return jax.lax.scan(lambda carry, inputs: step(carry, p0, gram, y, *inputs), start,
                            (order, step_keys))

    return epoch
