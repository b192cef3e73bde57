"""Pattern analyzers on residual/BatchNorm, nested, Conv1D/3D, depthwise/separable and pooled models."""

import keras
import numpy as np
import pytest

import keras_patterns as kp
import zoo
from keras_patterns.graph.layers import is_relu
from keras_patterns.linear import node_params
from keras_patterns.patterns.statistics import mask_source

L = keras.layers
MODELS = ["residual", "batchnorm", "nested", "conv1d", "conv3d", "depthwise_separable",
          "depthwise_separable_1d", "conv2d_pool", "dense_rank3", "shared_fanout", "multi_input"]


@pytest.mark.parametrize("model_name", MODELS)
def test_pattern_analyzers_run_on_zoo_models(model_name):
    model = zoo.build(model_name)
    fit_x = zoo.inputs_for(model, n=24, seed=2)
    x = zoo.inputs_for(model, n=3, seed=1)
    pats = kp.PatternComputer(model, "relu").compute(fit_x, batch_size=8, verbose=0)
    a = kp.create_analyzer("pattern.net", model, patterns=pats)
    for key, p in pats.items():
        node = a.graph.node(key) if key in [n.name for n in a.graph.nodes] else None
        if node is not None:
            assert p.shape == node_params(node).kernel_shape, key
    for name in ("pattern.net", "pattern.attribution"):
        maps = kp.create_analyzer(name, model, patterns=pats).analyze(x)
        maps = maps if isinstance(maps, list) else [maps]
        xs = x if isinstance(x, list) else [x]
        for m, xi in zip(maps, xs):
            assert m.shape == xi.shape and np.all(np.isfinite(m))


def test_residual_masks_come_from_the_relu_after_the_add():
    model = zoo.build("residual")
    a = kp.create_analyzer("pattern.attribution", model)
    g = a.graph
    kernels = [n for n in g.nodes if n.name.startswith("conv2d")]
    last = kernels[-1]  # conv -> (folded BN) -> Add -> ReLU
    src = mask_source(g, last)
    assert is_relu(g.producer(src).layer)
    assert g.producer(src).inputs[0] in g.consumers(last.outputs[0])[0].outputs
    out = [n for n in g.nodes if g.outputs[0] in n.outputs][0]
    assert mask_source(g, out) == g.outputs[0]  # output layer: [logit > 0]


