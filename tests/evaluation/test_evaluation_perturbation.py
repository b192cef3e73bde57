"""Region perturbation curves, AOPC, deletion/insertion AUCs against hand-computed NumPy curves.

The reference model is linear and float64 (f(x) = <w_c, x> + b_c), so every curve has a closed form
and the comparisons hold to float64 rounding (1e-10 on values of order 10).
"""

import keras
import numpy as np
import pytest

from keras_patterns import evaluation as ev
from keras_patterns.evaluation import perturbation as pert

N, H, W, C, K = 4, 7, 8, 2, 3  # 7x8 images: patch 3 leaves smaller patches at the right and bottom
P = 3
N_PATCHES = 3 * 3


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    model = keras.Sequential([
        keras.Input((H, W, C), dtype="float64"), keras.layers.Flatten(dtype="float64"),
        keras.layers.Dense(K, dtype="float64"),
    ])
    w = rng.normal(size=(H * W * C, K))
    b = rng.normal(size=(K,))
    model.set_weights([w, b])
    x = rng.normal(size=(N, H, W, C))
    return model, x, w, b


def _f(x, w, b, c):
    return x.reshape(len(x), -1) @ w[:, c] + b[c]


def _true_relevance(xi, w, c):
    """w * x of one image for class c: the exact contribution of every input to the logit."""
    return xi * w[:, c].reshape(xi.shape)


def _patches(h, w, p):
    """Row-major list of (row slice, column slice) of the patch grid, by hand."""
    return [(slice(r, min(r + p, h)), slice(q, min(q + p, w))) for r in range(0, h, p) for q in range(0, w, p)]


def _hand_curve(x, w, b, c, order_of_patches, value):
    """Loops: replace the patches one after the other by ``value`` (an array like x), record f."""
    cur = x.copy()
    out = [_f(cur[None], w, b, c)[0]]
    for (rs, cs) in order_of_patches:
        cur[rs, cs] = value[rs, cs]
        out.append(_f(cur[None], w, b, c)[0])
    return np.array(out)


def test_linear_zeros_curve_matches_hand_computed(linear):
    model, x, w, b = linear
    c = (x.reshape(N, -1) @ w + b).argmax(axis=1)
    maps = np.stack([_true_relevance(x[i], w, c[i]) for i in range(N)])
    curves = ev.region_perturbation(model, x, maps, patch_size=P, replacement="zeros")
    assert curves.shape == (N, N_PATCHES + 1)
    grid = _patches(H, W, P)
    for i in range(N):
        scores = [maps[i][rs, cs].sum() for rs, cs in grid]
        order = sorted(range(len(grid)), key=lambda j: -scores[j])
        expected = _hand_curve(x[i], w, b, c[i], [grid[j] for j in order], np.zeros_like(x[i]))
        np.testing.assert_allclose(curves[i], expected, rtol=0, atol=1e-10)
        # identity of the linear model: removing a patch lowers f by exactly its w*x sum
        np.testing.assert_allclose(curves[i], expected[0] - np.concatenate([[0], np.cumsum(sorted(scores)[::-1])]),
                                   rtol=0, atol=1e-10)


def test_lerf_is_the_reverse_order_and_steps_truncate(linear):
    model, x, w, b = linear
    maps = np.random.default_rng(1).normal(size=x.shape[:3])  # a map without channel axis
    c = 1
    curves = ev.region_perturbation(model, x, maps, patch_size=P, steps=4, order="lerf",
                                    replacement="zeros", neuron_selection=c)
    assert curves.shape == (N, 5)
    grid = _patches(H, W, P)
    for i in range(N):
        scores = [maps[i][rs, cs].sum() for rs, cs in grid]
        order = sorted(range(len(grid)), key=lambda j: scores[j])[:4]
        expected = _hand_curve(x[i], w, b, c, [grid[j] for j in order], np.zeros_like(x[i]))
        np.testing.assert_allclose(curves[i], expected, rtol=0, atol=1e-10)


def test_true_relevance_aopc_beats_random_maps(linear):
    """With zeros on a linear model, MoRF by w*x removes the largest possible sum at every step, so
    its AOPC is at least that of any other order, sample by sample."""
    model, x, w, b = linear
    c = (x.reshape(N, -1) @ w + b).argmax(axis=1)
    maps = np.stack([_true_relevance(x[i], w, c[i]) for i in range(N)])
    true = ev.aopc(ev.region_perturbation(model, x, maps, patch_size=P, replacement="zeros"))
    rnd = ev.aopc(ev.region_perturbation(model, x, np.random.default_rng(3).normal(size=x.shape),
                                         patch_size=P, replacement="zeros"))
    order = ev.aopc(ev.region_perturbation(model, x, maps, patch_size=P, replacement="zeros", order="random"))
    assert np.all(true >= rnd - 1e-12) and np.all(true >= order - 1e-12)
    assert true.mean() > rnd.mean() + 0.5 and true.mean() > order.mean() + 0.5


