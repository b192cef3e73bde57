"""Model-free baseline maps that every explanation method should beat on ground-truth benchmarks.

XAI-TRIS (Clark, Wilming and Haufe 2024) compares methods against a random map and two edge
filters of the input (Sobel, Laplace): a map that does no better than these does not use the
model. All functions take channels-last images (n, H, W, C) or (n, H, W), filter every channel of
every image on its own over the two spatial axes, and return float32 maps of the input's shape.
Borders follow scipy.ndimage's default mode ``"reflect"`` (``d c b a | a b c d``), as XAI-TRIS
(which calls ``scipy.ndimage.sobel`` and ``laplace``).
"""

import numpy as np


def _images(x):
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim not in (3, 4):
        raise ValueError("`x` must be a numeric array (n, H, W) or (n, H, W, channels). "
                         f"Received: x with shape {x.shape} and dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("`x` must be finite. Received: x with NaN or Inf values")
    return x.astype("float64")


def _shift(padded, dr, dc, h, w):
    """The padded image shifted by (dr, dc) in [-1, 1]: value at (r + dr, c + dc)."""
    return padded[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]


def _pad(x):
    pad = [(0, 0), (1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 3)
    return np.pad(x, pad, mode="symmetric")


def random_map(x, seed=0):
    """Uniform noise in [-1, 1) shaped like ``x`` (XAI-TRIS's random baseline).

    Args:
        x: images (n, H, W) or (n, H, W, channels); only the shape is used.
        seed: RNG seed. Defaults to `0`.

    Returns:
        float32 array shaped like ``x``.
    """
    x = np.asarray(x)
    return np.random.default_rng(seed).uniform(-1.0, 1.0, x.shape).astype("float32")


def sobel(x, axis=None):
    """Sobel edge filter of each image and channel.

    The Sobel derivative along an image axis correlates with ``[-1, 0, 1]`` along it and smooths
    with ``[1, 2, 1]`` across it (``scipy.ndimage.sobel``). ``axis=None`` returns the edge
    magnitude ``sqrt(d_rows^2 + d_cols^2)``; ``axis=0`` or ``1`` the signed derivative along rows
    (vertical changes) or columns (horizontal changes). XAI-TRIS's "Sobel" baseline is
    ``scipy.ndimage.sobel`` with its default last axis on 2-D images: ``axis=1`` here.

    Args:
        x: images (n, H, W) or (n, H, W, channels).
        axis: `None`, ``0`` or ``1``. Defaults to `None`.

    Returns:
        float32 array shaped like ``x``.

    Raises:
        ValueError: ``x`` not numeric of rank 3 or 4, non-finite, or an unknown ``axis``.

    Example:

    ```python
    edges = kp.evaluation.baselines.sobel(x)   # x: (n, 8, 8, 1)
    ```
    """
    if axis not in (None, 0, 1):
        raise ValueError(f"`axis` must be None, 0 or 1. Received: axis={axis!r}")
    x = _images(x)
    h, w = x.shape[1:3]
    p = _pad(x)

    def s(dr, dc):
        return _shift(p, dr, dc, h, w)

    d_rows = (s(1, -1) + 2 * s(1, 0) + s(1, 1)) - (s(-1, -1) + 2 * s(-1, 0) + s(-1, 1))
    d_cols = (s(-1, 1) + 2 * s(0, 1) + s(1, 1)) - (s(-1, -1) + 2 * s(0, -1) + s(1, -1))
    out = {0: d_rows, 1: d_cols}.get(axis)
    if out is None:
        out = np.hypot(d_rows, d_cols)
    return out.astype("float32")


def laplace(x):
    """Discrete Laplace filter of each image and channel (``scipy.ndimage.laplace``).

    The sum of the second differences ``[1, -2, 1]`` along rows and columns: the 5-point stencil
    ``x[r-1, c] + x[r+1, c] + x[r, c-1] + x[r, c+1] - 4 x[r, c]``. Signed, as XAI-TRIS uses it.

    Args:
        x: images (n, H, W) or (n, H, W, channels).

    Returns:
        float32 array shaped like ``x``.

    Raises:
        ValueError: ``x`` not numeric of rank 3 or 4, or non-finite.
    """
    x = _images(x)
    h, w = x.shape[1:3]
    p = _pad(x)
    out = (_shift(p, -1, 0, h, w) + _shift(p, 1, 0, h, w) + _shift(p, 0, -1, h, w)
           + _shift(p, 0, 1, h, w) - 4 * x)
    return out.astype("float32")
