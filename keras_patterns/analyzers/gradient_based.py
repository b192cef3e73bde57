"""Gradient-family analyzers: gradient, input x gradient, deconvnet, guided backprop."""

import tensorflow as tf

from keras_patterns import selection
from keras_patterns.analyzers.base import Analyzer, ReverseAnalyzer, check_postprocess
from keras_patterns.analyzers.registry import register
from keras_patterns.graph.checks import check_relu_only
from keras_patterns.graph.layers import EMBEDDING, is_rectifier
from keras_patterns.rules import DECONVNET_RELU, EMBEDDING_TIMES_INPUT, GUIDED_RELU


def _relu_node(node, graph):
    return is_rectifier(node.layer)


_STARTS = {"value": "value", "one": "ones"}


def _check_start(start):
    """The seed head (``"value"`` or ``"ones"``) of a ``start`` argument."""
    if not isinstance(start, str) or start not in _STARTS:
        raise ValueError(
            "`start` must be 'value' (start from the selected output value, as iNNvestigate) or "
            f"'one' (start from 1, the textbook seeding). Received: start={start!r}"
        )
    return _STARTS[start]


@register("gradient")
class Gradient(ReverseAnalyzer):
    """The gradient of the selected output with respect to the input.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", 2014 (arXiv 1312.6034);
    Baehrens et al., "How to Explain Individual Classification Decisions", JMLR 2010.

    The backward pass starts from 1 at the selected neuron (``"all"``: the gradient of the sum of
    all outputs), as in iNNvestigate.

    Args:
        model: a Keras model without softmax.
        postprocess: None, ``"abs"`` or ``"square"``, applied element-wise at the end. Defaults to
            `None`.
        **kwargs: ``neuron_selection_mode``, ``batch_size`` (see :class:`Analyzer`).

    Example:

    ```python
    maps = kp.create_analyzer("gradient", model, postprocess="abs").analyze(x)
    ```
    """

    head = "ones"

    def __init__(self, model, postprocess=None, **kwargs):
        self.postprocess = check_postprocess(postprocess)
        super().__init__(model, **kwargs)
        self._config["postprocess"] = postprocess


@register("input_t_gradient")
class InputTimesGradient(Gradient):
    """Input times gradient (Shrikumar et al. 2016, arXiv 1605.01713).

    ``postprocess`` is applied to the gradient before the multiplication, as in iNNvestigate. For
    integer (token) inputs feeding an Embedding, the product is taken with the embedding vectors and
    summed over the embedding axis.
    """

    multiply_input = True
    rules = ((EMBEDDING, EMBEDDING_TIMES_INPUT),)


@register("deconvnet")
class Deconvnet(ReverseAnalyzer):
    """Deconvnet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", 2014,
    arXiv 1311.2901): at every ReLU the backward signal is rectified, the forward mask is ignored.

    By default the backward pass starts from the selected output value (iNNvestigate's identity
    head), so the maps are the textbook maps times that value; ``start="one"`` starts from 1 at the
    selected neuron, as the papers, xplique and tf-keras-vis do. Rectifier variants (ReLU6, clipped
    or thresholded ReLU layers) are treated like ReLU, with a warning.

    Args:
        model: a Keras model without softmax, with ReLU non-linearities only.
        start: ``"value"`` (start from the selected output value, as iNNvestigate) or ``"one"``
            (start from 1, the textbook seeding). Defaults to `"value"`.
        **kwargs: ``neuron_selection_mode``, ``batch_size`` (see :class:`Analyzer`).

    Raises:
        NotAnalyzeableModelError: if the model has other non-linearities (tanh, LeakyReLU, ...).
        ValueError: if ``start`` is not ``"value"`` or ``"one"``.

    Example:

    ```python
    maps = kp.create_analyzer("deconvnet", model, start="one").analyze(x)
    ```
    """

    head = "value"
    output_kind = "signal"
    rules = ((_relu_node, DECONVNET_RELU),)

    def __init__(self, model, start="value", **kwargs):
        self.head = _check_start(start)
        super().__init__(model, **kwargs)
        self._config["start"] = start
        check_relu_only(self.graph, self.name, action="warn" if self.disable_model_checks else "raise")


@register("guided_backprop")
class GuidedBackprop(Deconvnet):
    """Guided backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
    Net", 2015, arXiv 1412.6806): at every ReLU, relu(signal) * [forward input > 0].

    Starts from the selected output value (iNNvestigate's identity head) by default, or from 1
    with ``start="one"`` (see :class:`Deconvnet`).
    """

    rules = ((_relu_node, GUIDED_RELU),)


@register("gradient.baseline")
class BaselineGradient(Analyzer):
    """The gradient computed directly with ``tf.GradientTape`` on the model (no mirror model).

    A reference for :class:`Gradient`, which must give the same maps.
    """

    def _analyze_batch(self, inputs, indices):
        floats = [x for x in inputs if x.dtype.is_floating]
        with tf.GradientTape() as tape:
            for x in floats:
                tape.watch(x)
            y = self.model(inputs if len(inputs) > 1 else inputs[0], training=False)
        mask = selection.selection_mask(y, self.neuron_selection_mode, indices)
        grads = tape.gradient(y, floats, output_gradients=mask,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        it = iter(grads)
        return [next(it) if x.dtype.is_floating else tf.zeros(tf.shape(x)) for x in inputs]
