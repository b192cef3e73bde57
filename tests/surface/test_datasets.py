"""``make_shapes``: the generative model x = signal + distractor + noise, checked piece by piece.

The signal is a shape drawn exactly (pixel counts by hand); the distractor (background) is a random
linear ramp ``a * rows + b * cols`` plus a random blob ``A * exp(-|p - c|^2 / 0.2)``, with ``a, b, A``
~ N(0, distractor^2) and the blob centre ``c`` uniform in [-1, 1]^2, independent of the class; the
noise is white, N(0, noise^2). Statistical checks use bounds of 5 standard errors estimated from the
data itself. ``make_digits`` is checked in ``test_examples.py``.
"""

import math

import numpy as np
import pytest

from keras_patterns.datasets import CLASS_NAMES, make_shapes


@pytest.fixture(scope="module")
def background():
    """4000 images without noise: ``(x - signal)`` in float64 is the distractor alone (up to float32
    rounding of x), and the labels."""
    x, y, s = make_shapes(4000, seed=3, noise=0.0)
    return (x.astype("float64") - s)[..., 0], y


def test_shapes_dtypes_and_seeds():
    x, y, s = make_shapes(50, size=16, seed=7)
    assert x.shape == s.shape == (50, 16, 16, 1) and y.shape == (50,)
    assert (x.dtype, y.dtype, s.dtype) == (np.float32, np.int32, np.float32)
    again = make_shapes(50, size=16, seed=7)
    for a, b in zip((x, y, s), again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(make_shapes(50, size=16, seed=8)[0], x)
    assert [a.shape for a in make_shapes(0)] == [(0, 24, 24, 1), (0,), (0, 24, 24, 1)]
    assert CLASS_NAMES == ("horizontal bar", "vertical bar", "square")


def test_class_balance():
    _, y, _ = make_shapes(3000, seed=0)
    counts = np.bincount(y, minlength=3)
    assert counts.sum() == 3000 and set(np.unique(y)) == {0, 1, 2}
    sd = math.sqrt(3000 * (1 / 3) * (2 / 3))  # binomial standard deviation of each count: 25.8
    assert np.abs(counts - 1000).max() < 5 * sd, counts


@pytest.mark.parametrize("size", [12, 24, 31])
def test_signal_is_the_labelled_shape(size):
    _, y, s = make_shapes(300, size=size, seed=1)
    s = s[..., 0]
    length = size // 3
    assert set(np.unique(s)) == {0.0, 1.0}
    pixels = s.sum((1, 2))
    # bar: `length` pixels; square outline of side `length`: 4 * (length - 1) pixels
    np.testing.assert_array_equal(pixels, np.where(y == 2, 4 * (length - 1), length))
    rows_used, cols_used = (s.sum(2) > 0).sum(1), (s.sum(1) > 0).sum(1)
    np.testing.assert_array_equal(rows_used[y == 0], 1)  # horizontal bar: one row
    np.testing.assert_array_equal(cols_used[y == 0], length)
    np.testing.assert_array_equal(cols_used[y == 1], 1)  # vertical bar: one column
    np.testing.assert_array_equal(rows_used[y == 1], length)
    np.testing.assert_array_equal(rows_used[y == 2], length)  # square: length x length box
    np.testing.assert_array_equal(cols_used[y == 2], length)
    # the shape's corner is drawn in [1, size - length - 2]: the first row/column and the last two
    # rows/columns are never inked
    for edge in (s[:, 0], s[:, :, 0], s[:, -2:], s[:, :, -2:]):
        assert not edge.any()


def test_without_distractor_and_noise_the_image_is_the_signal():
    x, _, s = make_shapes(200, seed=4, distractor=0.0, noise=0.0)
    np.testing.assert_array_equal(x, s)


def test_noise_is_white_with_the_given_standard_deviation():
    x, _, s = make_shapes(2000, seed=2, distractor=0.0, noise=0.3)
    r = (x.astype("float64") - s).ravel()  # N = 1.15e6 noise values
    n = r.size
    assert abs(r.mean()) < 5 * 0.3 / math.sqrt(n)  # standard error of the mean: 2.8e-4
    assert abs(r.std() - 0.3) < 5 * 0.3 / math.sqrt(2 * n)  # of the standard deviation: 2.0e-4
    # white: neighbouring pixels uncorrelated
    img = (x.astype("float64") - s)[..., 0]
    corr = np.corrcoef(img[:, :, :-1].ravel(), img[:, :, 1:].ravel())[0, 1]
    assert abs(corr) < 5 / math.sqrt(img[:, :, 1:].size)


def test_distractor_scales_linearly():
    """Same seed: the background for ``distractor=2`` is exactly twice the one for ``distractor=1``
    (the draws are ``0 + scale * z``); x is float32, so each x holds the sum rounded once:
    |error| <= 2^-24 |x| per image."""
    x1, y1, s1 = make_shapes(300, seed=5, distractor=1.0, noise=0.0)
    x2, y2, s2 = make_shapes(300, seed=5, distractor=2.0, noise=0.0)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(s1, s2)
    b1, b2 = x1.astype("float64") - s1, x2.astype("float64") - s2  # exact in float64
    bound = 2.0**-24 * (np.abs(x2) + 2 * np.abs(x1)).astype("float64")
    assert np.all(np.abs(b2 - 2 * b1) <= bound)


def test_distractor_is_independent_of_the_class(background):
    """The class-conditional mean of the background is 0 at every pixel (5 standard errors)."""
    bg, y = background
    for k in range(3):
        part = bg[y == k]
        z = part.mean(0) / (part.std(0) / math.sqrt(len(part)))
        assert np.abs(z).max() < 5, (k, np.abs(z).max())


def test_distractor_variance_matches_the_generative_model(background):
    """Per pixel, Var[bg] = d^2 (r^2 + c^2) + d^2 E_c[blob^2] (a, b, A independent and zero-mean), with
    E_c[blob^2] = I(r) I(c) / 4 and I(t) = int_{-1}^{1} exp(-10 (t - u)^2) du (c uniform in [-1, 1]^2)."""
    bg, _ = background
    size = bg.shape[1]
    t = np.linspace(-1, 1, size)
    integral = np.array([math.sqrt(math.pi / 10) / 2 * (math.erf(math.sqrt(10) * (1 - v)) +
                                                        math.erf(math.sqrt(10) * (1 + v))) for v in t])
    rows, cols = np.meshgrid(t, t, indexing="ij")
    expected = rows**2 + cols**2 + np.outer(integral, integral) / 4  # distractor = 1
    squares = bg**2  # the mean is 0 (previous test); E[bg^2] is the variance
    se = squares.std(0) / math.sqrt(len(bg))
    z = (squares.mean(0) - expected) / se
    assert np.abs(z).max() < 5, np.abs(z).max()
    # the ramp dominates at the corners, the blob at the centre
    assert expected[0, 0] > 2 and expected[size // 2, size // 2] < 0.4


def test_parameter_errors():
    with pytest.raises(ValueError, match=r"`size` must be an int >= 12. Received: size=11"):
        make_shapes(4, size=11)
    with pytest.raises(ValueError, match=r"`n` must be an int >= 0. Received: n=-1"):
        make_shapes(-1)


@pytest.mark.parametrize("kwargs", [
    {"distractor": float("nan")}, {"distractor": float("inf")}, {"distractor": -1.0},
    {"noise": float("nan")}, {"noise": -0.1}, {"n": 2.5}, {"size": 24.5},
])
def test_invalid_parameters_are_refused_keras_style(kwargs):
    (key, value), = kwargs.items()
    with pytest.raises(ValueError, match=rf"`{key}` must be .* Received: {key}="):
        make_shapes(**{"n": 4, **kwargs})
