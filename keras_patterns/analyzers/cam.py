"""Class activation maps from gradients: Grad-CAM and Grad-CAM++.

Both weigh the channels of a spatial feature map ``A`` (shape ``(n, *s, K)``) of the model by the
gradient ``g = dS/dA`` of the selected output ``S`` and return ``relu(sum_k w_k A_k)``, upsampled
linearly to the input's spatial size.

The feature map is found in the walked graph (:func:`keras_patterns.graph.walk`), so models nested
inside models are searched too; the feature map and the gradient come out of one forward pass in
one compiled function. No canonizer is applied: the graph's node names are the layers' own paths
(``"backbone/conv2d"``), which is what ``layer=`` takes.

**Channel convention.** A CAM has one value per spatial position. The analyzer returns it shaped
like the input, ``(n, *S, C)``: the upsampled map repeated over the ``C`` input channels (read
``maps[..., 0]`` for the map itself). Model inputs the feature map is not computed from (e.g. the
vector input of an image + vector model) get maps of zeros.
"""

import keras
import tensorflow as tf

from keras_patterns import selection
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.canonizers import prepare_graph
from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.registry import register

L = keras.layers

#: Layers whose output is a convolutional feature map.
CONV_LAYERS = (
    L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose,
    L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv1D, L.SeparableConv2D,
)

#: Element-wise layers that keep a feature map's layout; the default feature map follows a
#: convolution through a chain of them (e.g. ResNet's conv -> BatchNormalization -> Add -> ReLU).
ELEMENTWISE_LAYERS = (
    L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.BatchNormalization,
    L.LayerNormalization, L.GroupNormalization, L.Add, L.Subtract, L.Multiply, L.Average,
    L.Maximum, L.Minimum, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
)


class FeatureMap:
    """The tensor a CAM is computed from.

    Attributes:
        node: the name of the graph node producing it.
        tensor: its tensor id in the graph.
        shape: its static shape, batch first.
        inputs: positions of the model inputs the CAM is mapped onto (float inputs of the same
            rank that the feature map is computed from).
    """

    def __init__(self, node, tensor, shape, inputs):
        self.node, self.tensor, self.shape, self.inputs = node, tensor, tuple(shape), tuple(inputs)

    def __repr__(self):
        return f"FeatureMap(node={self.node!r}, shape={self.shape})"


def _ancestor_inputs(graph):
    """Per tensor id, the set of graph-input positions it is computed from."""
    deps = {t: {i} for i, t in enumerate(graph.inputs)}
    for node in graph.nodes:
        below = set().union(*[deps.get(t, set()) for t in node.inputs]) if node.inputs else set()
        for t in node.outputs:
            deps[t] = below
    return deps


def _spatial_inputs(graph, tensor, deps):
    """The float inputs of the tensor's rank it is computed from (the CAM's targets)."""
    rank = len(graph.tensors[tensor].shape)
    out = []
    for i in sorted(deps.get(tensor, ())):
        info = graph.tensors[graph.inputs[i]]
        if len(info.shape) == rank and "float" in str(info.dtype):
            out.append(i)
    return out


def _channels_first(node):
    return getattr(node.layer, "data_format", "channels_last") == "channels_first"


def _is_map(graph, node, deps):
    """Whether the node's (single) output is a channels-last spatial map of a float input."""
    if len(node.outputs) != 1 or _channels_first(node):
        return False
    info = graph.tensors[node.outputs[0]]
    if len(info.shape) < 3 or "float" not in str(info.dtype):
        return False
    return bool(_spatial_inputs(graph, node.outputs[0], deps))


def _positions(shape):
    """The number of spatial positions of a static shape (None counts as several)."""
    count = 1
    for d in shape[1:-1]:
        if d is None:
            return 2
        count *= d
    return count


