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
import re

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


def einsum_parts(equation):
    """``(x, kernel, out)``: the three operand specs of an EinsumDense equation, ``"..."`` kept."""
    m = re.fullmatch(r"\s*([a-zA-Z.]+)\s*,\s*([a-zA-Z]+)\s*->\s*([a-zA-Z.]+)\s*", equation)
    if m is None:
        raise ValueError(f"Cannot parse the einsum equation {equation!r}; expected 'x,kernel->out'.")
    return m.group(1), m.group(2), m.group(3)


def einsum_kernel_problems(equation):
    """The kernel axes of an EinsumDense equation that are neither contracted (in the input, not
    the output) nor output units (in the output, not the input), each with the reason.

    Returns:
        A list of strings such as ``"kernel axis 'b' is in the input, the kernel and the output"``
        (empty when every kernel axis is contracted or an output unit).
    """
    x, kernel, out = einsum_parts(equation)
    problems = []
    for c in kernel:
        if c in x and c in out:
            problems.append(f"kernel axis {c!r} is in the input, the kernel and the output")
        elif c not in x and c not in out:
            problems.append(f"kernel axis {c!r} is in the kernel only")
    return problems


def einsum_specs(equation, x_rank=None, out_rank=None):
    """``(x, kernel, out, units)``: an EinsumDense equation with ``"..."`` spelled out in capital
    letters for inputs of rank ``x_rank`` or outputs of rank ``out_rank`` (one of them is
    enough), and ``units`` the kernel's output-unit axes in kernel order."""
    x, kernel, out = einsum_parts(equation)
    if "..." in x:
        n = x_rank - (len(x) - 3) if x_rank is not None else out_rank - (len(out) - 3)
        fill = "ABCDEFGHIJKLMNOP"[:n]
        x, out = x.replace("...", fill), out.replace("...", fill)
    if (x_rank is not None and len(x) != x_rank) or (out_rank is not None and len(out) != out_rank):
        raise ValueError(
            f"The einsum equation {equation!r} does not fit an input of rank {x_rank} and an "
            f"output of rank {out_rank}."
        )
    return x, kernel, out, "".join(c for c in kernel if c in out and c not in x)


def default_unit_axes(rank, depthwise=False, transposed=False, equation=None):
    """The kernel axes (in kernel order) whose entries index one output unit.

    The last axis for Dense and ConvND; the last two (input channel, multiplier; flattened in C
    order, as Keras orders the output channels) for DepthwiseConvND; the second-to-last
    (``filters``) for ConvNDTranspose; for EinsumDense (``equation`` given) the kernel axes that
    appear in the output (``(1, 2)``, heads and dim, for ``"abc,cde->abde"``; ``(2,)`` for
    ``"abcd,cde->abe"``).
    """
    if equation is not None:
        x, kernel, out = einsum_parts(equation)
        return tuple(i for i, c in enumerate(kernel) if c in out and c not in x)
    if depthwise:
        return (rank - 2, rank - 1)
    if transposed:
        return (rank - 2,)
    return (rank - 1,)


def units_last_perm(params):
    """The permutation of kernel axes putting the other (input) axes first, in order, and the
    unit axes last, in order (the identity for Dense, ConvND and DepthwiseConvND)."""
    units = params.unit_axes
    return tuple(i for i in range(len(params.kernel_shape)) if i not in units) + tuple(units)


def kernel_matrix_shape(params):
    """(D, C): the kernel as a matrix whose column j holds the weights of output unit j.

    The kernel is transposed by :func:`units_last_perm` and reshaped in C order: the columns are
    the last axis for Dense and ConvND, the (input channel, multiplier) pairs for DepthwiseConvND,
    ``filters`` for a transposed convolution, the output axes of an EinsumDense kernel (see
    :func:`default_unit_axes`).

    Args:
        params: the node's :class:`LinearParams`.
    """
    shape = params.kernel_shape
    c = int(np.prod([shape[i] for i in params.unit_axes]))
    return int(np.prod(shape)) // max(c, 1), c


def to_unit_matrix(a, params):
    """A kernel-shaped NumPy array as the (D, C) matrix of :func:`kernel_matrix_shape`."""
    a = np.transpose(np.asarray(a), units_last_perm(params))
    return a.reshape(kernel_matrix_shape(params))


