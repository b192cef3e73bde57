"""Deconvnet / guided backprop seeding: ``start="value"`` (iNNvestigate) vs ``start="one"`` (textbook)."""

import numpy as np
import pytest
import keras

import keras_patterns as kp
from keras_patterns.io import load_analyzer, save_analyzer

import zoo


def _model_and_inputs():
    keras.utils.set_random_seed(0)
    model = zoo.conv2d_pool()
    x = np.random.default_rng(0).normal(size=(6, 12, 12, 3)).astype("float32")
    return model, x


@pytest.mark.parametrize("method", ["deconvnet", "guided_backprop"])
@pytest.mark.parametrize("mode", ["max_activation", "index"])
def test_one_equals_value_divided_by_selected_output(method, mode):
    model, x = _model_and_inputs()
    y = model.predict(x, verbose=0)
    if mode == "index":
        sel = np.argmax(y, axis=1)  # the largest logit, given explicitly
        kwargs = {"neuron_selection": sel}
    else:
        sel, kwargs = np.argmax(y, axis=1), {}
    chosen = y[np.arange(len(x)), sel]
    # Scaling commutes with the rectifications only for a positive start value.
    keep = chosen > 1e-3
    assert keep.sum() >= 3, f"need samples with a positive selected logit. Received: {chosen}"
    by_value = kp.create_analyzer(method, model, neuron_selection_mode=mode).analyze(x, **kwargs)
    by_one = kp.create_analyzer(method, model, neuron_selection_mode=mode, start="one").analyze(x, **kwargs)
    assert np.abs(by_one[keep]).max() > 0
    expected = by_value[keep] / chosen[keep][:, None, None, None]
    np.testing.assert_allclose(by_one[keep], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("start", ["ones", "One", 1, None])
def test_invalid_start_names_received_and_expected(start):
    model, _ = _model_and_inputs()
    with pytest.raises(ValueError, match=r"`start` must be 'value' .* or 'one' .*Received: start="):
        kp.create_analyzer("deconvnet", model, start=start)


def test_start_in_config_and_file(tmp_path):
    model, x = _model_and_inputs()
    analyzer = kp.create_analyzer("guided_backprop", model, start="one")
    assert analyzer.get_config()["start"] == "one"
    assert kp.create_analyzer("deconvnet", model).get_config()["start"] == "value"
    path = tmp_path / "gb.kpa"
    save_analyzer(analyzer, str(path))
    loaded = load_analyzer(str(path), model)
    assert loaded.get_config()["start"] == "one"
    np.testing.assert_array_equal(loaded.analyze(x), analyzer.analyze(x))
