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


def channel_summed(arg, maps, spatial_shape, ref_arg="x", channels="channels"):
    """``maps`` of shape ``spatial_shape`` (``(n, H, W)``), or with one extra trailing (channel)
    axis, summed out. ``channels``: the required size of that axis (an int), any size
    (``"channels"``), or None (no channel axis allowed)."""
    spatial_shape = tuple(spatial_shape)
    if maps.shape == spatial_shape:
        return maps
    if (channels is not None and maps.ndim == len(spatial_shape) + 1 and maps.shape[:-1] == spatial_shape
            and (channels == "channels" or maps.shape[-1] == channels)):
        return maps.sum(axis=-1)
    if channels is None:
        raise ValueError(f"`{arg}` must have shape {spatial_shape} to match `{ref_arg}`. Received: {arg} of shape {maps.shape}")
    raise ValueError(
        f"`{arg}` must have shape {spatial_shape} or {spatial_shape + (channels,)} "
        f"(channels last, summed over channels) to match `{ref_arg}`. Received: {arg} of shape {maps.shape}"
    )
