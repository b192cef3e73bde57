"""Layer groups and rule conditions, in one place.

Every tuple of layer classes the package tests against lives here, named for what it holds;
:func:`as_condition` turns what users and methods write as a rule condition into one callable.
"""

import functools
import inspect
import re
import weakref

import keras
import numpy as np

from keras_patterns.graph import _keras_internals as ki

from keras_patterns.graph.attention import AttentionNode

L = keras.layers

#: Kernel layers after canonization (SeparableConv is split into these two kinds).
DENSE = (L.Dense,)
CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
#: Transposed convolutions: kernel ``(*kernel_size, filters, in_channels)``, the output units on
#: the second-to-last kernel axis (the adjoint of a ConvND with that kernel).
CONV_TRANSPOSE = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
#: EinsumDense (the projections inside MultiHeadAttention, or stand-alone): a kernel layer for
#: every rule family; its output units are the kernel axes that appear in the output.
EINSUM_DENSE = (L.EinsumDense,)
KERNEL_LAYERS = DENSE + CONV + DEPTHWISE + CONV_TRANSPOSE + EINSUM_DENSE
#: Kernel layers a following BatchNormalization can be folded into (the output units on one
#: kernel axis: the last one, or the second-to-last for transposed convolutions).
BN_FOLDABLE = DENSE + CONV + DEPTHWISE + CONV_TRANSPOSE
#: Kernel layers the pattern statistics fit: all of them (an EinsumDense whose equation has a
#: kernel axis that is neither contracted nor an output axis is refused by name).
PATTERN_KERNELS = KERNEL_LAYERS
#: Attention layers with their own projections, expanded by the attention canonizer into the
#: query/key/value/output EinsumDense nodes and an attention node.
MULTI_HEAD_ATTENTION = (L.MultiHeadAttention,)
#: Keras' projection-free attention layers (canonized into an attention node).
KERAS_ATTENTION = (L.Attention, L.AdditiveAttention)
#: The attention step of the canonized graph (weights from q and k, applied to v).
ATTENTION = (AttentionNode,)
#: Dense-like kernel layers (the Dense rule of the sequential presets).
DENSE_LIKE = DENSE + EINSUM_DENSE

