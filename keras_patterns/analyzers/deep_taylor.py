"""Deep Taylor decomposition analyzers (iNNvestigate's ``deep_taylor`` and ``deep_taylor.bounded``)."""


import tensorflow as tf

from keras_patterns import selection
from keras_patterns.analyzers.base import ReverseAnalyzer
from keras_patterns.analyzers.registry import register
from keras_patterns.analyzers.relevance_based import is_input_layer
from keras_patterns.graph.checks import RECTIFIER_VARIANTS, check_relu_only
from keras_patterns.graph.layers import ACTIVATIONS, KERNEL_LAYERS
from keras_patterns.rules import IDENTITY
from keras_patterns.rules import lrp as R


@register("deep_taylor")
class DeepTaylor(ReverseAnalyzer):
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

    head = "value"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        check_relu_only(self.graph, self.name, warn_for=RECTIFIER_VARIANTS + ("leaky_relu",),
                        action="warn" if self.disable_model_checks else "raise")

    def _rule_list(self):
        return ((KERNEL_LAYERS, R.ALPHA_1_BETA_0_IB), (ACTIVATIONS, IDENTITY))

    def _reverse(self, inputs, indices, mode=None):
        mode = mode or self.neuron_selection_mode
        signals, _ = self.mirror(
            inputs, lambda y: selection.seed(tf.nn.relu(y), mode, indices, head="value")
        )
        return [tf.zeros(tf.shape(x), tf.float32) if r is None else r for x, r in zip(inputs, signals)]


@register("deep_taylor.bounded")
class BoundedDeepTaylor(DeepTaylor):
    """Deep Taylor decomposition with the bounded rule Z^B on the input layers (Montavon et al.,
    Pattern Recognition 2017, arXiv 1512.02479).

    Args:
        model: a Keras model without softmax.
        low: lowest input value (scalar or array broadcastable to the input). Required.
        high: highest input value, likewise. Required.
        **kwargs: ``neuron_selection_mode``, ``batch_size``.

    Raises:
        ValueError: if low or high is missing, or low > high.
    """

    def __init__(self, model, low=None, high=None, **kwargs):
        self._bounded = R.bounded_rule(low, high)
        super().__init__(model, **kwargs)
        self._config.update(low=R.check_bounds(low, high)[0].tolist(), high=R.check_bounds(low, high)[1].tolist())

    def _rule_list(self):
        return ((is_input_layer, self._bounded),) + tuple(super()._rule_list())
