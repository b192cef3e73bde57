"""Rules for element-wise products used as gates (squeeze-excitation, GLU, hard-swish).

Arras, Montavon, Müller & Samek, "Explaining Recurrent Neural Network Predictions in Sentiment
Analysis", WASSA 2017 (arXiv 1706.07206), the "signal-take-all" rule: in ``y = signal * gate``
the gate is a constant, so the product is linear in the signal.

* LRP: all relevance goes to the signal, none to the gate (the z rule of the linear map
  ``signal -> gate * signal``: ``R_signal = R``, summed over the axes the signal was broadcast
  along). Relevance is conserved.
* Signal methods (deconvnet, guided backprop, PatternNet, PatternAttribution): the signal input
  receives ``r * gate`` (the gradient with the gate held constant), the gate nothing.
* Gradient methods: the true gradient of the product (both inputs).

Which input is the gate (:func:`gate_index`), for a product of two tensors:

1. the input computed by a sigmoid-like activation (``sigmoid``, ``hard_sigmoid``, a ReLU with
   ``max_value`` such as MobileNetV3's ``ReLU(6.)(x + 3) / 6``), looking back through reshapes and
   through constant shifts and scales (``x + 3``, ``x * (1 / 6)``);
2. otherwise (both or neither are), the input with fewer elements (the ``(batch, 1, 1, C)``
   excitation of an SE block);
3. otherwise the product is ambiguous and the rule-based methods refuse it with an error naming
   the node. Say which input is the gate with ``layer_map=[(condition, gate_rule(index))]`` (or
   ``gate_signal_rule(index)`` for the signal methods), or for a layer class of your own with
   ``kp.register_rule(MyGate, gate_rule(1), methods=[...])``.
"""

import functools

import numpy as np
import tensorflow as tf

from keras_patterns.graph.layers import (
    ADD_OPS,
    DIVIDE_OPS,
    MULTIPLY,
    MULTIPLY_OPS,
    SUBTRACT_OPS,
    TRANSPARENT,
    L,
    layer_activation,
    node_condition,
)
from keras_patterns.rules.base import Rule, refusal

#: Activations whose output is read as a gate in [0, 1].
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
_SHIFT_SCALE_OPS = ADD_OPS + SUBTRACT_OPS + MULTIPLY_OPS + DIVIDE_OPS


def _is_gate_tensor(graph, tid):
    """The tensor comes from a sigmoid-like activation (through reshapes and constant affine ops)."""
    seen = set()
    while tid not in seen:
        seen.add(tid)
        node = graph.producer(tid)
        if node is None:
            return False
        layer = node.layer
        if layer_activation(layer) in GATE_ACTIVATIONS:
            return True
        if isinstance(layer, L.ReLU) and layer.max_value is not None and not layer.negative_slope:
            return True
        if layer_activation(layer) == "relu6":
            return True
        one_input = len(node.inputs) == 1
        if one_input and (isinstance(layer, TRANSPARENT) or isinstance(layer, _SHIFT_SCALE_OPS)):
            tid = node.inputs[0]
            continue
        return False
    return False


def _size(shape):
    return int(np.prod([1 if d is None else d for d in shape[1:]]))


def gate_index(node, graph):
    """Which input of a two-input product is the gate (see the module docstring), or None.

    Args:
        node: a node of ``graph``.
        graph: the canonized graph.

    Returns:
        0 or 1, or None when the node is not a product of two distinct tensors or the gate is
        ambiguous.
    """
    if not isinstance(node.layer, MULTIPLY) or len(node.inputs) != 2 or node.inputs[0] == node.inputs[1]:
        return None
    gates = [_is_gate_tensor(graph, t) for t in node.inputs]
    if gates[0] != gates[1]:
        return gates.index(True)
    sizes = [_size(graph.tensors[t].shape) for t in node.inputs]
    if sizes[0] != sizes[1]:
        return int(np.argmin(sizes))
    return None


@functools.lru_cache(maxsize=None)
def gated(index):
    """The condition "a two-input product whose gate is input ``index``" (a node condition)."""

    @node_condition
    def condition(node, graph):
        return gate_index(node, graph) == index

    condition.__name__ = f"gated_{index}"
    return condition


@node_condition
def is_ambiguous_product(node, graph):
    """A product the gate rules do not cover: two inputs and no detectable gate, more than two
    inputs, or a division of two tensors."""
    layer = node.layer
    if isinstance(layer, DIVIDE_OPS):
        return len(node.inputs) > 1
    if not isinstance(layer, MULTIPLY):
        return False
    if isinstance(layer, MULTIPLY_OPS) and len(node.inputs) == 1:
        return False  # a constant scale
    return gate_index(node, graph) is None


def _sum_to(r, x):
    """``r`` summed over the axes along which ``x`` was broadcast to ``r``'s shape."""
    extra = len(r.shape) - len(x.shape)
    if extra > 0:
        r = tf.reduce_sum(r, axis=list(range(extra)))
    axes = [i for i, (a, b) in enumerate(zip(x.shape, r.shape)) if a == 1 and b != 1]
    return tf.reduce_sum(r, axis=axes, keepdims=True) if axes else r


def _check_index(index):
    if isinstance(index, bool) or index not in (0, 1):
        raise ValueError(f"`index` (the gate's input) must be 0 or 1. Received: index={index!r}")
    return int(index)


@functools.lru_cache(maxsize=None)
def gate_rule(index):
    """LRP signal-take-all (Arras et al., WASSA 2017, arXiv 1706.07206): input ``index`` is the
    gate, the other input (the signal) receives all relevance.

    Args:
        index: 0 or 1, the gate's position among the product's inputs.

    Returns:
        A :class:`~keras_patterns.rules.Rule`.

    Raises:
        ValueError: ``index`` not 0 or 1.

    Example:

    ```python
    from keras_patterns.rules.gate import gate_rule
    kp.create_analyzer("lrp.epsilon", model,
                       layer_map=[(lambda layer: layer.name == "glu_mul", gate_rule(0))])
    ```
    """
    index = _check_index(index)

    def backward(ctx, rs):
        out = [None, None]
        out[1 - index] = _sum_to(rs[0], ctx.xs[1 - index])
        return out

    return Rule("gate.signal_take_all", backward, params=(("gate", index),))


@functools.lru_cache(maxsize=None)
def gate_signal_rule(index):
    """Deconvnet, guided backprop and the pattern methods through a gate (Arras et al. 2017): the
    signal input receives ``r * gate`` (the gradient with the gate constant), the gate nothing.

    Args:
        index: 0 or 1, the gate's position among the product's inputs.

    Raises:
        ValueError: ``index`` not 0 or 1.
    """
    index = _check_index(index)

    def backward(ctx, rs):
        out = [None, None]
        out[1 - index] = _sum_to(rs[0] * ctx.xs[index], ctx.xs[1 - index])
        return out

    return Rule("gate.signal", backward, params=(("gate", index),))


#: Marks a product whose gate cannot be told: :func:`keras_patterns.mapping.resolve` reports the
#: node as unsupported, with this reason, instead of using the rule.
AMBIGUOUS_PRODUCT = refusal(
    "a product of two tensors whose gate cannot be told (neither or both come from a sigmoid-like "
    "activation and both have the same size), of more than two tensors, or a division of tensors; "
    "name the gate with layer_map=[(condition, keras_patterns.rules.gate.gate_rule(index))] "
    "(gate_signal_rule for deconvnet, guided backprop and the pattern methods)"
)
