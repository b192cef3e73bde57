"""The linear part of kernel layers as functions of an arbitrary kernel.

Rules replace a layer's kernel W by something else (a pattern A, W*A, W+, W**2, ...); this module
applies the bias-free linear map of a Dense/Conv/DepthwiseConv layer with any kernel of the same
shape, so every rule works for every kernel layer kind (Conv1D/2D/3D with strides, dilation,
SAME/VALID/causal padding and groups, DepthwiseConv1D/2D, Dense on inputs of any rank).
"""

import numpy as np
from keras import ops

from keras_patterns.graph.layers import CONV, DENSE, DEPTHWISE, KERNEL_LAYERS


def apply_kernel(layer, x, kernel):
    """Computes the layer's bias-free, activation-free output with ``kernel`` in place of W.

    Args:
        layer: a Dense, ConvND or DepthwiseConvND layer.
        x: the layer input.
        kernel: a tensor shaped like ``layer.kernel``.

    Returns:
        The linear output ``W^T x`` with ``W = kernel``.
    """
    if isinstance(layer, DENSE):
        return ops.matmul(x, kernel)
    if isinstance(layer, CONV):
        padding = layer.padding
        if padding == "causal":
            x = ops.pad(x, layer._compute_causal_padding())
            padding = "valid"
        return ops.conv(
            x, kernel, strides=list(layer.strides), padding=padding,
            dilation_rate=layer.dilation_rate, data_format=layer.data_format,
        )
    if isinstance(layer, DEPTHWISE):
        return ops.depthwise_conv(
            x, kernel, strides=layer.strides, padding=layer.padding,
            dilation_rate=layer.dilation_rate, data_format=layer.data_format,
        )
    raise TypeError(
        f"apply_kernel expects one of {[c.__name__ for c in KERNEL_LAYERS]}. "
        f"Received: {type(layer).__name__} ({layer.name})"
    )


def bias_of(layer):
    """The layer's bias variable, or None."""
    return layer.bias if getattr(layer, "use_bias", False) else None


def add_bias(layer, z, bias):
    """Adds a bias vector along the layer's channel axis."""
    if bias is None:
        return z
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        shape = (1, -1) + (1,) * (len(z.shape) - 2)
        return z + ops.reshape(bias, shape)
    return z + bias


def channels_last(layer):
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def kernel_matrix_shape(layer):
    """(D, C): kernel reshaped so that column j holds the weights of output unit j.

    For Dense and ConvND the last kernel axis indexes output units; for DepthwiseConvND the last two
    axes (input channel, multiplier) flattened in C order give the output channel, as Keras orders
    them; in both cases a C-order reshape of the kernel gives the right columns.
    """
    shape = tuple(layer.kernel.shape)
    if isinstance(layer, DEPTHWISE):
        return int(np.prod(shape[:-2])), int(shape[-2] * shape[-1])
    return int(np.prod(shape[:-1])), int(shape[-1])


def batchnorm_affine(layer):
    """The inference-time affine map of a BatchNormalization layer as (scale, offset) numpy arrays.

    y = scale * x + offset with scale = gamma / sqrt(var + eps), offset = beta - scale * mean.
    """
    mean = np.asarray(layer.moving_mean, dtype="float64")
    var = np.asarray(layer.moving_variance, dtype="float64")
    gamma = np.asarray(layer.gamma, dtype="float64") if layer.scale else np.ones_like(mean)
    beta = np.asarray(layer.beta, dtype="float64") if layer.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale, beta - scale * mean
