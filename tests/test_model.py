"""The whole network: init/apply/loss behaviour, and the manual backward equal to jax.grad."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxnet

pytestmark = pytest.mark.x64  # tight gradient and trajectory checks in float64


def _data(dims, n=9, seed=1, dtype=jnp.float64):
    # NumPy's generator: fixtures of a new shape compile nothing (a jax.random draw of each
    # new shape compiles its own Threefry, ~0.15 s, which the hypothesis test pays per example).
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, dims[0])), dtype)
    y = jnp.asarray(rng.integers(0, dims[-1], n), jnp.int32)
    return x, y


def _net(dims, seed=0, dtype=jnp.float64):
    # jaxnet.init's layout (traced, not compiled) with values from NumPy's generator:
    # He-scaled weights and every parameter perturbed, batchnorm statistics moved off 0 and
    # 1, so eval mode and gamma/beta are non-trivial. (init itself is tested below.)
    params, state = jax.eval_shape(lambda: jaxnet.init(jax.random.PRNGKey(0), dims, dtype=dtype))
    rng = np.random.default_rng(seed)
    base = {"w": lambda s: math.sqrt(2 / s[1]) * rng.standard_normal(s), "b": np.zeros,
            "gamma": np.ones, "beta": np.zeros}
    params = tuple({k: jnp.asarray(base[k](v.shape) + 0.1 * rng.standard_normal(v.shape), dtype)
                    for k, v in layer.items()} for layer in params)
    state = tuple({"mean": jnp.full(s["mean"].shape, 0.1, dtype),
                   "var": jnp.full(s["var"].shape, 1.5, dtype)} for s in state)
    return params, state


def _compare(params, state, x, y, rtol=1e-8, transform=lambda f: f, **kw):
    auto = transform(jax.value_and_grad(jaxnet.loss, has_aux=True))
    manual = transform(jaxnet.manual_value_and_grad)
    (l_auto, s_auto), g_auto = auto(params, state, x, y, **kw)
    (l_man, s_man), g_man = manual(params, state, x, y, **kw)
    chex.assert_tree_all_finite((l_man, s_man, g_man))
    chex.assert_trees_all_close((l_man, s_man), (l_auto, s_auto), rtol=1e-12)
    # Biases right before batchnorm have an exactly-zero gradient: the floor covers them.
    chex.assert_trees_all_close(g_man, g_auto, rtol=rtol, atol=1e-13)


@pytest.fixture(params=["batch-major", "feature-major"])
def layout(request, monkeypatch):
    """Runs a test in each layout: the batch size that switches to feature-major set above
    or below every batch the test uses."""
    monkeypatch.setattr(jaxnet.layout, "FEATURE_MAJOR_MIN_BATCH",
                        10**9 if request.param == "batch-major" else 1)
    return request.param


@pytest.mark.parametrize("hidden_layers", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("reg", [0.0, 3.14])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("train", [True, False])
def test_manual_grad_equals_autodiff(hidden_layers, reg, dropout, train, layout):
    dims = (12, *(10, 8, 9, 7, 11, 6)[:hidden_layers], 5)
    params, state = _net(dims)
    x, y = _data(dims)
    _compare(params, state, x, y, key=jax.random.PRNGKey(7), train=train, dropout=dropout, reg=reg)


@pytest.mark.parametrize("train", [True, False])
def test_both_layouts_compute_the_same_network(train, monkeypatch):
    # Batch-major for small batches, feature-major from FEATURE_MAJOR_MIN_BATCH examples:
    # the same logits, state, loss and gradients either way (dropout off: its masks are
    # drawn in the activations' own shape).
    dims = (12, 10, 8, 5)
    params, state = _net(dims)
    x, y = _data(dims, n=20)

    def run():
        logits, new_state = jaxnet.apply(params, state, x, train=train)
        return logits, new_state, jaxnet.manual_value_and_grad(params, state, x, y, train=train,
                                                               reg=0.5)

    monkeypatch.setattr(jaxnet.layout, "FEATURE_MAJOR_MIN_BATCH", 21)
    batch_major = run()
    monkeypatch.setattr(jaxnet.layout, "FEATURE_MAJOR_MIN_BATCH", 20)
    feature_major = run()
    assert batch_major[0].shape == feature_major[0].shape == (20, 5)
    chex.assert_tree_all_finite(batch_major)
    chex.assert_trees_all_close(feature_major, batch_major, rtol=1e-12, atol=1e-14)



@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_both_first_products_compute_the_same_network(grad, layout):
    # One run takes x @ w.T below FEATURE_MAJOR_MIN_BATCH, runs vmapped over their weights
    # (vmapped_runs) take w @ x.T: the same loss, state and gradients either way.
    dims = (12, 10, 8, 5)
    params, state = _net(dims)
    x, y = _data(dims, n=20)
    fn = (jaxnet.manual_value_and_grad if grad == "manual"
          else jax.value_and_grad(jaxnet.loss, has_aux=True))
    kw = {"key": jax.random.PRNGKey(4), "dropout": 0.5, "reg": 0.5}
    one = fn(params, state, x, y, **kw)
    vmapped = fn(params, state, x, y, vmapped_runs=True, **kw)
    chex.assert_tree_all_finite(one)
    chex.assert_trees_all_close(vmapped, one, rtol=1e-12, atol=1e-14)

@pytest.mark.parametrize("vmapped_runs", [False, True])
def test_no_hidden_layer_is_softmax_regression(vmapped_runs, layout):
    # The first layer is the last: its product takes the layout's form (with vmapped_runs,
    # the manual backward once crashed here, the forward having taken the other form).
    params, state = _net((6, 3))
    x, y = _data((6, 3))
    assert state == ()
    _compare(params, state, x, y, reg=0.5, vmapped_runs=vmapped_runs)


@pytest.mark.parametrize("train", [True, False])
def test_manual_grad_under_jit(train):
    dims = (12, 10, 8, 5)
    params, state = _net(dims)
    x, y = _data(dims)

    def transform(f):
        return jax.jit(f, static_argnames=("train",))

    _compare(params, state, x, y, transform=transform, key=jax.random.PRNGKey(3), train=train,
             dropout=0.5, reg=3.14)


def test_manual_grad_under_vmap_over_seeds_and_hyperparameters():
    dims = (12, 10, 8, 5)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params, state = jax.vmap(lambda k: jaxnet.init(k, dims, dtype=jnp.float64))(keys)
    x, y = _data(dims)
    regs = jnp.array([0.0, 0.1, 1.0, 3.14])
    drops = jnp.array([0.0, 0.2, 0.5, 0.7])

    def run(f):
        def one(p, s, k, reg, drop):
            return f(p, s, x, y, key=k, dropout=drop, reg=reg, vmapped_runs=True)
        return jax.jit(jax.vmap(one))(params, state, keys, regs, drops)

    (l_auto, s_auto), g_auto = run(jax.value_and_grad(jaxnet.loss, has_aux=True))
    (l_man, s_man), g_man = run(jaxnet.manual_value_and_grad)
    chex.assert_tree_all_finite((l_man, s_man, g_man))
    chex.assert_trees_all_close((l_man, s_man), (l_auto, s_auto), rtol=1e-12)
    chex.assert_trees_all_close(g_man, g_auto, rtol=1e-8, atol=1e-13)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dims=st.lists(st.integers(1, 9), min_size=2, max_size=6),
    n=st.integers(2, 8),
    train=st.booleans(),
    dropout=st.sampled_from([0.0, 0.3]),
    reg=st.sampled_from([0.0, 0.7]),
)
def test_manual_grad_property(dims, n, train, dropout, reg):
    # Jitted: each example is a new network, which runs 2-3x faster compiled whole than op by
    # op (the fixed networks above check the eager path).
    params, state = _net(dims)
    x, y = _data(dims, n=n)
    _compare(params, state, x, y, transform=lambda f: jax.jit(f, static_argnames=("train",)),
             key=jax.random.PRNGKey(5), train=train, dropout=dropout, reg=reg)


def test_init_is_pure_and_key_dependent():
    dims = (8, 6, 4)
    a = jaxnet.init(jax.random.PRNGKey(0), dims)
    b = jaxnet.init(jax.random.PRNGKey(0), dims)
    c = jaxnet.init(jax.random.PRNGKey(1), dims)
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a[0][0]["w"], c[0][0]["w"])


def test_init_layout_dtype_and_scales():
    dims = (400, 300, 10)
    params, state = jaxnet.init(jax.random.PRNGKey(0), dims, weight_scale=0.02)
    assert [p["w"].shape for p in params] == [(300, 400), (10, 300)]
    assert set(params[0]) == {"w", "b", "gamma", "beta"} and set(params[1]) == {"w", "b"}
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((params, state)))
    np.testing.assert_allclose(np.std(params[0]["w"]), 0.02, rtol=0.02)
    he, _ = jaxnet.init(jax.random.PRNGKey(0), dims, init="he")
    np.testing.assert_allclose(np.std(he[0]["w"]), math.sqrt(2 / 400), rtol=0.02)
    np.testing.assert_allclose(np.std(he[1]["w"]), math.sqrt(2 / 300), rtol=0.05)
    np.testing.assert_array_equal(state[0]["mean"], 0)
    np.testing.assert_array_equal(state[0]["var"], 1)


def test_init_vmaps_over_keys_and_gives_the_same_numbers_eagerly_jitted_and_vmapped():
    # Sweeps and train states build params inside jit and vmap; a user calls init eagerly.
    # The same key must give the same bits either way (XLA would otherwise fold the weight
    # scale into the normal draw's own constant, 1 ulp off in about half the weights).
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params, state = jax.vmap(lambda k: jaxnet.init(k, (50, 40, 3)))(keys)
    assert params[0]["w"].shape == (3, 40, 50) and state[0]["mean"].shape == (3, 40)
    for init in ("normal", "he"):
        single = jaxnet.init(keys[1], (50, 40, 3), init=init)
        jitted = jax.jit(jaxnet.init, static_argnums=1, static_argnames="init")(keys[1], (50, 40, 3), init=init)
        chex.assert_trees_all_equal(jitted, single)
    np.testing.assert_array_equal(params[0]["w"][1], jaxnet.init(keys[1], (50, 40, 3))[0][0]["w"])


def test_batchnorm_train_output_is_normalised():
    dims = (30, 40, 10)
    params, _state = jaxnet.init(jax.random.PRNGKey(0), dims)
    x = 5.0 + 3.0 * jax.random.normal(jax.random.PRNGKey(1), (200, 30), jnp.float32)
    layer = params[0]
    pre = x @ layer["w"].T + layer["b"]
    out, _ = jaxnet.layers.batchnorm_train_forward(pre, layer["gamma"], layer["beta"], 1e-5)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1, atol=1e-3)
    gamma, beta = jnp.linspace(0.5, 2, 40, dtype=jnp.float32), jnp.linspace(-1, 3, 40, dtype=jnp.float32)
    out, _ = jaxnet.layers.batchnorm_train_forward(pre, gamma, beta, 1e-5)
    np.testing.assert_allclose(out.mean(0), beta, atol=1e-4)
    np.testing.assert_allclose(out.std(0), gamma, rtol=1e-3)


def test_running_statistics_converge_so_eval_mode_normalises():
    # One hidden layer with identity weights: the batchnorm sees x itself.
    d = 6
    params, state = jaxnet.init(jax.random.PRNGKey(0), (d, d, 2))
    params = ({**params[0], "w": jnp.eye(d, dtype=jnp.float32)}, params[1])
    shift = jnp.arange(d, dtype=jnp.float32) - 2.0
    scale = jnp.arange(1, d + 1, dtype=jnp.float32) * 0.5
    step = jax.jit(lambda s, k: jaxnet.apply(
        params, s, shift + scale * jax.random.normal(k, (64, d), jnp.float32))[1])
    for k in jax.random.split(jax.random.PRNGKey(1), 200):
        state = step(state, k)
    assert np.all(np.abs(state[0]["mean"] - shift) < 0.1 * scale)
    np.testing.assert_allclose(state[0]["var"], scale**2, rtol=0.1)
    x = shift + scale * jax.random.normal(jax.random.PRNGKey(2), (4000, d), jnp.float32)
    pre = x @ params[0]["w"].T
    normed, _ = jaxnet.layers.batchnorm_eval_forward(pre, 1.0, 0.0, state[0]["mean"], state[0]["var"], 1e-5)
    np.testing.assert_allclose(normed.mean(0), 0, atol=0.1)
    np.testing.assert_allclose(normed.std(0), 1, atol=0.1)


def test_momentum_convention():
    params, state = jaxnet.init(jax.random.PRNGKey(0), (3, 4, 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 3), jnp.float32)
    _, new = jaxnet.apply(params, state, x, momentum=0.75)
    pre = x @ params[0]["w"].T
    np.testing.assert_allclose(new[0]["mean"], 0.25 * pre.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new[0]["var"], 0.75 + 0.25 * pre.var(0), rtol=1e-5)  # biased var


def test_eval_mode_is_deterministic_and_keeps_state():
    params, state = _net((8, 6, 3))
    x, _ = _data((8, 6, 3))
    a, s1 = jaxnet.apply(params, state, x, train=False, dropout=0.5)
    b, s2 = jaxnet.apply(params, state, x, train=False, dropout=0.5)
    np.testing.assert_array_equal(a, b)
    assert s1 is state and s2 is state


def test_dropout_statistics():
    h = 200
    params, state = jaxnet.init(jax.random.PRNGKey(0), (h, h, h, 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (400, h))
    relu_out = jnp.maximum(0, x)
    out, mask = jaxnet.layers.dropout_forward(relu_out, 0.3, jax.random.PRNGKey(2))
    np.testing.assert_allclose(out.mean(), relu_out.mean(), rtol=0.02)
    np.testing.assert_allclose(np.mean(np.asarray(mask) == 0), 0.3, atol=0.01)
    # Different keys, different masks; eval mode ignores dropout entirely.
    a, _ = jaxnet.apply(params, state, x, key=jax.random.PRNGKey(3), dropout=0.3)
    b, _ = jaxnet.apply(params, state, x, key=jax.random.PRNGKey(4), dropout=0.3)
    c, _ = jaxnet.apply(params, state, x, key=jax.random.PRNGKey(3), dropout=0.3)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    e1, _ = jaxnet.apply(params, state, x, train=False, dropout=0.3)
    e2, _ = jaxnet.apply(params, state, x, train=False)
    np.testing.assert_array_equal(e1, e2)


def test_initial_loss_is_log_c():
    dims = (3 * 32 * 32, 100, 100, 100, 100, 10)
    params, state = jaxnet.init(jax.random.PRNGKey(0), dims, weight_scale=1e-3)
    x = np.random.RandomState(231).randn(50, 3 * 32 * 32)
    y = np.random.RandomState(0).randint(10, size=50)
    value, _ = jaxnet.loss(params, state, x, y)
    np.testing.assert_allclose(value, math.log(10), rtol=0.01)


def test_float32_stays_float32_and_large_logits_do_not_nan():
    params, state = jaxnet.init(jax.random.PRNGKey(0), (4, 5, 3), weight_scale=1e3)
    x = 1e3 * jax.random.normal(jax.random.PRNGKey(1), (6, 4), jnp.float32)
    y = jnp.array([0, 1, 2, 0, 1, 2])
    (value, new_state), grads = jaxnet.manual_value_and_grad(params, state, x, y, reg=0.1)
    chex.assert_tree_all_finite((value, new_state, grads))
    assert value.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((new_state, grads)))


def test_images_are_flattened():
    params, state = _net((12, 5, 3))
    x, y = _data((12, 5, 3))
    images = x.reshape(9, 3, 2, 2)
    np.testing.assert_allclose(jaxnet.apply(params, state, images)[0], jaxnet.apply(params, state, x)[0])
    _compare(params, state, images, y, reg=0.3)


GOOD_DIMS = (4, 3, 2)


@pytest.mark.parametrize("dims, error, match", [
    ((4,), ValueError, "at least an input and an output"),
    ((4, 0, 2), ValueError, r"dims\[1\] must be a positive integer, got 0"),
    ((4, -3, 2), ValueError, r"dims\[1\] must be a positive integer"),
    ((4, 2.5, 2), TypeError, r"dims\[1\] must be a positive integer, got 2.5"),
    ((4, True, 2), TypeError, r"dims\[1\]"),
    (7, TypeError, "sequence of layer sizes"),
])
def test_bad_dims(dims, error, match):
    with pytest.raises(error, match=match):
        jaxnet.init(jax.random.PRNGKey(0), dims)


def test_bad_init_method():
    with pytest.raises(ValueError, match="init must be one of"):
        jaxnet.init(jax.random.PRNGKey(0), GOOD_DIMS, init="xavier")


def _bad_call(kind):
    params, state = jaxnet.init(jax.random.PRNGKey(0), GOOD_DIMS)
    x, y = jnp.ones((5, 4)), jnp.array([0, 1, 0, 1, 1])
    kw = {}
    if kind == "features":
        x = jnp.ones((5, 7))
    elif kind == "float_labels":
        y = y.astype(jnp.float32)
    elif kind == "label_shape":
        y = y[:, None]
    elif kind == "label_count":
        y = y[:3]
    elif kind == "dropout_high":
        kw = {"dropout": 1.0, "key": jax.random.PRNGKey(0)}
    elif kind == "dropout_negative":
        kw = {"dropout": -0.1, "key": jax.random.PRNGKey(0)}
    elif kind == "dropout_no_key":
        kw = {"dropout": 0.5}
    elif kind == "batch_of_one":
        x, y = x[:1], y[:1]
    elif kind == "state_depth":
        _, state = jaxnet.init(jax.random.PRNGKey(0), (4, 3, 3, 2))
    elif kind == "state_width":
        _, state = jaxnet.init(jax.random.PRNGKey(0), (4, 6, 2))
    return params, state, x, y, kw


@pytest.mark.parametrize("kind, error, match", [
    ("features", ValueError, r"4 features per example \(dims\[0\]\), got shape \(5, 7\)"),
    ("float_labels", TypeError, "labels y must be integers"),
    ("label_shape", ValueError, r"labels y must have shape \(5,\)"),
    ("label_count", ValueError, r"labels y must have shape \(5,\) to match x, got \(3,\)"),
    ("dropout_high", ValueError, r"dropout=1.0 is invalid: expected a drop probability in \[0, 1\)"),
    ("dropout_negative", ValueError, r"drop probability in \[0, 1\)"),
    ("dropout_no_key", ValueError, "needs a PRNG key"),
    ("batch_of_one", ValueError, "batch size 1 in train mode"),
    ("state_depth", ValueError, "params and state do not belong together"),
    ("state_width", ValueError, "params and state do not belong together.*width 3"),
])
@pytest.mark.parametrize("fn", ["loss", "manual_value_and_grad"])
def test_bad_inputs_raise_clear_errors(kind, error, match, fn):
    params, state, x, y, kw = _bad_call(kind)
    with pytest.raises(error, match=match):
        getattr(jaxnet, fn)(params, state, x, y, **kw)


def test_batch_of_one_is_fine_in_eval_mode():
    params, state = jaxnet.init(jax.random.PRNGKey(0), GOOD_DIMS)
    logits, _ = jaxnet.apply(params, state, jnp.ones((1, 4)), train=False)
    assert logits.shape == (1, 2)
