"""Every rule of the LRP rule registry against its float64 NumPy replica (tests/lrp_replica.py).

The replicas are tied to the registry names by ``@replicates``; a rule registered in
:data:`~keras_patterns.rules.lrp.LRP_RULES` without a replica fails the completeness test. Each
replica is compared with the TensorFlow rule on random Dense, Conv2D and DepthwiseConv2D layers
(with and without bias, signed and non-negative inputs), all in float64, so rtol 1e-6 holds with
room: the largest element-wise relative deviation measured over all cases is 3e-10 (Gamma(0.5) on
conv_same with bias, non-negative x, at an entry 2% of the map's peak).
"""


import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_patterns.canonizers import canonize
from keras_patterns.graph import walk
from keras_patterns.mapping import Plan
from keras_patterns.mirror import Mirror
from keras_patterns.rules import Group, Term, redistribution_rule
from keras_patterns.rules import lrp as R
from lrp_replica import REPLICAS, replica_relevance, sdiv

LAYERS = {
    "dense": {"kind": "dense", "in": (7,), "units": 5},
    "conv_same": {"kind": "conv", "in": (6, 6, 2), "filters": 3, "k": 3, "strides": 1, "padding": "same"},
    "conv_valid_strided": {"kind": "conv", "in": (7, 7, 2), "filters": 3, "k": 3, "strides": 2,
                           "padding": "valid"},
    "conv_same_strided": {"kind": "conv", "in": (7, 6, 3), "filters": 2, "k": 2, "strides": 2,
                          "padding": "same"},
    "depthwise_same": {"kind": "depthwise", "in": (5, 6, 2), "multiplier": 2, "k": 3, "strides": 1,
                       "padding": "same"},
    "depthwise_valid_strided": {"kind": "depthwise", "in": (7, 7, 3), "multiplier": 1, "k": 3,
                                "strides": 2, "padding": "valid"},
}

CASES = [(name, i) for name in sorted(REPLICAS) for i in range(len(REPLICAS[name].examples))]


def _unreplicated(rule_names):
    return sorted(set(rule_names) - set(REPLICAS))


def test_every_registered_rule_has_a_replica():
    missing = _unreplicated(R.LRP_RULES)
    assert not missing, f"LRP rules without a float64 replica in tests/lrp_replica.py: {missing}"
    stale = sorted(set(REPLICAS) - set(R.LRP_RULES))
    assert not stale, f"Replicas of names that are not in LRP_RULES: {stale}"


def test_completeness_check_catches_a_new_rule(monkeypatch):
    monkeypatch.setitem(R.LRP_RULES, "ZNew", R.z_rule)
    assert _unreplicated(R.LRP_RULES) == ["ZNew"]


def build_layer(cfg, use_bias, seed=0):
    rng = np.random.default_rng(seed)
    if cfg["kind"] == "dense":
        layer = keras.layers.Dense(cfg["units"], use_bias=use_bias, dtype="float64")
    elif cfg["kind"] == "depthwise":
        layer = keras.layers.DepthwiseConv2D(cfg["k"], strides=cfg["strides"], padding=cfg["padding"],
                                             depth_multiplier=cfg["multiplier"], use_bias=use_bias,
                                             dtype="float64")
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
@pytest.mark.parametrize("name,example", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_rule_matches_numpy_replica(name, example, layer_name, use_bias, nonneg):
    cfg = LAYERS[layer_name]
    model, layer = build_layer(cfg, use_bias)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (3,) + cfg["in"])
    if nonneg:
        x = np.maximum(x, 0)
    y = model(x).numpy()
    r = rng.normal(0, 1, y.shape)
    replica = REPLICAS[name]
    kwargs = replica.examples[example]
    got = run_rule(model, R.LRP_RULES[name](**kwargs), x, r)
    weights = layer.get_weights()
    want = replica_relevance(replica, kwargs, cfg, weights[0], weights[1] if use_bias else None, x, r)
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
    want = replica_relevance(REPLICAS["Bounded"], {"low": low, "high": high}, cfg,
                             layer.get_weights()[0], layer.get_weights()[1], x, r)
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


def test_redistribution_helper_signed_terms_and_weights():
    """A group of weight -2 and a subtracted term: -2 * (x * M s1) and -(x * M+ s2), by hand."""
    cfg = LAYERS["dense"]
    model, layer = build_layer(cfg, True)
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (3,) + cfg["in"])
    r = rng.normal(0, 1, (3, cfg["units"]))
    w, b = layer.get_weights()
    rule = redistribution_rule("test", [
        Group((Term(),), weight=-2.0),
        Group((Term(kernel=R.positive, subtract=True),), bias=None),
    ])
    wp = np.maximum(w, 0)
    want = -2 * x * (sdiv(r, x @ w + b) @ w.T) - x * (sdiv(r, -(x @ wp)) @ wp.T)
    np.testing.assert_allclose(run_rule(model, rule, x, r), want, rtol=1e-6)


def test_redistribution_helper_errors():
    with pytest.raises(ValueError, match=r"Every group of `groups` needs a term. Received: groups="):
        redistribution_rule("test", Group(()))
    with pytest.raises(ValueError, match=r"`linear=False` is one unmodified term.*Received: groups="):
        redistribution_rule("test", Group((Term(kernel=R.positive),)), linear=False)
