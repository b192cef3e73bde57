"""Backward rules as data.

A rule says how the signal flowing backwards (a gradient, a relevance, a pattern signal) passes one
node of the graph. It is a small frozen record: a name, the function that does the work, optional
parameters and an optional ``prepare`` step that derives what the rule needs from the node's live
weights (W+, W**2, W*A, ...). ``prepare`` runs inside the compiled reverse pass, so it is traced
once and then reads the model's current variables at every call: nothing an analyzer computes can
go stale when the model trains.
"""

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True)
class Rule:
    """A backward rule.

    Attributes:
        name: short name shown in plans (``"gradient"``, ``"lrp.epsilon(0.1)"``, ...).
        backward: ``backward(ctx, rs) -> list``: given the signals ``rs`` arriving at the node's
            outputs, returns one signal per node input (None for inputs that receive nothing).
        prepare: optional ``prepare(node, state) -> dict`` of tensors, run in the traced reverse
            pass before the node's ``backward``; its result is ``ctx.prepared`` there.
        params: parameters, for display and equality.
    """

    name: str
    backward: Callable
    prepare: Optional[Callable] = None
    params: tuple = ()

    def __str__(self):
        if not self.params:
            return self.name
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"{self.name}({args})"


def _refused(ctx, rs):
    raise RuntimeError(f"No backward rule for node {ctx.node.name!r} (see the mapping's error).")


def refusal(reason):
    """A rule that marks a node as one a method cannot explain, with the reason.

    :func:`keras_patterns.mapping.resolve` reports such a node among the unsupported layers,
    with ``reason``, unless the user registered a rule for its layer class; the rule never runs.

    Args:
        reason: why, and what the user can do instead.

    Returns:
        A :class:`Rule` for which :func:`is_refusal` is True.
    """
    return Rule("unsupported", _refused, params=(("reason", reason),))


def is_refusal(rule):
    """Whether ``rule`` was made by :func:`refusal`."""
    return rule.backward is _refused


@dataclasses.dataclass
class NodeContext:
    """What a rule's ``backward`` sees of one node during the reverse pass.

    Attributes:
        node: the :class:`~keras_patterns.graph.GraphNode`.
        xs: the node's input values from the forward pass.
        ys: the node's output values from the forward pass.
        tape: a ``tf.GradientTape`` that recorded exactly this node's forward computation (None
            when the node had no float inputs).
        prepared: what the rule's ``prepare`` returned for this node (or ``{}``).
        state: analyzer-wide state (e.g. patterns), shared by all nodes.
        tape_xs: the tensors the tape recorded as the node's inputs, when ``xs`` are casts of
            them (a float16/bfloat16 node under mixed precision, seen by rules in float32).
        tape_ys: likewise for the outputs.
    """

    node: Any
    xs: list
    ys: list
    tape: Any
    prepared: dict
    state: Any
    tape_xs: Any = None
    tape_ys: Any = None

    def vjp(self, rs):
        """The plain gradient of the node applied to ``rs`` (vector-Jacobian product)."""
        xs = self.xs if self.tape_xs is None else self.tape_xs
        ys = self.ys if self.tape_ys is None else self.tape_ys
        return vjp(self.tape, ys, xs, rs)


def per_sample(v, t):
    """A per-sample vector ``v`` shaped to broadcast against the batch-first tensor ``t``."""
    import tensorflow as tf

    return tf.reshape(v, tf.concat([[tf.shape(v)[0]], tf.ones([tf.rank(t) - 1], tf.int32)], 0))


def vjp(tape, ys, xs, rs):
    """Vector-Jacobian product through a recorded tape; None for integer inputs."""
    import tensorflow as tf

    floats, seen = [], set()
    for i, x in enumerate(xs):
        # A tensor passed twice (e.g. Add()([z, z])) gets its whole gradient once.
        if x.dtype.is_floating and id(x) not in seen:
            seen.add(id(x))
            floats.append(i)
    out = [None] * len(xs)
    if not floats or tape is None:
        return out
    # Signals wider than the recorded computation (float32 signals through a float16/bfloat16
    # node): the vjp is linear in ``rs``, so each sample's signals are divided by their peak
    # before the cast to the node's dtype (no overflow, full relative precision) and the gradient
    # is multiplied back in the signals' dtype.
    wide = None
    if any(r is not None and r.dtype != y.dtype for r, y in zip(rs, ys)):
        wide = next(r.dtype for r in rs if r is not None)
        peak = None
        for r in rs:
            if r is not None:
                m = tf.reduce_max(tf.abs(tf.reshape(r, [tf.shape(r)[0], -1])), axis=1)
                peak = m if peak is None else tf.maximum(peak, m)
        peak = tf.where(peak > 0, peak, tf.ones_like(peak))
        rs = [None if r is None else tf.cast(r / per_sample(peak, r), y.dtype) for r, y in zip(rs, ys)]
    grads = tape.gradient(
        ys, [xs[i] for i in floats], output_gradients=rs,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    for i, g in zip(floats, grads):
        if wide is not None and g is not None:
            g = tf.cast(g, wide) * per_sample(peak, g)
        out[i] = g
    return out
