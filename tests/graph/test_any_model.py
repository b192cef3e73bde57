"""The gradient family on any model TensorFlow can differentiate (issue 10, items 1 and 4).

Recurrent layers (LSTM, GRU, Bidirectional), Lambda layers, custom layers, Keras operations used as
layers, Conv2DTranspose and subclassed models have no backward rule: ``gradient``,
``input_t_gradient``, ``smoothgrad``, ``vargrad``, ``squaregrad``, ``integrated_gradients``,
``gradient.baseline``, ``random`` and ``input`` differentiate through them (a subclassed model is one
node). Every map is compared with an independent ``tf.GradientTape`` computation on the whole model
at 1e-5 of its max-abs. float32 suffices: a gradient has no division by forward quantities, so
nothing amplifies rounding; both sides run the same TensorFlow kernels, only the chaining differs
(measured differences: 0 to ~1e-7 of the max). The rule-based methods refuse these models with an
error that names the gradient family (also checked by the contract test's ``EXPECTED_REFUSALS``).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
import zoo
from keras_patterns.analyzers.method import Method
from keras_patterns.errors import _GRADIENT_FAMILY
from keras_patterns.graph import walker
from keras_patterns.mapping import resolve

L = keras.layers
FLOAT_MODELS = ["recurrent", "lambda_layer", "custom_layer", "subclassed", "conv2d_transpose"]


def _tape(model, x, index=None):
    """The gradient of the selected logit (arg-max unless ``index``) w.r.t. a float input, on the
    whole model, and the logits."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt, training=False)
    sel = tf.argmax(y, 1) if index is None else tf.fill([len(x)], tf.cast(index, tf.int64))
    return tape.gradient(y, xt, output_gradients=tf.one_hot(sel, y.shape[-1], dtype=y.dtype)).numpy(), y


def _same(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(float(np.abs(b).max()), 1e-12))


@pytest.mark.parametrize("model_name", FLOAT_MODELS)
def test_gradient_and_input_t_gradient_equal_the_tape(model_name):
    model = zoo.cached(model_name)
    x = zoo.inputs_for(model, n=4, seed=7)
    ref, _ = _tape(model, x)
    assert np.abs(ref).max() > 0
    for name in ("gradient", "gradient.baseline"):
        _same(kp.create_analyzer(name, model).analyze(x), ref)
    _same(kp.create_analyzer("input_t_gradient", model).analyze(x), x * ref)
    _same(kp.create_analyzer("gradient", model, postprocess="abs").analyze(x), np.abs(ref))
    # index mode: the gradient of another output
    ref2, _ = _tape(model, x, index=2)
    _same(kp.create_analyzer("gradient", model, neuron_selection_mode="index").analyze(x, 2), ref2)


@pytest.mark.parametrize("model_name", ["recurrent", "subclassed"])
def test_integrated_gradients_and_noise_wrappers_equal_tape_replicas(model_name):
    model = zoo.cached(model_name)
    x = zoo.inputs_for(model, n=3, seed=8)
    _, y = _tape(model, x)
    j = int(np.argmax(y[0]))
    xs, steps = x[:1], 6
    # Integrated gradients: a left Riemann sum over x_ref + k/steps (x - x_ref), k = 0..steps-1,
    # for the neuron chosen on the clean input.
    ref = np.mean([_tape(model, (k / steps) * xs, index=j)[0] for k in range(steps)], axis=0) * xs
    ig = kp.create_analyzer("integrated_gradients", model, steps=steps).analyze(xs)
    _same(ig, ref)
    # Noise-free SmoothGrad / SquareGrad / VarGrad: the gradient, its square, zero.
    g, _ = _tape(model, xs, index=j)
    _same(kp.create_analyzer("smoothgrad", model, augment_by_n=3, noise_scale=0.0, seed=0).analyze(xs), g)
    _same(kp.create_analyzer("squaregrad", model, augment_by_n=3, noise_scale=0.0, seed=0).analyze(xs), g * g)
    np.testing.assert_allclose(
        kp.create_analyzer("vargrad", model, augment_by_n=3, noise_scale=0.0, seed=0).analyze(xs), 0,
        atol=1e-10 * float(np.abs(g).max()) ** 2)


@pytest.mark.parametrize("model_name", FLOAT_MODELS)
def test_smoothgrad_squaregrad_vargrad_equal_tape_replicas(model_name):
    """The wrappers' copies are x + noise_scale * z_k with the same draws z_k for every sample
    (stateless normal, seed [seed, 0]); the neuron is chosen on the clean input."""
    model = zoo.cached(model_name)
    x = zoo.inputs_for(model, n=2, seed=9)
    n, scale, seed = 5, 0.3, 3
    z = tf.random.stateless_normal((n,) + x.shape[1:], seed=[seed, 0]).numpy()
    _, y = _tape(model, x)
    grads = np.stack([
        np.concatenate([_tape(model, x[s:s + 1] + scale * z, index=int(np.argmax(y[s])))[0]])
        for s in range(len(x))
    ])  # (samples, n, ...)
    kw = dict(augment_by_n=n, noise_scale=scale, seed=seed)
    _same(kp.create_analyzer("smoothgrad", model, **kw).analyze(x), grads.mean(1))
    _same(kp.create_analyzer("squaregrad", model, **kw).analyze(x), (grads ** 2).mean(1))
    _same(kp.create_analyzer("vargrad", model, **kw).analyze(x), grads.var(1))


