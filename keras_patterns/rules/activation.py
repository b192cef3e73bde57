"""Rules for non-ReLU activations (GELU, swish/SiLU, hard-swish, sigmoid, tanh, ELU, SELU,
softplus, mish, LeakyReLU) in the methods whose theory assumes ReLU.

* LRP: relevance passes unchanged (the identity rule for element-wise activations, as in Zennit,
  Anders et al., arXiv 2106.13200, and LXT, Achtibat et al., ICML 2024, arXiv 2402.05602).
* Deconvnet (Zeiler & Fergus 2014, arXiv 1311.2901) and guided backprop (Springenberg et al. 2015,
  arXiv 1412.6806) refuse such networks by default; their ``non_relu`` option chooses:
  ``"gradient"`` (the activation's own gradient ``r * f'(x)``, what Captum, xplique and
  tf-keras-vis do for layers other than ReLU) or ``"relu"`` (the activation is treated as a ReLU:
  deconvnet ``relu(r)``, guided backprop ``relu(r) * [x > 0]``). Either way the analyzer warns once,
  naming the layers, as the methods are specified for ReLU networks.
* PatternNet/PatternAttribution (Kindermans et al. 2018): the signal passes through the
  activation's gradient (with a warning, as before); see docs/support.md for the statistics.
"""

import tensorflow as tf

from keras_patterns.graph.layers import (
    ACTIVATION_OP_CLASSES,
    ACTIVATIONS,
    is_rectifier,
    layer_activation,
    node_condition,
)
from keras_patterns.rules.base import Rule
from keras_patterns.rules.structural import DECONVNET_RELU


@node_condition
def is_nonrelu_activation(node, graph):
    """An activation layer or operation other than ReLU and its rectifier variants (softmax
    excluded: it is refused at the output and inside the model)."""
    layer = node.layer
    if not isinstance(layer, ACTIVATIONS + ACTIVATION_OP_CLASSES) or is_rectifier(layer):
        return False
    return layer_activation(layer) not in ("linear", "relu", "softmax")


def _guided_as_relu(ctx, rs):
    (x,), (r,) = ctx.xs, rs
    return [tf.nn.relu(r) * tf.cast(x > 0, r.dtype)]


#: Guided backprop with a non-ReLU activation read as a ReLU: ``relu(r) * [x > 0]``.
GUIDED_AS_RELU = Rule("guided_as_relu", _guided_as_relu)
#: Deconvnet with a non-ReLU activation read as a ReLU: ``relu(r)``.
DECONVNET_AS_RELU = Rule("deconvnet_as_relu", DECONVNET_RELU.backward)

#: The values of the ``non_relu`` option of deconvnet and guided backprop.
NON_RELU_OPTIONS = (None, "gradient", "relu")


def check_non_relu(non_relu):
    """Validates the ``non_relu`` option (None, ``"gradient"`` or ``"relu"``)."""
    if non_relu not in NON_RELU_OPTIONS:
        raise ValueError(
            "`non_relu` must be None (refuse non-ReLU activations), 'gradient' (their own gradient) "
            f"or 'relu' (treated like ReLU). Received: non_relu={non_relu!r}"
        )
    return non_relu
