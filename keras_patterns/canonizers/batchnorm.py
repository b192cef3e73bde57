"""Canonizer: fold BatchNormalization into the preceding kernel layer."""

import numpy as np

from keras_patterns.canonizers.clone import clone_layer, node_fn
from keras_patterns.graph.layers import (
    DEPTHWISE,
    KERNEL_LAYERS,
    NORMALIZATION,
    activation_name,
)
from keras_patterns.linear import batchnorm_affine, channels_last


def _foldable(graph, bn_node):
    layer = bn_node.layer
    if len(bn_node.inputs) != 1:
        return None
    (tin,) = bn_node.inputs
    rank = len(graph.tensors[tin].shape)
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    if axis is None or axis not in (-1, rank - 1):
        return None
    producer = graph.producer(tin)
    if producer is None or not isinstance(producer.layer, KERNEL_LAYERS):
        return None
    if activation_name(getattr(producer.layer, "activation", None)) != "linear":
        return None
    if not channels_last(producer.layer):
        return None
    if tin in graph.outputs or len(graph.consumers(tin)) != 1:
        return None
    return producer


def fold_batchnorm(graph):
    """Returns a graph where each BatchNormalization directly after a linear kernel layer (whose
    output feeds nothing else) is folded into a clone of that layer.

    With s = gamma / sqrt(var + eps): W' = W * s (per output unit), b' = s * (b - mean) + beta.
    BatchNormalization layers that cannot be folded (after an activation, an Add, or on a
    channels_first axis) stay as stand-alone element-wise affine layers.
    """
    graph = graph.copy()
    removed = set()
    for bn_node in list(graph.nodes):
        if not isinstance(bn_node.layer, NORMALIZATION):
            continue
        producer = _foldable(graph, bn_node)
        if producer is None:
            continue
        layer = producer.layer
        scale, offset = batchnorm_affine(bn_node.layer)
        kernel = np.asarray(layer.kernel, dtype="float64")
        if isinstance(layer, DEPTHWISE):
            kernel = kernel * scale.reshape(kernel.shape[-2:])
        else:
            kernel = kernel * scale
        bias = np.asarray(layer.bias, dtype="float64") if layer.use_bias else 0.0
        bias = scale * bias + offset
        (tin,) = producer.inputs
        dtype = layer.kernel.dtype
        folded = clone_layer(
            layer, graph.tensors[tin].shape,
            [kernel.astype(dtype), np.broadcast_to(bias, scale.shape).astype(dtype)],
            use_bias=True, name=layer.name,
        )
        producer.layer = folded
        producer.fn = node_fn(folded)
        producer.outputs = list(bn_node.outputs)
        producer.folded = producer.folded + (bn_node.name,)
        removed.add(id(bn_node))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return graph
