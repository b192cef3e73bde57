"""Gradient-family analyzers: gradient, input x gradient, deconvnet, guided backprop.

Each is a preset of :class:`~keras_patterns.analyzers.ReverseAnalyzer`: a data function returning
its :class:`~keras_patterns.analyzers.method.Method`. The baseline gradient (plain
``tf.GradientTape``, no mirror model) is a class of its own.
"""

import tensorflow as tf

from keras_patterns import selection
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.analyzers.method import Method, check_postprocess
from keras_patterns.graph.layers import EMBEDDING, is_rectifier
from keras_patterns.registry import register, register_preset
from keras_patterns.rules import DECONVNET_RELU, EMBEDDING_TIMES_INPUT, GUIDED_RELU
from keras_patterns.rules.activation import (
    DECONVNET_AS_RELU,
    GUIDED_AS_RELU,
    check_non_relu,
    is_nonrelu_activation,
)
from keras_patterns.rules.modern import SIGNAL_MODERN_RULES


def _relu_node(node, graph):
    return is_rectifier(node.layer)


#: The gradient: start from 1 at the selected neuron. Layers without a rule (recurrent, Lambda,
#: custom layers, Keras operations) are differentiated through, and a model without a layer graph
#: (a subclassed model) is one node differentiated as a whole: the gradient needs no rule.
GRADIENT_METHOD = Method(unknown_layers="gradient")
#: Input times gradient; for integer (token) inputs feeding an Embedding, the product is taken with
#: the embedding vectors and summed over the embedding axis.
INPUT_TIMES_GRADIENT_METHOD = GRADIENT_METHOD.replace(rules=((EMBEDDING, EMBEDDING_TIMES_INPUT),),
                                                      multiplies_by_input=True)
#: Deconvnet: the backward signal is rectified at every ReLU, the forward mask ignored.
_NON_RELU_NOTE = (
    "Pass non_relu='gradient' (their own gradient) or non_relu='relu' (treated like ReLU) to "
    "explain the model anyway (see docs/support.md)."
)
DECONVNET_METHOD = Method(rules=((_relu_node, DECONVNET_RELU),) + SIGNAL_MODERN_RULES, seed="value",
                          requires_relu="raise", output_kind="signal", relu_note=_NON_RELU_NOTE)
#: Guided backprop: relu(signal) * [forward input > 0] at every ReLU.
GUIDED_BACKPROP_METHOD = DECONVNET_METHOD.replace(rules=((_relu_node, GUIDED_RELU),) + SIGNAL_MODERN_RULES)


def _with_non_relu(method, non_relu, as_relu):
    """``method`` for the ``non_relu`` option: None refuses non-ReLU activations; ``"gradient"``
    and ``"relu"`` accept them with one warning (at construction) naming them."""
    if check_non_relu(non_relu) is None:
        return method
    if non_relu == "gradient":
        note = "They are passed by their own gradient (non_relu='gradient')."
        return method.replace(requires_relu="warn", relu_note=note)
    note = "They are treated like ReLU (non_relu='relu')."
    return method.replace(rules=((is_nonrelu_activation, as_relu),) + method.rules,
                          requires_relu="warn", relu_note=note)

_STARTS = {"value": "value", "one": "ones"}


def _check_start(start):
    """The seed (``"value"`` or ``"ones"``) of a ``start`` argument."""
    if not isinstance(start, str) or start not in _STARTS:
        raise ValueError(
            "`start` must be 'value' (start from the selected output value, as iNNvestigate) or "
            f"'one' (start from 1, the textbook seeding). Received: start={start!r}"
        )
    return _STARTS[start]


@register_preset("gradient", ReverseAnalyzer)
def gradient(postprocess=None):
    """The gradient of the selected output with respect to the input.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", 2014 (arXiv 1312.6034);
    Baehrens et al., "How to Explain Individual Classification Decisions", JMLR 2010.

    The backward pass starts from 1 at the selected neuron (``"all"``: the gradient of the sum of
    all outputs), as in iNNvestigate.

    Args:
        postprocess: None, ``"abs"`` or ``"square"``, applied element-wise at the end. Defaults to
            `None`.

    Other arguments (``neuron_selection_mode``, ``batch_size``, ``layer_map``, ``canonizers``) are
    :class:`~keras_patterns.analyzers.ReverseAnalyzer`'s.

    Example:

    ```python
    maps = kp.create_analyzer("gradient", model, postprocess="abs").analyze(x)
    ```
    """
    return dict(method=GRADIENT_METHOD.replace(postprocess=check_postprocess(postprocess)))


