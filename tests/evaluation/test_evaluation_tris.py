"""XAI-TRIS metrics (EMD, precision) and the model-free baselines, against hand-computed values."""

import importlib.util

import numpy as np
import pytest

import keras_patterns as kp
from keras_patterns.evaluation import baselines, emd_score, earth_movers_distance, precision
from keras_patterns.evaluation.tris import transport_cost

SOLVERS = ["numpy"] + [s for s, mod in (("scipy", "scipy"), ("pot", "ot"))
                       if importlib.util.find_spec(mod) is not None]


def _onehot(size, *pixels, weights=None):
    img = np.zeros((size, size))
    for k, (r, c) in enumerate(pixels):
        img[r, c] = 1.0 if weights is None else weights[k]
    return img


@pytest.mark.parametrize("solver", SOLVERS)
def test_emd_hand_computed(solver):
    mask = _onehot(8, (2, 2))
    maps = np.stack([
        mask,                                          # equal to the mask: 0
        _onehot(8, (2, 5)),                            # moved by 3 along a row: 3
        _onehot(8, (5, 6)),                            # moved by (3, 4): 5
        -7.0 * _onehot(8, (2, 3)),                     # |map|, any scale: 1
        _onehot(8, (2, 3), (4, 2), weights=(1, 1)),    # half at distance 1, half at 2: 1.5
    ])
    masks = np.broadcast_to(mask, maps.shape)
    np.testing.assert_allclose(earth_movers_distance(maps, masks, solver=solver),
                               [0, 3, 5, 1, 1.5], rtol=0, atol=1e-9)
    # two mask pixels, all map mass on one of them: half the mass travels |A - B| = 5
    two = _onehot(8, (0, 0), (3, 4))
    assert earth_movers_distance(_onehot(8, (0, 0))[None], two[None], solver=solver)[0] == \
        pytest.approx(2.5, abs=1e-9)


def test_emd_parts_channels_and_score():
    mask = _onehot(8, (2, 2))[None]
    signed = (_onehot(8, (2, 2)) - _onehot(8, (7, 7)))[None]
    # "positive" ignores the negative pixel: 0; "abs" moves half the mass sqrt(50)
    assert earth_movers_distance(signed, mask, part="positive", solver="numpy")[0] == pytest.approx(0)
    assert earth_movers_distance(signed, mask, solver="numpy")[0] == pytest.approx(np.sqrt(50) / 2)
    # channels: |.| summed over channels, then normalised
    two_channels = np.stack([_onehot(8, (2, 2)), -_onehot(8, (2, 5))], axis=-1)[None]
    assert earth_movers_distance(two_channels, mask[..., None], solver="numpy")[0] == \
        pytest.approx(1.5)
    # XAI-TRIS's score: 1 - EMD / sqrt(H^2 + W^2)
    np.testing.assert_allclose(
        emd_score(np.stack([mask[0], _onehot(8, (2, 5))]), np.repeat(mask, 2, 0), solver="numpy"),
        [1.0, 1.0 - 3.0 / np.sqrt(128.0)])


def test_transport_simplex_small_problems():
    # two sources, two sinks: the cheaper of the two matchings (1 + 5 vs 3 + 2)
    assert transport_cost([1.0, 1.0], [1.0, 1.0], [[1.0, 3.0], [2.0, 5.0]]) == pytest.approx(5.0)
    # degenerate start (both exhausted at once) and an unbalanced split
    assert transport_cost([0.5, 0.5], [0.5, 0.25, 0.25], [[0, 1, 2], [2, 1, 0]]) == \
        pytest.approx(0.25)


def test_numpy_solver_matches_scipy_linprog():
    pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(6, 8, 8, 1))
    masks = np.zeros((6, 8, 8, 1))
    masks[:, 1:4, 1:3] = 1
    masks[:, 4:7, 5:7] = rng.uniform(0, 1, (6, 3, 2, 1))  # non-binary masks too
    a = earth_movers_distance(maps, masks, solver="numpy")
    b = earth_movers_distance(maps, masks, solver="scipy")
    np.testing.assert_allclose(a, b, rtol=1e-9)  # both exact: equal up to rounding


