"""Every LRP rule against a slow numpy replica, on Dense and Conv2D layers.

The replica builds the dense matrix M of a layer's bias-free linear map (x_flat @ M = W^T x) with
explicit loops (TensorFlow's SAME padding split: floor(total / 2) before), then applies each rule's
formula per sample in float64. The layers run in float64 too, so rtol 1e-6 holds.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_patterns.canonizers import canonize
from keras_patterns.graph import walk
from keras_patterns.mapping import Plan
from keras_patterns.mirror import Mirror
from keras_patterns.rules import lrp as R

EPS = 1e-7


# ------------------------------------------------------------------------------------ numpy side
def _same_pad(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def linear_matrix(cfg, kernel, in_shape):
    """M with x.reshape(-1) @ M == layer's bias-free output .reshape(-1) for one sample."""
    if cfg["kind"] == "dense":
        return kernel.copy()
    h, w, cin = in_shape
    kh, kw, _, cout = kernel.shape
    s = cfg["strides"]
    if cfg["padding"] == "same":
        oh, ph = _same_pad(h, kh, s)
        ow, pw = _same_pad(w, kw, s)
    else:
        oh, ow, ph, pw = (h - kh) // s + 1, (w - kw) // s + 1, 0, 0
    m = np.zeros((h * w * cin, oh * ow * cout))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    r, c = i * s + a - ph, j * s + b - pw
                    if 0 <= r < h and 0 <= c < w:
                        for ci in range(cin):
                            for co in range(cout):
                                m[(r * w + c) * cin + ci, (i * ow + j) * cout + co] += kernel[a, b, ci, co]
    return m


