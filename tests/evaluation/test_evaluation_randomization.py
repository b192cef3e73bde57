"""Model parameter randomization check (Adebayo et al. 2018): decorrelation, seeds, restoration,
and the similarity measures against hand-computed values."""

import keras
import numpy as np
import pytest

import keras_patterns as kp
import zoo
from keras_patterns import evaluation as ev
from keras_patterns.evaluation import _similarity


@pytest.fixture(scope="module")
def cnn():
    model = zoo.build("conv2d_pool")  # kernel layers conv2d, conv2d_1, dense
    return model, zoo.inputs_for(model, n=6, seed=1)


def _weights(model):
    return [np.array(w, copy=True) for w in model.get_weights()]


def _assert_same(model, before):
    after = model.get_weights()
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)  # bit-identical


def test_gradient_decorrelates_and_model_is_restored(cnn):
    model, x = cnn
    before = _weights(model)
    analyzer = kp.create_analyzer("gradient", model)
    maps = analyzer.analyze(x)
    result = ev.randomization_check(analyzer, model, x, order="cascading", similarity="spearman")
    kernel = [layer.name for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(kernel) == 3 and result["layers"] == kernel[::-1]  # from the output down
    assert result["similarity"].shape == (3, len(x))
    assert result["order"] == "cascading" and result["measure"] == "spearman"
    # fully randomized: the maps no longer follow the trained model's (measured: mean -0.02)
    assert abs(result["similarity"][-1].mean()) < 0.2
    _assert_same(model, before)
    np.testing.assert_array_equal(analyzer.analyze(x), maps)  # the analyzer sees the trained weights


def test_seeded_and_reproducible(cnn):
    model, x = cnn
    analyzer = kp.create_analyzer("gradient", model)
    for order in ("cascading", "independent"):
        a = ev.randomization_check(analyzer, model, x, order=order, seed=3)["similarity"]
        b = ev.randomization_check(analyzer, model, x, order=order, seed=3)["similarity"]
        c = ev.randomization_check(analyzer, model, x, order=order, seed=4)["similarity"]
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


def _randomized_by_hand(model, layer_names, seed, position):
    """The documented randomization, written out: layer j of the top-down list gets N(0, std(w))
    values from default_rng([seed, j])."""
    for j, name in enumerate(layer_names):
        if j in position:
            layer = model.get_layer(name)
            rng = np.random.default_rng([seed, j])
            layer.set_weights([rng.normal(0.0, np.std(w), w.shape).astype(w.dtype) for w in layer.get_weights()])


@pytest.mark.parametrize("order", ["independent", "cascading"])
def test_rows_match_a_hand_randomized_model(cnn, order):
    stats = pytest.importorskip("scipy.stats")
    model, x = cnn
    before = _weights(model)
    analyzer = kp.create_analyzer("input_t_gradient", model)
    original = analyzer.analyze(x)
    result = ev.randomization_check(analyzer, model, x, order=order, seed=7, similarity="spearman_abs")
    names = result["layers"]
    try:
        for j in range(len(names)):
            model.set_weights(before)
            _randomized_by_hand(model, names, 7, {j} if order == "independent" else set(range(j + 1)))
            maps = analyzer.analyze(x)
            expected = [stats.spearmanr(np.abs(original[i]).ravel(), np.abs(maps[i]).ravel())[0]
                        for i in range(len(x))]
            np.testing.assert_allclose(result["similarity"][j], expected, rtol=1e-12, atol=1e-12)
    finally:
        model.set_weights(before)


class _FailingAnalyzer:
    """Delegates to an analyzer and raises at the ``fail_at``-th analyze call."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.model, self.name = inner.model, inner.name

    def analyze(self, x, neuron_selection=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("injected failure")
        return self.inner.analyze(x, neuron_selection=neuron_selection)


def _softmax_cnn():
    keras.utils.set_random_seed(0)
    L = keras.layers
    return keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                             L.Dense(5, activation="relu"), L.Dense(4, activation="softmax")])


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_model_bit_identical_after_a_midway_failure(order):
    model = _softmax_cnn()  # the analyzer runs on model_wo_softmax(model): shared variables
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype("float32")
    before = _weights(model)
    failing = _FailingAnalyzer(kp.create_analyzer("gradient", kp.model_wo_softmax(model)), fail_at=3)
    with pytest.raises(RuntimeError, match="injected failure"):
        ev.randomization_check(failing, model, x, order=order)
    assert failing.calls == 3  # two randomized layers were in place when it failed
    _assert_same(model, before)


def test_pattern_analyzers_are_refitted_and_restored(cnn):
    model, x = cnn
    fit_x = zoo.inputs_for(model, n=16, seed=2)
    analyzer = kp.create_analyzer("pattern.attribution", model).fit(fit_x, verbose=0)
    patterns = analyzer.patterns
    with pytest.raises(ValueError, match="needs `fit_data`. Received: fit_data=None"):
        ev.randomization_check(analyzer, model, x)
    result = ev.randomization_check(analyzer, model, x, fit_data=fit_x, similarity="ssim")
    assert result["similarity"].shape == (3, len(x)) and np.all(np.isfinite(result["similarity"]))
    assert analyzer.patterns_outdated is False
    for k, v in patterns.items():
        np.testing.assert_array_equal(analyzer.patterns[k], v)


def test_rejects_bad_options(cnn):
    model, x = cnn
    analyzer = kp.create_analyzer("gradient", model)
    with pytest.raises(ValueError, match=r"`order` must be one of \['cascading', 'independent'\]"):
        ev.randomization_check(analyzer, model, x, order="bottom_up")
    with pytest.raises(ValueError, match="`similarity` must be one of"):
        ev.randomization_check(analyzer, model, x, similarity="hog")
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        ev.randomization_check(analyzer, model, x, seed=1.5)
    other = zoo.build("conv2d_pool")
    with pytest.raises(ValueError, match="must compute with `model`'s variables"):
        ev.randomization_check(kp.create_analyzer("gradient", other), model, x)
    with pytest.raises(ValueError, match="must have shape"):  # the analyzer's own input check
        ev.randomization_check(analyzer, model, x[:, :5])
    dense = zoo.build("dense_mlp")
    xd = zoo.inputs_for(dense, n=2)
    with pytest.raises(ValueError, match="needs image maps"):
        ev.randomization_check(kp.create_analyzer("gradient", dense), dense, xd, similarity="ssim")


# ---------------------------------------------------------------------------- similarity measures
def test_rankdata_ties_and_spearman_hand_computed():
    np.testing.assert_array_equal(_similarity.rankdata(np.array([[3.0, 1.0, 3.0, 2.0]])), [[3.5, 1, 3.5, 2]])
    # ranks (1, 2, 3) vs (1, 3, 2): 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 24 = 0.5
    np.testing.assert_allclose(_similarity.spearman(np.array([[1.0, 2, 3]]), np.array([[10.0, 30, 20]])), [0.5])
    np.testing.assert_allclose(_similarity.spearman(np.array([[1.0, 2, 3]]), np.array([[3.0, 2, 1]])), [-1.0])
    # constant maps: 1 when equal, 0 otherwise (never NaN)
    np.testing.assert_array_equal(
        _similarity.spearman(np.array([[1.0, 1, 1], [0, 0, 0], [1, 2, 3]]), np.array([[1.0, 1, 1], [1, 2, 3], [0, 0, 0]])),
        [1.0, 0.0, 0.0])


def test_ssim_identity_and_hand_computed_pair():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 9, 10))
    np.testing.assert_array_equal(_similarity.ssim(a, a), np.ones(3))
    # one 7x7 window: a binary map with p = 20/49 ones against its complement
    m = np.zeros(49)
    m[:20] = 1
    m = rng.permutation(m).reshape(1, 7, 7)
    p = 20 / 49
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b, var, cov = p, 1 - p, p * (1 - p), -p * (1 - p)
    expected = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (2 * var + c2))
    np.testing.assert_allclose(_similarity.ssim(m, 1 - m), [expected], rtol=1e-12)
    # scaling and shifting a map does not change it (min-max scaling first)
    np.testing.assert_allclose(_similarity.ssim(m, 3 * m + 2), [1.0], rtol=1e-12)
    # windows: 9x10 has 3 x 4 positions of the 7x7 window; the mean of the hand-computed local values
    b = rng.normal(size=(1, 9, 10))
    x, y = [(v - v.min()) / (v.max() - v.min()) for v in (a[:1], b)]
    local = []
    for r in range(3):
        for q in range(4):
            u, v = x[0, r:r + 7, q:q + 7].ravel(), y[0, r:r + 7, q:q + 7].ravel()
            cv = ((u - u.mean()) * (v - v.mean())).mean()
            local.append((2 * u.mean() * v.mean() + c1) * (2 * cv + c2)
                         / ((u.mean() ** 2 + v.mean() ** 2 + c1) * (u.var() + v.var() + c2)))
    np.testing.assert_allclose(_similarity.ssim(a[:1], b), [np.mean(local)], rtol=1e-10)
