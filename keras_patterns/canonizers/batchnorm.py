"""Canonizer: fold BatchNormalization into the preceding kernel layer."""

from keras_patterns.canonizers.clone import config_clone
from keras_patterns.graph.layers import BATCH_NORMALIZATION, BN_FOLDABLE, activation_name
from keras_patterns.linear import batchnorm_scale_offset, channels_last, linear_fn, node_params


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
    if producer is None or not isinstance(producer.layer, BN_FOLDABLE):
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
    output feeds nothing else) is folded into that layer's node.

    With s = gamma / sqrt(var + eps): W' = W * s (per output unit), b' = s * (b - mean) + beta,
    computed from the live variables of both layers at every call (nothing is copied). The node's
    layer becomes an unbuilt configuration copy with ``use_bias=True``.
    BatchNormalization layers that cannot be folded (after an activation, an Add, or on a
    channels_first axis) stay as stand-alone element-wise affine layers.
    """
    graph = graph.copy()
    removed = set()
    for bn_node in list(graph.nodes):
        if not isinstance(bn_node.layer, BATCH_NORMALIZATION):
            continue
        producer = _foldable(graph, bn_node)
        if producer is None:
            continue
        layer = producer.layer
        params = node_params(producer).scaled(*batchnorm_scale_offset(bn_node.layer))
        folded = config_clone(layer, use_bias=True)
        producer.layer = folded
        producer.params = params
        producer.fn = linear_fn(folded, params)
        producer.outputs = list(bn_node.outputs)
        producer.folded = producer.folded + (bn_node.name,)
        removed.add(id(bn_node))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return graph
