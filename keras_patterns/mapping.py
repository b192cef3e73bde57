"""Layer -> rule resolution.

A method's rule assignment is data: an ordered list of ``(condition, rule)`` pairs where the first
match wins. A condition is a layer class, a tuple of classes, or a predicate, read by
:func:`keras_patterns.graph.layers.as_condition` (``condition(layer)``, or ``condition(node, graph)``
when marked with :class:`~keras_patterns.graph.layers.node_condition`). After the method's own pairs come rules registered by users with
:func:`register_rule`, then the built-in defaults (Embedding sums over its embedding axis), then the
plain gradient for every supported layer. Layers that match nothing are reported all at once, or,
for a method with ``unknown_layers="gradient"`` (the gradient family), differentiated through.
"""

import keras

from keras_patterns.errors import UnsupportedLayerError, _works_on_any_model
from keras_patterns.graph.layers import (
    EMBEDDING,
    SUPPORTED_LAYERS,
    as_condition,
    class_label,
    describe_node,
    is_channel_scale,
)
from keras_patterns.rules import EMBEDDING_SUM, GRADIENT, Rule
from keras_patterns.rules.base import is_refusal

_CUSTOM_RULES = []  # (layer_class, rule, methods or None)


def register_rule(layer_class, rule=GRADIENT, methods=None):
    """Maps a custom layer class to a backward rule.

    Args:
        layer_class: a ``keras.layers.Layer`` subclass, or the class of a Keras operation node
            (``type(node.layer)`` of a node made by ``x * y``, ``keras.ops.mean(x)``, ...).
        rule: the :class:`~keras_patterns.rules.Rule` to use. Defaults to the plain gradient,
            right for any layer that is linear or piecewise linear with the ReLU gating you want.
        methods: analyzer names the mapping applies to (e.g. ``["gradient", "lrp.epsilon"]``), or
            None for all. Defaults to `None`.

    Raises:
        TypeError: if ``layer_class`` is not a Layer subclass or ``rule`` not a Rule.

    Example:

    ```python
    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    kp.register_rule(Scale)              # gradient (= linear) rule for every method
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise TypeError(
            "`layer_class` must be a keras.layers.Layer subclass or a Keras operation class. "
            f"Received: {layer_class!r}"
        )
    if not isinstance(rule, Rule):
        raise TypeError(f"`rule` must be a keras_patterns.rules.Rule. Received: {rule!r}")
    if methods is not None:
        methods = tuple([methods] if isinstance(methods, str) else methods)
    _CUSTOM_RULES.insert(0, (layer_class, rule, methods))


def unregister_rule(layer_class):
    """Removes every rule registered for ``layer_class``."""
    _CUSTOM_RULES[:] = [entry for entry in _CUSTOM_RULES if entry[0] is not layer_class]


class Plan(dict):
    """The resolved rule of every node: ``{node_name: Rule}``, printable for debugging."""

    def __str__(self):
        width = max((len(k) for k in self), default=0)
        return "\n".join(f"{name:{width}s}  {rule}" for name, rule in self.items())


def resolve(graph, rules=(), method=None, unknown_layers="error"):
    """Assigns a rule to every node of a graph.

    Args:
        graph: a canonized :class:`~keras_patterns.graph.Graph`.
        rules: ordered ``(condition, rule)`` pairs of the method (conditions as
            :func:`~keras_patterns.graph.layers.as_condition` reads them).
        method: the analyzer name, to select rules registered for some methods only.
        unknown_layers: ``"error"`` (refuse nodes no rule covers) or ``"gradient"``
            (differentiate through them: the plain gradient is right for any layer under a
            gradient method). Defaults to `"error"`.

    Returns:
        A :class:`Plan`.

    Raises:
        UnsupportedLayerError: listing every node whose layer no rule covers (with
            ``unknown_layers="error"``).
        ValueError: ``unknown_layers`` not ``"error"`` or ``"gradient"``.
    """
    if unknown_layers not in ("error", "gradient"):
        raise ValueError(
            "`unknown_layers` must be 'error' or 'gradient'. Received: "
            f"unknown_layers={unknown_layers!r}"
        )
    plan, unsupported = Plan(), []
    custom = [(cls, rule) for cls, rule, methods in _CUSTOM_RULES if methods is None or method in methods]
    defaults = [(EMBEDDING, EMBEDDING_SUM), (SUPPORTED_LAYERS, GRADIENT), (is_channel_scale, GRADIENT)]
    pairs = [(as_condition(condition), rule) for condition, rule in list(rules) + custom + defaults]
    registered = [(as_condition(cls), rule) for cls, rule in custom]
    for node in graph.nodes:
        for match, rule in pairs:
            if match(node, graph):
                if is_refusal(rule):
                    # A method's refusal with a reason (e.g. an ambiguous gate), unless the user
                    # registered a rule for the layer class.
                    rule = next((r for m, r in registered if m(node, graph)), rule)
                if is_refusal(rule):
                    why = dict(rule.params).get("reason", "")
                    unsupported.append((node.name, node.class_name, f"{describe_node(node)}: {why}"))
                else:
                    plan[node.name] = rule
                break
        else:
            if unknown_layers == "gradient":
                plan[node.name] = GRADIENT
            else:
                unsupported.append((node.name, node.class_name, describe_node(node)))
    if unsupported:
        listing = ", ".join(text for _, _, text in unsupported)
        unsupported = [(name, cls) for name, cls, _ in unsupported]
        raise UnsupportedLayerError(
            f"The model contains {len(unsupported)} layer(s) without a backward rule"
            f"{' for ' + repr(method) if method else ''}: {listing}. Supported layers: "
            f"{sorted({class_label(c) for c in SUPPORTED_LAYERS})}. Map a custom layer to a rule with "
            f"keras_patterns.register_rule(LayerClass, rule). {_works_on_any_model()}",
            layers=unsupported,
        )
    return plan
