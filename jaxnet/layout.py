"""Where the examples sit in the activations, and the first layer's product: chosen here, once.

The network's math does not depend on this choice; XLA's CPU backend runs it at different
speeds. `choose` (and `choose_for_product`) make it, and the `Layout` they return is all
`jaxnet.model` needs to know: the `batch_axis` every layer of `jaxnet.layers` takes, and the
first layer's affine, the one place where the form of the product matters.

- Batches of `FEATURE_MAJOR_MIN_BATCH` examples or more run feature-major: activations (H, N)
  and every product `w @ h`, which XLA's CPU backend runs faster for wide batches (10-38% per
  step at batch 4096). Smaller batches run batch-major, (N, H): there the reductions over N
  along the short minor axis cost more than the products gain (feature-major was 13-26%
  slower at batch 50 on Zen 5).
- The first product: batch-major, one run takes `x @ w.T` (N, H1). Runs vmapped over their
  weights with one x (`vmapped_runs`: sweeps, seeds) take `w @ x.T` in both layouts, the
  small (H1, N) result transposed back for batch-major layers: for `x @ w.T` XLA's CPU
  backend copies each run's (out, in) first-layer weights into (in, out) at every step under
  vmap (1.2 MB per run and step on the notebook's network), while `x.T` of a fixed batch is
  hoisted out of the loop. Measured: the notebook sweep 1.43x faster in float32 (16.3 -> 11.4
  s) and 1.33x in float64 with `w @ x.T` on a 2-core Zen 3; one run's fixed-batch step at
  batch 50 6-19% faster with `x @ w.T` on a 2-core Zen 4 (the product alone: 234 against 372
  us; in-process, interleaved), where XLA's product with the (100, 50) output runs at 83
  GFLOP/s and with the (50, 100) output at 131.

Both layouts and both products compute the same numbers up to summation order; only dropout
masks differ between layouts, being drawn in the activations' own shape.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet import layers

FEATURE_MAJOR_MIN_BATCH = 128  # batches of this many examples or more run feature-major


class Layout(NamedTuple):
    """A batch in the layout chosen for it (see the module docstring)."""

    batch_axis: int  # 0: activations (N, H); 1: feature-major, (H, N)
    inputs: jax.Array  # x (N, D), or the first layer's product x @ w.T (N, H1) in its place
    product_given: bool  # inputs is the first layer's product
    w_x: bool  # the first product is taken as w @ x.T (else x @ w.T)

    def batch_major(self, a):
        """Activations `a` of this layout as (N, H) (and back: the map is its own inverse)."""
        return a.T if self.batch_axis else a

    def first_affine(self, w, b):
        """The first layer's `x @ w.T + b` in this layout, and its residuals (None where the
        product is given)."""
        if self.product_given:
            product = self.inputs
            return (product.T + b[:, None] if self.batch_axis else product + b), None
        if not self.w_x:
            return layers.affine_forward(self.inputs, w, b)
        out, res = layers.affine_forward(self.inputs.T, w, b, batch_axis=1)  # (H1, N)
        return (out if self.batch_axis else out.T), res

    def first_affine_backward(self, res, dh):
        """(dw, db) of `first_affine`; where the product is given, dw is the gradient of
        that product, (N, H1)."""
        if self.product_given:
            return self.batch_major(dh), jnp.sum(dh, axis=self.batch_axis)
        if not self.w_x:
            return layers.affine_backward(res, dh, compute_dx=False)[1:]
        dh = dh if self.batch_axis else dh.T  # (H1, N)
        return layers.affine_backward(res, dh, compute_dx=False, batch_axis=1)[1:]


def _batch_axis(n: int) -> int:
    return 1 if n >= FEATURE_MAJOR_MIN_BATCH else 0


def choose(x, *, vmapped_runs: bool = False) -> Layout:
    """The layout for the (N, D) batch `x`; `vmapped_runs` where the call runs under
    `jax.vmap` over runs' parameters that share x."""
    axis = _batch_axis(x.shape[0])
    return Layout(axis, x, product_given=False, w_x=bool(axis) or vmapped_runs)


def choose_for_product(product) -> Layout:
    """The layout for a batch given as its first layer's product `x @ w.T` (N, H1)."""
    return Layout(_batch_axis(product.shape[0]), product, product_given=True, w_x=False)
