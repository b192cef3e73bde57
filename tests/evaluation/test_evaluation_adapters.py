"""Adapters: an analyzer as a Quantus explain_func and as an xplique explainer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
from keras_patterns.evaluation.adapters import QuantusExplainFunc, XpliqueExplainer

SHAPE = (6, 5, 2)  # H, W, C: channels first (2, 6, 5) is told apart from channels last


def _linear_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(4)])


def _cnn():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input(SHAPE), keras.layers.Conv2D(3, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(4)])


def _x(n=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + SHAPE).astype("float32")


def test_quantus_gradient_of_a_linear_model_is_the_target_column():
    model = _linear_model()
    analyzer = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    explain = QuantusExplainFunc(analyzer)
    x, targets = _x(), np.array([0, 3, 1, 3, 2])
    w = model.layers[-1].get_weights()[0]  # (60, 4): d logit_t / dx = w[:, t]
    expected = w[:, targets].T.reshape((5,) + SHAPE)
    maps = explain(model, x, targets)
    assert maps.dtype == np.float32 and maps.shape == x.shape
    np.testing.assert_array_equal(maps, expected)
    # channels first, as Quantus passes them: the same maps, channels first
    maps_cf = explain(model, np.moveaxis(x, -1, 1), targets)
    np.testing.assert_array_equal(maps_cf, np.moveaxis(expected, -1, 1))
    # one int for all samples
    np.testing.assert_array_equal(explain(model, x, 2), np.broadcast_to(
        w[:, 2].reshape(SHAPE), x.shape))


def test_quantus_gives_the_analyzers_maps_for_the_targets():
    model = _cnn()
    analyzer = kp.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index")
    x, targets = _x(seed=1), np.array([1, 0, 3, 2, 1])
    expected = analyzer.analyze(x, neuron_selection=targets)
    explain = QuantusExplainFunc(analyzer)
    np.testing.assert_array_equal(explain(model, x, targets, device=None), expected)
    np.testing.assert_array_equal(explain(model, np.moveaxis(x, -1, 1), targets),
                                  np.moveaxis(expected, -1, 1))


def test_quantus_other_model_gets_a_fresh_analyzer():
    model, other = _cnn(), _cnn()
    other.set_weights([w * 1.5 + 0.1 for w in model.get_weights()])
    analyzer = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    x, targets = _x(seed=2), np.array([0, 1, 2, 3, 0])
    fresh = kp.create_analyzer("gradient", other, neuron_selection_mode="index")
    maps = QuantusExplainFunc(analyzer)(other, x, targets)
    np.testing.assert_array_equal(maps, fresh.analyze(x, neuron_selection=targets))
    assert not np.array_equal(maps, analyzer.analyze(x, neuron_selection=targets))


def test_quantus_errors():
    model = _cnn()
    with pytest.raises(ValueError, match="neuron_selection_mode='index'.*Received: .*'max_activation'"):
        QuantusExplainFunc(kp.create_analyzer("gradient", model))
    analyzer = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    explain = QuantusExplainFunc(analyzer)
    with pytest.raises(ValueError, match=r"Unknown keyword arguments .*\['method'\]"):
        explain(model, _x(), np.zeros(5, int), method="Saliency")
    with pytest.raises(ValueError, match=r"shaped like the model input .* Received: inputs of shape \(5, 6, 2\)"):
        explain(model, np.zeros((3, 5, 6, 2), "float32"), np.zeros(3, int))
    with pytest.raises(ValueError, match="`channel_first` must be None, True or False"):
        QuantusExplainFunc(analyzer, channel_first="yes")
    with pytest.raises(ValueError, match=r"`neuron_selection` must be in \[0, 4\)"):
        explain(model, _x(), np.full(5, 7))


def test_quantus_ambiguous_layout_needs_channel_first():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3, 3, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    analyzer = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 3)).astype("float32")
    with pytest.raises(ValueError, match="pass channel_first=True or False"):
        QuantusExplainFunc(analyzer)(model, x, [0, 1])
    last = QuantusExplainFunc(analyzer, channel_first=False)(model, x, [0, 1])
    first = QuantusExplainFunc(analyzer, channel_first=True)(model, np.moveaxis(x, -1, 1), [0, 1])
    np.testing.assert_array_equal(first, np.moveaxis(last, -1, 1))


def test_quantus_refuses_another_model_for_a_fitted_pattern_analyzer():
    model = _cnn()
    analyzer = kp.create_analyzer("pattern.net", model, neuron_selection_mode="index")
    analyzer.fit(_x(16, seed=3), batch_size=8, verbose=0)
    explain = QuantusExplainFunc(analyzer)
    np.testing.assert_array_equal(explain(model, _x(), np.zeros(5, int)),
                                  analyzer.analyze(_x(), neuron_selection=np.zeros(5, int)))
    with pytest.raises(ValueError, match="needs fitting"):
        explain(_cnn(), _x(), np.zeros(5, int))


def test_xplique_one_hot_targets():
    model = _linear_model()
    analyzer = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    explainer = XpliqueExplainer(analyzer, batch_size=2)
    x, targets = _x(), np.array([0, 3, 1, 3, 2])
    w = model.layers[-1].get_weights()[0]
    out = explainer(x, tf.one_hot(targets, 4))
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32 and tuple(out.shape) == x.shape
    np.testing.assert_array_equal(out.numpy(), w[:, targets].T.reshape(x.shape))
    np.testing.assert_array_equal(explainer.explain(x, np.eye(4)[targets]).numpy(), out.numpy())
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(4, dtype="float32")[targets])).batch(2)
    np.testing.assert_array_equal(explainer(ds, None).numpy(), out.numpy())
    assert explainer.model is model


def test_xplique_errors():
    model = _linear_model()
    explainer = XpliqueExplainer(kp.create_analyzer("gradient", model, neuron_selection_mode="index"))
    x = _x(3)
    with pytest.raises(ValueError, match=r"one-hot of shape \(3, 4\). Received: targets.shape=\(3,\)"):
        explainer(x, np.array([0, 1, 2]))
    two = np.eye(4)[[0, 1, 2]]
    two[1, 3] = 1
    with pytest.raises(ValueError, match="exactly one nonzero entry per row.*2 in row 1"):
        explainer(x, two)
    with pytest.raises(ValueError, match="need one-hot `targets`"):
        explainer(x, None)
    with pytest.raises(ValueError, match="`batch_size` must be None or a positive int"):
        XpliqueExplainer(explainer.analyzer, batch_size=0)
    with pytest.raises(ValueError, match="neuron_selection_mode='index'"):
        XpliqueExplainer(kp.create_analyzer("gradient", model))


def test_with_quantus():
    quantus = pytest.importorskip("quantus")
    model = _cnn()
    analyzer = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    x, y = _x(4), np.array([0, 1, 2, 3])
    masks = np.zeros((4, 1, 6, 5))
    masks[:, :, 1:3, 1:3] = 1
    scores = quantus.RelevanceRankAccuracy(disable_warnings=True)(
        model=model, x_batch=np.moveaxis(x, -1, 1), y_batch=y, s_batch=masks,
        explain_func=QuantusExplainFunc(analyzer))
    assert np.all(np.isfinite(scores)) and len(scores) == 4


def test_with_xplique():
    xplique = pytest.importorskip("xplique")
    model = _cnn()
    explainer = XpliqueExplainer(kp.create_analyzer("gradient", model, neuron_selection_mode="index"))
    x, y = _x(4), tf.one_hot([0, 1, 2, 3], 4)
    score = xplique.metrics.Deletion(model, x, y, steps=4)(explainer)
    assert np.isfinite(score)
