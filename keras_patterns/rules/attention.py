"""The LRP rule of the attention node: attention weights as constants (CP-LRP).

Ali, Schnake, Eberle, Montavon, Müller & Wolf, "XAI for Transformers: Better Explanations through
Conservative Propagation", ICML 2022 (arXiv 2202.07304): the attention weights
``p = softmax(scores(q, k))`` are treated as constants in the backward pass, so an attention head
is the linear map ``out_i = sum_j p_ij v_j`` of the values. Relevance goes to the values by the
Z rule of that map,

    R_v[j] = v_j * sum_i p_ij R_i / out_i,

and none to the queries and keys (their path only computes the constants). With the projections
handled by the kernel rules (the canonizer makes them EinsumDense kernel nodes), relevance is
conserved through the whole attention layer on bias-free models.

AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
Transformers", ICML 2024, arXiv 2402.05602) instead propagates through the softmax and the
bilinear q-k product (relevance reaches the queries and keys too); see docs/support.md for why
this library implements CP-LRP.
"""

import tensorflow as tf

from keras_patterns.rules.base import Rule
from keras_patterns.rules.redistribution import safe_div


def _constant_attention(ctx, rs):
    q, k, v = ctx.xs
    (r,) = rs
    core = ctx.node.layer
    weights = tf.stop_gradient(core.attention_weights(q, k))
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = core.combine(weights, v)
    back = tape.gradient(out, v, output_gradients=safe_div(r, out))
    return [None, None, v * back]


#: CP-LRP (Ali et al., ICML 2022): the attention weights are constants; the Z rule of the linear
#: map ``v -> p v`` sends all relevance to the values, none to the queries and keys.
CONSTANT_ATTENTION = Rule("lrp.constant_attention", _constant_attention)
