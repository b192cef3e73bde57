"""Canonizer: split SeparableConv1D/2D into a depthwise and a pointwise convolution."""

import dataclasses

import keras

from keras_patterns.canonizers.clone import node_fn
from keras_patterns.graph.layers import SEPARABLE


def split_separable(graph):
    """Returns a graph where each SeparableConvND node ``name`` is replaced by ``name/depthwise``
    (DepthwiseConvND, no bias) followed by ``name/pointwise`` (1x1 ConvND with the bias and the
    activation)."""
    graph = graph.copy()
    nodes = []
    for node in graph.nodes:
        layer = node.layer
        if not isinstance(layer, SEPARABLE):
            nodes.append(node)
            continue
        rank = 1 if isinstance(layer, keras.layers.SeparableConv1D) else 2
        depthwise_cls = keras.layers.DepthwiseConv1D if rank == 1 else keras.layers.DepthwiseConv2D
        conv_cls = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
        (tin,) = node.inputs
        (tout,) = node.outputs
        in_shape = graph.tensors[tin].shape
        depthwise = depthwise_cls(
            kernel_size=layer.kernel_size, strides=layer.strides, padding=layer.padding,
            depth_multiplier=layer.depth_multiplier, data_format=layer.data_format,
            dilation_rate=layer.dilation_rate, use_bias=False, name=layer.name + "_depthwise",
            dtype=layer.dtype_policy,
        )
        depthwise.build(in_shape)
        depthwise.set_weights([layer.depthwise_kernel.numpy()])
        mid_shape = tuple(depthwise.compute_output_shape(in_shape))
        pointwise = conv_cls(
            filters=layer.filters, kernel_size=1, data_format=layer.data_format,
            use_bias=layer.use_bias, activation=layer.activation, name=layer.name + "_pointwise",
            dtype=layer.dtype_policy,
        )
        pointwise.build(mid_shape)
        weights = [layer.pointwise_kernel.numpy()] + ([layer.bias.numpy()] if layer.use_bias else [])
        pointwise.set_weights(weights)
        mid = graph.new_tensor(mid_shape, graph.tensors[tout].dtype)
        nodes.append(
            dataclasses.replace(
                node, name=node.name + "/depthwise", key=node.key + "/depthwise", layer=depthwise,
                outputs=[mid], fn=node_fn(depthwise),
            )
        )
        nodes.append(
            dataclasses.replace(
                node, name=node.name + "/pointwise", key=node.key + "/pointwise", layer=pointwise,
                inputs=[mid], fn=node_fn(pointwise),
            )
        )
    graph.nodes = nodes
    return graph