def test_text_lstm_maps_are_the_tape_gradient_on_the_embedding_summed_per_token():
    model = zoo.cached("lstm_text")
    x = zoo.inputs_for(model, n=4, seed=3)
    x[:, -2:] = 0  # padding (mask_zero=True): no influence on the output
    emb_layer, lstm, head = model.layers[1], model.layers[2], model.layers[3]
    e = emb_layer(x)
    with tf.GradientTape() as tape:
        tape.watch(e)
        y = head(lstm(e, mask=emb_layer.compute_mask(x)))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(model(x)))
    ge = tape.gradient(y, e, output_gradients=tf.one_hot(tf.argmax(y, 1), 3)).numpy()
    _same(kp.create_analyzer("gradient", model).analyze(x), ge.sum(-1))
    _same(kp.create_analyzer("input_t_gradient", model).analyze(x), (ge * e.numpy()).sum(-1))
    g = kp.create_analyzer("gradient", model).analyze(x)
    np.testing.assert_array_equal(g[:, -2:], 0)  # masked padding gets nothing
    assert np.all(np.abs(g[:, :-2]).max(axis=1) > 0)
    # the tape baseline has no float input to differentiate: zero maps, documented
    np.testing.assert_array_equal(kp.create_analyzer("gradient.baseline", model).analyze(x), 0)


def test_subclassed_model_is_one_node_and_rule_based_methods_name_the_gradient_family():
    model = zoo.cached("subclassed")
    a = kp.create_analyzer("gradient", model)
    assert [n.name for n in a.graph.nodes] == ["subclassed"]
    assert dict(a.plan) == {"subclassed": kp.rules.GRADIENT}
    assert a.input_specs == (((None, 8, 8, 2), "float32"),)
    for name in ("lrp.epsilon", "deconvnet", "deep_taylor", "pattern.net"):
        with pytest.raises(kp.NotAnalyzeableModelError,
                           match=r"has no layer graph.*The gradient family \('gradient'"):
            kp.create_analyzer(name, model)
    x = zoo.inputs_for(model, n=2)
    np.testing.assert_array_equal(kp.create_analyzer("input", model).analyze(x), x)
    r = kp.create_analyzer("random", model, seed=0, stddev=0.5).analyze(x)
    assert r.shape == x.shape and 0 < np.abs(r - x).max()


def test_every_name_in_the_gradient_family_works_on_a_subclassed_model():
    """The list the errors print cannot lie."""
    model = zoo.cached("subclassed")
    x = zoo.inputs_for(model, n=2)
    for name in _GRADIENT_FAMILY:
        kwargs = {"steps": 4} if name == "integrated_gradients" else {}
        if name in ("smoothgrad", "vargrad", "squaregrad"):
            kwargs = {"augment_by_n": 2, "seed": 0}
        m = kp.create_analyzer(name, model, **kwargs).analyze(x)
        assert m.shape == x.shape and np.all(np.isfinite(m)) and np.abs(m).max() > 0, name


def _nested_subclassed():
    keras.utils.set_random_seed(4)
    inner = zoo.SubclassedNet(name="inner_sub")
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(2, 1, activation="relu")(inp)
    return keras.Model(inp, L.Dense(2)(inner(h)), name="outer")


def test_nested_subclassed_model_is_one_node_of_the_outer_graph():
    model = _nested_subclassed()
    x = zoo.inputs_for(model, n=3, seed=2)
    a = kp.create_analyzer("gradient", model)
    assert [type(n.layer).__name__ for n in a.graph.nodes] == ["Conv2D", "Activation", "SubclassedNet", "Dense"]
    _same(a.analyze(x), _tape(model, x)[0])
    with pytest.raises(kp.NotAnalyzeableModelError,
                       match=r"Nested model 'inner_sub' \(SubclassedNet\) has no layer graph.*gradient family"):
        kp.create_analyzer("lrp.z", model)


def test_unreadable_layer_graph_falls_back_to_one_node(monkeypatch):
    """A Functional model whose graph the walker cannot read is one node for the gradient family
    (here the reader is made to fail), and still refused by the rule-based methods."""
    model = zoo.cached("conv2d_pool")
    x = zoo.inputs_for(model, n=3, seed=1)

    def unreadable(model, opaque):
        raise ValueError("cannot read this graph")

    monkeypatch.setattr(walker, "_walk_functional", unreadable)
    a = kp.create_analyzer("gradient", model)
    assert [n.name for n in a.graph.nodes] == [model.name]
    _same(a.analyze(x), _tape(model, x)[0])
    with pytest.raises(ValueError, match="cannot read this graph"):
        kp.create_analyzer("lrp.z", model)


