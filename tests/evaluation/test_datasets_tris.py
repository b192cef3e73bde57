"""kp.datasets.make_tetrominoes: the XAI-TRIS generative model, checked on the generated data."""

import numpy as np
import pytest

from keras_patterns.datasets import (TETROMINO_L, TETROMINO_T, gaussian_smooth,
                                     make_tetrominoes)

SCENARIOS = ("linear", "multiplicative", "translations_rotations", "xor")


def _placed(shape, r, c, size=8):
    img = np.zeros((size, size))
    shape = np.array(shape, dtype="float64")
    img[r:r + shape.shape[0], c:c + shape.shape[1]] = shape
    return img


T_8, L_8 = _placed(TETROMINO_T, 1, 1), _placed(TETROMINO_L, 4, 5)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("background", ("white", "correlated"))
def test_shapes_dtypes_range_and_balance(scenario, background):
    n = 102  # not a multiple of 4: classes still balanced exactly (n even)
    x, y, masks = make_tetrominoes(n, size=8, scenario=scenario, background=background, seed=1)
    assert x.shape == masks.shape == (n, 8, 8, 1) and y.shape == (n,)
    assert x.dtype == masks.dtype == np.float32 and y.dtype == np.int32
    assert np.abs(x).max() == pytest.approx(1.0)  # scaled to max |x| = 1, as XAI-TRIS
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert np.bincount(y).tolist() == [n // 2, n // 2]


def test_linear_signal_exactly_where_the_mask_says():
    x, y, masks = make_tetrominoes(40, size=8, scenario="linear", snr=1.0)
    x = x[..., 0]
    # alpha = 1: the image is the pattern alone, scaled to max 1: exactly T (class 0) or L (class 1).
    np.testing.assert_array_equal(x[y == 0], np.broadcast_to(T_8, x[y == 0].shape))
    np.testing.assert_array_equal(x[y == 1], np.broadcast_to(L_8, x[y == 1].shape))
    # The mask is the union of both positions, for every image.
    np.testing.assert_array_equal(masks[..., 0], np.broadcast_to(np.maximum(T_8, L_8), x.shape))


def test_linear_class_difference_lives_inside_the_mask():
    # With the background (alpha = 0.18), E[x | y=0] - E[x | y=1] is zero outside the mask.
    x, y, masks = make_tetrominoes(4000, size=8, scenario="linear", seed=3)
    x = x[..., 0].astype("float64")
    diff = x[y == 0].mean(0) - x[y == 1].mean(0)
    se = np.sqrt(x[y == 0].var(0) / (y == 0).sum() + x[y == 1].var(0) / (y == 1).sum())
    outside = masks[0, ..., 0] == 0
    assert np.all(np.abs(diff[outside]) < 4.5 * se[outside])   # 56 pixels, no signal
    np.testing.assert_array_less(4.5 * se[T_8 > 0], diff[T_8 > 0])  # T pixels brighter in class 0
    np.testing.assert_array_less(diff[L_8 > 0], -4.5 * se[L_8 > 0])


def test_fixed_scenarios_at_64_match_thresholded_smoothed_patterns():
    x, y, masks = make_tetrominoes(6, size=64, scenario="linear", snr=1.0)
    big = np.kron(np.maximum(T_8, L_8), np.ones((8, 8)))
    expected = gaussian_smooth(big[None], 1.5)[0] >= 0.05  # XAI-TRIS's combined_mask_binary
    np.testing.assert_array_equal(masks[0, ..., 0], expected)
    assert int(expected.sum()) == 862
    # alpha = 1: pure smoothed tetromino; the support above 0.05 lies inside the mask.
    assert np.all(masks[..., 0][x[..., 0] >= 0.05] == 1)


def test_multiplicative_dims_the_background_inside_the_pattern():
    x, y, _ = make_tetrominoes(20, size=8, scenario="multiplicative", snr=1.0)
    x = x[..., 0]
    pattern = np.where(y[:, None, None] == 0, T_8, L_8)
    assert np.all(x[pattern > 0] == 0)          # (1 - 1 * P) * B = 0 on the tetromino
    assert np.all(x[pattern == 0] != 0)         # the background elsewhere
    # alpha = 0.4: inside the pattern the background is scaled by exactly 0.6.
    x4 = make_tetrominoes(20, size=8, scenario="multiplicative", snr=0.4)[0][..., 0]
    x0 = make_tetrominoes(20, size=8, scenario="multiplicative", snr=0.0)[0][..., 0]
    ratio = (x4 / np.abs(x4).max()) / (x0 / np.abs(x0).max())  # same seed: same background
    # both are rescaled to max 1: compare the ratio inside vs outside the pattern
    inside, outside = ratio[pattern > 0], ratio[pattern == 0]
    np.testing.assert_allclose(inside / outside.mean(), 0.6, rtol=1e-5)
    np.testing.assert_allclose(outside, outside.mean(), rtol=1e-5)


def test_xor_class_is_the_sign_disagreement():
    n = 100
    x, y, masks = make_tetrominoes(n, size=8, scenario="xor", snr=1.0, seed=2)
    x = x[..., 0]
    s_t = np.sign(x[:, 1, 1])  # a T pixel
    s_l = np.sign(x[:, 4, 5])  # an L pixel
    np.testing.assert_array_equal(y, (s_t != s_l).astype("int32"))
    np.testing.assert_array_equal(np.abs(x), np.broadcast_to(np.maximum(T_8, L_8), x.shape))
    combos = np.bincount(((s_t < 0) * 2 + (s_l < 0)).astype(int), minlength=4)
    assert combos.tolist() == [25, 25, 25, 25]  # each sign combination a quarter


def test_translations_rotations_place_a_rotated_tetromino_of_the_class():
    x, y, masks = make_tetrominoes(60, size=8, scenario="translations_rotations", snr=1.0, seed=4)
    x, masks = x[..., 0], masks[..., 0]
    rotations = [[np.rot90(np.array(s), k) for k in range(4)] for s in (TETROMINO_T, TETROMINO_L)]
    positions = set()
    for img, mask, label in zip(x, masks, y):
        np.testing.assert_array_equal(mask, img != 0)  # the mask is this image's tetromino
        rows, cols = np.nonzero(img)
        crop = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert any(r.shape == crop.shape and np.array_equal(r, crop) for r in rotations[label])
        positions.add((rows.min(), cols.min()))
    assert len(positions) > 10  # translated


def test_correlated_background_has_the_gaussian_correlation_length():
    sigma = 2.0
    radius = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    # autocorrelation of smoothed white noise at lag d: sum_j k_j k_{j+d} / sum_j k_j^2
    # (about exp(-d^2 / (4 sigma^2)): 0.368 at d = 2 sigma)
    expected = np.array([np.sum(k[:len(k) - d] * k[d:]) / np.sum(k * k) for d in range(1, 7)])
    x = make_tetrominoes(100, size=64, background="correlated", snr=0.0, smoothing_sigma=sigma,
                         seed=0).x[..., 0].astype("float64")
    inner = x[:, radius:-radius, radius:-radius]  # away from the reflected borders
    est = np.array([np.mean(inner[:, :, :-d] * inner[:, :, d:]) / np.mean(inner ** 2)
                    for d in range(1, 7)])
    # over seeds 0-4 the largest deviation measured was 0.018 (at lag 6)
    np.testing.assert_allclose(est, expected, atol=0.03)
    white = make_tetrominoes(100, size=64, background="white", snr=0.0).x[..., 0].astype("float64")
    lag1 = np.mean(white[:, :, :-1] * white[:, :, 1:]) / np.mean(white ** 2)
    assert abs(lag1) < 0.01  # 4 standard errors (1 / sqrt(100 * 64 * 63) = 0.0025)


def test_gaussian_smooth_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    a = np.random.default_rng(0).normal(size=(2, 8, 8))
    for sigma in (0.7, 3.0, 10.0):  # kernels wider than the image: repeated reflection
        expected = np.stack([ndimage.gaussian_filter(i, sigma) for i in a])
        np.testing.assert_allclose(gaussian_smooth(a, sigma), expected, rtol=0, atol=1e-13)


def test_seeds_reproducible():
    for scenario in SCENARIOS:
        a = make_tetrominoes(30, size=8, scenario=scenario, background="correlated", seed=5)
        b = make_tetrominoes(30, size=8, scenario=scenario, background="correlated", seed=5)
        c = make_tetrominoes(30, size=8, scenario=scenario, background="correlated", seed=6)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
        assert not np.array_equal(a.x, c.x)


def test_default_snr_is_xai_tris_alpha():
    # snr=None takes the published alpha: the same data as passing it explicitly.
    a = make_tetrominoes(10, size=8, scenario="xor", background="correlated")
    b = make_tetrominoes(10, size=8, scenario="xor", background="correlated", snr=0.15)
    np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "`n` must be an int >= 1. Received: n=0"),
    (dict(n=2.5), "`n` must be an int"),
    (dict(size=12), "`size` must be a positive multiple of 8 .* Received: size=12"),
    (dict(size=0), "Received: size=0"),
    (dict(scenario="rigid"), r"`scenario` must be one of \['linear'.* Received: scenario='rigid'"),
    (dict(background="imagenet"), "`background` must be one of .* Received: background='imagenet'"),
    (dict(snr=1.5), r"`snr` must be a number in \[0, 1\].* Received: snr=1.5"),
    (dict(snr=-0.1), "Received: snr=-0.1"),
    (dict(snr="high"), "Received: snr='high'"),
    (dict(smoothing_sigma=2.0), "only applies to background='correlated'"),
    (dict(background="correlated", smoothing_sigma=0), "`smoothing_sigma` must be a finite number > 0"),
])
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_tetrominoes(**{"size": 8, **kwargs})