def _follow_elementwise(graph, node):
    """From a convolution, along single consumers that are element-wise and shape-preserving."""
    while True:
        t = node.outputs[0]
        consumers = graph.consumers(t)
        if len(consumers) != 1:
            return node
        nxt = consumers[0]
        if (not isinstance(nxt.layer, ELEMENTWISE_LAYERS) or len(nxt.outputs) != 1
                or graph.tensors[nxt.outputs[0]].shape != graph.tensors[t].shape):
            return node
        node = nxt


def find_feature_map(graph, layer=None, who="grad_cam", model_name="model"):
    """The feature map a CAM of ``graph`` is computed from.

    By default, the output of the last convolutional layer (:data:`CONV_LAYERS`, in topological
    order, nested models included) whose output is a channels-last spatial map of a float model
    input with more than one position (a map with one position, such as the 1x1 head convolutions
    after global pooling in MobileNetV3, carries no spatial information; it is taken only when no
    other exists), followed through the chain of element-wise layers that consume it alone
    (:data:`ELEMENTWISE_LAYERS`: its activation, BatchNormalization, a residual Add, ...).

    Args:
        graph: a walked :class:`~keras_patterns.graph.Graph`.
        layer: None, or the name of a node of the graph (a layer path such as
            ``"backbone/conv2d"``; ``"name@1"`` for the second call of a shared layer).
        who: the analyzer's name, for messages.
        model_name: the model's name, for messages.

    Returns:
        A :class:`FeatureMap`.

    Raises:
        NotAnalyzeableModelError: no spatial feature map (MLPs, sequence models, token inputs).
        ValueError: ``layer`` names no node, or a node whose output is not a spatial map.
    """
    deps = _ancestor_inputs(graph)
    candidates = [n for n in graph.nodes if _is_map(graph, n, deps)]
    if layer is not None:
        by_name = {n.name: n for n in graph.nodes}
        if not isinstance(layer, str) or layer not in by_name:
            raise ValueError(
                f"`layer` must name a layer of the model (nested layers as 'outer/inner'). "
                f"Received: layer={layer!r}. Layers with a spatial feature map: "
                f"{[n.name for n in candidates]}"
            )
        node = by_name[layer]
        if node not in candidates:
            shapes = [graph.tensors[t].shape for t in node.outputs]
            raise ValueError(
                f"`layer` must name a layer whose output is a channels-last spatial feature map "
                f"(batch, *spatial, channels) computed from a float model input of the same rank. "
                f"Received: layer={layer!r} ({node.class_name}, output shapes {shapes}). "
                f"Layers with a spatial feature map: {[n.name for n in candidates]}"
            )
    else:
        convs = [n for n in candidates if isinstance(n.layer, CONV_LAYERS)]
        if not convs:
            inputs = [(name, graph.tensors[t].shape, graph.tensors[t].dtype)
                      for name, t in zip(graph.input_names, graph.inputs)]
            raise NotAnalyzeableModelError(
                f"{who} needs a convolutional feature map: a convolutional layer "
                f"({', '.join(c.__name__ for c in CONV_LAYERS)}) whose channels-last output has the "
                f"spatial axes of a float model input. Model {model_name!r} has none (inputs: "
                f"{inputs}); Grad-CAM is defined for convolutional networks. Pass `layer=` to name a "
                "feature map, or use a gradient method ('gradient', 'integrated_gradients') on "
                "this model."
            )
        wide = [n for n in convs if _positions(graph.tensors[n.outputs[0]].shape) > 1]
        node = _follow_elementwise(graph, (wide or convs)[-1])
    t = node.outputs[0]
    return FeatureMap(node.name, t, graph.tensors[t].shape, _spatial_inputs(graph, t, deps))


