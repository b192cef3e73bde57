"""Every failure a user can cause gets a clear error naming what was received and expected."""

import keras
import numpy as np
import pytest

import keras_patterns as kp
import zoo


@pytest.fixture(scope="module")
def mlp():
    return zoo.build("dense_mlp")


@pytest.fixture(scope="module")
def analyzer(mlp):
    return kp.create_analyzer("gradient", mlp)


def test_unknown_analyzer_lists_valid_names(mlp):
    with pytest.raises(KeyError, match=r"No analyzer with the name 'gradiant'.*'gradient'"):
        kp.create_analyzer("gradiant", mlp)


def test_unknown_keyword_is_not_ignored(mlp):
    with pytest.raises(TypeError, match="postproces"):
        kp.create_analyzer("gradient", mlp, postproces="abs")


def test_bad_postprocess(mlp):
    with pytest.raises(ValueError, match=r"postprocess=.*'log'"):
        kp.create_analyzer("gradient", mlp, postprocess="log")


def test_bad_neuron_selection_mode(mlp):
    with pytest.raises(ValueError, match=r"neuron_selection_mode.*Received: 'max'"):
        kp.create_analyzer("gradient", mlp, neuron_selection_mode="max")


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((2, 11), "float32"), r"shape \('batch', 10\).*Received: shape \(2, 11\)"),
        (np.zeros((2, 10, 1), "float32"), r"shape \('batch', 10\).*Received: shape \(2, 10, 1\)"),
        (np.zeros((10,), "float32"), r"Received: shape \(10,\)"),
        ([np.zeros((2, 10)), np.zeros((2, 10))], r"1 input\(s\).*Received: 2 array\(s\)"),
    ],
)
def test_wrong_input_shape(analyzer, x, match):
    with pytest.raises(ValueError, match=match):
        analyzer.analyze(x)


def test_non_numeric_input(analyzer):
    with pytest.raises(TypeError, match="must be numeric. Received: dtype <U1"):
        analyzer.analyze(np.full((2, 10), "a"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_input(analyzer, bad):
    x = np.zeros((2, 10), "float32")
    x[1, 3] = bad
    with pytest.raises(ValueError, match=r"NaN or Inf \(first at index \(1, 3\)\)"):
        analyzer.analyze(x)


def test_index_mode_errors(mlp):
    a = kp.create_analyzer("gradient", mlp, neuron_selection_mode="index")
    x = np.zeros((3, 10), "float32")
    with pytest.raises(ValueError, match="needs `neuron_selection`"):
        a.analyze(x)
    with pytest.raises(ValueError, match=r"in \[0, 4\) for a model with 4 outputs. Received: neuron_selection=12"):
        a.analyze(x, 12)
    with pytest.raises(ValueError, match=r"Received: neuron_selection=-1 \(at sample 1\)"):
        a.analyze(x, [0, -1, 2])
    with pytest.raises(ValueError, match=r"one index per sample, shape \(3,\). Received: shape \(2,\)"):
        a.analyze(x, [0, 1])
    with pytest.raises(ValueError, match="must be integer"):
        a.analyze(x, 1.5)


def test_index_given_in_other_mode(analyzer):
    with pytest.raises(ValueError, match="only used with neuron_selection_mode='index'"):
        analyzer.analyze(np.zeros((1, 10), "float32"), neuron_selection=1)


def test_several_outputs():
    inp = keras.Input((4,))
    model = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"one output tensor.*2 outputs.*model.outputs\[i\]"):
        kp.create_analyzer("gradient", model)


def test_softmax_output_names_model_wo_softmax():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(kp.NotAnalyzeableModelError, match="model_wo_softmax"):
        kp.create_analyzer("gradient", model)


def test_unsupported_layers_listed_at_once():
    inp = keras.Input((4, 3))
    h = keras.layers.LSTM(3, return_sequences=True, name="lstm_a")(inp)
    h = keras.layers.GRU(2, name="gru_b")(h)
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(kp.UnsupportedLayerError) as info:
        kp.create_analyzer("lrp.epsilon", model)
    assert info.value.layers == [("lstm_a", "LSTM"), ("gru_b", "GRU")]
    assert "lstm_a (LSTM), gru_b (GRU)" in str(info.value)
    assert "register_rule" in str(info.value)
    # the refusal names the methods that do work on the model
    assert "The gradient family ('gradient', 'input_t_gradient'," in str(info.value)


def test_register_rule_for_custom_layer():
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2)(Double()(inp)))
    with pytest.raises(kp.UnsupportedLayerError, match=r"\(Double\)"):
        kp.create_analyzer("lrp.z", model)
    kp.register_rule(Double)
    try:
        x = np.ones((1, 3), "float32")
        w = model.layers[-1].get_weights()[0]
        j = model(x).numpy().argmax()
        # LRP-Z on the Dense layer (zero bias): a_i w_ij with a = 2x, then the gradient of Double.
        r = kp.create_analyzer("lrp.z", model).analyze(x)
        np.testing.assert_allclose(r[0], 4 * w[:, j], rtol=1e-6)
    finally:
        kp.unregister_rule(Double)
    with pytest.raises(TypeError, match="Layer subclass"):
        kp.register_rule(int)


def test_bad_batch_size(mlp, analyzer):
    with pytest.raises(ValueError, match="batch_size=0"):
        kp.create_analyzer("gradient", mlp, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=-2"):
        analyzer.analyze(np.zeros((1, 10), "float32"), batch_size=-2)


def test_wrapper_argument_errors(mlp):
    with pytest.raises(ValueError, match="augment_by_n=0"):
        kp.create_analyzer("smoothgrad", mlp, augment_by_n=0)
    with pytest.raises(ValueError, match="noise_scale=-1"):
        kp.create_analyzer("smoothgrad", mlp, noise_scale=-1)
    with pytest.raises(ValueError, match="steps=2.5"):
        kp.create_analyzer("integrated_gradients", mlp, steps=2.5)
    with pytest.raises(ValueError, match=r"one sample of shape \(10,\). Received: shape \(3,\)"):
        kp.create_analyzer("integrated_gradients", mlp, reference_inputs=np.zeros(3))


def test_fit_on_analyzer_without_fitting_warns(analyzer):
    with pytest.warns(UserWarning, match="needs no fitting"):
        assert analyzer.fit(np.zeros((2, 10))) is analyzer


def test_non_finite_maps_raise_naming_the_samples():
    import tensorflow as tf

    from keras_patterns.rules import Rule

    class Blow(keras.layers.Layer):
        def call(self, x):
            return 1.0 * x

    def backward(ctx, rs):  # overflows for samples whose input exceeds 10
        (x,) = ctx.xs
        return [rs[0] * tf.where(x > 10, tf.constant(np.inf, x.dtype), tf.ones_like(x))]

    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(1)(Blow()(inp)))
    kp.register_rule(Blow, Rule("blow", backward))
    try:
        x = np.array([[1, 2], [30, 1], [1, 1]], "float32")
        with pytest.raises(kp.NonFiniteResultError, match=r"NaN/Inf maps for samples \[1\]") as info:
            kp.create_analyzer("gradient", model).analyze(x)
        assert info.value.samples == [1]
        np.testing.assert_allclose(info.value.maps[0][[0, 2]], np.tile(model.layers[-1].get_weights()[0][:, 0], (2, 1)))
    finally:
        kp.unregister_rule(Blow)
