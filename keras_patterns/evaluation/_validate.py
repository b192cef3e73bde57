"""Argument checks shared by the evaluation functions (Keras-style messages naming what was received)."""

import numpy as np


def check_choice(arg, value, choices):
    """Returns ``value`` if it is one of ``choices``; a ValueError naming both otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{arg}` must be one of {list(choices)}. Received: {arg}={value!r}")
    return value


def check_positive_int(arg, value, allow_zero=False):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < (0 if allow_zero else 1):
        kind = "a non-negative int" if allow_zero else "a positive int"
        raise ValueError(f"`{arg}` must be {kind}. Received: {arg}={value!r}")
    return int(value)


def as_float_array(arg, value):
    """``value`` as a float64 NumPy array; a clear error for non-numeric or non-finite input."""
    arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{arg}` must be a numeric array. Received: dtype {arr.dtype}")
    arr = arr.astype("float64")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(b) for b in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"`{arg}` must be finite. Received: NaN or Inf at index {bad}")
    return arr


def channel_summed(arg, maps, spatial_shape, ref_arg="x"):
    """``maps`` of shape ``(n,) + spatial_shape`` or with one extra trailing (channel) axis summed
    out. ``spatial_shape`` is ``(n, H, W)``."""
    if maps.shape == tuple(spatial_shape):
        return maps
    if maps.ndim == len(spatial_shape) + 1 and maps.shape[:-1] == tuple(spatial_shape):
        return maps.sum(axis=-1)
    raise ValueError(
        f"`{arg}` must have shape {tuple(spatial_shape)} or {tuple(spatial_shape) + ('channels',)} "
        f"(channels last, summed over channels) to match `{ref_arg}`. Received: {arg} of shape {maps.shape}"
    )
