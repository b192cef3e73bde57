"""The pattern estimators of PatternNet (Kindermans et al. 2018, arXiv 1705.05598, eqs. 4 and 8).

Everything here is plain NumPy in float64, applied once to the accumulated statistics.

For a kernel layer with kernel W (reshaped to D x C, column j = output unit j), rows x, bias-free
outputs y = W^T x and a 0/1 mask M (per output unit):

    E_M[x y] = sum_rows(x y M) / sum_rows(M)        (masked cross moment, D x C)
    E_M[x]   = sum_rows(x M) / sum_rows(M)          (masked input mean, D x C)
    E[y]     = sum_rows(y) / n_rows                 (UNMASKED output mean, C)
    cov      = E_M[x y] - E_M[x] * E[y]
    d_j      = w_j^T cov_j
    a_j      = cov_j / d_j                          (divided by 1 where d_j == 0 exactly)

A unit whose mask is never on gets ``cov = 0`` and therefore a zero pattern; no NaN is produced.
E[y] over all rows matches the paper's eq. 8 as implemented by nn-patterns and iNNvestigate.
"""

import numpy as np

#: Accepted pattern types; "relu.positive" is an alias of "relu".
PATTERN_TYPES = ("linear", "relu", "relu.positive", "relu.negative")


def canonical_pattern_type(pattern_type):
    """Validates a pattern type and resolves aliases ("relu.positive" -> "relu").

    Raises:
        ValueError: for anything but one of :data:`PATTERN_TYPES`.
    """
    if not isinstance(pattern_type, str) or pattern_type not in PATTERN_TYPES:
        raise ValueError(
            f"`pattern_type` must be one of {list(PATTERN_TYPES)}. Received: pattern_type={pattern_type!r}"
        )
    return "relu" if pattern_type == "relu.positive" else pattern_type


def _safe(v):
    return np.where(v == 0, 1.0, v)


def to_matrix(array, kernel_shape, depthwise):
    """Reshapes a kernel-shaped array to (D, C) (C-order; see ``linear.kernel_matrix_shape``)."""
    kernel_shape = tuple(kernel_shape)
    if depthwise:
        d, c = int(np.prod(kernel_shape[:-2])), int(kernel_shape[-2] * kernel_shape[-1])
    else:
        d, c = int(np.prod(kernel_shape[:-1])), int(kernel_shape[-1])
    return np.asarray(array, dtype="float64").reshape(d, c)


def pattern_from_statistics(kernel, count, sum_x, sum_xy, sum_y, n_rows, depthwise=False):
    """Computes the pattern A of one layer from its sums.

    Args:
        kernel: the layer's kernel W (any kernel shape).
        count: per-unit number of rows where the mask is 1, shape (C,).
        sum_x: masked input sums, kernel-shaped (or (D, C)).
        sum_xy: masked input-output cross moments, kernel-shaped (or (D, C)).
        sum_y: unmasked output sums, shape (C,).
        n_rows: total number of rows (scalar).
        depthwise: whether the kernel is a depthwise kernel (last two axes form the output unit).

    Returns:
        A float64 array shaped like ``kernel``.
    """
    kernel = np.asarray(kernel, dtype="float64")
    w = to_matrix(kernel, kernel.shape, depthwise)
    count = np.asarray(count, dtype="float64").reshape(-1)
    mean_x = to_matrix(sum_x, kernel.shape, depthwise) / _safe(count)
    mean_xy = to_matrix(sum_xy, kernel.shape, depthwise) / _safe(count)
    mean_y = np.asarray(sum_y, dtype="float64").reshape(-1) / _safe(np.float64(n_rows))
    cov = mean_xy - mean_x * mean_y[None, :]
    d = np.sum(w * cov, axis=0)
    a = cov / (d + (d == 0))
    return a.reshape(kernel.shape)
