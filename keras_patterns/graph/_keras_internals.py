"""The only module that touches private Keras 3 attributes.

Keras 3 keeps the layer graph of a Functional model on its symbolic tensors: every ``KerasTensor``
has a ``_keras_history`` (operation, node_index, tensor_index), every operation has
``_inbound_nodes``, and a node keeps the call's ``arguments`` (a ``SymbolicArguments`` that can
substitute concrete values for the symbolic tensors with ``fill_in``). Everything the walker needs
from Keras goes through the small functions below, so a change in Keras touches one file.
"""

import keras


def producer_node(tensor):
    """Returns the Keras ``Node`` that produced a symbolic tensor."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(
            f"Expected a symbolic Keras tensor of a Functional model. Received: {tensor!r}"
        )
    operation, node_index, _ = history
    return operation._inbound_nodes[node_index]


def node_operation(node):
    return node.operation


def node_is_input(node):
    return bool(node.is_input)


def node_input_tensors(node):
    """The symbolic input tensors of a node, flattened in call order (duplicates kept)."""
    return list(node.arguments.keras_tensors)


def node_output_tensors(node):
    return list(node.outputs)


def call_node(node, values_by_id):
    """Calls a node's operation on concrete values, keeping the call's non-tensor arguments.

    Args:
        node: a Keras ``Node``.
        values_by_id: dict from ``id(symbolic_tensor)`` to a concrete tensor.

    Returns:
        The operation's output, as a flat list.
    """
    args, kwargs = node.arguments.fill_in(values_by_id)
    if "training" in kwargs:
        kwargs = dict(kwargs, training=False)
    outputs = node.operation(*args, **kwargs)
    return list(keras.tree.flatten(outputs))


def is_functional(model):
    """True for models with a layer graph: Functional models and built Sequential models."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None) is not None
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth") and hasattr(
        model, "_operations"
    )