def test_random_order_is_seeded_and_ignores_the_map(linear):
    model, x, w, b = linear
    m1 = np.random.default_rng(4).normal(size=x.shape)
    a = ev.region_perturbation(model, x, m1, patch_size=P, order="random", seed=5)
    b_ = ev.region_perturbation(model, x, -m1, patch_size=P, order="random", seed=5)
    other = ev.region_perturbation(model, x, m1, patch_size=P, order="random", seed=6)
    np.testing.assert_array_equal(a, b_)
    assert not np.allclose(a, other)
    np.testing.assert_allclose(a[:, -1], other[:, -1], rtol=0, atol=1e-10)  # all patches replaced


def test_replacements_when_every_patch_is_replaced(linear):
    model, x, w, b = linear
    maps = np.ones(x.shape)
    c = 0
    last = {r: ev.region_perturbation(model, x, maps, patch_size=P, replacement=r, neuron_selection=c)[:, -1]
            for r in pert.REPLACEMENTS}
    mean = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    np.testing.assert_allclose(last["mean"], _f(mean, w, b, c), rtol=0, atol=1e-10)
    np.testing.assert_allclose(last["zeros"], np.full(N, b[c]), rtol=0, atol=1e-10)
    patch_mean = np.empty_like(x)
    for rs, cs in _patches(H, W, P):
        patch_mean[:, rs, cs] = x[:, rs, cs].mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(last["patch_mean"], _f(patch_mean, w, b, c), rtol=0, atol=1e-10)


def test_mean_replacement_curve_step_by_step(linear):
    model, x, w, b = linear
    maps = np.random.default_rng(7).normal(size=x.shape)
    curves = ev.region_perturbation(model, x, maps, patch_size=P, neuron_selection=2)
    grid = _patches(H, W, P)
    for i in range(N):
        scores = [maps[i][rs, cs].sum() for rs, cs in grid]
        order = sorted(range(len(grid)), key=lambda j: -scores[j])
        value = np.broadcast_to(x[i].mean(axis=(0, 1)), x[i].shape)
        expected = _hand_curve(x[i], w, b, 2, [grid[j] for j in order], value)
        np.testing.assert_allclose(curves[i], expected, rtol=0, atol=1e-10)


def test_uniform_noise_is_seeded_and_in_range(linear):
    _, x, _, _ = linear
    rng = np.random.default_rng([0, 1])
    noise = pert._replacement_images(x, "uniform", P, P, rng, 1.0)
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    assert np.all(noise >= lo) and np.all(noise <= hi)
    np.testing.assert_array_equal(noise, pert._replacement_images(x, "uniform", P, P, np.random.default_rng([0, 1]), 1.0))


def test_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(8).normal(size=(2, 11, 9, 3))
    for sigma in (1.0, 3.0):  # patch_size 3 and the paper's 9
        ours = pert._gaussian_blur(x, sigma)
        ref = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect", truncate=3.0)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_insertion_curve_linear_zeros(linear):
    model, x, w, b = linear
    c = (x.reshape(N, -1) @ w + b).argmax(axis=1)
    maps = np.stack([_true_relevance(x[i], w, c[i]) for i in range(N)])
    curves = ev.region_insertion(model, x, maps, patch_size=P, replacement="zeros")
    grid = _patches(H, W, P)
    for i in range(N):
        scores = sorted([maps[i][rs, cs].sum() for rs, cs in grid])[::-1]
        expected = b[c[i]] + np.concatenate([[0], np.cumsum(scores)])
        np.testing.assert_allclose(curves[i], expected, rtol=0, atol=1e-10)


