"""The linear part of kernel layers as functions of an arbitrary kernel.

Rules replace a layer's kernel W by something else (a pattern A, W*A, W+, W**2, ...); this module
applies the bias-free linear map of a Dense/Conv/DepthwiseConv layer with any kernel of the same
shape, so every rule works for every kernel layer kind (Conv1D/2D/3D with strides, dilation,
SAME/VALID/causal padding and groups, DepthwiseConv1D/2D, Dense on inputs of any rank).
"""

import numpy as np
import tensorflow as tf
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


def kernel_matrix_shape(params):
    """(D, C): kernel reshaped so that column j holds the weights of output unit j.

    For Dense and ConvND the last kernel axis indexes output units; for DepthwiseConvND the last two
    axes (input channel, multiplier) flattened in C order give the output channel, as Keras orders
    them; in both cases a C-order reshape of the kernel gives the right columns.

    Args:
        params: the node's :class:`LinearParams`.
    """
    shape = params.kernel_shape
    if params.depthwise:
        return int(np.prod(shape[:-2])), int(shape[-2] * shape[-1])
    return int(np.prod(shape[:-1])), int(shape[-1])


class LinearParams:
    """A live view of the kernel and bias of one linear node of the canonized graph.

    Nothing is copied: :meth:`kernel` and :meth:`bias` read the user's variables each time they are
    called (inside a ``tf.function`` they are traced once and then follow every weight change
    without retracing). Canonizers compose views: a BatchNormalization folded into a kernel layer
    gives ``kernel() = W * s`` and ``bias() = s * (b - mean) + beta`` with
    ``s = gamma / sqrt(var + eps)``, all computed from the layers' current variables.

    Args:
        kernel: ``kernel() -> tensor`` of shape ``kernel_shape``.
        bias: ``bias() -> tensor`` (one value per output unit) or None for no bias.
        kernel_shape: the kernel's static shape.
        depthwise: whether the kernel is a depthwise kernel (the last two axes form the unit).
        dtype: the variables' dtype (e.g. ``"float32"``, also under a mixed precision policy).
    """

    def __init__(self, kernel, bias, kernel_shape, depthwise=False, dtype="float32"):
        self._kernel = kernel
        self._bias = bias
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.depthwise = bool(depthwise)
        self.dtype = str(dtype)

    @property
    def has_bias(self):
        return self._bias is not None

    def kernel(self):
        """The current kernel (a tensor)."""
        return tf.convert_to_tensor(self._kernel())

    def bias(self):
        """The current bias (a tensor), or None."""
        return None if self._bias is None else tf.convert_to_tensor(self._bias())

    @property
    def n_units(self):
        """The number of output units C."""
        return kernel_matrix_shape(self)[1]

    @classmethod
    def of_layer(cls, layer):
        """The view of a Dense/ConvND/DepthwiseConvND layer's own ``kernel`` and ``bias``."""
        if not isinstance(layer, KERNEL_LAYERS):
            raise TypeError(
                f"LinearParams.of_layer expects one of {[c.__name__ for c in KERNEL_LAYERS]}. "
                f"Received: {type(layer).__name__} ({layer.name})"
            )
        bias = (lambda: layer.bias) if getattr(layer, "use_bias", False) else None
        return cls(
            lambda: layer.kernel, bias, tuple(layer.kernel.shape),
            depthwise=isinstance(layer, DEPTHWISE), dtype=layer.variable_dtype or "float32",
        )

    def scaled(self, scale, offset):
        """The view of this layer followed by an element-wise affine map ``scale * z + offset``
        on its output units (BatchNormalization folding); ``scale()``/``offset()`` are live."""
        base = self

        def kernel():
            k = base.kernel()
            s = tf.cast(scale(), k.dtype)
            if base.depthwise:
                s = tf.reshape(s, base.kernel_shape[-2:])
            return k * s

        def bias():
            s = scale()
            b = offset()
            if base.has_bias:
                b = b + s * tf.cast(base.bias(), s.dtype)
            return tf.cast(b, base.dtype)

        return LinearParams(kernel, bias, self.kernel_shape, self.depthwise, self.dtype)


def node_params(node):
    """The :class:`LinearParams` of a kernel node: the canonizer's view, or the layer's own."""
    params = getattr(node, "params", None)
    return params if params is not None else LinearParams.of_layer(node.layer)


def linear_fn(layer, params):
    """A graph-node function computing ``apply_kernel(layer, x, kernel()) + bias()`` from live
    parameters, in the layer's compute dtype (as the layer itself would)."""

    def fn(xs):
        x = xs[0]
        dtype = layer.compute_dtype or x.dtype
        if x.dtype != dtype:
            x = tf.cast(x, dtype)
        z = apply_kernel(layer, x, tf.cast(params.kernel(), dtype))
        bias = params.bias()
        return [add_bias(layer, z, None if bias is None else tf.cast(bias, dtype))]

    return fn


def batchnorm_scale_offset(layer):
    """Live ``(scale, offset)`` functions of a BatchNormalization layer's inference-time map
    ``y = scale * x + offset``, with ``scale = gamma / sqrt(var + eps)`` and
    ``offset = beta - scale * mean``, in the layer's variable dtype."""

    def scale():
        var = tf.convert_to_tensor(layer.moving_variance)
        s = 1.0 / tf.sqrt(var + tf.constant(layer.epsilon, var.dtype))
        return s * tf.convert_to_tensor(layer.gamma) if layer.scale else s

    def offset():
        mean = tf.convert_to_tensor(layer.moving_mean)
        o = -scale() * mean
        return o + tf.convert_to_tensor(layer.beta) if layer.center else o

    return scale, offset
