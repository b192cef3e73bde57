"""LRP and Deep Taylor rules as data.

Every rule here is a :class:`~keras_patterns.rules.Rule` declared on top of
:func:`~keras_patterns.rules.redistribution.redistribution_rule`: which forward passes of the
node's linear map (input and kernel modifiers), which bias, which stabiliser. The rules work on any
linear node of the canonized graph: Dense, Conv1D/2D/3D, DepthwiseConv1D/2D (through
:func:`keras_patterns.linear.apply_kernel`, so strides, dilation and padding are handled) and
stand-alone BatchNormalization (an element-wise linear layer ``scale * x + offset``). The modified
kernels (W+, W-, W**2, ...) are derived from the model's live variables inside the compiled pass,
so the maps follow the weights as the model trains, without retracing.

Notation (Montavon et al. 2019): x is the layer input, W the kernel, b the bias, z = W^T x + b,
R the relevance arriving at the layer output. ``safe_div(a, b)`` is ``a / (b + 1e-7 * [b == 0])``:
like iNNvestigate, the stabiliser is only added where the denominator is exactly zero.
"""

import numpy as np
import tensorflow as tf

from keras_patterns.linear import LinearView  # noqa: F401 (the historical import path)
from keras_patterns.rules.base import Rule
from keras_patterns.rules.redistribution import (  # noqa: F401 (SAFE_EPS, safe_div: public here too)
    SAFE_EPS,
    Group,
    Term,
    negative,
    positive,
    redistribution_rule,
    safe_div,
    unchanged,
)


def _is_number(v):
    """A finite real scalar (bool excluded)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(
        np.isfinite(v)
    )


def _sign_stabilize(z, epsilon):
    """``z + epsilon * sign(z)`` with sign(0) = +1 (and -1 for NaN), in three element-wise ops."""
    return z + tf.where(z >= 0, tf.constant(epsilon, z.dtype), tf.constant(-epsilon, z.dtype))


def check_epsilon(epsilon):
    """``epsilon`` as a float. Raises ValueError unless it is a number > 0."""
    if not _is_number(epsilon) or epsilon <= 0:
        raise ValueError(f"`epsilon` must be a number > 0. Received: epsilon={epsilon!r}")
    return float(epsilon)


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


def z_rule(bias=True):
    """LRP-0 / LRP-Z (Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier
    Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015):
    ``R_in = x * W (R / z)`` with z = W^T x (+ b), the division guarded at exact zeros.

    Args:
        bias: include the bias in z. Defaults to `True`; `False` is iNNvestigate's "ZIgnoreBias".
    """
    group = Group((Term(),), bias=unchanged if bias else None)
    return redistribution_rule("lrp.z" if bias else "lrp.z_IB", group)


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
    return redistribution_rule(
        "lrp.epsilon" if bias else "lrp.epsilon_IB", Group((Term(),), unchanged if bias else None),
        stabilize=lambda r, z: r / _sign_stabilize(z, epsilon), params=(("epsilon", epsilon),),
    )


def _fan_in(name, kernel):
    """``R_in = K (R / K^T 1)``: no bias, x not used (the fan-in sums are border-aware)."""
    term = Term(input=tf.ones_like, kernel=kernel, times_input=False, shared=True)
    return redistribution_rule(name, Group((term,), bias=None))


#: LRP-w^2 (Montavon et al., "Explaining NonLinear Classification Decisions with Deep Taylor
#: Decomposition", Pattern Recognition 2017, arXiv 1512.02479): ``R_in = W^2 (R / (W^2)^T 1)``,
#: no bias, no multiplication by x.
W_SQUARE = _fan_in("lrp.w_square", tf.square)
#: LRP-flat (Lapuschkin et al., "Unmasking Clever Hans Predictors", Nature Communications 2019,
#: arXiv 1902.10178): W^2 with all weights 1, i.e. relevance spread uniformly over the receptive field.
FLAT = _fan_in("lrp.flat", tf.ones_like)


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
    activator = (Term(positive, positive), Term(negative, negative))
    groups = [Group(activator, bias=positive if bias else None, weight=alpha)]
    if beta != 0:
        inhibitor = (Term(positive, negative), Term(negative, positive))
        groups.append(Group(inhibitor, bias=negative if bias else None, weight=-beta))
    return redistribution_rule("lrp.alpha_beta", groups,
                               params=(("alpha", alpha), ("beta", beta), ("bias", bool(bias))))


#: z+ with positive weights only, no bias, x not clipped (Montavon et al., Pattern Recognition 2017,
#: arXiv 1512.02479): ``R_in = x * W+ (R / W+^T x)``; equals LRP-alpha1beta0 for inputs x >= 0.
Z_PLUS_FAST = redistribution_rule("lrp.z_plus_fast", Group((Term(kernel=positive),), bias=None))


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

    def bound(a):
        return lambda x: tf.broadcast_to(tf.cast(a, x.dtype), tf.shape(x))

    def show(a):
        return float(a) if a.ndim == 0 else f"array{a.shape}"

    terms = (Term(), Term(bound(lo), positive, subtract=True), Term(bound(hi), negative, subtract=True))
    return redistribution_rule("lrp.bounded", Group(terms, bias=None),
                               params=(("low", show(lo)), ("high", show(hi))))


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

    def boost(a):
        return a + gamma * tf.maximum(a, 0)

    return redistribution_rule("lrp.gamma", Group((Term(kernel=boost),), boost if bias else None),
                               params=(("gamma", gamma), ("bias", bool(bias))))


#: The Z rule for linear layers without a kernel (average pooling, Add, Subtract, Average,
#: Rescaling): each input receives relevance in proportion to its contribution,
#: ``R_i = x_i * d y / d x_i * R / y`` (Bach et al., PLoS ONE 2015).
Z_NONKERNEL = redistribution_rule("lrp.z_proportional", Group((Term(),)), linear=False)


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
