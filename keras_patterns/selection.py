"""Neuron selection: which output the explanation starts from.

Modes follow iNNvestigate: ``"max_activation"`` (the largest output of each sample; ties share the
start value equally, as TensorFlow's reduce_max gradient does), ``"index"`` (an int for all samples
or one index per sample) and ``"all"`` (every output at once).
"""

import numpy as np
import tensorflow as tf

MODES = ("max_activation", "index", "all")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"`neuron_selection_mode` must be one of {list(MODES)}. Received: {mode!r}")
    return mode


def selection_mask(y, mode, indices=None):
    """A float mask shaped like the flattened output (batch, C) marking the selected neurons.

    Args:
        y: model output, shape (batch, ...).
        mode: one of :data:`MODES`.
        indices: int tensor (batch,) for "index" mode.

    Returns:
        The mask, with the same shape as ``y``.
    """
    flat = tf.reshape(y, [tf.shape(y)[0], -1])
    if mode == "all":
        mask = tf.ones_like(flat)
    elif mode == "max_activation":
        hit = tf.cast(tf.equal(flat, tf.reduce_max(flat, axis=1, keepdims=True)), flat.dtype)
        mask = hit / tf.reduce_sum(hit, axis=1, keepdims=True)
    else:
        mask = tf.one_hot(indices, tf.shape(flat)[1], dtype=flat.dtype)
    return tf.reshape(mask, tf.shape(y))


def seed(y, mode, indices=None, head="value"):
    """The backward pass's start signal: the mask (``head="ones"``) or mask * y (``"value"``)."""
    mask = selection_mask(y, mode, indices)
    return mask if head == "ones" else mask * y


def normalize_indices(neuron_selection, mode, batch, n_outputs):
    """Validates ``neuron_selection`` and returns an int32 array of shape (batch,).

    ``neuron_selection`` may be an int, a list or array of ``batch`` ints, or an array of shape
    ``(batch, 1)``.

    Raises:
        ValueError: index given outside "index" mode, missing in "index" mode, out of range, or of
            the wrong length.
    """
    if mode != "index":
        if neuron_selection is not None:
            raise ValueError(
                "`neuron_selection` is only used with neuron_selection_mode='index'. Received: "
                f"neuron_selection={neuron_selection!r} with neuron_selection_mode={mode!r}"
            )
        return np.zeros((batch,), dtype="int32")
    if neuron_selection is None:
        raise ValueError(
            "neuron_selection_mode='index' needs `neuron_selection` in analyze(): an int for all "
            f"samples or one int per sample ({batch} here). Received: neuron_selection=None"
        )
    idx = np.asarray(neuron_selection)
    if idx.dtype.kind not in "iu":
        if idx.dtype.kind == "f" and np.all(np.mod(idx, 1) == 0):
            idx = idx.astype("int64")
        else:
            raise ValueError(
                f"`neuron_selection` must be integer. Received: neuron_selection={neuron_selection!r}"
            )
    if idx.ndim == 2 and idx.shape[1] == 1:  # a column (N, 1), as iNNvestigate code often passes
        idx = idx[:, 0]
    if idx.ndim == 0:
        idx = np.full((batch,), int(idx))
    elif idx.ndim != 1 or idx.shape[0] != batch:
        raise ValueError(
            f"`neuron_selection` must be an int or have one index per sample, shape ({batch},). "
            f"Received: shape {idx.shape}"
        )
    bad = (idx < 0) | (idx >= n_outputs)
    if np.any(bad):
        raise ValueError(
            f"`neuron_selection` must be in [0, {n_outputs}) for a model with {n_outputs} outputs. "
            f"Received: neuron_selection={idx[bad][0]} (at sample {int(np.argmax(bad))})"
        )
    return idx.astype("int32")
