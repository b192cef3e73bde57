"""One redistribution helper: every LRP rule is a declaration on top of :func:`redistribution_rule`.

After the idea of Zennit's ``BasicHook`` (Anders et al., "Software for Dataset-wide XAI", arXiv
2106.13200): a rule is a few forward passes of the node's linear map, each with a modified input
and a modified kernel (a :class:`Term`), gathered in :class:`Group` s. A group's forward outputs,
plus its modified bias, add up to a denominator z; the relevance R arriving at the node is divided
by the stabilised z; each term projects the quotient back through its own transposed map and
multiplies it by its own input; the groups are weighted and summed:

    z_g  = sum_{t in g} +-lin(input_t(x), kernel_t(W)) + bias_g(b)
    R_in = sum_g weight_g * sum_{t in g} +-input_t(x) * lin(., kernel_t(W))^T stabilize(R, z_g)

The node is seen through :class:`~keras_patterns.linear.LinearView` (Dense, ConvND,
DepthwiseConvND, stand-alone BatchNormalization), reading the model's live weights inside the
compiled reverse pass. Two shortcuts keep the common rules cheap and exact:

* a rule of one unmodified term (LRP-0, LRP-epsilon) uses the forward pass the mirror recorded
  (``ctx.ys``, ``ctx.vjp``) instead of running the layer again; with ``linear=False`` this is the
  Z rule of layers without a kernel (Add, Average, pooling), one term per input;
* terms whose input is :func:`negative` (x-) vanish where x >= 0: when the whole batch is
  non-negative (after a ReLU) they are skipped and :func:`positive` inputs are taken as x itself,
  one ``tf.cond``, half the work.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from keras_patterns.linear import LinearView
from keras_patterns.rules.base import Rule

#: The stabiliser of ``safe_div`` (iNNvestigate's ``K.epsilon()``).
SAFE_EPS = 1e-7


def safe_div(a, b, eps=SAFE_EPS):
    """``a / (b + eps * [b == 0])``: division guarded only at exact zeros."""
    return a / (b + tf.where(tf.equal(b, 0), tf.constant(eps, b.dtype), tf.constant(0, b.dtype)))


def unchanged(v):
    """The identity modifier."""
    return v


def positive(v):
    """``max(v, 0)``, for inputs, kernels and biases."""
    return tf.maximum(v, 0)


def negative(v):
    """``min(v, 0)``, for inputs, kernels and biases."""
    return tf.minimum(v, 0)


@dataclasses.dataclass(frozen=True)
class Term:
    """One forward pass of a redistribution: ``lin(input(x), kernel(W))``.

    Attributes:
        input: input modifier ``x -> x_t``. Defaults to :func:`unchanged`.
        kernel: kernel modifier ``W -> K_t`` (on the live kernel). Defaults to :func:`unchanged`.
        subtract: the term enters its group's z and the result with a minus sign.
        times_input: the back-projection is multiplied by ``x_t`` (False: the back-projection
            itself is the term's share, as in LRP-w^2).
        shared: ``input`` does not depend on the sample: the forward runs once on a batch of one
            (e.g. ``tf.ones_like`` for the fan-in rules).
    """

    input: Callable = unchanged
    kernel: Callable = unchanged
    subtract: bool = False
    times_input: bool = True
    shared: bool = False


@dataclasses.dataclass(frozen=True)
class Group:
    """Terms that share one denominator.

    Attributes:
        terms: the :class:`Term` s (a tuple).
        bias: bias modifier ``b -> b_g`` added to z, or None for no bias. Defaults to
            :func:`unchanged`.
        weight: the group's factor in the result (a negative one is subtracted). Defaults to
            `1.0`.
    """

    terms: tuple
    bias: Optional[Callable] = unchanged
    weight: float = 1.0


def _signed_sum(items):
    """``sum(+v) - sum(-v)`` over ``(subtract, v)`` pairs, in that order."""
    pos = [v for sub, v in items if not sub]
    neg = [v for sub, v in items if sub]
    total = None if not pos else pos[0] if len(pos) == 1 else tf.add_n(pos)
    if neg:
        sub = neg[0] if len(neg) == 1 else tf.add_n(neg)
        total = -sub if total is None else total - sub
    return total


def _modified(view, groups):
    """``{modifier: modified kernel or bias}`` for every modifier of ``groups``, each once."""
    out = {}
    for g in groups:
        for t in g.terms:
            if t.kernel not in out:
                out[t.kernel] = t.kernel(view.kernel)
        if g.bias is not None and view.bias is not None and ("b", g.bias) not in out:
            out["b", g.bias] = g.bias(view.bias)
    return out


def _redistribute(view, x, r, groups, stabilize, mods):
    out = []
    for group in groups:
        passes = []
        for t in group.terms:
            xt = t.input(x[:1] if t.shared else x)
            passes.append((t, xt, mods[t.kernel]) + view.forward_vjp(xt, mods[t.kernel]))
        z = _signed_sum([(t.subtract, z) for t, _, _, z, _ in passes])
        s = stabilize(r, view.add_bias(z, mods.get(("b", group.bias))))
        shares = []
        for t, xt, k, _, back in passes:
            g = view.vjp(x, k, s) if t.shared else back(s)
            shares.append((t.subtract, xt * g if t.times_input else g))
        share, w = _signed_sum(shares), abs(group.weight)
        out.append((group.weight < 0, share if w == 1 else w * share))
    return _signed_sum(out)


def _nonnegative(groups):
    """The groups for x >= 0: x- terms dropped, x+ read as x."""
    out = []
    for g in groups:
        terms = tuple(
            dataclasses.replace(t, input=unchanged) if t.input is positive else t
            for t in g.terms if t.input is not negative
        )
        out.append(dataclasses.replace(g, terms=terms))
    return tuple(out)


def _recorded(ctx, rs, stabilize, bias):
    """The one-unmodified-term case on the mirror's recorded forward pass."""
    ys = list(ctx.ys)
    if bias is None:
        ys[0] = ctx.prepared["view"].remove_bias(ys[0])
    grads = ctx.vjp([stabilize(r, y) for r, y in zip(rs, ys)])
    return [None if g is None else x * g for x, g in zip(ctx.xs, grads)]


def _prepare_view(node, state):
    return {"view": LinearView(node)}


def redistribution_rule(name, groups, stabilize=safe_div, params=(), linear=True):
    """A :class:`~keras_patterns.rules.Rule` redistributing relevance over a linear node.

    Args:
        name: the rule's name.
        groups: a :class:`Group` or a sequence of them.
        stabilize: ``stabilize(R, z) -> R / z'`` with a stabilised z' (Zennit's gradient mapper).
            Defaults to :func:`safe_div`.
        params: the rule's parameters, for display and equality.
        linear: the node is a kernel or BatchNormalization node seen through a
            :class:`~keras_patterns.linear.LinearView`; False: any node, with one unmodified
            term per input on the recorded forward pass (the Z rule of Add or pooling).

    Returns:
        A :class:`~keras_patterns.rules.Rule`.

    Raises:
        ValueError: a group without terms, or ``linear=False`` with anything but one unmodified
            term (unchanged bias, weight 1).

    Example:

    ```python
    z_plus_fast = redistribution_rule("lrp.z_plus_fast", Group((Term(kernel=positive),), bias=None))
    ```
    """
    groups = (groups,) if isinstance(groups, Group) else tuple(groups)
    if not groups or any(not g.terms for g in groups):
        raise ValueError(f"Every group of `groups` needs a term. Received: groups={groups!r}")
    only = groups[0].terms[0] if len(groups) == 1 and len(groups[0].terms) == 1 else None
    recorded = only == Term() and groups[0].bias in (unchanged, None) and groups[0].weight == 1
    if not linear and not (recorded and groups[0].bias is unchanged):
        raise ValueError(
            "A rule with `linear=False` is one unmodified term with the unchanged bias and weight 1. "
            f"Received: groups={groups!r}"
        )
    split = any(t.input is negative for g in groups for t in g.terms)
    rest = _nonnegative(groups) if split else groups

    def backward(ctx, rs):
        if recorded:
            return _recorded(ctx, rs, stabilize, groups[0].bias)
        (x,), (r,) = ctx.xs, rs
        view = ctx.prepared["view"]
        mods = _modified(view, groups)
        if not split:
            return [_redistribute(view, x, r, groups, stabilize, mods)]
        return [tf.cond(
            tf.reduce_any(x < 0),
            lambda: _redistribute(view, x, r, groups, stabilize, mods),
            lambda: _redistribute(view, x, r, rest, stabilize, mods),
        )]

    return Rule(name, backward, _prepare_view if linear else None, tuple(params))
