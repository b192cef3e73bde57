"""Per-sample similarity of two batches of maps: Spearman rank correlation and SSIM, in NumPy.

Used by :func:`keras_patterns.evaluation.randomization_check`. All results are float64, one value
per sample.
"""

import numpy as np

#: SSIM constants (Wang, Bovik, Sheikh & Simoncelli 2004): C1 = (K1 L)^2, C2 = (K2 L)^2 with the
#: data range L = 1 (maps are min-max scaled to [0, 1] first).
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: side of the square, uniformly weighted SSIM window (scikit-image's default); smaller images use
#: their smaller side (rounded down to an odd number).
SSIM_WINDOW = 7


def rankdata(a):
    """Ranks (1..D) along the last axis of a 2-D array, ties getting their average rank."""
    n, d = a.shape
    order = np.argsort(a, axis=1, kind="stable")
    sorted_a = np.take_along_axis(a, order, axis=1)
    ranks = np.empty((n, d))
    for i in range(n):
        # start index of each run of equal values, and the average rank of the run
        starts = np.flatnonzero(np.r_[True, sorted_a[i, 1:] != sorted_a[i, :-1]])
        ends = np.r_[starts[1:], d]
        avg = (starts + ends + 1) / 2.0  # mean of the ranks starts+1 .. ends
        ranks[i, order[i]] = np.repeat(avg, ends - starts)
    return ranks


def _constant_rule(a, b):
    """1.0 where two constant maps are equal, 0.0 where they differ or only one is constant."""
    return np.all(a == b, axis=1).astype("float64")


def spearman(a, b):
    """Spearman rank correlation of each pair of flattened maps, ``(n,)``.

    A correlation with a constant map is undefined; it is reported as 1.0 when both maps are equal
    and 0.0 otherwise (never NaN).
    """
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    ok = den > 0
    out = _constant_rule(a, b)
    out[ok] = (ra * rb).sum(axis=1)[ok] / den[ok]
    return out


def _minmax(m):
    lo = m.min(axis=(1, 2), keepdims=True)
    span = m.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0)


def _window_means(m, k):
    """Means over every k x k window of ``(n, H, W)`` (valid positions only), via summed-area tables."""
    s = np.pad(m, ((0, 0), (1, 0), (1, 0))).cumsum(axis=1).cumsum(axis=2)
    return (s[:, k:, k:] - s[:, :-k, k:] - s[:, k:, :-k] + s[:, :-k, :-k]) / (k * k)


def ssim(a, b):
    """Mean structural similarity of each pair of 2-D maps ``(n, H, W)``, ``(n,)``.

    Each map is first min-max scaled to [0, 1] (a constant map becomes 0). Local statistics use a
    uniform ``SSIM_WINDOW`` x ``SSIM_WINDOW`` window at every position where it fits (no padding),
    population (1/N) variances, and C1 = (0.01)^2, C2 = (0.03)^2; the result is the mean of the
    local SSIM over the windows.
    """
    a, b = _minmax(a.astype("float64")), _minmax(b.astype("float64"))
    k = min(SSIM_WINDOW, a.shape[1], a.shape[2])
    k -= (k + 1) % 2  # odd
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mu_a, mu_b = _window_means(a, k), _window_means(b, k)
    var_a = _window_means(a * a, k) - mu_a ** 2
    var_b = _window_means(b * b, k) - mu_b ** 2
    cov = _window_means(a * b, k) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean(axis=(1, 2))