def bias_vector(cfg, bias, n_out):
    if bias is None:
        return np.zeros(n_out)
    return np.tile(bias, n_out // bias.size)


def sdiv(a, b):
    return a / (b + EPS * (b == 0))


def replica(rule, params, x, r, kernel, bias, cfg):
    """Input relevance of one layer, per sample, in float64."""
    n = x.shape[0]
    xf, rf = x.reshape(n, -1), r.reshape(n, -1)
    mat = lambda k: linear_matrix(cfg, k, x.shape[1:])  # noqa: E731
    m = mat(kernel)
    b = bias_vector(cfg, bias, m.shape[1])
    kp, kn = np.maximum(kernel, 0), np.minimum(kernel, 0)
    mp, mn = mat(kp), mat(kn)
    bp, bn = np.maximum(b, 0), np.minimum(b, 0)
    xp, xn = np.maximum(xf, 0), np.minimum(xf, 0)
    if rule in ("z", "z_ib"):
        z = xf @ m + (b if rule == "z" else 0)
        out = xf * (sdiv(rf, z) @ m.T)
    elif rule in ("epsilon", "epsilon_ib"):
        z = xf @ m + (b if rule == "epsilon" else 0)
        e = params["epsilon"]
        out = xf * ((rf / (z + e * (2.0 * (z >= 0) - 1))) @ m.T)
    elif rule in ("w_square", "flat"):
        k2 = mat(kernel ** 2) if rule == "w_square" else mat(np.ones_like(kernel))
        zz = np.ones(xf.shape[1]) @ k2
        out = sdiv(rf, zz) @ k2.T
    elif rule == "alpha_beta":
        alpha, beta, use_b = params["alpha"], params["beta"], params["bias"]
        za = xp @ mp + xn @ mn + (bp if use_b else 0)
        sa = sdiv(rf, za)
        act = xp * (sa @ mp.T) + xn * (sa @ mn.T)
        zi = xp @ mn + xn @ mp + (bn if use_b else 0)
        si = sdiv(rf, zi)
        inh = xp * (si @ mn.T) + xn * (si @ mp.T)
        out = act if beta == 0 else alpha * act - beta * inh
    elif rule == "z_plus_fast":
        out = xf * (sdiv(rf, xf @ mp) @ mp.T)
    elif rule == "bounded":
        lo = np.broadcast_to(params["low"], x.shape).reshape(n, -1)
        hi = np.broadcast_to(params["high"], x.shape).reshape(n, -1)
        s = sdiv(rf, xf @ m - (lo @ mp + hi @ mn))
        out = xf * (s @ m.T) - lo * (s @ mp.T) - hi * (s @ mn.T)
    elif rule == "gamma":
        g = params["gamma"]
        mg = mat(kernel + g * kp)
        z = xf @ mg + (b + g * bp if params["bias"] else 0)
        out = xf * (sdiv(rf, z) @ mg.T)
    else:
        raise KeyError(rule)
    return out.reshape(x.shape)


# ------------------------------------------------------------------------------- keras_patterns
LAYERS = {
    "dense": {"kind": "dense", "in": (7,), "units": 5},
    "conv_same": {"kind": "conv", "in": (6, 6, 2), "filters": 3, "k": 3, "strides": 1, "padding": "same"},
    "conv_valid_strided": {"kind": "conv", "in": (7, 7, 2), "filters": 3, "k": 3, "strides": 2,
                           "padding": "valid"},
    "conv_same_strided": {"kind": "conv", "in": (7, 6, 3), "filters": 2, "k": 2, "strides": 2,
                          "padding": "same"},
}

RULES = {
    "z": (lambda: R.Z, {}),
    "z_ib": (lambda: R.Z_IB, {}),
    "epsilon": (lambda: R.epsilon_rule(0.05), {"epsilon": 0.05}),
    "epsilon_ib": (lambda: R.epsilon_rule(1e-7, bias=False), {"epsilon": 1e-7}),
    "w_square": (lambda: R.W_SQUARE, {}),
    "flat": (lambda: R.FLAT, {}),
    "alpha_2_beta_1": (lambda: R.ALPHA_2_BETA_1, {"alpha": 2, "beta": 1, "bias": True}),
    "alpha_2_beta_1_ib": (lambda: R.ALPHA_2_BETA_1_IB, {"alpha": 2, "beta": 1, "bias": False}),
    "alpha_1_beta_0": (lambda: R.ALPHA_1_BETA_0, {"alpha": 1, "beta": 0, "bias": True}),
    "alpha_1_beta_0_ib": (lambda: R.ALPHA_1_BETA_0_IB, {"alpha": 1, "beta": 0, "bias": False}),
    "alpha_3_beta_2": (lambda: R.alpha_beta_rule(beta=2), {"alpha": 3, "beta": 2, "bias": True}),
    "z_plus": (lambda: R.Z_PLUS, {"alpha": 1, "beta": 0, "bias": False}),
    "z_plus_fast": (lambda: R.Z_PLUS_FAST, {}),
    "bounded": (lambda: R.bounded_rule(-2.0, 3.0), {"low": -2.0, "high": 3.0}),
    "gamma": (lambda: R.gamma_rule(0.5), {"gamma": 0.5, "bias": True}),
    "gamma_ib": (lambda: R.gamma_rule(0.25, bias=False), {"gamma": 0.25, "bias": False}),
}


def _replica_name(name):
    if name.startswith("alpha") or name == "z_plus":
        return "alpha_beta"
    if name.startswith("gamma"):
        return "gamma"
    return name


def build_layer(cfg, use_bias, seed=0):
    rng = np.random.default_rng(seed)
    if cfg["kind"] == "dense":
        layer = keras.layers.Dense(cfg["units"], use_bias=use_bias, dtype="float64")
    else:
        layer = keras.layers.Conv2D(cfg["filters"], cfg["k"], strides=cfg["strides"],
                                    padding=cfg["padding"], use_bias=use_bias, dtype="float64")
    model = keras.Sequential([keras.Input(cfg["in"], dtype="float64"), layer])
    weights = [rng.normal(0, 1, w.shape) for w in layer.get_weights()]
    if use_bias:
        weights[1] = rng.normal(0, 0.5, weights[1].shape)
    layer.set_weights(weights)
    return model, layer


def run_rule(model, rule, x, r):
    graph = canonize(walk(model))
    assert len(graph.nodes) == 1
    mirror = Mirror(graph, Plan({graph.nodes[0].name: rule}))
    values, records = mirror.forward([tf.constant(x)])
    (out,) = mirror.backward(values, records, tf.constant(r))
    return out.numpy()


@pytest.mark.parametrize("nonneg", [False, True], ids=["signed_x", "nonneg_x"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize("rule_name", sorted(RULES))
def test_rule_matches_numpy_replica(rule_name, layer_name, use_bias, nonneg):
    cfg = LAYERS[layer_name]
    model, layer = build_layer(cfg, use_bias)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (3,) + cfg["in"])
    if nonneg:
        x = np.maximum(x, 0)
    y = model(x).numpy()
    r = rng.normal(0, 1, y.shape)
    make, params = RULES[rule_name]
    got = run_rule(model, make(), x, r)
    kernel = layer.get_weights()[0]
    bias = layer.get_weights()[1] if use_bias else None
    want = replica(_replica_name(rule_name), params, x, r, kernel, bias, cfg)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12 * max(1.0, np.abs(want).max()))


def test_bounded_with_array_bounds():
    cfg = LAYERS["conv_same"]
    model, layer = build_layer(cfg, True)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (2,) + cfg["in"])
    low = -1.0 - rng.uniform(0, 1, cfg["in"])
    high = 1.0 + rng.uniform(0, 1, cfg["in"])
    r = rng.normal(0, 1, model(x).shape)
    got = run_rule(model, R.bounded_rule(low, high), x, r)
    want = replica("bounded", {"low": low, "high": high}, x, r, layer.get_weights()[0], None, cfg)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_standalone_batchnorm_is_elementwise_linear():
    """A stand-alone BatchNormalization is y = scale * x + offset; the Z rule gives x*scale*R/y."""
    bn = keras.layers.BatchNormalization(dtype="float64")
    model = keras.Sequential([keras.Input((4,), dtype="float64"), bn])
    rng = np.random.default_rng(3)
    bn.set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.3, 4), rng.normal(0, 0.3, 4),
                    rng.uniform(0.5, 1.5, 4)])
    gamma, beta, mean, var = bn.get_weights()
    scale = gamma / np.sqrt(var + bn.epsilon)
    offset = beta - scale * mean
    x = rng.normal(0, 1, (3, 4))
    r = rng.normal(0, 1, (3, 4))
    z = x * scale + offset
    np.testing.assert_allclose(run_rule(model, R.Z, x, r), x * scale * sdiv(r, z), rtol=1e-6)
    np.testing.assert_allclose(run_rule(model, R.Z_IB, x, r), x * scale * sdiv(r, x * scale), rtol=1e-6)
    za = np.maximum(x * scale, 0) + np.maximum(offset, 0)
    np.testing.assert_allclose(run_rule(model, R.ALPHA_1_BETA_0, x, r),
                               np.maximum(x * scale, 0) * sdiv(r, za), rtol=1e-6)
    np.testing.assert_allclose(run_rule(model, R.FLAT, x, r), r, rtol=1e-6)


