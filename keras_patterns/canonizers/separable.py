"""Canonizer: split SeparableConv1D/2D into a depthwise and a pointwise convolution."""

import dataclasses

import keras

from keras_patterns.graph.layers import SEPARABLE
from keras_patterns.linear import LinearParams, linear_fn


def split_separable(graph):
    """Returns a graph where each SeparableConvND node ``name`` is replaced by ``name/depthwise``
    (DepthwiseConvND, no bias) followed by ``name/pointwise`` (1x1 ConvND with the bias and the
    activation). Both compute with the separable layer's own live ``depthwise_kernel``,
    ``pointwise_kernel`` and ``bias``; their layers are unbuilt configuration objects."""
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
        mid_shape = tuple(depthwise.compute_output_shape(in_shape))
        pointwise = conv_cls(
            filters=layer.filters, kernel_size=1, data_format=layer.data_format,
            use_bias=layer.use_bias, activation=layer.activation, name=layer.name + "_pointwise",
            dtype=layer.dtype_policy,
        )
        dtype = layer.variable_dtype or "float32"
        dw_params = LinearParams(
            lambda layer=layer: layer.depthwise_kernel, None, tuple(layer.depthwise_kernel.shape),
            depthwise=True, dtype=dtype,
        )
        pw_params = LinearParams(
            lambda layer=layer: layer.pointwise_kernel,
            (lambda layer=layer: layer.bias) if layer.use_bias else None,
            tuple(layer.pointwise_kernel.shape), dtype=dtype,
        )
        mid = graph.new_tensor(mid_shape, graph.tensors[tout].dtype)
        nodes.append(
            dataclasses.replace(
                node, name=node.name + "/depthwise", key=node.key + "/depthwise", layer=depthwise,
                outputs=[mid], fn=linear_fn(depthwise, dw_params), params=dw_params,
            )
        )
        nodes.append(
            dataclasses.replace(
                node, name=node.name + "/pointwise", key=node.key + "/pointwise", layer=pointwise,
                inputs=[mid], fn=_pointwise_fn(pointwise, pw_params), params=pw_params,
            )
        )
    graph.nodes = nodes
    return graph


def _pointwise_fn(layer, params):
    """The pointwise node's function: the linear map and then the separable layer's activation
    (split off by the activation canonizer that runs next)."""
    linear = linear_fn(layer, params)

    def fn(xs):
        (z,) = linear(xs)
        return [layer.activation(z)]

    return fn