MAX_POOLING = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)
AVERAGE_POOLING = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
GLOBAL_MAX_POOLING = (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)
GLOBAL_AVERAGE_POOLING = (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
RESHAPING = (L.Flatten, L.Reshape, L.Permute)
PADDING_CROPPING = (
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
)
UPSAMPLING = (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)
#: Identity at analysis time.
NOISE_AND_DROPOUT = (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
)
MERGE = (L.Add, L.Subtract, L.Average, L.Concatenate)
ACTIVATIONS = (L.Activation, L.ReLU, L.LeakyReLU)
#: BatchNormalization only (folded into the preceding kernel layer where possible). Other
#: normalizations (LayerNormalization, GroupNormalization) normalise per sample and are not in it.
BATCH_NORMALIZATION = (L.BatchNormalization,)
PREPROCESSING = (L.Rescaling, L.Normalization)
EMBEDDING = (L.Embedding,)
#: Normalizations whose statistics are computed per sample (over features, groups of channels or
#: the whole vector): linear for the backward pass once the statistics are held constant (Ali et
#: al., ICML 2022). Not folded, not in :data:`BATCH_NORMALIZATION`.
PER_SAMPLE_NORMALIZATION = (L.LayerNormalization, L.GroupNormalization, L.UnitNormalization)

# Keras operations applied to symbolic tensors in a Functional model (``x + y``, ``x * y``,
# ``keras.ops.mean(x)``, ``keras.activations.gelu(x)``) are graph nodes of their own; their classes
# are not exported by Keras (see :func:`~keras_patterns.graph._keras_internals.operation_classes`).
ADD_OPS = ki.operation_classes("numpy", ("Add",))
SUBTRACT_OPS = ki.operation_classes("numpy", ("Subtract",))
MEAN_OPS = ki.operation_classes("numpy", ("Mean",))
MULTIPLY_OPS = ki.operation_classes("numpy", ("Multiply",))
DIVIDE_OPS = ki.operation_classes("numpy", ("Divide", "TrueDivide"))
#: Element-wise products: the ``Multiply`` layer and ``x * y``. With two tensor inputs one of them is
#: usually a gate (squeeze-excitation, GLU); see :mod:`keras_patterns.rules.gate`.
MULTIPLY = (L.Multiply,) + MULTIPLY_OPS
#: Activation operations (``keras.activations.gelu(x)`` on a symbolic tensor) -> activation name.
ACTIVATION_OPS = {
    cls: name
    for module, pairs in (
        ("nn", (("Relu", "relu"), ("Relu6", "relu6"), ("Gelu", "gelu"), ("Silu", "silu"),
                ("HardSilu", "hard_silu"), ("Sigmoid", "sigmoid"), ("HardSigmoid", "hard_sigmoid"),
                ("Elu", "elu"), ("Selu", "selu"), ("Softplus", "softplus"),
                ("LeakyRelu", "leaky_relu"), ("Softmax", "softmax"))),
        ("numpy", (("Tanh", "tanh"),)),
    )
    for name_cls, name in pairs
    for cls in ki.operation_classes(module, (name_cls,))
}
ACTIVATION_OP_CLASSES = tuple(ACTIVATION_OPS)
#: Smooth (non-ReLU) activations with a documented treatment in every method family
#: (docs/support.md); Keras names (``swish`` is ``silu``, ``hard_swish`` is ``hard_silu``).
SMOOTH_ACTIVATIONS = (
    "gelu", "silu", "hard_silu", "sigmoid", "hard_sigmoid", "tanh", "elu", "selu", "softplus", "mish",
)

#: Every layer class with a built-in backward rule.
SUPPORTED_LAYERS = (
    KERNEL_LAYERS + SEPARABLE + MAX_POOLING + AVERAGE_POOLING + GLOBAL_MAX_POOLING
    + GLOBAL_AVERAGE_POOLING + RESHAPING + PADDING_CROPPING + UPSAMPLING + NOISE_AND_DROPOUT
    + MERGE + ACTIVATIONS + BATCH_NORMALIZATION + PREPROCESSING + EMBEDDING + (L.InputLayer, L.Identity)
    + PER_SAMPLE_NORMALIZATION + MULTIPLY + ADD_OPS + SUBTRACT_OPS + MEAN_OPS + DIVIDE_OPS
    + ACTIVATION_OP_CLASSES
    + ATTENTION
)

#: Convolution-like kernel layers (iNNvestigate's ``is_conv_layer``; SeparableConv is split into
#: a depthwise and a pointwise convolution by the canonizer).
CONV_LIKE = CONV + DEPTHWISE + CONV_TRANSPOSE
#: Linear layers without kernels that LRP treats by the proportional Z rule.
Z_LAYERS = (
    AVERAGE_POOLING + GLOBAL_AVERAGE_POOLING + (L.Add, L.Subtract, L.Average) + PREPROCESSING
    + ADD_OPS + SUBTRACT_OPS + MEAN_OPS
)
#: Layers that move or keep values without mixing them (reshaping, zero padding, inactive
#: dropout/noise, Identity): looked through when deciding whether a kernel layer sees the model
#: input. iNNvestigate uses Flatten/Permute/Reshape.
TRANSPARENT = RESHAPING + (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D) + NOISE_AND_DROPOUT + (
    L.Identity,
)
#: Shape-preserving layers applied after a kernel layer's output that the pattern statistics'
#: mask search walks through.
MASK_PASS_THROUGH = NOISE_AND_DROPOUT + BATCH_NORMALIZATION + (L.Add, L.Identity)


# ------------------------------------------------------------------------------------ conditions
class node_condition:  # noqa: N801 (used as a decorator, named like one)
    """Marks a predicate as ``condition(node, graph) -> bool`` for :func:`as_condition`.

    A plain predicate receives the layer, ``condition(layer)``; a predicate that needs the
    graph (e.g. "a kernel layer that sees the model input") is written on ``(node, graph)`` and
    marked with this decorator. ``node`` is a :class:`~keras_patterns.graph.walker.Node`
    (``node.layer``, ``node.name``, ``node.inputs``) of the canonized ``graph``.

    Example:

    ```python
    from keras_patterns.graph.layers import node_condition

    @node_condition
    def first_dense(node, graph):
        return node.layer is graph.nodes[0].layer

    kp.create_analyzer("lrp", model, rule=[(first_dense, "ZPlus"), (keras.layers.Dense, "Epsilon")])
    ```
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"`node_condition` needs a callable f(node, graph). Received: {fn!r}")
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, node, graph):
        return self.fn(node, graph)

    def __repr__(self):
        return f"node_condition({self.fn!r})"


def _is_class_condition(condition):
    return isinstance(condition, type) or (
        isinstance(condition, tuple) and condition and all(isinstance(c, type) for c in condition)
    )


def _takes_node_and_graph(fn):
    """Compatibility with conditions written before :class:`node_condition`: an unmarked callable
    that requires two positional arguments is read as ``condition(node, graph)``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: a layer predicate
        return False
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) >= 2