@register_preset("input_t_gradient", ReverseAnalyzer)
def input_t_gradient(postprocess=None):
    """Input times gradient (Shrikumar et al. 2016, arXiv 1605.01713).

    ``postprocess`` is applied to the gradient before the multiplication, as in iNNvestigate. For
    integer (token) inputs feeding an Embedding, the product is taken with the embedding vectors and
    summed over the embedding axis.

    Args:
        postprocess: None, ``"abs"`` or ``"square"``. Defaults to `None`.
    """
    return dict(method=INPUT_TIMES_GRADIENT_METHOD.replace(postprocess=check_postprocess(postprocess)))


@register_preset("deconvnet", ReverseAnalyzer)
def deconvnet(start="value", non_relu=None):
    """Deconvnet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", 2014,
    arXiv 1311.2901): at every ReLU the backward signal is rectified, the forward mask is ignored.

    By default the backward pass starts from the selected output value (iNNvestigate's identity
    head), so the maps are the textbook maps times that value; ``start="one"`` starts from 1 at the
    selected neuron, as the papers, xplique and tf-keras-vis do. Rectifier variants (ReLU6, clipped
    or thresholded ReLU layers) are treated like ReLU, with a warning.

    Gates (squeeze-excitation ``Multiply``) pass ``r * gate`` to the gated signal (the gate is a
    constant, Arras et al. 2017); LayerNormalization/GroupNormalization/UnitNormalization pass
    the gradient with their statistics held constant (Ali et al., ICML 2022).

    Args:
        start: ``"value"`` (start from the selected output value, as iNNvestigate) or ``"one"``
            (start from 1, the textbook seeding). Defaults to `"value"`.
        non_relu: what to do with non-ReLU activations (GELU, swish, sigmoid, tanh, LeakyReLU,
            ...): None refuses the model; ``"gradient"`` passes the signal through their own
            gradient ``r * f'(x)``; ``"relu"`` treats them like ReLU (``relu(r)``). Both warn once,
            naming the layers. Defaults to `None`.

    Raises:
        NotAnalyzeableModelError: if the model has other non-linearities (tanh, LeakyReLU, ...)
            and ``non_relu`` is None.
        ValueError: if ``start`` is not ``"value"`` or ``"one"``, or ``non_relu`` not one of
            None, ``"gradient"``, ``"relu"``.

    Example:

    ```python
    maps = kp.create_analyzer("deconvnet", model, start="one").analyze(x)
    ```
    """
    method = _with_non_relu(DECONVNET_METHOD, non_relu, DECONVNET_AS_RELU)
    return dict(method=method.replace(seed=_check_start(start)))


@register_preset("guided_backprop", ReverseAnalyzer)
def guided_backprop(start="value", non_relu=None):
    """Guided backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
    Net", 2015, arXiv 1412.6806): at every ReLU, relu(signal) * [forward input > 0].

    Starts from the selected output value (iNNvestigate's identity head) by default, or from 1
    with ``start="one"`` (see :func:`deconvnet`). ``non_relu``: None refuses non-ReLU activations,
    ``"gradient"`` passes their gradient, ``"relu"`` applies ``relu(r) * [x > 0]`` there (see
    :func:`deconvnet`).
    """
    method = _with_non_relu(GUIDED_BACKPROP_METHOD, non_relu, GUIDED_AS_RELU)
    return dict(method=method.replace(seed=_check_start(start)))


@register("gradient.baseline")
class BaselineGradient(Analyzer):
    """The gradient computed directly with ``tf.GradientTape`` on the model (no mirror model).

    A reference for the ``gradient`` analyzer, which must give the same maps. Works on every
    model TensorFlow can differentiate (subclassed models included).
    """

    _unknown_layers = "gradient"

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