def test_emd_reduction_equals_the_full_problem():
    # The metric-cost reduction (transport only p - q) gives the full problem's value.
    rng = np.random.default_rng(1)
    p, q = rng.uniform(size=16), rng.uniform(size=16) * (rng.uniform(size=16) > 0.5)
    p, q = p / p.sum(), q / q.sum()
    rc = np.stack(np.divmod(np.arange(16), 4), 1).astype(float)
    cost = np.sqrt(((rc[:, None] - rc[None]) ** 2).sum(-1))
    keep = q > 0
    full = transport_cost(p, q[keep], cost[:, keep])
    reduced = earth_movers_distance(p.reshape(1, 4, 4), q.reshape(1, 4, 4), solver="numpy")[0]
    assert reduced == pytest.approx(full, rel=1e-12)


def test_precision_hand_computed():
    mask = np.zeros((5, 5))
    mask[1, 1:4] = mask[2, 2] = 1  # a T of 4 pixels
    m = np.zeros((5, 5))
    m[1, 1], m[1, 2], m[2, 2], m[4, 4] = 5, -4, 3, 2  # top 4 by |.|: 3 in the mask
    m2 = np.zeros((5, 5))
    m2[1, 1], m2[0, 0] = 1, 1                         # 2 nonzero pixels: still divided by 4
    ties = np.ones((5, 5))                            # ties by row-major order: (0, *) first
    maps, masks = np.stack([mask, m, m2, ties]), np.stack([mask] * 4)
    np.testing.assert_allclose(precision(maps, masks), [1.0, 0.75, 0.25, 0.0])
    np.testing.assert_allclose(precision(maps, masks, k=2), [1.0, 1.0, 0.5, 0.0])
    # positive part: -4 drops out, (4, 4) enters
    np.testing.assert_allclose(precision(m[None], mask[None], part="positive"), [0.5])


def test_precision_of_the_random_baseline_is_the_mask_fraction():
    x, y, masks = kp.datasets.make_tetrominoes(2000, size=8, scenario="xor")
    assert np.all(precision(masks, masks) == 1)
    p = precision(baselines.random_map(x, seed=1), masks)
    # hits among 8 picks of 64 pixels with 8 in the mask: hypergeometric, mean 1/8 and
    # variance 8 (1/8)(7/8)(56/63) / 64 per map
    se = np.sqrt(8 * (1 / 8) * (7 / 8) * (56 / 63) / 64 / 2000)
    assert abs(p.mean() - 1 / 8) < 4 * se


@pytest.mark.parametrize("call, match", [
    (lambda: earth_movers_distance(np.ones((2, 4, 4)), np.ones((2, 4, 5))), "must match `maps`"),
    (lambda: earth_movers_distance(np.ones((2, 4, 4, 3)), np.ones((2, 4, 4, 2))), "must match"),
    (lambda: earth_movers_distance(np.ones((4, 4)), np.ones((4, 4))), r"Received: maps.shape=\(4, 4\)"),
    (lambda: earth_movers_distance(np.ones((1, 4, 4)), np.ones((1, 4, 4)), part="sq"),
     "`part` must be one of"),
    (lambda: earth_movers_distance(np.ones((1, 4, 4)), np.ones((1, 4, 4)), solver="ot"),
     "`solver` must be one of"),
    (lambda: earth_movers_distance(np.zeros((2, 4, 4)), np.ones((2, 4, 4))),
     "`maps` must have nonzero values in every sample. Received: none at sample 0"),
    (lambda: earth_movers_distance(-np.ones((1, 4, 4)), np.ones((1, 4, 4)), part="positive"),
     "positive values"),
    (lambda: earth_movers_distance(np.ones((1, 4, 4)), -np.ones((1, 4, 4))), "must be finite and >= 0"),
    (lambda: earth_movers_distance(np.full((1, 4, 4), np.nan), np.ones((1, 4, 4))), "`maps` must be finite"),
    (lambda: precision(np.ones((1, 4, 4)), np.zeros((1, 4, 4))), "`masks` must have positive values"),
    (lambda: precision(np.ones((1, 4, 4)), np.ones((1, 4, 4)), k=17), r"`k` must be None or an int in \[1, 16\]"),
    (lambda: precision(np.ones((1, 4, 4)), np.ones((1, 4, 4)), k=0), "Received: k=0"),
])
def test_metric_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------------- baselines
IMPULSE = _onehot(5, (2, 2))
RAMP = np.tile(np.arange(5.0), (5, 1))  # x[r, c] = c


