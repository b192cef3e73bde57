"""LRP and Deep Taylor rules as data.

Every rule here is a :class:`~keras_patterns.rules.Rule` record built by a small factory. The rules
work on any linear node of the canonized graph: Dense, Conv1D/2D/3D, DepthwiseConv1D/2D (through
:func:`keras_patterns.linear.apply_kernel`, so strides, dilation and padding are handled) and
stand-alone BatchNormalization (an element-wise linear layer ``scale * x + offset``). Each rule's
``prepare`` derives what it needs (W+, W-, W**2, ...) from the model's live variables inside the
compiled pass (so the maps follow the weights as the model trains, without retracing); its
``backward`` is a handful of TensorFlow ops: the forward map with the modified kernel, a stabilised
division, and one vector-Jacobian product of that map.

Notation (Montavon et al. 2019): x is the layer input, W the kernel, b the bias, z = W^T x + b,
R the relevance arriving at the layer output. ``safe_div(a, b)`` is ``a / (b + 1e-7 * [b == 0])``:
like iNNvestigate, the stabiliser is only added where the denominator is exactly zero.
"""

import numpy as np
import tensorflow as tf

from keras_patterns.graph.layers import BATCH_NORMALIZATION, KERNEL_LAYERS
from keras_patterns.linear import add_bias, apply_kernel, batchnorm_scale_offset, node_params
from keras_patterns.rules.base import Rule

#: The stabiliser of ``safe_div`` (iNNvestigate's ``K.epsilon()``).
SAFE_EPS = 1e-7


def safe_div(a, b, eps=SAFE_EPS):
    """``a / (b + eps * [b == 0])``: division guarded only at exact zeros."""
    return a / (b + eps * tf.cast(tf.equal(b, 0), b.dtype))