def as_condition(condition, restrict_to=None):
    """Turns a rule condition into one callable ``condition(node, graph) -> bool``.

    The convention (docs/lrp.md):

    * a layer class or a non-empty tuple of classes matches layers of those classes;
    * a callable is a layer predicate, called as ``condition(layer)``;
    * a callable marked with :class:`node_condition` is called as ``condition(node, graph)``
      (for compatibility, an unmarked callable that requires two positional arguments is read
      the same way).

    Args:
        condition: a class, a tuple of classes, or a predicate as above.
        restrict_to: a tuple of layer classes the condition is limited to (e.g.
            :data:`KERNEL_LAYERS`), or None. Defaults to `None`.

    Returns:
        A function ``f(node, graph) -> bool``.

    Raises:
        TypeError: for anything else (an empty tuple, a string, an instance).

    Example:

    ```python
    match = as_condition(lambda layer: layer.name.startswith("block1"), restrict_to=KERNEL_LAYERS)
    match(node, graph)     # True for the kernel layers of block 1
    ```
    """
    if _is_class_condition(condition):
        def match(node, graph):
            return isinstance(node.layer, condition)
    elif isinstance(condition, node_condition) or (callable(condition) and _takes_node_and_graph(condition)):
        def match(node, graph):
            return bool(condition(node, graph))
    elif callable(condition):
        def match(node, graph):
            return bool(condition(node.layer))
    else:
        raise TypeError(
            "A rule condition must be a layer class, a tuple of classes or a callable "
            f"condition(layer) / condition(node, graph). Received: {condition!r}"
        )
    if restrict_to is None:
        return match
    return lambda node, graph: isinstance(node.layer, restrict_to) and match(node, graph)


def activation_name(activation):
    """A readable name for an activation function ("relu", "linear", "softmax", ...)."""
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None)
    if name is None:
        name = type(activation).__name__
    return name


def layer_activation(layer):
    """The name of the non-linearity a layer applies, "linear" if none.

    Stand-alone ``ReLU`` layers count as "relu" only with their default arguments.
    """
    if isinstance(layer, L.ReLU):
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return "relu" if plain else "relu_variant"
    if isinstance(layer, L.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, L.Softmax):
        return "softmax"
    if isinstance(layer, ACTIVATION_OP_CLASSES):
        return ACTIVATION_OPS[type(layer)]
    if hasattr(layer, "activation"):
        return activation_name(layer.activation)
    return "linear"


