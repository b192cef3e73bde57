"""Code ported from iNNvestigate (and Keras habits) works, or fails with a message saying why."""

import logging

import keras
import numpy as np
import pytest

import keras_patterns as kp

import builders


@pytest.fixture(scope="module")
def mlp():
    return builders.mlp((5, 4, 3), name="mlp")


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(8, 5)).astype("float32")


def test_fit_generator_maps_steps_per_epoch(mlp, x):
    def gen():
        while True:
            yield x[:4], np.zeros(4)

    a = kp.create_analyzer("pattern.net", mlp).fit_generator(gen(), steps_per_epoch=2, verbose=0)
    b = kp.create_analyzer("pattern.net", mlp).fit(x, batch_size=4, verbose=0)  # same 8 rows twice
    c = kp.create_analyzer("pattern.net", mlp).fit_generator(iter([x[:4], x[4:]]), steps=1, verbose=0)
    assert c.patterns is not None
    ref = kp.create_analyzer("pattern.net", mlp).fit(np.concatenate([x[:4], x[:4]]), verbose=0)
    for k in a.patterns:
        np.testing.assert_allclose(a.patterns[k], ref.patterns[k], rtol=1e-5, atol=1e-6)
    assert b.patterns is not None
    with pytest.raises(ValueError, match="epochs=3"):
        a.fit_generator(gen(), steps_per_epoch=1, epochs=3)
    with pytest.raises(ValueError, match="not both"):
        a.fit_generator(gen(), steps_per_epoch=1, steps=2)


def test_fit_accepts_and_ignores_y(mlp, x):
    a = kp.create_analyzer("pattern.attribution", mlp).fit(x, np.arange(8), verbose=0)
    b = kp.create_analyzer("pattern.attribution", mlp).fit(x, verbose=0)
    for k in a.patterns:
        np.testing.assert_array_equal(a.patterns[k], b.patterns[k])
    with pytest.raises(TypeError, match=r"fit\(x, batch_size=64\)"):
        a.fit(x, 64)


def test_generic_kwargs(mlp, x):
    g = kp.create_analyzer("gradient", mlp, disable_model_checks=False, allow_lambda_layers=False,
                           reverse_check_finite=True, reverse_reapply_on_copied_layers=True,
                           reverse_verbose=False, reverse_keep_tensors=False, reverse_clip_values=False)
    np.testing.assert_array_equal(g.analyze(x), kp.create_analyzer("gradient", mlp).analyze(x))
    for key, value in [("reverse_verbose", True), ("reverse_keep_tensors", True),
                       ("reverse_clip_values", (-1, 1)), ("reverse_check_min_max_values", True),
                       ("reverse_project_bottleneck_layers", True)]:
        with pytest.raises(ValueError, match=f"`{key}` \\(from iNNvestigate\\) is not supported"):
            kp.create_analyzer("gradient", mlp, **{key: value})
    with pytest.raises(TypeError, match="reverse_typo"):
        kp.create_analyzer("gradient", mlp, reverse_typo=True)
    p = kp.create_analyzer("pattern.net", mlp, reverse_project_bottleneck_layers=True)
    assert p.project_bottleneck and p.get_config()["project_bottleneck"] is True


def test_disable_model_checks():
    tanh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="tanh"), keras.layers.Dense(2)])
    with pytest.raises(kp.NotAnalyzeableModelError, match="ReLU"):
        kp.create_analyzer("deep_taylor", tanh)
    with pytest.warns(UserWarning, match="only specified for networks with ReLU") as record:
        a = kp.create_analyzer("deep_taylor", tanh, disable_model_checks=True)
    assert record[0].filename == __file__  # points at this line, not inside the package
    assert a.get_config()["disable_model_checks"] is True
    soft = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(kp.NotAnalyzeableModelError, match="does not cover softmax"):
        kp.create_analyzer("gradient", soft, disable_model_checks=True)


def test_allow_lambda_layers():
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: 2.0 * t)(inp)))
    # Rule-based methods refuse Lambda layers unless allowed (then: their gradient).
    with pytest.raises(kp.UnsupportedLayerError, match="Lambda.*gradient family"):
        kp.create_analyzer("lrp.z", model)
    x = np.ones((1, 3), "float32")
    w = model.layers[-1].get_weights()[0]
    j = model(x).numpy().argmax()
    # LRP-Z on Dense (zero bias) gives a_i w_ij with a = 2x; the Lambda's gradient doubles it.
    r = kp.create_analyzer("lrp.z", model, allow_lambda_layers=True).analyze(x)
    np.testing.assert_allclose(r[0], 4 * w[:, j], rtol=1e-6)
    # The gradient family differentiates through Lambda layers with or without the switch.
    for allow in (False, True):
        g = kp.create_analyzer("gradient", model, allow_lambda_layers=allow).analyze(x)
        np.testing.assert_allclose(g[0], 2 * w[:, j], rtol=1e-6)


def test_neuron_selection_list_and_column(mlp, x):
    a = kp.create_analyzer("gradient", mlp, neuron_selection_mode="index")
    idx = [0, 1, 2, 0, 1, 2, 0, 1]
    expected = a.analyze(x, np.array(idx))
    np.testing.assert_array_equal(a.analyze(x, idx), expected)
    np.testing.assert_array_equal(a.analyze(x, np.array(idx)[:, None]), expected)


def test_no_retracing_warning_for_many_analyzers(mlp, x, caplog):
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for _ in range(8):
            kp.create_analyzer("gradient", mlp).analyze(x)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_warning_points_at_user_line(mlp, x):
    with pytest.warns(UserWarning, match="needs no fitting") as record:
        kp.create_analyzer("gradient", mlp).fit_generator(iter([x]))
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="ran out after 1 batch") as record:
        kp.create_analyzer("pattern.net", mlp).fit(iter([x]), steps=3, verbose=0)
    assert record[0].filename == __file__


def test_repr(mlp):
    r = repr(kp.create_analyzer("lrp.epsilon", mlp, epsilon=0.1))
    assert r.startswith("<LRP 'lrp.epsilon' model='mlp' ") and "epsilon=0.1" in r
    assert "neuron_selection_mode='max_activation'" in r
    assert "fitted=False" in repr(kp.create_analyzer("pattern.net", mlp))


def test_fit_on_npz_file_names_the_arrays(mlp, x, tmp_path):
    np.savez(tmp_path / "d.npz", x=x)
    with np.load(tmp_path / "d.npz") as data, pytest.raises(TypeError, match=r"arrays \['x'\].*data\['x'\]"):
        kp.create_analyzer("pattern.net", mlp).fit(data, verbose=0)
