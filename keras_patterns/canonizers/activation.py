"""Canonizer: split fused activations out of kernel layers."""

import dataclasses

from keras_patterns.canonizers.clone import activation_layer, clone_layer, node_fn
from keras_patterns.graph.layers import KERNEL_LAYERS, activation_name


def split_activations(graph):
    """Returns a graph where every kernel layer is linear, followed by an ``Activation`` node.

    A kernel layer ``name`` with activation f becomes a linear clone (node ``name``) and an
    ``Activation(f)`` node named ``name/activation``.
    """
    graph = graph.copy()
    nodes = []
    for node in graph.nodes:
        layer = node.layer
        act = activation_name(getattr(layer, "activation", None))
        if not isinstance(layer, KERNEL_LAYERS) or act == "linear":
            nodes.append(node)
            continue
        (tin,) = node.inputs
        (tout,) = node.outputs
        info = graph.tensors[tout]
        linear = clone_layer(layer, graph.tensors[tin].shape, layer.get_weights(), activation="linear")
        mid = graph.new_tensor(info.shape, info.dtype)
        act_layer = activation_layer(
            layer.activation, name=layer.name + "_activation", dtype=layer.dtype_policy
        )
        nodes.append(dataclasses.replace(node, layer=linear, outputs=[mid], fn=node_fn(linear)))
        nodes.append(
            dataclasses.replace(
                node, name=node.name + "/activation", key=node.key + "/activation",
                layer=act_layer, inputs=[mid], outputs=[tout], fn=node_fn(act_layer),
            )
        )
    graph.nodes = nodes
    return graph
