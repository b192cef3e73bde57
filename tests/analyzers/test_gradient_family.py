"""Gradient-family analyzers against tf.GradientTape, numpy replicas and analytic identities."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
import builders
import zoo


def tape_gradient(model, x, mask_fn=None):
    xs = [tf.constant(v) for v in (x if isinstance(x, list) else [x])]
    with tf.GradientTape() as tape:
        for v in xs:
            if v.dtype.is_floating:
                tape.watch(v)
        y = model(xs if len(xs) > 1 else xs[0], training=False)
    flat = tf.reshape(y, [y.shape[0], -1])
    mask = mask_fn(flat) if mask_fn else tf.one_hot(tf.argmax(flat, 1), flat.shape[1])
    grads = tape.gradient(y, [v for v in xs if v.dtype.is_floating], output_gradients=tf.reshape(mask, y.shape))
    return [g.numpy() for g in grads]


def _floats(model, maps):
    maps = maps if isinstance(maps, list) else [maps]
    return [m for m, (_, dtype) in zip(maps, zoo.input_specs(model)) if "float" in dtype]


def _assert_same(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(float(np.abs(b).max()), 1e-12))


@pytest.mark.parametrize("model_name", sorted(zoo.ZOO))
def test_gradient_equals_gradient_tape(model_name):
    model = zoo.build(model_name)
    x = zoo.inputs_for(model, n=4, seed=5)
    ours = _floats(model, kp.create_analyzer("gradient", model).analyze(x))
    baseline = _floats(model, kp.create_analyzer("gradient.baseline", model).analyze(x))
    for a, b, ref in zip(ours, baseline, tape_gradient(model, x)):
        _assert_same(a, ref)
        _assert_same(b, ref)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(zoo.SLOW_ZOO))
def test_gradient_equals_gradient_tape_applications(model_name):
    model = zoo.build(model_name)
    x = zoo.inputs_for(model, n=2, seed=5)
    _assert_same(kp.create_analyzer("gradient", model).analyze(x), tape_gradient(model, x)[0])


def _mlp():
    model = builders.mlp((5, 7, 6, 3), seed=3)
    (w1, b1), (w2, b2), (w3, b3) = [model.layers[i].get_weights() for i in range(3)]
    return model, [(w1, b1), (w2, b2), (w3, b3)]


def _numpy_backward(params, x, index, relu_rule):
    """Numpy replica: forward pass, then backward from y_index (value head) with a ReLU rule."""
    zs, h = [], x.astype("float64")
    for i, (w, b) in enumerate(params):
        z = h @ w + b
        zs.append(z)
        h = np.maximum(z, 0) if i < len(params) - 1 else z
    y = h
    r = np.zeros_like(y)
    rows = np.arange(len(x))
    r[rows, index] = y[rows, index]
    for i in reversed(range(len(params))):
        w, _ = params[i]
        if i < len(params) - 1:
            r = relu_rule(r, zs[i])
        r = r @ w.T
    return r, y


def test_deconvnet_and_guided_backprop_numpy_replica():
    model, params = _mlp()
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    y = model(x).numpy()
    index = y.argmax(1)
    deconv, _ = _numpy_backward(params, x, index, lambda r, z: np.maximum(r, 0))
    guided, _ = _numpy_backward(params, x, index, lambda r, z: np.maximum(r, 0) * (z > 0))
    grad, _ = _numpy_backward(params, x, index, lambda r, z: r * (z > 0))
    _assert_same(kp.create_analyzer("deconvnet", model).analyze(x), deconv)
    _assert_same(kp.create_analyzer("guided_backprop", model).analyze(x), guided)
    # gradient starts from 1, not from y: divide the value-headed replica by y.
    rows = np.arange(len(x))
    _assert_same(kp.create_analyzer("gradient", model).analyze(x), grad / y[rows, index][:, None])


def test_gradient_postprocess_and_input_times_gradient_order():
    model, _ = _mlp()
    x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    g = kp.create_analyzer("gradient", model).analyze(x)
    np.testing.assert_allclose(kp.create_analyzer("gradient", model, postprocess="abs").analyze(x), np.abs(g), rtol=1e-6)
    np.testing.assert_allclose(kp.create_analyzer("gradient", model, postprocess="square").analyze(x), g**2, rtol=1e-6)
    np.testing.assert_allclose(kp.create_analyzer("input_t_gradient", model).analyze(x), g * x, rtol=1e-6)
    # postprocess is applied to the gradient before the multiplication (as iNNvestigate)
    np.testing.assert_allclose(
        kp.create_analyzer("input_t_gradient", model, postprocess="abs").analyze(x), np.abs(g) * x, rtol=1e-6
    )


def test_selection_modes_for_gradient():
    model, _ = _mlp()
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    idx = np.array([0, 2, 1, 2])
    ref = tape_gradient(model, x, lambda f: tf.one_hot(idx, 3))[0]
    _assert_same(kp.create_analyzer("gradient", model, neuron_selection_mode="index").analyze(x, idx), ref)
    ref1 = tape_gradient(model, x, lambda f: tf.one_hot([1] * 4, 3))[0]
    _assert_same(kp.create_analyzer("gradient", model, neuron_selection_mode="index").analyze(x, 1), ref1)
    ref_all = tape_gradient(model, x, lambda f: tf.ones_like(f))[0]
    _assert_same(kp.create_analyzer("gradient", model, neuron_selection_mode="all").analyze(x), ref_all)


def test_max_activation_ties_share_the_start_value():
    # Two identical output units: reduce_max's gradient gives each half.
    inp = keras.Input((3,))
    out = keras.layers.Dense(2, use_bias=False)(inp)
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.array([[1, 1], [2, 2], [3, 3]], "float32")])
    x = np.array([[1, 1, 1]], "float32")
    np.testing.assert_allclose(kp.create_analyzer("gradient", model).analyze(x), [[1, 2, 3]], rtol=1e-6)
    lin = kp.create_analyzer("deconvnet", model).analyze(x)  # value head: y = 6, half each
    np.testing.assert_allclose(lin, [[6, 12, 18]], rtol=1e-6)


def _linear_model(w):
    inp = keras.Input((len(w),))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=True)(inp))
    model.layers[-1].set_weights([np.asarray(w, "float32")[:, None], np.array([0.3], "float32")])
    return model


def test_smoothgrad_identities():
    w = [1.0, -2.0, 0.5]
    model = _linear_model(w)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    # The gradient of a linear model does not depend on x: SmoothGrad == gradient == w.
    sg = kp.create_analyzer("smoothgrad", model, augment_by_n=16, seed=1).analyze(x)
    np.testing.assert_allclose(sg, np.tile(w, (5, 1)), rtol=1e-6)


def test_smoothgrad_noise_scale_is_honoured_and_seeded():
    model, _ = _mlp()
    x = np.random.default_rng(4).normal(size=(3, 5)).astype("float32")
    g = kp.create_analyzer("gradient", model).analyze(x)
    sg0 = kp.create_analyzer("smoothgrad", model, noise_scale=0.0, augment_by_n=4, seed=0).analyze(x)
    np.testing.assert_allclose(sg0, g, rtol=1e-6)
    a = kp.create_analyzer("smoothgrad", model, noise_scale=2.0, augment_by_n=8, seed=7)
    b = kp.create_analyzer("smoothgrad", model, noise_scale=2.0, augment_by_n=8, seed=7)
    np.testing.assert_array_equal(a.analyze(x), b.analyze(x))
    assert not np.allclose(a.analyze(x), g)


def test_smoothgrad_numpy_replica():
    """SmoothGrad = mean of tape gradients at x + noise_scale * the seeded draws, class from clean x."""
    model, _ = _mlp()
    x = np.random.default_rng(5).normal(size=(2, 5)).astype("float32")
    n, scale, seed = 6, 0.7, 3
    noise = tf.random.stateless_normal([n, 5], seed=[seed, 0]).numpy()
    idx = model(x).numpy().argmax(1)
    expected = []
    for i in range(2):
        noisy = x[i] + scale * noise
        g = tape_gradient(model, noisy, lambda f: tf.one_hot([idx[i]] * n, 3))[0]
        expected.append(g.mean(0))
    got = kp.create_analyzer("smoothgrad", model, augment_by_n=n, noise_scale=scale, seed=seed).analyze(x)
    _assert_same(got, np.stack(expected))


def test_integrated_gradients_linear_model_is_exact():
    w = [1.0, -2.0, 0.5]
    model = _linear_model(w)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    ref = np.array([0.5, -1.0, 2.0], "float32")
    ig = kp.create_analyzer("integrated_gradients", model, reference_inputs=ref, steps=5).analyze(x)
    np.testing.assert_allclose(ig, np.asarray(w) * (x - ref), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_left_riemann_sum():
    """f(x) = relu(x - 0.5) at x = 1 from 0: steps=64 counts k/64 > 0.5, i.e. 31 of 64 points."""
    inp = keras.Input((1,))
    h = keras.layers.Dense(1, activation="relu")(inp)
    model = keras.Model(inp, h)
    model.layers[-1].set_weights([np.ones((1, 1), "float32"), np.array([-0.5], "float32")])
    ig = kp.create_analyzer("integrated_gradients", model, steps=64).analyze(np.ones((1, 1), "float32"))
    np.testing.assert_allclose(ig, [[31 / 64]], rtol=1e-6)


def test_input_and_random():
    model, _ = _mlp()
    x = np.random.default_rng(6).normal(size=(3, 5)).astype("float32")
    np.testing.assert_array_equal(kp.create_analyzer("input", model).analyze(x), x)
    r = kp.create_analyzer("random", model, seed=0, stddev=0.5).analyze(x)
    expected = x + 0.5 * np.random.default_rng(0).standard_normal(x.shape).astype("float32")
    np.testing.assert_allclose(r, expected, rtol=1e-6)


def test_embedding_maps_are_per_token():
    model = zoo.build("embedding")
    x = zoo.inputs_for(model, n=3)
    emb_layer = model.layers[1]
    sub = keras.Model(emb_layer.output, model.output)
    e = tf.constant(emb_layer(x))
    with tf.GradientTape() as tape:
        tape.watch(e)
        y = sub(e)
    g = tape.gradient(y, e, output_gradients=tf.one_hot(tf.argmax(y, 1), 3)).numpy()
    _assert_same(kp.create_analyzer("gradient", model).analyze(x), g.sum(-1))
    _assert_same(kp.create_analyzer("input_t_gradient", model).analyze(x), (g * e.numpy()).sum(-1))


def test_analyze_in_batches_and_large_arrays():
    model, _ = _mlp()
    x = np.random.default_rng(7).normal(size=(103, 5)).astype("float32")
    a = kp.create_analyzer("gradient", model, batch_size=16)
    full = a.analyze(x)
    _assert_same(a.analyze(x, batch_size=7), full)
    _assert_same(full, tape_gradient(model, x)[0])
    assert a._compiled.experimental_get_tracing_count() == 1  # one trace for every batch size


def test_guided_backprop_and_deconvnet_through_relu6():
    """ReLU6 is a rectifier: deconvnet passes relu(r); guided backprop relu(r) * [0 < x < 6]."""
    inp = keras.Input((3,))
    z = keras.layers.Dense(3, use_bias=False)(inp)
    h = keras.layers.ReLU(max_value=6.0)(z)
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False)(h))
    w1 = np.array([[1.0, -1.0, 4.0], [1.0, 2.0, 4.0], [0.0, 1.0, 0.0]], "float32")
    w2 = np.array([[2.0], [-3.0], [1.0]], "float32")
    model.layers[1].set_weights([w1])
    model.layers[3].set_weights([w2])
    x = np.array([[1.0, 1.0, 1.0]], "float32")  # z = (2, 2, 8): units 0, 1 in (0, 6), unit 2 clipped
    y = float(model(x).numpy()[0, 0])
    r = y * w2[:, 0]
    with pytest.warns(UserWarning, match="treated like ReLU"):
        guided = kp.create_analyzer("guided_backprop", model).analyze(x)
    with pytest.warns(UserWarning, match="treated like ReLU"):
        deconv = kp.create_analyzer("deconvnet", model).analyze(x)
    np.testing.assert_allclose(guided[0], w1 @ (np.maximum(r, 0) * [1, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(deconv[0], w1 @ np.maximum(r, 0), rtol=1e-6)