def linear_resize(x, sizes):
    """Resizes the spatial axes of ``x`` linearly, with half-pixel centres.

    Along each spatial axis, output position ``i`` of ``m`` reads the input at
    ``u = (i + 0.5) * k / m - 0.5`` (``k`` the input size), clipped to ``[0, k - 1]``, and
    interpolates linearly between ``floor(u)`` and ``floor(u) + 1``. In 2D this is
    ``tf.image.resize(x, sizes, method="bilinear", antialias=False)`` (TensorFlow 2's
    ``half_pixel_centers=True``); axes are interpolated one after the other (last spatial axis
    first, as TensorFlow's kernel), which extends it to 1D and 3D (trilinear).

    Args:
        x: a float tensor ``(n, *s)``.
        sizes: the target sizes of the ``len(s)`` spatial axes (ints or scalar int tensors).

    Returns:
        A tensor ``(n, *sizes)`` of ``x``'s dtype.
    """
    for axis in reversed(range(1, len(sizes) + 1)):
        x = _resize_axis(x, axis, sizes[axis - 1])
    return x


def _resize_axis(x, axis, out_size):
    # Coordinates in the map's dtype: float32 as TensorFlow's kernel, float64 for float64 maps.
    in_size = tf.shape(x)[axis]
    scale = tf.cast(in_size, x.dtype) / tf.cast(out_size, x.dtype)
    src = (tf.cast(tf.range(out_size), x.dtype) + 0.5) * scale - 0.5
    src = tf.clip_by_value(src, tf.zeros((), x.dtype), tf.cast(in_size - 1, x.dtype))
    low = tf.floor(src)
    frac = src - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, in_size - 1)
    a, b = tf.gather(x, low, axis=axis), tf.gather(x, high, axis=axis)
    shape = [1] * len(x.shape)
    shape[axis] = -1
    return a + (b - a) * tf.reshape(frac, shape)


def _no_canonizers(who, kwargs):
    if "canonizers" in kwargs:
        raise TypeError(
            f"{who} explains the model's own forward pass and applies no canonizers. Received: "
            f"canonizers={kwargs['canonizers']!r}"
        )