def test_safe_div_only_guards_exact_zeros():
    a = tf.constant([1.0, 1.0, 2.0], tf.float64)
    b = tf.constant([0.0, 1e-9, -4.0], tf.float64)
    np.testing.assert_allclose(R.safe_div(a, b).numpy(), [1e7, 1e9, -0.5])


def test_epsilon_sign_of_zero_is_positive():
    z = tf.constant([0.0, -0.0, -1.0, 2.0], tf.float64)
    np.testing.assert_allclose(R._sign_stabilize(z, 0.5).numpy(), [0.5, 0.5, -1.5, 2.5])


@pytest.mark.parametrize("bad", [0, -1e-3, float("nan"), "0.1", None, True])
def test_epsilon_must_be_positive(bad):
    with pytest.raises(ValueError, match=r"`epsilon` must be a number > 0. Received: epsilon="):
        R.epsilon_rule(bad)


def test_alpha_beta_inference_and_errors():
    assert R.check_alpha_beta(alpha=2) == (2.0, 1.0)
    assert R.check_alpha_beta(beta=0) == (1.0, 0.0)
    with pytest.raises(ValueError, match=r"alpha - beta = 1. Received: alpha=3, beta=1"):
        R.alpha_beta_rule(3, 1)
    with pytest.raises(ValueError, match=r"Received: alpha=None, beta=None"):
        R.alpha_beta_rule()
    with pytest.raises(ValueError, match=r"alpha >= 1"):
        R.alpha_beta_rule(0.5, -0.5)


def test_bounded_and_gamma_errors():
    with pytest.raises(ValueError, match=r"low or high parameter is missing.*Received: low=None"):
        R.bounded_rule(None, 1)
    with pytest.raises(ValueError, match=r"low <= high"):
        R.bounded_rule(2, 1)
    with pytest.raises(ValueError, match=r"`gamma` must be a number >= 0. Received: gamma=-1"):
        R.gamma_rule(-1)


def test_unknown_rule_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Received: 'Zplus'. Valid names: \[.*'ZPlus'"):
        R.get_rule("Zplus")
    with pytest.raises(TypeError, match=r"Received: 3"):
        R.get_rule(3)