def _is_number(v):
    """A finite real scalar (bool excluded)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(
        np.isfinite(v)
    )


def _sign_stabilize(z, epsilon):
    """``z + epsilon * sign(z)`` with sign(0) = +1."""
    return z + epsilon * (2.0 * tf.cast(z >= 0, z.dtype) - 1.0)


# ------------------------------------------------------------------------------ linear node view
class LinearView:
    """A kernel node or a BatchNormalization node as ``z = lin(x, K) + b`` with any kernel-shaped K.

    Built inside the traced reverse pass: :attr:`kernel` and :attr:`bias` are tensors read from
    the model's live variables (through the node's
    :class:`~keras_patterns.linear.LinearParams`; for BatchNormalization the per-channel scale
    and offset of its inference-time map).

    Attributes:
        kernel: the kernel as a tensor (for BatchNormalization the per-channel scale).
        bias: the bias as a tensor, or None (for BatchNormalization the offset).
    """

    def __init__(self, node):
        layer = node.layer
        self.layer = layer
        self.is_bn = isinstance(layer, BATCH_NORMALIZATION)
        if isinstance(layer, KERNEL_LAYERS):
            params = node_params(node)
            self.kernel = params.kernel()
            self.bias = params.bias()
        elif self.is_bn:
            scale, offset = batchnorm_scale_offset(layer)
            self.kernel, self.bias = scale(), offset()
            axis = layer.axis
            self.axes = [axis] if isinstance(axis, int) else list(axis)
        else:
            raise TypeError(
                "LRP kernel rules apply to Dense, ConvND, DepthwiseConvND and BatchNormalization "
                f"layers. Received: {type(layer).__name__} ({layer.name})"
            )

    def _bn_shape(self, rank):
        shape = [1] * rank
        axes = [a % rank for a in self.axes]
        sizes = self.kernel.shape if len(axes) > 1 else [int(np.prod(self.kernel.shape))]
        for a, n in zip(axes, sizes):
            shape[a] = n
        return shape

    def apply(self, x, kernel):
        """The bias-free linear map with ``kernel`` (a tensor shaped like :attr:`kernel`)."""
        kernel = tf.cast(kernel, x.dtype)
        if self.is_bn:
            return x * tf.reshape(kernel, self._bn_shape(len(x.shape)))
        return apply_kernel(self.layer, x, kernel)

    def add_bias(self, z, bias):
        if bias is None:
            return z
        bias = tf.cast(bias, z.dtype)
        if self.is_bn:
            return z + tf.reshape(bias, self._bn_shape(len(z.shape)))
        return add_bias(self.layer, z, bias)

    def vjp(self, x, kernel, s):
        """``lin(., kernel)^T s``: the transposed linear map applied to ``s`` (shaped like x)."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = self.apply(x, kernel)
        return tape.gradient(z, x, output_gradients=s)

    def forward_vjp(self, x, kernel):
        """``(lin(x, kernel), s -> lin(., kernel)^T s)`` sharing one recorded forward pass."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = self.apply(x, kernel)
        return z, lambda s: tape.gradient(z, x, output_gradients=s)


def _split(a):
    """(a+, a-) of a tensor (None stays None)."""
    if a is None:
        return None, None
    return tf.maximum(a, 0), tf.minimum(a, 0)


def _prepare_linear(node, state):
    view = LinearView(node)
    return {"view": view, "W": view.kernel, "b": view.bias}


def _prepare_signed(node, state):
    out = _prepare_linear(node, state)
    out["Wp"], out["Wn"] = _split(out["W"])
    out["bp"], out["bn"] = _split(out["b"])
    return out


def _one(ctx, rs):
    (x,) = ctx.xs
    return x, rs[0]


# ------------------------------------------------------------------------------------ Z / epsilon
def _z_like(ctx, rs, bias, stabilize):
    x, r = _one(ctx, rs)
    p = ctx.prepared
    z = ctx.ys[0]  # the canonized node is linear: z = W^T x + b
    if not bias and p["b"] is not None:
        z = z - p["view"].add_bias(tf.zeros_like(z), p["b"])
    s = stabilize(r, z)
    (g,) = ctx.vjp([s])
    return [x * g]


def z_rule(bias=True):
    """LRP-0 / LRP-Z (Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier
    Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015):
    ``R_in = x * W (R / z)`` with z = W^T x (+ b), the division guarded at exact zeros.

    Args:
        bias: include the bias in z. Defaults to `True`; `False` is iNNvestigate's "ZIgnoreBias".
    """
    fn = (lambda ctx, rs: _z_like(ctx, rs, bias, safe_div))
    return Rule("lrp.z" if bias else "lrp.z_IB", fn, _prepare_linear)


def epsilon_rule(epsilon=1e-7, bias=True):
    """LRP-epsilon (Bach et al., PLoS ONE 2015): ``R_in = x * W (R / (z + epsilon * sign(z)))``
    with sign(0) = +1.

    Args:
        epsilon: the stabiliser, > 0. Defaults to `1e-7`.
        bias: include the bias in z. Defaults to `True`.

    Raises:
        ValueError: if ``epsilon`` is not a number > 0.
    """
    epsilon = check_epsilon(epsilon)
    fn = (lambda ctx, rs: _z_like(ctx, rs, bias, lambda r, z: r / _sign_stabilize(z, epsilon)))
    return Rule("lrp.epsilon" if bias else "lrp.epsilon_IB", fn, _prepare_linear,
                (("epsilon", epsilon),))


def check_epsilon(epsilon):
    if not _is_number(epsilon) or epsilon <= 0:
        raise ValueError(f"`epsilon` must be a number > 0. Received: epsilon={epsilon!r}")
    return float(epsilon)


# ------------------------------------------------------------------------------- W**2 and flat
def _prepare_square(node, state):
    out = _prepare_linear(node, state)
    out["K"] = tf.square(out["W"])
    return out


def _prepare_flat(node, state):
    out = _prepare_linear(node, state)
    out["K"] = tf.ones_like(out["W"])
    return out


def _fan_in_rule(ctx, rs):
    x, r = _one(ctx, rs)
    p = ctx.prepared
    view, k = p["view"], p["K"]
    ones = tf.ones(tf.concat([[1], tf.shape(x)[1:]], 0), x.dtype)
    z = view.apply(ones, k)  # the same for every sample: border-aware fan-in sums
    return [view.vjp(x, k, safe_div(r, z))]


#: LRP-w^2 (Montavon et al., "Explaining NonLinear Classification Decisions with Deep Taylor
#: Decomposition", Pattern Recognition 2017, arXiv 1512.02479): ``R_in = W^2 (R / (W^2)^T 1)``,
#: no bias, no multiplication by x.
W_SQUARE = Rule("lrp.w_square", _fan_in_rule, _prepare_square)
#: LRP-flat (Lapuschkin et al., "Unmasking Clever Hans Predictors", Nature Communications 2019,
#: arXiv 1902.10178): W^2 with all weights 1, i.e. relevance spread uniformly over the receptive field.
FLAT = Rule("lrp.flat", _fan_in_rule, _prepare_flat)


# ------------------------------------------------------------------------------------ alpha-beta
def check_alpha_beta(alpha=None, beta=None):
    """Validates/infers alpha-beta parameters (alpha - beta = 1, alpha >= 1, beta >= 0).

    Returns:
        (alpha, beta) as floats.

    Raises:
        ValueError: both missing, not numbers, out of range, or alpha - beta != 1.
    """
    def bad(v):
        return v is not None and not _is_number(v)

    if bad(alpha) or bad(beta):
        raise ValueError(f"`alpha` and `beta` must be numbers. Received: alpha={alpha!r}, beta={beta!r}")
    if alpha is None and beta is None:
        raise ValueError(
            "The alpha-beta rule needs `alpha` or `beta` (the other follows from alpha - beta = 1). "
            "Received: alpha=None, beta=None"
        )
    if alpha is None:
        alpha = beta + 1
    if beta is None:
        beta = alpha - 1
    if alpha < 1 or beta < 0 or not np.isclose(alpha - beta, 1, rtol=0, atol=1e-12):
        raise ValueError(
            "The alpha-beta rule needs alpha >= 1, beta >= 0 and alpha - beta = 1. Received: "
            f"alpha={alpha!r}, beta={beta!r} (alpha - beta = {alpha - beta!r})"
        )
    return float(alpha), float(beta)


def _alpha_beta(ctx, rs, alpha, beta, bias):
    x, r = _one(ctx, rs)
    p = ctx.prepared
    view = p["view"]
    bp, bn = (p["bp"], p["bn"]) if bias else (None, None)

    def part(pairs, b):
        """sum over (input part, kernel) of x_part * lin^T(R / z), z = sum lin(x_part, K) + b."""
        fwd = [(xp, view.forward_vjp(xp, k)) for xp, k in pairs]
        z = view.add_bias(tf.add_n([f[0] for _, f in fwd]), b)
        s = safe_div(r, z)
        return tf.add_n([xp * f[1](s) for xp, f in fwd])

    def general():
        xp, xn = tf.nn.relu(x), tf.minimum(x, 0)
        act = part([(xp, p["Wp"]), (xn, p["Wn"])], bp)
        if beta == 0:
            return act
        inh = part([(xp, p["Wn"]), (xn, p["Wp"])], bn)
        return alpha * act - beta * inh

    def nonnegative():  # x >= 0 everywhere (after a ReLU): x- = 0, half the work
        act = part([(x, p["Wp"])], bp)
        if beta == 0:
            return act
        return alpha * act - beta * part([(x, p["Wn"])], bn)

    return [tf.cond(tf.reduce_any(x < 0), general, nonnegative)]


def alpha_beta_rule(alpha=None, beta=None, bias=True):
    """LRP-alpha-beta (Bach et al., PLoS ONE 2015; Montavon et al., "Layer-Wise Relevance
    Propagation: An Overview", 2019): ``R_in = alpha * A - beta * I`` where the activator A
    redistributes R over the positive contributions (W+ x+ and W- x-) and the inhibitor I over the
    negative ones (W- x+ and W+ x-), each normalised by its own sum.

    With bias the positive part of the bias joins the activator's denominator and the negative part
    the inhibitor's (as in Zennit); iNNvestigate adds the full bias to both, see
    docs/differences.md. Without bias (``bias=False``, the "IgnoreBias" variants) both agree.

    Args:
        alpha: weight of the activator, >= 1. Inferred from beta if None.
        beta: weight of the inhibitor, >= 0. Inferred from alpha if None.
        bias: include the (split) bias. Defaults to `True`.

    Raises:
        ValueError: if alpha - beta != 1, alpha < 1, beta < 0 or both are missing.
    """
    alpha, beta = check_alpha_beta(alpha, beta)
    fn = (lambda ctx, rs: _alpha_beta(ctx, rs, alpha, beta, bias))
    return Rule("lrp.alpha_beta", fn, _prepare_signed,
                (("alpha", alpha), ("beta", beta), ("bias", bool(bias))))


def _z_plus_fast(ctx, rs):
    x, r = _one(ctx, rs)
    p = ctx.prepared
    z, vjp = p["view"].forward_vjp(x, p["Wp"])
    return [x * vjp(safe_div(r, z))]


#: z+ with positive weights only, no bias, x not clipped (Montavon et al., Pattern Recognition 2017,
#: arXiv 1512.02479): ``R_in = x * W+ (R / W+^T x)``; equals LRP-alpha1beta0 for inputs x >= 0.
Z_PLUS_FAST = Rule("lrp.z_plus_fast", _z_plus_fast, _prepare_signed)


# ----------------------------------------------------------------------------------- Z^B bounded
def check_bounds(low, high):
    """Validates Z^B bounds (scalars or arrays broadcastable to the input, low <= high)."""
    if low is None or high is None:
        raise ValueError(
            "The low or high parameter is missing. Z-B (bounded rule) requires both values. "
            f"Received: low={low!r}, high={high!r}"
        )
    lo, hi = np.asarray(low, dtype="float64"), np.asarray(high, dtype="float64")
    if lo.dtype.kind != "f" or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"`low` and `high` must be finite numbers or arrays. Received: low={low!r}, high={high!r}")
    try:
        ok = np.all(np.broadcast_to(lo, np.broadcast_shapes(lo.shape, hi.shape))
                    <= np.broadcast_to(hi, np.broadcast_shapes(lo.shape, hi.shape)))
    except ValueError:
        raise ValueError(
            f"`low` and `high` must broadcast together. Received shapes {lo.shape} and {hi.shape}"
        ) from None
    if not ok:
        raise ValueError(f"The bounded rule needs low <= high. Received: low={low!r}, high={high!r}")
    return lo, hi


def _bounded(ctx, rs, lo, hi):
    x, r = _one(ctx, rs)
    p = ctx.prepared
    view = p["view"]
    lo = tf.broadcast_to(tf.cast(lo, x.dtype), tf.shape(x))
    hi = tf.broadcast_to(tf.cast(hi, x.dtype), tf.shape(x))
    zx, gx = view.forward_vjp(x, p["W"])
    zl, gl = view.forward_vjp(lo, p["Wp"])
    zh, gh = view.forward_vjp(hi, p["Wn"])
    s = safe_div(r, zx - (zl + zh))
    return [x * gx(s) - (lo * gl(s) + hi * gh(s))]


def bounded_rule(low=-1.0, high=1.0):
    """Z^B, the bounded-input rule for the first layer (Montavon et al., Pattern Recognition 2017,
    arXiv 1512.02479): ``R_in = x*W s - l*W+ s - h*W- s`` with
    ``s = R / (W^T x - W+^T l - W-^T h)``, no bias.

    Args:
        low: lowest input value, a scalar or an array broadcastable to the layer input. Defaults to
            `-1.0`.
        high: highest input value, likewise. Defaults to `1.0`.

    Raises:
        ValueError: a bound missing or non-finite, shapes that do not broadcast, low > high.
    """
    lo, hi = check_bounds(low, high)
    fn = (lambda ctx, rs: _bounded(ctx, rs, lo, hi))

    def show(a):
        return float(a) if a.ndim == 0 else f"array{a.shape}"

    return Rule("lrp.bounded", fn, _prepare_signed, (("low", show(lo)), ("high", show(hi))))


# ----------------------------------------------------------------------------------------- gamma
def _prepare_gamma(gamma):
    def prepare(node, state):
        out = _prepare_linear(node, state)
        w, b = out["W"], out["b"]
        out["K"] = w + gamma * tf.maximum(w, 0)
        out["bg"] = None if b is None else b + gamma * tf.maximum(b, 0)
        return out

    return prepare


def _gamma(ctx, rs, bias):
    x, r = _one(ctx, rs)
    p = ctx.prepared
    view = p["view"]
    z, vjp = view.forward_vjp(x, p["K"])
    z = view.add_bias(z, p["bg"] if bias else None)
    return [x * vjp(safe_div(r, z))]


def gamma_rule(gamma=0.25, bias=True):
    """LRP-gamma (Montavon et al., "Layer-Wise Relevance Propagation: An Overview", in Explainable
    AI, Springer LNCS 11700, 2019): positive weights are boosted,
    ``R_in = x * (W + gamma W+) (R / ((W + gamma W+)^T x + b + gamma b+))``. gamma = 0 is LRP-0;
    gamma -> infinity approaches z+. Meant for layers with non-negative inputs (after ReLU).

    Args:
        gamma: the boost, >= 0. Defaults to `0.25`.
        bias: include the (boosted) bias. Defaults to `True`.

    Raises:
        ValueError: if gamma is not a number >= 0.
    """
    if not _is_number(gamma) or gamma < 0:
        raise ValueError(f"`gamma` must be a number >= 0. Received: gamma={gamma!r}")
    gamma = float(gamma)
    return Rule("lrp.gamma", lambda ctx, rs: _gamma(ctx, rs, bias), _prepare_gamma(gamma),
                (("gamma", gamma), ("bias", bool(bias))))


# ------------------------------------------------------------------------ layers without kernels
def _z_nonkernel(ctx, rs):
    s = [safe_div(r, y) for r, y in zip(rs, ctx.ys)]
    grads = ctx.vjp(s)
    return [None if g is None else x * g for x, g in zip(ctx.xs, grads)]


#: The Z rule for linear layers without a kernel (average pooling, Add, Subtract, Average,
#: Rescaling): each input receives relevance in proportion to its contribution,
#: ``R_i = x_i * d y / d x_i * R / y`` (Bach et al., PLoS ONE 2015).
Z_NONKERNEL = Rule("lrp.z_proportional", _z_nonkernel)


# ----------------------------------------------------------------------------------- fixed rules
Z = z_rule()
Z_IB = z_rule(bias=False)
EPSILON = epsilon_rule()
EPSILON_IB = epsilon_rule(bias=False)
ALPHA_1_BETA_0 = alpha_beta_rule(1, 0)
ALPHA_1_BETA_0_IB = alpha_beta_rule(1, 0, bias=False)
ALPHA_2_BETA_1 = alpha_beta_rule(2, 1)
ALPHA_2_BETA_1_IB = alpha_beta_rule(2, 1, bias=False)
#: z+ (Montavon et al., Pattern Recognition 2017): iNNvestigate's ZPlus, i.e. alpha1beta0 without bias.
Z_PLUS = Rule("lrp.z_plus", ALPHA_1_BETA_0_IB.backward, ALPHA_1_BETA_0_IB.prepare)
BOUNDED = bounded_rule()
GAMMA = gamma_rule()

#: iNNvestigate's rule names (``LRP_RULES``) plus "Gamma" -> rule factory (called with no
#: arguments when a name is given as a string).
LRP_RULES = {
    "Z": z_rule,
    "ZIgnoreBias": lambda: Z_IB,
    "Epsilon": epsilon_rule,
    "EpsilonIgnoreBias": lambda: EPSILON_IB,
    "WSquare": lambda: W_SQUARE,
    "Flat": lambda: FLAT,
    "AlphaBeta": alpha_beta_rule,
    "AlphaBetaIgnoreBias": lambda alpha=None, beta=None: alpha_beta_rule(alpha, beta, bias=False),
    "Alpha2Beta1": lambda: ALPHA_2_BETA_1,
    "Alpha2Beta1IgnoreBias": lambda: ALPHA_2_BETA_1_IB,
    "Alpha1Beta0": lambda: ALPHA_1_BETA_0,
    "Alpha1Beta0IgnoreBias": lambda: ALPHA_1_BETA_0_IB,
    "ZPlus": lambda: Z_PLUS,
    "ZPlusFast": lambda: Z_PLUS_FAST,
    "Bounded": bounded_rule,
    "Gamma": gamma_rule,
}


def get_rule(rule, what="rule"):
    """A :class:`Rule` from a rule name of :data:`LRP_RULES` or a Rule.

    Raises:
        ValueError: unknown name (lists the valid ones).
        TypeError: neither a string nor a Rule.
    """
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        if rule not in LRP_RULES:
            raise ValueError(
                f"Unknown LRP rule name for `{what}`. Received: {rule!r}. Valid names: {sorted(LRP_RULES)}"
            )
        return LRP_RULES[rule]()
    raise TypeError(
        f"`{what}` must be a rule name (one of {sorted(LRP_RULES)}) or a keras_patterns.rules.Rule. "
        f"Received: {rule!r}"
    )