@register("grad_cam")
class GradCAM(Analyzer):
    """Grad-CAM: the feature map's channels weighted by their mean gradient.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017 (arXiv 1610.02391), eqs. 1-2: with ``g = dS/dA`` the gradient of the
    selected output ``S`` (the selected logit; the sum of all outputs in ``"all"`` mode) with
    respect to the feature map ``A`` (``Z`` spatial positions),

        ``w_k = (1/Z) sum_ij g_ij^k``,  ``CAM = relu(sum_k w_k A^k)``.

    On a convolution -> GlobalAveragePooling -> Dense head ``w_k`` is the dense weight divided by
    ``Z`` and the CAM is Zhou et al.'s class activation map (CVPR 2016) divided by ``Z``, rectified.

    The map is upsampled to the input's spatial size by :func:`linear_resize` (bilinear with
    half-pixel centres in 2D, linear in 1D, trilinear in 3D) and returned shaped like the input,
    repeated over its channels (see the module's channel convention).

    Args:
        model: a Keras model with a spatial feature map (Conv1D/2D/3D networks), no softmax.
        layer: the name of the layer whose output is the feature map, as in the walked graph
            (nested layers as ``"backbone/conv2d"``). Defaults to `None`: the last convolutional
            feature map (see :func:`find_feature_map`).
        **kwargs: ``neuron_selection_mode``, ``batch_size`` (see
            :class:`~keras_patterns.analyzers.Analyzer`).

    Raises:
        NotAnalyzeableModelError: no convolutional feature map (MLPs, sequence models, token
            inputs), a softmax output.
        ValueError: ``layer`` names no layer or one without a spatial output (the message lists
            the candidates).

    Example:

    ```python
    analyzer = kp.create_analyzer("grad_cam", model)                  # last conv feature map
    maps = analyzer.analyze(x)                                         # shaped like x
    cam = maps[..., 0]                                                 # (n, H, W)
    kp.create_analyzer("grad_cam", model, layer="backbone/conv2d_1")   # a nested layer
    ```
    """

    def __init__(self, model, layer=None, **kwargs):
        _no_canonizers(f"{type(self).__name__}", kwargs)
        super().__init__(model, **kwargs)
        self.feature_map = find_feature_map(
            self.graph, layer, self.name or type(self).__name__, getattr(model, "name", "model"))
        self.layer = layer
        self._config["layer"] = layer

    def _prepare_graph(self, model):
        return prepare_graph(model, ())

    def _channel_weights(self, a, g):
        """``w`` shaped ``(n, K)`` from the feature map and its gradient ``(n, *s, K)``."""
        return tf.reduce_mean(g, axis=list(range(1, len(a.shape) - 1)))

    def _cam(self, inputs, indices):
        """The rectified CAM ``(n, *s)`` at the feature map's resolution."""
        target = self.feature_map.tensor
        with tf.GradientTape() as tape:
            def hook(node, xs):
                ys = node.fn(xs)
                if target in node.outputs:
                    tape.watch(ys[node.outputs.index(target)])
                return ys

            values = self.graph.run(inputs, hook)
            y = values[self.graph.outputs[0]]
            mask = tf.stop_gradient(selection.selection_mask(y, self.neuron_selection_mode, indices))
            score = tf.reduce_sum(mask * y)
        a = values[target]
        g = tape.gradient(score, a, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        dtype = tf.float64 if a.dtype == tf.float64 else tf.float32  # float16/bfloat16 widened
        a, g = tf.cast(a, dtype), tf.cast(g, dtype)
        w = self._channel_weights(a, g)
        w = tf.reshape(w, [tf.shape(w)[0]] + [1] * (len(a.shape) - 2) + [-1])
        return tf.nn.relu(tf.reduce_sum(w * a, axis=-1))

    def _analyze_batch(self, inputs, indices):
        cam = self._cam(inputs, indices)
        maps = []
        for i, x in enumerate(inputs):
            if i not in self.feature_map.inputs:
                maps.append(tf.zeros(tf.shape(x), tf.float32))
                continue
            shape = tf.shape(x)
            up = linear_resize(cam, [shape[k] for k in range(1, len(x.shape) - 1)])
            maps.append(tf.broadcast_to(up[..., None], shape))
        return maps


@register("grad_cam++")
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: the feature map's channels weighted by positive gradients with per-position
    coefficients.

    Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized Gradient-based
    Visual Explanations for Deep Convolutional Networks", WACV 2018 (arXiv 1710.11063). The paper
    explains ``Y = exp(S)`` (``S`` the selected output); its higher derivatives are powers of the
    first, ``d^nY/dA^n = exp(S) g^n`` with ``g = dS/dA`` (exact for a network piecewise linear in
    ``A``, e.g. ReLU layers after it), so that eq. 19 becomes, with ``s_k = sum_ab A_ab^k``,

        ``alpha_ij^k = g_ij^2 / (2 g_ij^2 + s_k g_ij^3)``  (0 where the denominator is 0),
        ``w_k = sum_ij alpha_ij^k relu(g_ij^k)``,  ``CAM = relu(sum_k w_k A^k)``.

    The factor ``exp(S)`` cancels in ``alpha``; in ``w_k`` (the paper's ``relu(dY/dA)``) it is a
    positive factor per sample, left out here (it would only scale each map, and overflows
    float32 for ``S > 88``). The same second/third-order closed form is what tf-keras-vis uses
    (with ``s_k`` a sum, as here; xplique uses the mean of ``A^k``). Computed as
    ``alpha relu(g) = relu(g) / (2 + s_k g)``, which equals the above wherever ``g != 0`` and
    avoids the underflow of ``g^3``.

    Arguments, upsampling and channel convention as :class:`GradCAM`.

    Example:

    ```python
    maps = kp.create_analyzer("grad_cam++", model).analyze(x)
    ```
    """

    def _channel_weights(self, a, g):
        spatial = list(range(1, len(a.shape) - 1))
        s = tf.reduce_sum(a, axis=spatial, keepdims=True)
        denom = 2 + s * g
        zero = tf.equal(denom, 0.0)
        terms = tf.where(zero, tf.zeros_like(g), tf.nn.relu(g) / tf.where(zero, tf.ones_like(denom), denom))
        return tf.reduce_sum(terms, axis=spatial)