def test_sobel_and_laplace_of_an_impulse():
    d_rows = np.array([[0, 0, 0, 0, 0], [0, 1, 2, 1, 0], [0, 0, 0, 0, 0],
                       [0, -1, -2, -1, 0], [0, 0, 0, 0, 0]], float)
    s2 = np.sqrt(2)
    magnitude = np.array([[0, 0, 0, 0, 0], [0, s2, 2, s2, 0], [0, 2, 0, 2, 0],
                          [0, s2, 2, s2, 0], [0, 0, 0, 0, 0]])
    lap = np.array([[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, -4, 1, 0],
                    [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], float)
    x = IMPULSE[None, ..., None]
    np.testing.assert_allclose(baselines.sobel(x, axis=0)[0, ..., 0], d_rows, atol=1e-6)
    np.testing.assert_allclose(baselines.sobel(x, axis=1)[0, ..., 0], d_rows.T, atol=1e-6)
    np.testing.assert_allclose(baselines.sobel(x)[0, ..., 0], magnitude, atol=1e-6)
    np.testing.assert_allclose(baselines.laplace(x)[0, ..., 0], lap, atol=1e-6)


def test_filters_at_the_reflected_border():
    # ramp x = c: Sobel along columns (1+2+1) * 2 = 8 inside, 4 * 1 at both borders (reflect:
    # x[-1] = x[0], x[5] = x[4]); Laplace 0 inside, +1 and -1 at the borders.
    x = RAMP[None]
    np.testing.assert_allclose(baselines.sobel(x, axis=1)[0], np.tile([4, 8, 8, 8, 4.0], (5, 1)))
    np.testing.assert_allclose(baselines.sobel(x, axis=0)[0], 0)
    np.testing.assert_allclose(baselines.laplace(x)[0], np.tile([1, 0, 0, 0, -1.0], (5, 1)))


def test_baselines_filter_each_channel_and_keep_the_shape():
    x = np.stack([IMPULSE, 2 * RAMP], axis=-1)[None].repeat(3, axis=0)  # (3, 5, 5, 2)
    for f in (baselines.sobel, baselines.laplace):
        out = f(x)
        assert out.shape == x.shape and out.dtype == np.float32
        np.testing.assert_allclose(out[..., 0], f(x[..., 0]))        # channel by channel
        np.testing.assert_allclose(out[..., 1], np.broadcast_to(2 * f(RAMP[None]), (3, 5, 5)))


def test_baselines_match_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 3))
    per = lambda f: np.stack([[f(x[i, ..., c]) for c in range(3)] for i in range(2)]).transpose(0, 2, 3, 1)  # noqa: E731
    r0, r1 = per(lambda a: ndimage.sobel(a, axis=0)), per(lambda a: ndimage.sobel(a, axis=1))
    tol = dict(rtol=0, atol=2e-6)  # float32 output of float64 sums of |x| < 5
    np.testing.assert_allclose(baselines.sobel(x, axis=0), r0, **tol)
    np.testing.assert_allclose(baselines.sobel(x, axis=1), r1, **tol)
    np.testing.assert_allclose(baselines.sobel(x), np.hypot(r0, r1), **tol)
    np.testing.assert_allclose(baselines.laplace(x), per(ndimage.laplace), **tol)


def test_random_map_seeded():
    x = np.zeros((4, 5, 5, 2))
    a, b, c = baselines.random_map(x, 3), baselines.random_map(x, 3), baselines.random_map(x, 4)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= -1 and a.max() < 1


def test_baseline_errors():
    with pytest.raises(ValueError, match=r"`x` must be a numeric array \(n, H, W\).*shape \(5, 5\)"):
        baselines.sobel(RAMP)
    with pytest.raises(ValueError, match="`axis` must be None, 0 or 1. Received: axis=2"):
        baselines.sobel(RAMP[None], axis=2)
    with pytest.raises(ValueError, match="`x` must be finite"):
        baselines.laplace(np.full((1, 5, 5), np.nan))
