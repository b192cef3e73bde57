"""Deep Taylor decomposition (iNNvestigate's ``deep_taylor`` and ``deep_taylor.bounded``): presets
of :class:`~keras_patterns.analyzers.ReverseAnalyzer`."""

from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.analyzers.method import Method
from keras_patterns.analyzers.relevance_based import is_input_layer
from keras_patterns.graph.checks import RECTIFIER_VARIANTS
from keras_patterns.graph.layers import ACTIVATIONS, ATTENTION, KERNEL_LAYERS
from keras_patterns.registry import register_preset
from keras_patterns.rules import IDENTITY
from keras_patterns.rules import lrp as R
from keras_patterns.rules.modern import LRP_MODERN_RULES
from keras_patterns.rules.attention import CONSTANT_ATTENTION

#: z+ on both input signs without bias at every kernel layer, relevance through activations, the
#: gradient elsewhere (attention weights as constants at attention nodes, as for LRP); the backward
#: pass starts from relu(y_k).
DEEP_TAYLOR_METHOD = Method(
    rules=((KERNEL_LAYERS, R.ALPHA_1_BETA_0_IB), (ACTIVATIONS, IDENTITY), (ATTENTION, CONSTANT_ATTENTION))
    + LRP_MODERN_RULES,
    seed="relu_value",
    requires_relu="raise", relu_variants=RECTIFIER_VARIANTS + ("leaky_relu",), conserves_relevance=True,
)


@register_preset("deep_taylor", ReverseAnalyzer)
def deep_taylor():
    """Deep Taylor decomposition (Montavon et al., "Explaining NonLinear Classification Decisions
    with Deep Taylor Decomposition", Pattern Recognition 2017, arXiv 1512.02479), as iNNvestigate
    implements it.

    A ReLU is applied to the model output before the neuron selection (the start value is
    ``relu(y_k)``); every kernel layer uses the z+ rule on both input signs without bias
    (LRP-alpha1beta0 "IgnoreBias": iNNvestigate's ``contains_activation`` is true for every
    Dense/Conv, so its W**2 branch never applies); activations pass relevance unchanged; all other
    layers use the gradient (Add gives the full relevance to each input, average pooling spreads
    R / pool size, max pooling routes to the winner).

    Raises:
        NotAnalyzeableModelError: for non-ReLU non-linearities (tanh, sigmoid, ...).
    """
    return dict(method=DEEP_TAYLOR_METHOD)


@register_preset("deep_taylor.bounded", ReverseAnalyzer, flags=DEEP_TAYLOR_METHOD)
def deep_taylor_bounded(low=None, high=None):
    """Deep Taylor decomposition with the bounded rule Z^B on the input layers (Montavon et al.,
    Pattern Recognition 2017, arXiv 1512.02479).

    Args:
        low: lowest input value (scalar or array broadcastable to the input). Required.
        high: highest input value, likewise. Required.

    Raises:
        ValueError: if low or high is missing, or low > high.
    """
    bounded = R.bounded_rule(low, high)
    return dict(method=DEEP_TAYLOR_METHOD.replace(rules=((is_input_layer, bounded),) + DEEP_TAYLOR_METHOD.rules))