def test_lambda_and_custom_layers_need_no_switch_for_the_gradient_family():
    model = zoo.cached("lambda_layer")
    a = kp.create_analyzer("gradient", model)
    names = {type(n.layer).__name__ for n in a.graph.nodes}
    assert {"Lambda", "Mean"} <= names  # a Lambda layer and a Keras operation (ops.mean) as nodes
    assert set(a.plan.values()) == {kp.rules.GRADIENT}
    with pytest.raises(kp.UnsupportedLayerError, match=r"\(Lambda\).*The gradient family"):
        kp.create_analyzer("lrp.epsilon", model)
    with pytest.raises(kp.UnsupportedLayerError, match=r"\(GatedScale\)"):
        kp.create_analyzer("lrp.epsilon", zoo.cached("custom_layer"))


def test_recurrent_models_are_refused_by_rule_based_methods_with_the_working_methods_named():
    model = zoo.cached("recurrent")
    with pytest.raises(kp.UnsupportedLayerError) as info:
        with pytest.warns(UserWarning, match="not advised"):
            kp.create_analyzer("lrp.sequential_preset_a", model)
    assert [c for _, c in info.value.layers] == ["LSTM", "Bidirectional"]
    assert "'integrated_gradients', 'gradient.baseline') needs no rule per layer" in str(info.value)
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"only specified for networks with ReLU.*gradient family"):
        kp.create_analyzer("guided_backprop", model)


@pytest.mark.parametrize("model_name", ["recurrent", "custom_layer", "subclassed"])
def test_save_and_load(model_name, tmp_path):
    model = zoo.cached(model_name)
    x = zoo.inputs_for(model, n=2, seed=4)
    for name in ("gradient", "integrated_gradients"):
        a = kp.create_analyzer(name, model, **({"steps": 4} if name == "integrated_gradients" else {}))
        path = str(tmp_path / f"{name}.kpa")
        a.save(path)
        np.testing.assert_array_equal(kp.load_analyzer(path).analyze(x), a.analyze(x))


def test_unbuilt_or_multi_output_subclassed_models_are_refused_clearly():
    unbuilt = zoo.SubclassedNet(name="unbuilt")
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"no recorded input shape.*model\(x\)"):
        kp.create_analyzer("gradient", unbuilt)

    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(2), L.Dense(3)

        def call(self, x):
            return self.a(x), self.b(x)

    two = TwoHeads()
    two(np.zeros((1, 4), "float32"))
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"one output tensor.*2 outputs"):
        kp.create_analyzer("gradient", two)


def test_subclassed_model_called_on_a_list():
    class Pair(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, xs):
            return self.d(xs[0] * keras.ops.tanh(xs[1]))

    keras.utils.set_random_seed(1)
    model = Pair()
    model([np.zeros((1, 4), "float32")] * 2)
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(3, 4)).astype("float32") for _ in range(2)]
    maps = kp.create_analyzer("gradient", model).analyze(x)
    xt = [tf.constant(v) for v in x]
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt)
    refs = tape.gradient(y, xt, output_gradients=tf.one_hot(tf.argmax(y, 1), 3))
    for m, r in zip(maps, refs):
        _same(m, r.numpy())


def test_unknown_layers_field_is_validated():
    with pytest.raises(ValueError, match=r"`unknown_layers` must be one of \['error', 'gradient'\]"):
        Method(unknown_layers="ignore")
    graph = kp.create_analyzer("gradient", zoo.cached("recurrent")).graph
    with pytest.raises(ValueError, match="unknown_layers='skip'"):
        resolve(graph, unknown_layers="skip")
    with pytest.raises(kp.UnsupportedLayerError):
        resolve(graph)  # the default refuses
    assert kp.create_analyzer("gradient", zoo.cached("dense_mlp")).method.unknown_layers == "gradient"
    assert kp.create_analyzer("lrp.z", zoo.cached("dense_mlp")).method.unknown_layers == "error"


@pytest.mark.slow
@pytest.mark.parametrize("model_name", zoo.ANY_MODEL_APPS)
def test_gradient_family_on_modern_applications(model_name):
    """EfficientNetB0, MobileNetV3Small, ConvNeXtTiny (32x32, weights=None): gradient and
    input x gradient equal the tape on the whole model."""
    model = zoo.cached(model_name)
    x = zoo.inputs_for(model, n=2, seed=5)
    ref, _ = _tape(model, x)
    _same(kp.create_analyzer("gradient", model).analyze(x), ref)
    _same(kp.create_analyzer("input_t_gradient", model).analyze(x), x * ref)
