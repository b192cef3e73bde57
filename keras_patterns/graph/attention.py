"""The attention step of an attention layer as one node of the canonized graph.

The attention canonizer (:mod:`keras_patterns.canonizers.attention`) expands a
``MultiHeadAttention`` into its query/key/value projections (EinsumDense kernel nodes), one
:class:`AttentionNode` and the output projection, and turns Keras' ``Attention`` and
``AdditiveAttention`` into an :class:`AttentionNode`. The node computes

    weights = softmax(scores(q, k))        (causal positions masked, as Keras does)
    out     = combine(weights, v)          (linear in v)

so that the backward rules can treat the attention weights as constants (CP-LRP, Ali et al.,
"XAI for Transformers: Better Explanations through Conservative Propagation", ICML 2022): for
fixed weights the node is a linear map of the values alone.
"""

import math

import keras
from keras import ops

KINDS = ("multi_head", "dot", "concat", "additive")
#: The score of a masked position (Keras' ``_large_negative_number``; exp underflows to 0).
_MASKED = -1e9


class AttentionNode(keras.layers.Layer):
    """The attention step ``out = combine(softmax(scores(q, k)), v)`` of an attention layer.

    Never built and without variables of its own: the learned score scales of ``Attention`` and
    ``AdditiveAttention`` are read from the user's layer (``source``) at every call.

    Args:
        source: the user's ``MultiHeadAttention``, ``Attention`` or ``AdditiveAttention`` layer.
        kind: ``"multi_head"`` (scaled dot product per head, inputs ``(B, T, N, H)``),
            ``"dot"`` / ``"concat"`` (``Attention``'s score modes) or ``"additive"``.
        causal: mask the positions after the query's own (``use_causal_mask=True``). Defaults to
            `False`.

    Example:

    ```python
    node = AttentionNode(mha, "multi_head")
    out = node.compute(q, k, v)            # q, k, v: the projected (B, T, N, H) tensors
    weights = node.attention_weights(q, k)
    ```
    """

    def __init__(self, source, kind, causal=False, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {list(KINDS)}. Received: kind={kind!r}")
        kwargs.setdefault("name", source.name + "_attention")
        kwargs.setdefault("dtype", source.dtype_policy)
        super().__init__(**kwargs)
        self.source = source
        self.kind = kind
        self.causal = bool(causal)

    def scores(self, q, k):
        """The attention logits, ``(B, N, T, S)`` for multi-head attention, ``(B, T, S)`` otherwise."""
        src = self.source
        if self.kind == "multi_head":
            key_dim = src.get_config()["key_dim"]
            q = q * ops.cast(1.0 / math.sqrt(float(key_dim)), q.dtype)
            return ops.einsum("aecd,abcd->acbe", k, q)
        if self.kind == "dot":
            s = ops.matmul(q, ops.swapaxes(k, -2, -1))
            return s if src.scale is None else s * ops.cast(src.scale, s.dtype)
        q, k = ops.expand_dims(q, -2), ops.expand_dims(k, -3)
        if self.kind == "concat":
            t = q + k if src.scale is None else ops.cast(src.scale, q.dtype) * (q + k)
            return ops.cast(src.concat_score_weight, q.dtype) * ops.sum(ops.tanh(t), axis=-1)
        scale = ops.cast(src.scale, q.dtype) if src.use_scale else 1.0
        return ops.sum(scale * ops.tanh(q + k), axis=-1)

    def attention_weights(self, q, k):
        """``softmax(scores(q, k))`` over the key axis, causal positions masked."""
        s = self.scores(q, k)
        if self.causal:
            t, n = ops.shape(s)[-2], ops.shape(s)[-1]
            ones = ops.ones((t, n), dtype="int32")
            keep = ops.greater_equal(ops.cumsum(ones, axis=0), ops.cumsum(ones, axis=1))
            s = ops.where(keep, s, ops.cast(_MASKED, s.dtype))
        return ops.softmax(s, axis=-1)

    def combine(self, weights, v):
        """``out = weights v`` (per head for multi-head attention): linear in ``v``."""
        if self.kind == "multi_head":
            return ops.einsum("acbe,aecd->abcd", weights, v)
        return ops.matmul(weights, v)

    def compute(self, q, k, v):
        """The node's output."""
        return self.combine(self.attention_weights(q, k), v)

    def call(self, q, k, v):
        return self.compute(q, k, v)
