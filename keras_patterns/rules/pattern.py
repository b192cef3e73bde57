"""PatternNet and PatternAttribution kernel rules (Kindermans et al. 2018, arXiv 1705.05598).

The backward pass through a kernel layer uses the pattern A (PatternNet) or W * A
(PatternAttribution) in place of the kernel W: the signal r at the layer's (pre-activation) output
becomes ``r_in = lin(., K)^T r`` (:meth:`~keras_patterns.linear.LinearView.vjp`) with K = A or
W * A, i.e. ``A r`` for Dense and the transposed convolution with A for convolutions. ReLU gates
come from the separate Activation nodes of the canonized graph (the real forward pass),
max-pooling routes to the forward arg-max, as the gradient does. For EinsumDense (the
query/key/value/output projections of MultiHeadAttention after the attention canonizer) the
pattern has the kernel's shape and its output units are the kernel axes that appear in the output
(see :mod:`keras_patterns.patterns.statistics`); the backward pass is the same ``vjp``.

At an attention node the attention weights ``p = softmax(scores(q, k))`` are constants of the
forward pass, as the ReLU gates are: the head is the linear map ``out_i = sum_j p_ij v_j`` of the
values, the signal goes back through it (``r_v = p^T r``) and none to the queries and keys
(:data:`CONSTANT_ATTENTION_SIGNAL`; the same treatment as CP-LRP, Ali et al., ICML 2022, arXiv
2202.07304, in :mod:`keras_patterns.rules.attention`).

The analyzer-wide state given to the mirror is ``{"patterns": {key: tf.Variable}, "keys": {node:
key}}``: the patterns are the analyzer's own (fitted) variables, W is the model's live kernel.
"""

import tensorflow as tf

from keras_patterns.linear import LinearView
from keras_patterns.rules.base import Rule


def _kernel(node, state, attribution):
    view = LinearView(node)
    a = tf.convert_to_tensor(state["patterns"][state["keys"][node.name]])
    if attribution:
        a = a * tf.cast(view.kernel, a.dtype)
    return {"view": view, "kernel": a}


def _prepare_net(node, state):
    return _kernel(node, state, attribution=False)


def _prepare_attribution(node, state):
    return _kernel(node, state, attribution=True)


def _pattern_backward(ctx, rs):
    (x,) = ctx.xs
    (r,) = rs
    # The signal's dtype (float32 under mixed precision: the mirror widens 16-bit nodes).
    return [ctx.prepared["view"].vjp(tf.cast(x, r.dtype), ctx.prepared["kernel"], r)]


#: PatternNet: back-projection of the signal through the patterns A.
PATTERN_NET = Rule("pattern.net", _pattern_backward, prepare=_prepare_net)
#: PatternAttribution: the backward pass with W * A in place of W.
PATTERN_ATTRIBUTION = Rule("pattern.attribution", _pattern_backward, prepare=_prepare_attribution)


def _constant_attention_signal(ctx, rs):
    (r,) = rs
    q, k, v = (tf.cast(t, r.dtype) for t in ctx.xs)
    core = ctx.node.layer
    weights = tf.stop_gradient(core.attention_weights(q, k))
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = core.combine(weights, v)
    return [None, None, tape.gradient(out, v, output_gradients=r)]


#: The signal methods' attention rule: the attention weights are constants of the forward pass
#: (as ReLU gates), the signal goes to the values through ``p^T``, none to the queries and keys.
CONSTANT_ATTENTION_SIGNAL = Rule("signal.constant_attention", _constant_attention_signal)
