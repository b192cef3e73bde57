"""Analyzers follow the model's weights (the contract test checks it for every analyzer and every
small zoo model: see ``_check_follows_weights`` there); here: the logits model of
``model_wo_softmax`` follows the weights too, analyzers hold no weight copies, and a fitted pattern
analyzer warns once that its patterns are outdated.
"""

import warnings

import numpy as np
import pytest

import keras_patterns as kp
import builders
import zoo
from test_contract import perturb_weights


def test_outdated_patterns_warn_once_until_refitted():
    model = zoo.build("batchnorm")
    fit_x = zoo.inputs_for(model, n=16, seed=2)
    x = fit_x[:3]
    analyzer = kp.create_analyzer("pattern.attribution", model).fit(fit_x, batch_size=8, verbose=0)
    perturb_weights(model, x)
    assert analyzer.patterns_outdated
    with pytest.warns(UserWarning, match="weights changed since the patterns were fitted"):
        analyzer.analyze(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # once only
        analyzer.analyze(x)
        analyzer.fit(fit_x, batch_size=8, verbose=0)
        assert analyzer.patterns_outdated is False
        analyzer.analyze(x)


def test_model_wo_softmax_follows_the_weights():
    model = builders.mlp((6, 5, 3), head="softmax", seed=0)
    logits = kp.model_wo_softmax(model)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    perturb_weights(model, x)
    w, b = model.layers[-1].get_weights()
    h = np.maximum(x @ model.layers[0].get_weights()[0] + model.layers[0].get_weights()[1], 0)
    np.testing.assert_allclose(np.asarray(logits(x)), h @ w + b, rtol=1e-5, atol=1e-6)
    # nothing is copied: the logits model's variables are the model's own
    assert {id(v) for v in logits.weights} <= {id(v) for v in model.weights}


def test_analyzers_hold_no_weight_copies():
    model = zoo.build("batchnorm")
    own = {id(v) for v in model.weights}
    for name in ("gradient", "lrp.epsilon", "lrp.sequential_preset_a_flat", "lrp.gamma", "deep_taylor"):
        analyzer = kp.create_analyzer(name, model)
        for node in analyzer.graph.nodes:
            for v in getattr(node.layer, "weights", []):
                assert id(v) in own, f"{name}: node {node.name} holds a copy {v.path}"


def test_fresh_patterns_do_not_warn():
    model = zoo.build("dense_mlp")
    fit_x = zoo.inputs_for(model, n=16, seed=2)
    analyzer = kp.create_analyzer("pattern.attribution", model).fit(fit_x, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analyzer.analyze(fit_x[:2])
    assert analyzer.patterns_outdated is False


@pytest.mark.parametrize("path", ["array", "stream", "wrapped"])
def test_outdated_patterns_warn_on_every_analyze_path(path):
    """The weights' fingerprint is read inside the compiled analysis (no separate call per
    analyze): arrays, streamed datasets and a wrapper around the pattern analyzer all warn."""
    model = zoo.build("dense_mlp")
    fit_x = zoo.inputs_for(model, n=16, seed=2)
    x = fit_x[:3]
    inner = kp.create_analyzer("pattern.attribution", model).fit(fit_x, batch_size=8, verbose=0)
    analyzer = kp.SmoothGrad(inner, augment_by_n=2, noise_scale=0.1) if path == "wrapped" else inner
    analyzer.analyze(x)
    assert analyzer._compiled is analyzer._probed  # the probe is part of the compiled function

    def no_host_read():
        raise AssertionError("the fingerprint was read by a separate call")

    inner._fingerprint._read = no_host_read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analyzer.analyze(x)  # fresh patterns: silent
    perturb_weights(model, x)
    with pytest.warns(UserWarning, match="weights changed since the patterns were fitted"):
        if path == "stream":
            analyzer.analyze(iter([x[:2], x[2:]]), on_batch=lambda start, maps: None)
        else:
            analyzer.analyze(x)


def test_fingerprint_is_the_sampled_entries_of_every_weight():
    """The fingerprint equals the evenly spaced entries of every flattened weight (a float64 NumPy
    replica), scalars and kernels of any rank included, in the compiled read and the in-graph one."""
    import keras
    import tensorflow as tf

    from keras_patterns.fingerprint import WeightsFingerprint

    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.s = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.5))

        def call(self, x):
            return x * self.s

    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3)(Scale()(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    fp = WeightsFingerprint(model, samples=5)
    expected = []
    for v in model.weights:
        flat = np.asarray(v.numpy(), dtype="float64").reshape(-1)
        expected.append(flat[np.unique(np.linspace(0, flat.size - 1, min(flat.size, 5)).astype("int64"))])
    np.testing.assert_array_equal(fp(), np.concatenate(expected))
    np.testing.assert_array_equal(tf.function(fp.read_in_graph)().numpy(), fp())
    before = fp()
    model.layers[1].s.assign(2.0)
    assert not np.array_equal(before, fp())