def is_relu(layer):
    """True for a stand-alone ReLU non-linearity (Activation("relu") or a plain ReLU layer)."""
    return isinstance(layer, (L.Activation, L.ReLU) + ACTIVATION_OP_CLASSES) and layer_activation(layer) == "relu"


def is_rectifier(layer):
    """True for ReLU and its rectifying variants (zero for negative inputs): plain ReLU, ReLU6,
    and ReLU layers with ``max_value`` or ``threshold`` (but no negative slope)."""
    if is_relu(layer):
        return True
    if isinstance(layer, L.ReLU):
        return not layer.negative_slope
    return isinstance(layer, (L.Activation,) + ACTIVATION_OP_CLASSES) and layer_activation(layer) == "relu6"


def is_operation(layer):
    """True for a Keras operation node (``x * y``, ``keras.ops.mean``, ...), not a layer."""
    return ki.is_operation_class(type(layer))


def class_label(cls):
    """How errors name a node class: ``"Multiply"`` for the layer, ``"keras.ops.multiply"`` for the
    operation that ``x * y`` records (both classes are called Multiply)."""
    if ki.is_operation_class(cls):
        return "keras.ops." + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", cls.__name__).lower()
    return cls.__name__


def describe_node(node):
    """``"name (Class)"`` for a layer node, ``"name (keras.ops.multiply operation)"`` for an op."""
    label = class_label(type(node.layer))
    return f"{node.name} ({label} operation)" if is_operation(node.layer) else f"{node.name} ({label})"


@node_condition
def is_scalar_op(node, graph):
    """A ``Multiply``/``Divide``/``TrueDivide`` operation with one tensor input (``x * 0.5``,
    ``x / 6``): a constant scale, linear in its input."""
    return isinstance(node.layer, MULTIPLY_OPS + DIVIDE_OPS) and len(node.inputs) == 1


_CHANNEL_SCALE = weakref.WeakKeyDictionary()


@node_condition
def is_channel_scale(node, graph):
    """A custom layer that multiplies its input by one weight vector along the last axis
    (``call(x) = x * gamma``, e.g. ConvNeXt's ``LayerScale``, Touvron et al. 2021, arXiv 2103.17239).

    Detected without registration: a layer from outside Keras' built-in layers with exactly one
    variable, of shape ``(channels,)``, one input and one output of the same shape, whose output on
    a random probe equals ``probe * gamma`` (relative 1e-5; checked once per layer).
    """
    layer = node.layer
    if not isinstance(layer, L.Layer) or isinstance(layer, SUPPORTED_LAYERS) or isinstance(layer, keras.Model):
        return False
    if len(node.inputs) != 1 or len(node.outputs) != 1 or len(layer.weights) != 1:
        return False
    try:
        return _CHANNEL_SCALE[layer]
    except KeyError:
        pass
    info, out = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    (w,) = layer.weights
    ok = (
        len(w.shape) == 1 and len(info.shape) >= 2 and info.shape[-1] == w.shape[0]
        and tuple(info.shape) == tuple(out.shape) and "float" in str(info.dtype)
    )
    if ok:
        shape = (2,) + tuple(3 if d is None else d for d in info.shape[1:])
        probe = np.random.default_rng(0).normal(size=shape).astype(str(info.dtype))
        try:
            (y,) = node.fn([keras.ops.convert_to_tensor(probe)])
            y = np.asarray(keras.ops.convert_to_numpy(y), dtype="float64")
        except Exception:  # noqa: BLE001 (a layer that cannot be probed is not a channel scale)
            y = None
        want = probe.astype("float64") * np.asarray(keras.ops.convert_to_numpy(w), dtype="float64")
        ok = y is not None and y.shape == want.shape and np.allclose(
            y, want, rtol=1e-5, atol=1e-6 * max(float(np.abs(want).max()), 1e-30))
    _CHANNEL_SCALE[layer] = bool(ok)
    return bool(ok)
