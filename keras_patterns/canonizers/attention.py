"""Canonizer: attention layers as projections (kernel nodes) and one attention node.

``MultiHeadAttention`` becomes five nodes computing the same function with the layer's own live
sublayers: ``name/query``, ``name/key``, ``name/value`` (EinsumDense kernel nodes), ``name/attention``
(an :class:`~keras_patterns.graph.attention.AttentionNode`: masked softmax of the scaled dot
products, applied to the values) and ``name/output`` (EinsumDense). Keras' ``Attention`` and
``AdditiveAttention`` (no projections) become one attention node with inputs ``(q, k, v)``.
The kernel rules then reach every projection, and the attention node gets a rule of its own
(the plain gradient for the gradient methods; constant attention weights for LRP, see
:mod:`keras_patterns.rules.attention`).

Supported calls: rank-3 inputs ``(batch, tokens, features)`` with the default ``attention_axes``,
``use_causal_mask`` on or off, no ``attention_mask``, no Keras masks on the inputs, no
``return_attention_scores``, and for MultiHeadAttention no ``use_gate`` and no ``sliding_window``.
Anything else is refused with a NotAnalyzeableModelError naming the layer and the argument.
"""

import dataclasses
import inspect

from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.graph import _keras_internals as ki
from keras_patterns.graph.attention import AttentionNode
from keras_patterns.graph.layers import KERAS_ATTENTION, MULTI_HEAD_ATTENTION


def _refuse(node, what):
    raise NotAnalyzeableModelError(
        f"Attention layer {node.name!r} ({node.class_name}) is called with {what}; the attention "
        "canonizer supports rank-3 inputs (batch, tokens, features), use_causal_mask=True/False "
        "and no masks, attention scores output, gate or sliding window."
    )


def _bound_inputs(node):
    """``({argument: tensor id or value}, kts)`` of an attention node's call."""
    knode = getattr(node.fn, "keras_node", None)
    if knode is None:
        raise NotAnalyzeableModelError(
            f"Attention layer {node.name!r} ({node.class_name}) was changed by an earlier "
            "canonizer; the attention canonizer must come first."
        )
    args, kwargs = ki.call_arguments(knode)
    kts = ki.node_input_tensors(knode)
    bound = inspect.signature(node.layer.call).bind(*args, **kwargs).arguments

    def tid(value):
        for i, kt in enumerate(kts):
            if kt is value:
                return node.inputs[i]
        return value

    return {k: (tid(v) if not isinstance(v, (list, tuple)) else [tid(e) for e in v])
            for k, v in bound.items()}, kts


def _check_common(node, graph, args, masks):
    if args.get("return_attention_scores"):
        _refuse(node, "return_attention_scores=True")
    for m in masks:
        if args.get(m) is not None:
            _refuse(node, f"`{m}`")
    if any(len(graph.tensors[t].shape) != 3 for t in node.inputs):
        _refuse(node, f"inputs of shapes {[graph.tensors[t].shape for t in node.inputs]}")


def _call(layer):
    def fn(xs):
        return [layer(xs[0])]

    return fn


def _attend(core):
    def fn(xs):
        return [core.compute(*xs)]

    return fn


def _expand_mha(graph, node):
    layer = node.layer
    config = layer.get_config()
    args, _ = _bound_inputs(node)
    _check_common(node, graph, args, ("query_mask", "value_mask", "key_mask", "attention_mask"))
    if config.get("use_gate"):
        _refuse(node, "use_gate=True")
    if config.get("sliding_window") is not None:
        _refuse(node, f"sliding_window={config['sliding_window']!r}")
    if config.get("attention_axes") not in (None, (1,), [1], 1, (-2,), [-2], -2):
        _refuse(node, f"attention_axes={config['attention_axes']!r}")
    query, value = args["query"], args["value"]
    key = args.get("key")
    key = value if key is None else key
    proj = ki.attention_projections(layer)
    core = AttentionNode(layer, "multi_head", causal=bool(args.get("use_causal_mask")))
    dtype = graph.tensors[node.outputs[0]].dtype
    out = {}
    nodes = []
    for part, src in (("query", query), ("key", key), ("value", value)):
        shape = tuple(proj[part].compute_output_shape(graph.tensors[src].shape))
        out[part] = graph.new_tensor(shape, dtype)
        nodes.append(dataclasses.replace(
            node, name=f"{node.name}/{part}", key=f"{node.key}/{part}", layer=proj[part],
            inputs=[src], outputs=[out[part]], fn=_call(proj[part]), params=None,
        ))
    mixed = graph.new_tensor(graph.tensors[out["query"]].shape[:-1] + graph.tensors[out["value"]].shape[-1:],
                             dtype)
    nodes.append(dataclasses.replace(
        node, name=f"{node.name}/attention", key=f"{node.key}/attention", layer=core,
        inputs=[out["query"], out["key"], out["value"]], outputs=[mixed], fn=_attend(core), params=None,
    ))
    nodes.append(dataclasses.replace(
        node, name=f"{node.name}/output", key=f"{node.key}/output", layer=proj["output"],
        inputs=[mixed], outputs=list(node.outputs), fn=_call(proj["output"]), params=None,
    ))
    return nodes


def _attention_node(graph, node):
    layer = node.layer
    args, _ = _bound_inputs(node)
    _check_common(node, graph, args, ("mask",))
    inputs = args["inputs"]
    if not isinstance(inputs, list) or len(inputs) not in (2, 3):
        _refuse(node, "inputs other than [query, value] or [query, value, key]")
    query, value = inputs[0], inputs[1]
    key = inputs[2] if len(inputs) == 3 else value
    kind = "additive" if isinstance(layer, KERAS_ATTENTION[1]) else layer.score_mode
    core = AttentionNode(layer, kind, causal=bool(args.get("use_causal_mask")))
    return [dataclasses.replace(node, layer=core, inputs=[query, key, value], fn=_attend(core), params=None)]


def expand_attention(graph):
    """Returns a graph where every MultiHeadAttention is expanded into its projections and an
    attention node, and every Attention/AdditiveAttention is an attention node (see the module
    docstring). The user's layers are not changed: the new nodes call the layer's own sublayers
    and read its variables.

    Raises:
        NotAnalyzeableModelError: an attention call the canonizer does not support (named).
    """
    graph = graph.copy()
    nodes = []
    for node in graph.nodes:
        if isinstance(node.layer, MULTI_HEAD_ATTENTION):
            nodes += _expand_mha(graph, node)
        elif isinstance(node.layer, KERAS_ATTENTION):
            nodes += _attention_node(graph, node)
        else:
            nodes.append(node)
    graph.nodes = nodes
    return graph
