"""Optax optimizers by name, with sweepable hyperparameters injected as values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet.constants import OPTIMIZERS, SCHEDULES

# Hyperparameters stored as arrays in the optimizer state (optax.inject_hyperparams), per
# optimizer: changing them never recompiles, and sweeps vmap over them.
INJECTED = {
    "sgd": ("learning_rate",),
    "momentum": ("learning_rate", "momentum"),
    "nesterov": ("learning_rate", "momentum"),
    "rmsprop": ("learning_rate", "decay"),
    "adam": ("learning_rate", "b1", "b2"),
    "adamw": ("learning_rate", "b1", "b2", "weight_decay"),
}


def _base(name, *, eps):
    # Constructors taking only the injected hyperparameters as keywords.
    if name in ("sgd", "momentum", "nesterov"):
        def sgd(learning_rate, momentum=None):
            return optax.sgd(learning_rate, momentum=momentum, nesterov=name == "nesterov")
        return sgd
    if name == "rmsprop":
        # CS231n's RMSprop: cache = decay * cache + (1 - decay) * g**2, step g / (sqrt(cache)
        # + eps): eps outside the square root. (optax's default puts it inside, decay 0.9.)
        def rmsprop(learning_rate, decay):
            return optax.rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=False)
        return rmsprop
    if name == "adam":
        def adam(learning_rate, b1, b2):
            return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
        return adam
    def adamw(learning_rate, b1, b2, weight_decay):
        return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    return adamw


def schedule(name, *, steps_per_epoch, total_steps, lr_decay):
    """The multiplier of the base learning rate at each step, as an optax schedule.

    "constant" is None (no multiplier); "step" is `lr_decay ** epoch` (CS231n's per-epoch
    `lr_decay`, optax.exponential_decay with staircase); "cosine" decays from 1 to 0 over
    `total_steps` (optax.cosine_decay_schedule).
    """
    if name not in SCHEDULES:
        raise ValueError(f"lr schedule must be one of {SCHEDULES}, got {name!r}")
    if name == "constant":
        return None
    if name == "step":
        return optax.exponential_decay(1.0, transition_steps=max(steps_per_epoch, 1),
                                       decay_rate=lr_decay, staircase=True)
    return optax.cosine_decay_schedule(1.0, decay_steps=max(total_steps, 1))


def make_optimizer(name, *, learning_rate, momentum, beta1, beta2, eps, rms_decay, weight_decay,
                   schedule_name="constant", lr_decay=1.0, steps_per_epoch=1, total_steps=1):
    """Builds an optax optimizer by name.

    Args:
      name: one of OPTIMIZERS. "momentum" and "nesterov" are SGD with (Nesterov) momentum
        in optax's form `v = momentum * v + g; p -= lr * v`, the same steps as CS231n's
        `v = momentum * v - lr * g; p += v` at a constant rate.
      learning_rate: the base step size; the schedule multiplies it.
      momentum: for momentum and nesterov.
      beta1, beta2, eps: Adam's moments and epsilon (CS231n's defaults 0.9, 0.999, 1e-8);
        eps is also RMSprop's.
      rms_decay: RMSprop's squared-gradient decay (CS231n's 0.99).
      weight_decay: AdamW's decoupled weight decay (optax's default 1e-4).
      schedule_name, lr_decay, steps_per_epoch, total_steps: see `schedule`.

    Returns:
      An optax.GradientTransformation whose state holds the injected hyperparameters
      (see `INJECTED`, `get_hyperparams`, `set_hyperparams`).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    values = injected(name, learning_rate=learning_rate, momentum=momentum, beta1=beta1,
                      beta2=beta2, rms_decay=rms_decay, weight_decay=weight_decay)
    opt = optax.inject_hyperparams(_base(name, eps=eps))(**values)
    factor = schedule(schedule_name, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                      lr_decay=lr_decay)
    if factor is not None:
        opt = optax.chain(opt, optax.scale_by_schedule(factor))
    return _standard_promotion(opt)


def injected(name, *, learning_rate, momentum, beta1, beta2, rms_decay, weight_decay) -> dict:
    """The hyperparameters optimizer `name` holds in its state, under optax's names
    (`INJECTED[name]`), from the values `make_optimizer` takes."""
    values = {"learning_rate": learning_rate, "momentum": momentum, "b1": beta1, "b2": beta2,
              "decay": rms_decay, "weight_decay": weight_decay}
    return {k: values[k] for k in INJECTED[name]}


def _standard_promotion(opt: optax.GradientTransformation) -> optax.GradientTransformation:
    """`opt` with its update run under JAX's standard dtype promotion: optax raises injected
    float32 hyperparameters to the int32 step count (Adam's bias correction), which a
    caller's `jax_numpy_dtype_promotion="strict"` (jaxnet's tests) would refuse."""
    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return opt.update(updates, state, params)

    return optax.GradientTransformation(opt.init, update)


def get_hyperparams(opt_state) -> dict:
    """The injected hyperparameters held by an optimizer state from `make_optimizer`."""
    return dict(optax.tree_utils.tree_get(opt_state, "hyperparams"))


def set_hyperparams(opt_state, **values):
    """Returns `opt_state` with injected hyperparameters replaced (arrays may be traced)."""
    hyper = get_hyperparams(opt_state)
    unknown = set(values) - set(hyper)
    if unknown:
        raise ValueError(f"this optimizer has no hyperparameter {sorted(unknown)}; it has {sorted(hyper)}")
    return optax.tree_utils.tree_set(
        opt_state, **{k: _value_like(v, hyper[k]) for k, v in values.items()})


def _value_like(value, like):
    """`value` as an array of `like`'s dtype. A number or NumPy array is converted by NumPy
    (the same rounding): `jnp.asarray(value, dtype)` compiles a program to do it, and on a
    warm `jaxnet train` that was one of the two lowerings left (~0.1 s to start MLIR)."""
    dtype = jnp.result_type(like)
    if isinstance(value, (int, float, np.number, np.ndarray)):
        return jax.device_put(np.asarray(value, dtype))
    return jnp.asarray(value, dtype=dtype)