def from_unit_matrix(m, params):
    """The inverse of :func:`to_unit_matrix`: a (D, C) matrix back in the kernel's shape."""
    perm = units_last_perm(params)
    m = np.asarray(m).reshape([params.kernel_shape[i] for i in perm])
    return np.transpose(m, np.argsort(perm))


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
        unit_axes: the kernel axes (in kernel order) whose entries index one output unit.
            Defaults to `None`: from ``depthwise``/``transposed`` (see :func:`default_unit_axes`);
            an EinsumDense view passes the kernel axes that appear in its output.
    """

    def __init__(self, kernel, bias, kernel_shape, depthwise=False, dtype="float32", transposed=False,
                 unit_axes=None):
        self._kernel = kernel
        self._bias = bias
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.depthwise = bool(depthwise)
        self.transposed = bool(transposed)
        self.dtype = str(dtype)
        if unit_axes is None:
            unit_axes = default_unit_axes(len(self.kernel_shape), self.depthwise, self.transposed)
        self.unit_axes = tuple(int(a) for a in unit_axes)

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
        rank = len(layer.kernel.shape)
        return cls(
            lambda: layer.kernel, bias, tuple(layer.kernel.shape),
            depthwise=isinstance(layer, DEPTHWISE), dtype=layer.variable_dtype or "float32",
            transposed=isinstance(layer, CONV_TRANSPOSE),
            unit_axes=default_unit_axes(rank, equation=layer.equation)
            if isinstance(layer, EINSUM_DENSE) else None,
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

        return LinearParams(kernel, bias, self.kernel_shape, self.depthwise, self.dtype, self.transposed,
                            self.unit_axes)


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
        node: a node of a canonized graph whose layer is a Dense, ConvND, DepthwiseConvND,
            ConvNDTranspose, EinsumDense or BatchNormalization layer.

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
    def _bn_scale_offset(self):
        return batchnorm_scale_offset(self.layer)

    @functools.cached_property
    def kernel(self):
        """The kernel as a tensor (for BatchNormalization the per-channel scale), read on first use."""
        return self._bn_scale_offset[0]() if self.is_bn else self.params.kernel()

    @functools.cached_property
    def bias(self):
        """The bias as a tensor, or None (for BatchNormalization the offset), read on first use
        (the kernel is not read when only the bias is needed, as in :meth:`remove_bias`)."""
        return self._bn_scale_offset[1]() if self.is_bn else self.params.bias()

    def channel_axis(self, rank):
        """The axis of the output units in an output of rank ``rank`` (non-negative)."""
        return (rank - 1) if channels_last(self.layer) else 1

    def unit_sums(self, t):
        """Sums an output-shaped tensor over its rows: a vector of the C output units, in the
        column order of :func:`kernel_matrix_shape` (the channel axis; for EinsumDense the
        output's kernel axes, in kernel order)."""
        rank = len(t.shape)
        if isinstance(self.layer, EINSUM_DENSE):
            _, _, out, units = einsum_specs(self.layer.equation, out_rank=rank)
            return tf.reshape(tf.einsum(f"{out}->{units}", t), [-1])
        axis = self.channel_axis(rank)
        return tf.reduce_sum(t, axis=[i for i in range(rank) if i != axis])

    def n_rows(self, t):
        """The number of rows of an output-shaped tensor, as a float64 scalar: its size over the
        number of units C (the batch size times a constant when the other axes are static)."""
        c = max(self.params.n_units, 1)
        if t.shape.rank and t.shape[1:].is_fully_defined():
            per_sample = int(np.prod(t.shape[1:])) // c
            batch = tf.cast(tf.shape(t)[0], tf.float64)
            return batch if per_sample == 1 else batch * per_sample
        return tf.cast(tf.size(t, out_type=tf.int64) // c, tf.float64)

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
        (depthwise, transposed, channels_first and grouped kernels excepted: they take one
        signal). For a transposed
        convolution a "row" is one output position and its patch the kernel-shaped input values
        that reach it (zeros where a kernel tap falls between the strided input positions): the
        filter gradient of the transposed convolution is that sum all the same, since the map is
        bilinear in (x, K). Dense layers use one ``matmul`` (``x^T g`` over the rows),
        undilated channels_last Conv2D layers the backprop-filter op; everything else the
        gradient of :meth:`apply` with respect to a kernel (its unused forward is pruned).

        Raises:
            TypeError: for a BatchNormalization node (it has no kernel to fit).
        """
        layer = self.layer
        if self.is_bn:
            raise TypeError(f"filter_sums needs a kernel layer. Received: {type(layer).__name__}")
        if isinstance(layer, EINSUM_DENSE):
            return self.filter_sums_list(x, [g])[0]
        kernel_shape = self.params.kernel_shape
        if isinstance(layer, DENSE):
            if len(x.shape) != 2:
                x = tf.reshape(x, [-1, kernel_shape[0]])
                g = tf.reshape(g, [-1, int(g.shape[-1])])
            return tf.matmul(x, g, transpose_a=True)
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

    def filter_sums_list(self, x, signals):
        """:meth:`filter_sums` of several output-shaped signals, as a list of kernel-shaped sums,
        in as few calls as the layer allows: one for Dense and channels_last ConvND without groups
        (signals concatenated on the channels), one einsum for EinsumDense (signals stacked on a new axis:
        ``einsum("x,outZ->kernelZ")``, the filter gradient of the equation, which sums over
        every input and output axis that is not a kernel axis), one per signal otherwise.

        For EinsumDense a "row" is one position of the output's non-kernel axes (batch, tokens,
        ...), its input row the contracted input axes there (input axes in neither the kernel nor
        the output are summed, as the layer sums them).
        """
        if isinstance(self.layer, EINSUM_DENSE):
            return tf.unstack(self.filter_sums_packed(x, signals), axis=-1)
        if not self.concatenates_signals:
            return [self.filter_sums(x, g) for g in signals]
        return tf.split(self.filter_sums_packed(x, signals), len(signals), axis=-1)

    @property
    def concatenates_signals(self):
        """Whether :meth:`filter_sums_packed` concatenates the signals on the kernel's last axis
        (Dense and channels_last ConvND without groups: one filter gradient of the signals
        concatenated on the channels) rather than stacking them on a new last axis (depthwise,
        transposed, channels_first and grouped convolutions, EinsumDense)."""
        layer = self.layer
        return not (
            isinstance(layer, DEPTHWISE + CONV_TRANSPOSE + EINSUM_DENSE)
            or not channels_last(layer) or getattr(layer, "groups", 1) != 1
        )

    def packed_shape(self, k):
        """The shape of :meth:`filter_sums_packed` of ``k`` signals."""
        kshape = tuple(self.params.kernel_shape)
        return kshape[:-1] + (k * kshape[-1],) if self.concatenates_signals else kshape + (k,)

    def filter_sums_packed(self, x, signals, dtype=None):
        """:meth:`filter_sums` of k output-shaped signals as one tensor, in as few calls as the
        layer allows.

        When :attr:`concatenates_signals`, the shape is ``kernel_shape[:-1] + (k * C,)``, signal
        i in ``[..., i * C:(i + 1) * C]`` (one filter gradient of the signals concatenated on the
        channels); otherwise ``kernel_shape + (k,)``, signal i in ``[..., i]`` (one einsum
        ``"x,outZ->kernelZ"`` for EinsumDense, one filter gradient per signal otherwise).

        ``dtype`` (e.g. float64 for running totals): the dtype of the result. A Dense layer on
        rank-2 inputs then takes its product in that dtype (rows are samples, few against its
        D x C outputs: the product is memory-bound, and no kernel-sized result in the input's
        dtype is cast afterwards); other layers compute in their dtype and cast.
        """
        layer = self.layer
        if dtype is not None:
            if isinstance(layer, DENSE) and len(x.shape) == 2:
                g = signals[0] if len(signals) == 1 else tf.concat(signals, axis=-1)
                return tf.matmul(tf.cast(x, dtype), tf.cast(g, dtype), transpose_a=True)
            return tf.cast(self.filter_sums_packed(x, signals), dtype)
        if isinstance(layer, EINSUM_DENSE):
            xs, kernel, out, _ = einsum_specs(layer.equation, len(x.shape), len(signals[0].shape))
            return tf.einsum(f"{xs},{out}Z->{kernel}Z", x, tf.stack(signals, axis=-1))
        if not self.concatenates_signals:
            return tf.stack([self.filter_sums(x, g) for g in signals], axis=-1)
        return self.filter_sums(x, signals[0] if len(signals) == 1 else tf.concat(signals, axis=-1))
