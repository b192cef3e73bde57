"""The paper's toy problem (Kindermans et al. 2018, Sec. 2, Fig. 2; paper-notes 3.1).

x = a_s * y + a_d * eps with a_s = (1, 0), a_d = (1, 1); the optimal linear filter is w = (1, -1).
The pattern is the signal direction a_s, PatternNet recovers the signal a_s * y, while the gradient,
deconvnet and guided backprop show the filter w.
"""

import keras
import numpy as np
import pytest

import keras_patterns as kp


def _cos(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    n = 20000
    y = rng.uniform(-1, 1, n)
    eps = rng.normal(0, 1, n)
    x = (np.outer(y, [1.0, 0.0]) + np.outer(eps, [1.0, 1.0])).astype("float32")
    inp = keras.Input((2,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inp, dense(inp))
    dense.set_weights([np.array([[1.0], [-1.0]], "float32")])
    return model, x, y


@pytest.mark.parametrize("pattern_type", ["relu", "linear"])
def test_pattern_is_the_signal_direction(toy, pattern_type):
    model, x, _ = toy
    a = kp.PatternComputer(model, pattern_type=pattern_type).compute(x, batch_size=1000, verbose=0)
    pattern = a[model.layers[-1].name][:, 0]
    assert _cos(pattern, [1.0, 0.0]) > 0.999
    assert abs(pattern @ np.array([1.0, -1.0]) - 1.0) < 1e-5  # w^T a = 1


def test_patternnet_recovers_the_signal_and_filters_show_w(toy):
    model, x, y = toy
    net = kp.create_analyzer("pattern.net", model).fit(x, batch_size=1000, verbose=0)
    xs, ys = x[:200], y[:200]
    signal = np.outer(ys, [1.0, 0.0])
    got = net.analyze(xs)
    assert np.abs(got - signal).max() < 0.02 * np.abs(signal).max()
    attribution = kp.create_analyzer("pattern.attribution", model, patterns=net.patterns).analyze(xs)
    w_a = np.array([1.0, -1.0]) * net.patterns[model.layers[-1].name][:, 0]
    np.testing.assert_allclose(attribution, np.outer(ys, w_a), rtol=1e-4, atol=1e-6)
    grad = kp.create_analyzer("gradient", model).analyze(xs)
    np.testing.assert_allclose(grad, np.tile([1.0, -1.0], (200, 1)))
    for name in ("deconvnet", "guided_backprop"):
        m = kp.create_analyzer(name, model).analyze(xs)
        for row in m[np.abs(ys) > 0.1]:
            assert abs(_cos(row, [1.0, -1.0])) > 0.999, name
