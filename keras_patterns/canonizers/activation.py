"""Canonizer: split fused activations out of kernel layers."""

import dataclasses

from keras_patterns.canonizers.clone import activation_layer, config_clone
from keras_patterns.graph.layers import KERNEL_LAYERS, activation_name
from keras_patterns.linear import linear_fn, node_params


def split_activations(graph):
    """Returns a graph where every kernel layer is linear, followed by an ``Activation`` node.

    A kernel layer ``name`` with activation f becomes a linear node ``name`` (an unbuilt linear
    configuration copy of the layer, computing with the layer's own live kernel and bias) and an
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
        (tout,) = node.outputs
        info = graph.tensors[tout]
        params = node_params(node)
        linear = config_clone(layer, activation="linear")
        mid = graph.new_tensor(info.shape, info.dtype)
        act_layer = activation_layer(
            layer.activation, name=layer.name + "_activation", dtype=layer.dtype_policy
        )
        nodes.append(dataclasses.replace(
            node, layer=linear, outputs=[mid], fn=linear_fn(linear, params), params=params,
        ))
        nodes.append(
            dataclasses.replace(
                node, name=node.name + "/activation", key=node.key + "/activation",
                layer=act_layer, inputs=[mid], outputs=[tout], fn=_call(act_layer), params=None,
            )
        )
    graph.nodes = nodes
    return graph


def _call(layer):
    def fn(xs):
        return [layer(xs[0])]

    return fn