def test_auc_and_aopc_hand_computed():
    curves = np.array([[1.0, 0.5, 0.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(ev.aopc(curves), [(0 + 0.5 + 1) / 3, 0.0])
    np.testing.assert_allclose(ev.deletion(curves), [0.5, 2.0])
    np.testing.assert_allclose(ev.insertion(np.array([[0.0, 1.0, 1.0, 1.0]])), [(0.5 + 1 + 1) / 3])


def test_probability_output_and_softmax_models(linear):
    model, x, w, b = linear
    maps = np.random.default_rng(9).normal(size=x.shape)
    logits = ev.region_perturbation(model, x, maps, patch_size=P, steps=3, neuron_selection=[0, 1, 2, 0])
    full = [ev.region_perturbation(model, x, maps, patch_size=P, steps=3, neuron_selection=k) for k in range(K)]
    prob = ev.region_perturbation(model, x, maps, patch_size=P, steps=3, output="probability",
                                  neuron_selection=[0, 1, 2, 0])
    z = np.stack(full, axis=-1)
    soft = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(prob, soft[np.arange(N), :, [0, 1, 2, 0]], rtol=1e-12)
    np.testing.assert_allclose(logits, z[np.arange(N), :, [0, 1, 2, 0]], rtol=1e-12)
    sm = keras.Sequential([keras.Input((H, W, C), dtype="float64"), keras.layers.Flatten(dtype="float64"),
                           keras.layers.Dense(K, activation="softmax", dtype="float64")])
    sm.set_weights([w, b])
    with pytest.raises(ValueError, match="ends in a softmax"):
        ev.region_perturbation(sm, x, maps, patch_size=P)
    np.testing.assert_allclose(
        ev.region_perturbation(sm, x, maps, patch_size=P, steps=3, output="probability",
                               neuron_selection=[0, 1, 2, 0]), prob, rtol=1e-12)


def test_channel_maps_equal_their_channel_sum(linear):
    model, x, _, _ = linear
    maps = np.random.default_rng(10).normal(size=x.shape)
    np.testing.assert_array_equal(ev.region_perturbation(model, x, maps, patch_size=P),
                                  ev.region_perturbation(model, x, maps.sum(-1), patch_size=P))


def test_one_trace_and_batched_calls(linear):
    model, x, _, _ = linear
    maps = np.random.default_rng(11).normal(size=x.shape)
    a = ev.region_perturbation(model, x, maps, patch_size=P, batch_size=5)
    b_ = ev.region_perturbation(model, x, maps, patch_size=P, batch_size=64)
    np.testing.assert_allclose(a, b_, rtol=0, atol=1e-12)
    # the logits call of this model was compiled once and traced once over all calls of this file
    fn = pert._COMPILED[model][((None, H, W, C), "float64", False)]
    assert fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(order="best"), "`order` must be one of"),
    (dict(replacement="noise"), "`replacement` must be one of"),
    (dict(output="softmax"), "`output` must be one of"),
    (dict(patch_size=0), "`patch_size` must be"),
    (dict(patch_size=2.5), "`patch_size` must be"),
    (dict(steps=N_PATCHES + 1), "`steps` must be at most the number of patches, 9"),
    (dict(steps=-1), "`steps` must be a non-negative int"),
    (dict(batch_size=0), "`batch_size` must be a positive int"),
    (dict(neuron_selection=K), r"`neuron_selection` must be in \[0, 3\)"),
    (dict(neuron_selection=[0, 1]), "one per image"),
    (dict(seed=-1), "`seed` must be"),
])
def test_rejects_bad_options(linear, kwargs, match):
    model, x, _, _ = linear
    kwargs = dict(dict(patch_size=P), **kwargs)
    with pytest.raises(ValueError, match=match):
        ev.region_perturbation(model, x, np.ones(x.shape), **kwargs)


def test_rejects_mismatched_shapes(linear):
    model, x, _, _ = linear
    with pytest.raises(ValueError, match=r"`maps` must have shape \(4, 7, 8\).*Received: maps of shape \(4, 7, 7, 2\)"):
        ev.region_perturbation(model, x, np.ones((N, H, H, C)), patch_size=P)
    with pytest.raises(ValueError, match=r"`maps` must have shape \(4, 7, 8\) or \(4, 7, 8, 2\).*\(4, 7, 8, 3\)"):
        ev.region_perturbation(model, x, np.ones((N, H, W, 3)), patch_size=P)
    with pytest.raises(ValueError, match=r"`x` must be images.*Received: x of shape \(4, 8, 8, 2\)"):
        ev.region_perturbation(model, np.ones((N, 8, 8, C)), np.ones((N, 8, 8)), patch_size=P)
    with pytest.raises(ValueError, match="must be finite"):
        ev.region_perturbation(model, x, np.full(x.shape, np.nan), patch_size=P)
    with pytest.raises(ValueError, match="`model` must be a built Keras model with one input and one output"):
        ev.region_perturbation(lambda v: v, x, np.ones(x.shape), patch_size=P)
    for fn in (ev.aopc, ev.deletion, ev.insertion):
        with pytest.raises(ValueError, match=r"`curves` must have shape \(n, steps \+ 1\)"):
            fn(np.ones(5))
    with pytest.raises(ValueError, match="at least 2 point"):
        ev.deletion(np.ones((3, 1)))


def test_images_without_channel_axis(linear):
    """A model on (H, W) inputs gives the curves of the same model on (H, W, 1) inputs."""
    _, x, w, b = linear
    x1 = x[..., 0]
    w1 = w.reshape(H, W, C, K)[:, :, 0].reshape(H * W, K)
    models = []
    for shape in ((H, W), (H, W, 1)):
        m = keras.Sequential([keras.Input(shape, dtype="float64"), keras.layers.Flatten(dtype="float64"),
                              keras.layers.Dense(K, dtype="float64")])
        m.set_weights([w1, b])
        models.append(m)
    maps = np.random.default_rng(12).normal(size=x1.shape)
    a = ev.region_perturbation(models[0], x1, maps, patch_size=P)
    b_ = ev.region_perturbation(models[1], x1[..., None], maps[..., None], patch_size=P)
    np.testing.assert_allclose(a, b_, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"`maps` must have shape \(4, 7, 8\) to match `x`"):
        ev.region_perturbation(models[0], x1, maps[..., None], patch_size=P)
