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

Degenerate statistics, handled explicitly (no NumPy RuntimeWarning is ever emitted):

* all-zero inputs: ``cov = 0`` exactly, so ``d = 0`` and the pattern is exactly zero;
* a constant input feature k (``x_k = c`` on every row): ``cov_kj = c (E_M[y_j] - E[y_j])``. For
  ``"linear"`` (M = 1) that is zero up to rounding, so ``a_kj`` is zero up to the rounding of the
  float32 per-batch sums (relative to the unit's other pattern entries); for ``"relu"`` it is the
  gap between the masked and the unmasked output mean, and ``a_kj = c (E_M[y_j] - E[y_j]) / d_j``.
  When *every* input of a unit is constant its covariance is pure rounding and its pattern,
  finite, carries no information;
* very large statistics: ``cov`` is formed per unit from power-of-two rescaled terms (|cov| < 2
  after scaling; exact, so results are bit-identical in the ordinary range) and the pattern is
  invariant to that scale, so no product or sum overflows float64 for finite statistics (the
  unscaled estimator overflowed in ``w^T cov`` for wide layers near the float64 limit and
  silently returned a zero pattern);
* non-finite statistics (NaN/Inf data fed to the statistics directly, or finite data whose float32
  per-batch sums overflowed, i.e. |x y| near 3.4e38, data of the order of 1e19) raise
  :class:`~keras_patterns.errors.NonFiniteDataError` naming each statistic and its NaN/Inf count;
  so does a pattern beyond the float64 range (``w^T cov`` subnormal: not met in practice).

Not handled: data below about 1e-19 in magnitude makes ``x y`` underflow float32 (flushed to zero),
so its patterns are wrong without any error.
"""

import numpy as np

from keras_patterns.errors import NonFiniteDataError

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


def _listed(indices, limit=10):
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"


def check_finite_statistics(kernel_shape, name=None, **statistics):
    """Raises if any of the ``statistics`` of one layer holds NaN or Inf.

    Args:
        kernel_shape: the layer's kernel shape (named in the message).
        name: the layer key, if known (named in the message). Defaults to `None`.
        **statistics: the arrays to check, by statistic name (``sum_x=...``, ``sum_xy=...``).

    Raises:
        NonFiniteDataError: naming every statistic with NaN/Inf entries and how many it has.

    Example:

    ```python
    check_finite_statistics(w.shape, "dense", sum_x=sum_x, sum_xy=sum_xy)   # None if all finite
    ```
    """
    bad = []
    for stat, value in statistics.items():
        value = np.asarray(value, dtype="float64")
        if not np.isfinite(value).all():
            nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
            bad.append(f"{stat}: {nan} NaN and {inf} Inf of {value.size} entries")
    if not bad:
        return
    layer = "the layer" if name is None else f"layer {name!r}"
    raise NonFiniteDataError(
        f"The pattern statistics of {layer} (kernel shape {tuple(kernel_shape)}) are not finite, so "
        "its pattern cannot be estimated. Either NaN/Inf values reached the statistics, or the data "
        "is finite but the float32 per-batch sums overflowed (|x y| summed over a batch beyond "
        "3.4e38: inputs and outputs of the order of 1e19). Rescale the data (e.g. standardize it) "
        f"and fit again. Received: {'; '.join(bad)}"
    )


def _exponent(v):
    """The binary exponents e of ``v`` (``|v| < 2**e``; 0 where v == 0), elementwise."""
    return np.frexp(v)[1]


def _scaled_covariance(mean_x, mean_xy, mean_y):
    """``cov * 2**-e`` and e per unit, formed without overflow or underflow (|result| < 2).

    With ``ex`` the exponent of max|E_M[x]_j|, ``ey`` that of |E[y]_j| and ``e`` the larger of
    ``ex + ey`` and the exponent of max|E_M[xy]_j|, both terms are scaled by powers of two before
    they are multiplied or subtracted; power-of-two scaling is exact, so in the ordinary range
    this is bit-identical to ``(E_M[xy] - E_M[x] E[y]) * 2**-e``.
    """
    ex = _exponent(np.max(np.abs(mean_x), axis=0, initial=0.0))
    ey = _exponent(np.abs(mean_y))
    e = np.maximum(_exponent(np.max(np.abs(mean_xy), axis=0, initial=0.0)), ex + ey)
    outer = np.ldexp(mean_x, -ex) * np.ldexp(mean_y, -ey)[None, :]
    return np.ldexp(mean_xy, -e) - np.ldexp(outer, ex + ey - e), e


def pattern_from_statistics(kernel, count, sum_x, sum_xy, sum_y, n_rows, depthwise=False, name=None):
    """Computes the pattern A of one layer from its sums.

    Args:
        kernel: the layer's kernel W (any kernel shape).
        count: per-unit number of rows where the mask is 1, shape (C,).
        sum_x: masked input sums, kernel-shaped (or (D, C)).
        sum_xy: masked input-output cross moments, kernel-shaped (or (D, C)).
        sum_y: unmasked output sums, shape (C,).
        n_rows: total number of rows (scalar).
        depthwise: whether the kernel is a depthwise kernel (last two axes form the output unit).
        name: the layer key, named in error messages. Defaults to `None`.

    Returns:
        A float64 array shaped like ``kernel``, finite.

    Raises:
        NonFiniteDataError: if a statistic holds NaN/Inf (see the module docstring).
        ValueError: if the kernel holds NaN/Inf.

    Example:

    ```python
    a = pattern_from_statistics(w, count, sum_x, sum_xy, sum_y, n_rows)   # a.shape == w.shape
    ```
    """
    kernel = np.asarray(kernel, dtype="float64")
    if not np.isfinite(kernel).all():
        raise ValueError(
            f"The kernel{'' if name is None else f' of layer {name!r}'} must be finite to estimate "
            f"its pattern. Received: {int(np.size(kernel) - np.isfinite(kernel).sum())} NaN/Inf entries"
        )
    check_finite_statistics(
        kernel.shape, name, count=count, sum_x=sum_x, sum_xy=sum_xy, sum_y=sum_y, n_rows=n_rows
    )
    w = to_matrix(kernel, kernel.shape, depthwise)
    count = np.asarray(count, dtype="float64").reshape(-1)
    # Every step below is finite for finite statistics except in the contrived cases the final
    # check reports, so NumPy's floating-point warnings are off and that check is explicit.
    with np.errstate(all="ignore"):
        mean_x = to_matrix(sum_x, kernel.shape, depthwise) / _safe(count)
        mean_xy = to_matrix(sum_xy, kernel.shape, depthwise) / _safe(count)
        mean_y = np.asarray(sum_y, dtype="float64").reshape(-1) / _safe(np.float64(n_rows))
        cov, e = _scaled_covariance(mean_x, mean_xy, mean_y)
        d = np.sum(w * cov, axis=0)
        a = _divide_by_denominator(cov, d, e)
    if not np.isfinite(a).all():  # only for kernels near the float64 limits
        raise NonFiniteDataError(
            f"The pattern of {'the layer' if name is None else f'layer {name!r}'} (kernel shape "
            f"{kernel.shape}) exceeds the float64 range: w_j^T cov_j is too small for units "
            f"{_listed(np.flatnonzero(~np.isfinite(a).all(axis=0)))}. Received: kernel max-abs "
            f"{np.max(np.abs(kernel)):.3g}"
        )
    return a.reshape(kernel.shape)


def _divide_by_denominator(cov, d, e):
    """``a = cov / d`` per unit (scale-free), and the unscaled ``cov`` where ``d == 0`` exactly."""
    zero = d == 0
    a = cov / np.where(zero, 1.0, d)
    return np.where(zero[None, :], np.ldexp(cov, np.where(zero, e, 0)), a)
