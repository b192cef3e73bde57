"""The linear part of kernel layers as functions of an arbitrary kernel.

Rules replace a layer's kernel W by something else (a pattern A, W*A, W+, W**2, ...); this module
applies the bias-free linear map of a Dense/Conv/DepthwiseConv/ConvTranspose/EinsumDense layer
with any kernel of the same shape, so every rule works for every kernel layer kind
(Conv1D/2D/3D with strides, dilation, SAME/VALID/causal padding and groups, DepthwiseConv1D/2D,
Conv1D/2D/3DTranspose with output padding, EinsumDense with any equation, Dense on inputs of any
rank).
:class:`LinearView` is the one object rules and the pattern statistics use to see a node as
``z = lin(x, K) + b``: the map with any kernel, its transpose (with respect to the input and to
the kernel), and the bias along the channel axis.
"""

import functools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_patterns.graph.layers import (
    BATCH_NORMALIZATION,
    CONV,
    CONV_TRANSPOSE,
    DENSE,
    DEPTHWISE,
    EINSUM_DENSE,
    KERNEL_LAYERS,
)


def apply_kernel(layer, x, kernel):
    """Computes the layer's bias-free, activation-free output with ``kernel`` in place of W.

    Args:
        layer: a Dense, ConvND, DepthwiseConvND, ConvNDTranspose or EinsumDense layer.
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
    if isinstance(layer, CONV_TRANSPOSE):
        return ops.conv_transpose(
            x, kernel, strides=list(layer.strides), padding=layer.padding,
            output_padding=layer.output_padding, dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )
    if isinstance(layer, EINSUM_DENSE):
        return ops.einsum(layer.equation, x, kernel)
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
    them; in both cases a C-order reshape of the kernel gives the right columns. For a transposed
    convolution the output units are the second-to-last axis: a C-order reshape of
    :func:`units_last` of the kernel gives the columns.

    Args:
        params: the node's :class:`LinearParams`.
    """
    shape = params.kernel_shape
    if params.depthwise:
        return int(np.prod(shape[:-2])), int(shape[-2] * shape[-1])
    if params.transposed:
        return int(np.prod(shape[:-2]) * shape[-1]), int(shape[-2])
    return int(np.prod(shape[:-1])), int(shape[-1])


