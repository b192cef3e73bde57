"""Reverse analyzers: a :class:`~keras_patterns.analyzers.method.Method` applied to a model, one
backward pass through the mirror model."""

import tensorflow as tf

from keras_patterns import selection
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.analyzers.config import UNSAVEABLE, jsonable
from keras_patterns.analyzers.method import Method
from keras_patterns.mapping import resolve
from keras_patterns.mirror import Mirror
from keras_patterns.rules import GRADIENT, Rule
from keras_patterns.rules import lrp as R


class ReverseAnalyzer(Analyzer):
    """An analyzer that is one reverse pass through the mirror model: a
    :class:`~keras_patterns.analyzers.method.Method` applied to a model.

    The registered gradient-family and Deep Taylor analyzers are this class with a method value
    (see their presets in :mod:`keras_patterns.analyzers.gradient_based`).

    Args:
        model: a Keras model without softmax.
        method: what the reverse pass computes. Defaults to the class's :attr:`method` (the plain
            gradient here).
        layer_map: ``[(condition, Rule), ...]`` pairs put before the method's own rules (the first
            match wins), as Zennit's composites do. A condition is a layer class, a tuple of
            classes or ``condition(node, graph) -> bool``; a rule is a
            :class:`~keras_patterns.rules.Rule` or an LRP rule name (``"Epsilon"``, ...).
            Defaults to `None`.
        **kwargs: ``neuron_selection_mode``, ``batch_size``, ``canonizers`` ... (see
            :class:`Analyzer`).

    Raises:
        TypeError: a malformed ``method`` or ``layer_map``.

    Example:

    ```python
    from keras_patterns.rules import lrp as R
    analyzer = kp.create_analyzer("gradient", model, layer_map=[(keras.layers.Dense, R.Z)])
    print(analyzer.plan)
    ```
    """

    #: the plain gradient; presets and subclasses pass another value.
    method = Method(unknown_layers="gradient")

    def __init__(self, model, method=None, layer_map=None, **kwargs):
        if method is not None:
            if not isinstance(method, Method):
                raise TypeError(
                    f"`method` must be a keras_patterns Method. Received: {type(method).__name__}"
                )
            self.method = method
        self.layer_map = _check_layer_map(layer_map)
        super().__init__(model, **kwargs)
        if method is not None:
            self._config["method"] = UNSAVEABLE
        if layer_map is not None:
            self._config["layer_map"] = jsonable(layer_map)
        self.method.check_model(self.graph, self.name or type(self).__name__, self.disable_model_checks)
        self._build_mirror()

    # capability flags: the method's
    needs_fitting = property(lambda self: self.method.needs_fitting)
    output_kind = property(lambda self: self.method.output_kind)
    multiplies_by_input = property(lambda self: self.method.multiplies_by_input)
    conserves_relevance = property(lambda self: self.method.conserves_relevance)
    _unknown_layers = property(lambda self: self.method.unknown_layers)

    def _rule_list(self):
        """The method's own rules (subclasses add the ones their arguments make)."""
        return self.method.rules

    def _mirror_state(self):
        return None

    def _all_rules(self):
        """The user's layer map, the method's rules, then the gradient for Lambda layers if
        ``allow_lambda_layers``."""
        rules = list(self.layer_map) + list(self._rule_list())
        if self.allow_lambda_layers:
            import keras

            rules.append((keras.layers.Lambda, GRADIENT))
        return rules

    def _build_mirror(self):
        self.plan = resolve(self.graph, self._all_rules(), method=self.name,
                            unknown_layers=self.method.unknown_layers)
        self.mirror = Mirror(self.graph, self.plan, self._mirror_state())
        self._compiled = None

    def _postprocess(self, m):
        if self.method.postprocess == "abs":
            return tf.abs(m)
        if self.method.postprocess == "square":
            return tf.square(m)
        return m

    def _seed(self, mode, indices):
        seed = self.method.seed
        if seed == "relu_value":
            return lambda y: selection.seed(tf.nn.relu(y), mode, indices, head="value")
        return lambda y: selection.seed(y, mode, indices, head="ones" if seed == "ones" else "value")

    def _reverse(self, inputs, indices, mode=None):
        """The maps of one reverse pass (inside the compiled function; wrappers call it too)."""
        signals, _ = self.mirror(inputs, self._seed(mode or self.neuron_selection_mode, indices))
        maps = []
        for x, r in zip(inputs, signals):
            if r is None:  # integer input with no Embedding rule: no signal
                r = tf.zeros(tf.shape(x), tf.float32)
            if r.dtype in (tf.float16, tf.bfloat16):
                r = tf.cast(r, tf.float32)
            r = self._postprocess(r)
            if self.method.multiplies_by_input and x.dtype.is_floating:
                r = r * tf.cast(x, r.dtype)
            maps.append(r)
        return maps

    def _analyze_batch(self, inputs, indices):
        return self._reverse(inputs, indices)


def _check_layer_map(layer_map):
    """``layer_map`` as a tuple of ``(condition, Rule)`` pairs."""
    if layer_map is None:
        return ()
    if isinstance(layer_map, (str, Rule)) or not isinstance(layer_map, (list, tuple)):
        raise TypeError(
            "`layer_map` must be a list of (condition, rule) pairs. Received: "
            f"layer_map={layer_map!r}"
        )
    out = []
    for pair in layer_map:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise TypeError(f"`layer_map` entries must be (condition, rule) pairs. Received: {pair!r}")
        condition, rule = pair
        if not (isinstance(condition, type) or callable(condition) or (
                isinstance(condition, tuple) and condition and all(isinstance(c, type) for c in condition))):
            raise TypeError(
                "A layer_map condition must be a layer class, a tuple of classes or a callable "
                f"condition(node, graph). Received: {condition!r}"
            )
        out.append((condition, rule if isinstance(rule, Rule) else R.get_rule(rule, "layer_map")))
    return tuple(out)
