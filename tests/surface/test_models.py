"""model_wo_softmax and the registry."""

import keras
import numpy as np
import pytest

import keras_patterns as kp


def _logits(model, x):
    return np.log(model(x).numpy())


@pytest.mark.parametrize("form", ["fused", "activation", "softmax_layer"])
def test_model_wo_softmax(form):
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    if form == "fused":
        out = keras.layers.Dense(3, activation="softmax")(h)
    else:
        z = keras.layers.Dense(3)(h)
        out = keras.layers.Activation("softmax")(z) if form == "activation" else keras.layers.Softmax()(z)
    model = keras.Model(inp, out)
    weights = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    logits = kp.model_wo_softmax(model)(x).numpy()
    # softmax(logits) == model output, and logits differ from log-probs by a per-row constant
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), model(x), rtol=1e-5)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the user's model still ends in its softmax
    np.testing.assert_allclose(model(x).numpy().sum(1), 1.0, rtol=1e-6)
    kp.create_analyzer("gradient", kp.model_wo_softmax(model))  # accepted


def test_model_wo_softmax_nested_application():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4)
    logits_model = kp.model_wo_softmax(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    z = logits_model(x).numpy()
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(1, keepdims=True), model(x), rtol=1e-4, atol=1e-6)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_model_wo_softmax_without_softmax():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match="does not end in a softmax.*returned unchanged") as record:
        assert kp.model_wo_softmax(model) is model
    assert record[0].filename == __file__  # the warning points at the user's line


def test_registry_names():
    names = kp.list_analyzers()
    for name in ["input", "random", "gradient", "gradient.baseline", "input_t_gradient", "deconvnet",
                 "guided_backprop", "smoothgrad", "integrated_gradients"]:
        assert name in names
    assert names == sorted(names)