def units_last(a, transposed):
    """A kernel-shaped array (or tensor) with the output-unit axis last: the last two axes swapped
    for a transposed convolution (``(*k, filters, in) -> (*k, in, filters)``, the layout of the
    ConvND it is the adjoint of), unchanged otherwise. Its own inverse."""
    if not transposed:
        return a
    perm = list(range(len(a.shape) - 2)) + [len(a.shape) - 1, len(a.shape) - 2]
    return np.transpose(a, perm) if isinstance(a, np.ndarray) else tf.transpose(a, perm)


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
        transposed: whether the kernel is a transposed convolution's (the output units on the
            second-to-last axis). Defaults to `False`.
    """

    def __init__(self, kernel, bias, kernel_shape, depthwise=False, dtype="float32", transposed=False):
        self._kernel = kernel
        self._bias = bias
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.depthwise = bool(depthwise)
        self.transposed = bool(transposed)
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
        """The view of a kernel layer's own ``kernel`` and ``bias``."""
        if not isinstance(layer, KERNEL_LAYERS):
            raise TypeError(
                f"LinearParams.of_layer expects one of {[c.__name__ for c in KERNEL_LAYERS]}. "
                f"Received: {type(layer).__name__} ({layer.name})"
            )
        if isinstance(layer, EINSUM_DENSE):  # a bias exactly when ``bias_axes`` is set
            has_bias = getattr(layer, "bias", None) is not None
        else:
            has_bias = getattr(layer, "use_bias", False)
        bias = (lambda: layer.bias) if has_bias else None
        return cls(
            lambda: layer.kernel, bias, tuple(layer.kernel.shape),
            depthwise=isinstance(layer, DEPTHWISE), dtype=layer.variable_dtype or "float32",
            transposed=isinstance(layer, CONV_TRANSPOSE),
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
            elif base.transposed:
                s = tf.reshape(s, (-1, 1))
            return k * s

        def bias():
            s = scale()
            b = offset()
            if base.has_bias:
                b = b + s * tf.cast(base.bias(), s.dtype)
            return tf.cast(b, base.dtype)

        return LinearParams(kernel, bias, self.kernel_shape, self.depthwise, self.dtype, self.transposed)


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


class LinearView:
    """A kernel node or a BatchNormalization node as ``z = lin(x, K) + b`` with any kernel-shaped K.

    Built inside a traced function (the reverse pass, the statistics update): :attr:`kernel` and
    :attr:`bias` are tensors read from the model's live variables on first use (through the
    node's :class:`LinearParams`; for BatchNormalization the per-channel scale and offset of its
    inference-time map), so nothing goes stale when the model trains.

    Args:
        node: a node of a canonized graph whose layer is a Dense, ConvND, DepthwiseConvND or
            BatchNormalization layer.

    Raises:
        TypeError: for any other layer.

    Example:

    ```python
    view = LinearView(node)
    z, back = view.forward_vjp(x, tf.maximum(view.kernel, 0))   # W+^T x, s -> W+ s
    ```
    """

    def __init__(self, node):
        layer = node.layer
        self.layer = layer
        self.is_bn = isinstance(layer, BATCH_NORMALIZATION)
        if isinstance(layer, KERNEL_LAYERS):
            self.params = node_params(node)
        elif self.is_bn:
            self.params = None
            axis = layer.axis
            self.axes = [axis] if isinstance(axis, int) else list(axis)
        else:
            raise TypeError(
                "LRP kernel rules apply to Dense, ConvND, DepthwiseConvND, ConvNDTranspose, "
                f"EinsumDense and BatchNormalization layers. Received: {type(layer).__name__} ({layer.name})"
            )

    @functools.cached_property
    def _kernel_bias(self):
        if self.is_bn:
            scale, offset = batchnorm_scale_offset(self.layer)
            return scale(), offset()
        return self.params.kernel(), self.params.bias()

    @property
    def kernel(self):
        """The kernel as a tensor (for BatchNormalization the per-channel scale)."""
        return self._kernel_bias[0]

    @property
    def bias(self):
        """The bias as a tensor, or None (for BatchNormalization the offset)."""
        return self._kernel_bias[1]

    def channel_axis(self, rank):
        """The axis of the output units in an output of rank ``rank`` (non-negative)."""
        return (rank - 1) if channels_last(self.layer) else 1

    def _bn_shape(self, rank):
        shape = [1] * rank
        axes = [a % rank for a in self.axes]
        sizes = self.kernel.shape if len(axes) > 1 else [int(np.prod(self.kernel.shape))]
        for a, n in zip(axes, sizes):
            shape[a] = n
        return shape

    def apply(self, x, kernel):
        """The bias-free linear map with ``kernel`` (a tensor shaped like :attr:`kernel`)."""
        kernel = tf.cast(kernel, x.dtype)
        if self.is_bn:
            return x * tf.reshape(kernel, self._bn_shape(len(x.shape)))
        return apply_kernel(self.layer, x, kernel)

    def add_bias(self, z, bias):
        """``z + bias`` with the bias along the channel axis (``z`` unchanged for None)."""
        if bias is None:
            return z
        bias = tf.cast(bias, z.dtype)
        if self.is_bn:
            return z + tf.reshape(bias, self._bn_shape(len(z.shape)))
        return add_bias(self.layer, z, bias)

    def remove_bias(self, z):
        """``z - b``: the bias-free output from the node's output (``z`` when there is no bias)."""
        if self.bias is None:
            return z
        bias = tf.cast(self.bias, z.dtype)
        if self.is_bn:
            return z - tf.reshape(bias, self._bn_shape(len(z.shape)))
        if not channels_last(self.layer):
            return z - tf.reshape(bias, (1, -1) + (1,) * (len(z.shape) - 2))
        return z - bias

    def vjp(self, x, kernel, s):
        """``lin(., kernel)^T s``: the transposed linear map applied to ``s`` (shaped like x; the
        map is linear, so ``x`` only gives the shape and dtype)."""
        return self.forward_vjp(x, kernel)[1](s)

    def forward_vjp(self, x, kernel):
        """``(lin(x, kernel), s -> lin(., kernel)^T s)`` sharing one recorded forward pass."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = self.apply(x, kernel)
        return z, lambda s: tape.gradient(z, x, output_gradients=s)

    def filter_sums(self, x, g):
        """``sum over rows of x_patch * g``, kernel-shaped: the transpose of the map with respect
        to the kernel (its filter gradient) applied to ``g``.

        ``g`` may hold k times the layer's output units (several signals concatenated on the
        channel axis); the result then has k times the kernel's output units on its last axis
        (depthwise and transposed kernels excepted: they take one signal). For a transposed
        convolution a "row" is one output position and its patch the kernel-shaped input values
        that reach it (zeros where a kernel tap falls between the strided input positions): the
        filter gradient of the transposed convolution is that sum all the same, since the map is
        bilinear in (x, K). Dense layers use a ``tensordot``,
        undilated channels_last Conv2D layers the backprop-filter op; everything else the
        gradient of :meth:`apply` with respect to a kernel (its unused forward is pruned).

        Raises:
            TypeError: for a BatchNormalization node (it has no kernel to fit).
        """
        layer = self.layer
        if self.is_bn:
            raise TypeError(f"filter_sums needs a kernel layer. Received: {type(layer).__name__}")
        kernel_shape = self.params.kernel_shape
        if isinstance(layer, DENSE):
            axes = list(range(len(x.shape) - 1))
            return tf.tensordot(x, g, axes=[axes, axes])
        if (
            isinstance(layer, keras.layers.Conv2D) and channels_last(layer)
            and tuple(layer.dilation_rate) == (1, 1) and layer.padding in ("same", "valid")
            and getattr(layer, "groups", 1) == 1
        ):
            sizes = tf.constant(list(kernel_shape[:-1]) + [int(g.shape[-1])], tf.int32)
            return tf.compat.v1.nn.conv2d_backprop_filter(
                x, sizes, g, strides=[1, *layer.strides, 1], padding=layer.padding.upper(),
            )
        if isinstance(layer, DEPTHWISE + CONV_TRANSPOSE) or not channels_last(layer):
            shape = tuple(kernel_shape)
        else:
            shape = tuple(kernel_shape[:-1]) + (int(g.shape[-1]),)
        k = tf.zeros(shape, dtype=x.dtype)
        with tf.GradientTape() as tape:
            tape.watch(k)
            y = apply_kernel(layer, x, k)
        return tape.gradient(y, k, output_gradients=g)