def test_batchnorm_folding_semantics():
    """A conv + BN pair gets the pattern of the folded conv: A_folded = A / s, W*A unchanged."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 2))
    conv = L.Conv2D(3, 3)
    bn = L.BatchNormalization()
    h = L.ReLU()(bn(conv(inp)))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.normal(0, 0.2, 3)
    mean, var = rng.normal(0, 0.2, 3), rng.uniform(0.5, 2, 3)
    bn.set_weights([gamma, beta, mean, var])
    s = gamma / np.sqrt(var + bn.epsilon)
    w, b = conv.get_weights()
    inp2 = keras.Input((6, 6, 2))
    conv2 = L.Conv2D(3, 3, name="folded")
    dense2 = L.Dense(2)
    model2 = keras.Model(inp2, dense2(L.Flatten()(L.ReLU()(conv2(inp2)))))
    conv2.set_weights([w * s, s * (b - mean) + beta])
    dense2.set_weights(model.layers[-1].get_weights())
    x = rng.normal(0, 1, (50, 6, 6, 2)).astype("float32")
    p1 = kp.PatternComputer(model, "relu").compute(x, verbose=0)
    p2 = kp.PatternComputer(model2, "relu").compute(x, verbose=0)
    np.testing.assert_allclose(p1[conv.name], p2["folded"], rtol=1e-3, atol=1e-5)
    for name in ("pattern.net", "pattern.attribution"):
        m1 = kp.create_analyzer(name, model, patterns=p1).analyze(x[:4])
        m2 = kp.create_analyzer(name, model2, patterns=list(p2.values())).analyze(x[:4])
        np.testing.assert_allclose(m1, m2, rtol=1e-3, atol=1e-4 * np.abs(m2).max())


def test_project_bottleneck_normalizes_max_activation_maps():
    model = zoo.build("conv2d_pool")
    x = zoo.inputs_for(model, n=4, seed=1)
    pats = kp.PatternComputer(model, "relu").compute(zoo.inputs_for(model, n=16, seed=2), verbose=0)
    raw = kp.create_analyzer("pattern.net", model, patterns=pats).analyze(x)
    proj = kp.create_analyzer("pattern.net", model, patterns=pats, project_bottleneck=True).analyze(x)
    np.testing.assert_allclose(np.abs(proj).reshape(4, -1).max(1), 1.0, rtol=1e-6)
    y = model.predict(x, verbose=0).max(1)
    scale = np.abs(raw).reshape(4, -1).max(1)
    expect = raw / scale[:, None, None, None]
    np.testing.assert_allclose(proj, expect, rtol=1e-5, atol=1e-6)
    assert np.all(np.sign(y) != 0)
    with pytest.raises(ValueError, match="project_bottleneck"):
        kp.create_analyzer("pattern.net", model, project_bottleneck="yes")


def _deep_chain(n_layers=12, width=4):
    inp = keras.Input((width,))
    h = inp
    for _ in range(n_layers):
        h = L.Dense(width, activation="relu", kernel_initializer="ones", bias_initializer="ones")(h)
    return keras.Model(inp, L.Dense(2, kernel_initializer="ones")(h))


def test_rescaled_pattern_pass_equals_float64_replica():
    """Intermediate signals of 1e51 overflow float32; the per-sample rescaling gives the exact map."""
    model = _deep_chain()
    kernels = [layer for layer in model.layers if isinstance(layer, L.Dense)]
    # output side: huge patterns (signal grows to ~1e51), input side: tiny ones (back to ~1)
    scales = [1e-8] * 6 + [1e8] * 7
    rng = np.random.default_rng(0)
    pats = {k.name: (s * rng.uniform(0.5, 1.5, tuple(k.kernel.shape))).astype("float32")
            for k, s in zip(kernels, scales)}
    x = np.abs(rng.normal(size=(2, 4))).astype("float32")
    m = kp.create_analyzer("pattern.net", model, patterns=pats, neuron_selection_mode="index").analyze(x, 1)
    # float64 replica: all ReLUs are open (positive weights, biases and inputs)
    y = model(x).numpy()[:, 1]
    r = np.zeros((2, 2))
    r[:, 1] = y
    for k in reversed(kernels):
        r = r @ pats[k.name].astype("float64").T
    assert np.abs(r).max() < 1e30 and np.abs(r).max() > 1e-30
    np.testing.assert_allclose(m, r, rtol=1e-5)


def test_overflowing_patterns_saturate_with_a_warning():
    model = _deep_chain()
    pats = {l.name: np.full(tuple(l.kernel.shape), 1e5, "float32") for l in model.layers[1:]}
    with pytest.warns(UserWarning, match=r"exceeds the float32 range for samples \[0, 1\]"):
        m = kp.create_analyzer("pattern.net", model, patterns=pats).analyze(np.ones((2, 4), "float32"))
    assert np.all(np.isfinite(m))
    np.testing.assert_allclose(np.abs(m), np.exp(np.float32(88.7)), rtol=1e-5)  # saturated, sign kept
    assert np.all(m > 0)


def test_channels_first_conv_matches_channels_last():
    rng = np.random.default_rng(0)
    inp = keras.Input((3, 8, 8))
    c = L.Conv2D(4, 3, data_format="channels_first", activation="relu")
    m = keras.Model(inp, L.Dense(2)(L.Flatten()(c(inp))))
    inp2 = keras.Input((8, 8, 3))
    c2 = L.Conv2D(4, 3, activation="relu")
    m2 = keras.Model(inp2, L.Dense(2)(L.Flatten()(L.Permute((3, 1, 2))(c2(inp2)))))
    c2.set_weights(c.get_weights())
    m2.layers[-1].set_weights(m.layers[-1].get_weights())
    x = rng.normal(size=(10, 3, 8, 8)).astype("float32")
    p = kp.PatternComputer(m, ["relu", "linear"]).compute(x, verbose=0)
    p2 = kp.PatternComputer(m2, ["relu", "linear"]).compute(x.transpose(0, 2, 3, 1), verbose=0)
    for t in p:
        np.testing.assert_allclose(p[t][c.name], p2[t][c2.name], rtol=1e-4, atol=1e-6)


def test_rescaling_branch_equals_the_unscaled_pass():
    """PatternNet is linear in every pattern. On the residual zoo model (conv0 -> [skip |
    conv1 -> conv2] -> Add -> dense) the patterns scaled by 1e-300, 1e-100, 1e100 and 1e300 keep
    the product along both paths at 1, so the map is the unscaled one; the signal on the residual
    path reaches 1e400 and overflows even float64, so only the rescaling (run in its ``tf.cond``
    branches after the kernel nodes, with an Add of two pending signals) can give it. Float64 throughout: the comparison measures the rescaling, not float32
    rounding (the log/exp round trip of the scale costs about |log r| ulps, 1e-13 here)."""
    model = zoo.cached_float64("residual")
    x = zoo.inputs_for(model, n=4, seed=1).astype("float64")
    fit_x = zoo.inputs_for(model, n=32, seed=2).astype("float64")
    plain = kp.create_analyzer("pattern.net", model).fit(fit_x, verbose=0)
    pats = plain.patterns
    keys = list(pats)
    assert len(keys) == 4
    scaled = {k: pats[k] * s for k, s in zip(keys, (1e-300, 1e-100, 1e100, 1e300))}
    expected = plain.analyze(x)
    got = kp.create_analyzer("pattern.net", model, patterns=scaled).analyze(x)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
