"""The mirror model: the reversed graph, one rule per node.

The forward pass records every node under its own small ``tf.GradientTape`` (so a gradient rule
back-propagates through that node only, never through the whole history), keeps every node's inputs
and outputs, seeds the selected output, and walks the nodes in reverse, summing the signal where a
tensor fans out to several consumers. It is plain TensorFlow code meant to run inside one
``tf.function`` (traced once per input signature).

Mixed precision: as a Keras layer autocasts its floating inputs to its compute dtype, the forward
pass casts each node's floating inputs to the node layer's compute dtype (a no-op when they agree,
e.g. for float32 and float64 models). The reverse pass does not narrow: rules see float16/bfloat16
inputs and outputs widened to float32 and all signals are float32 (so divisions by small
pre-activations cannot overflow the 16-bit range); only the recorded node gradients
(``ctx.vjp``) run in the node's dtype, on per-sample normalised signals.
"""

import collections

import tensorflow as tf

from keras_patterns.rules.base import NodeContext


def _node_inputs(node, xs):
    """``xs`` with floating tensors cast to the node layer's compute dtype (Keras' autocast)."""
    layer = node.layer
    dtype = getattr(layer, "compute_dtype", None)
    if dtype is None or not getattr(layer, "autocast", True) or not tf.as_dtype(dtype).is_floating:
        return xs
    dtype = tf.as_dtype(dtype)
    return [tf.cast(x, dtype) if x.dtype.is_floating and x.dtype != dtype else x for x in xs]


def _wide(t):
    """A float16/bfloat16 tensor as float32 (the dtype rules and signals use); others unchanged."""
    return tf.cast(t, tf.float32) if t.dtype in (tf.float16, tf.bfloat16) else t


def _cast_like(r, y):
    """``r`` in the (widened) dtype of ``y``: signals follow the tensor they belong to."""
    if r is None or not y.dtype.is_floating:
        return r
    dtype = _wide(y).dtype if y.dtype in (tf.float16, tf.bfloat16) else y.dtype
    return r if r.dtype == dtype else tf.cast(r, dtype)


class Record(collections.namedtuple("Record", ["tape", "xs"])):
    """What the forward pass recorded of one node: its tape (None without float inputs) and the
    inputs it was computed from."""


class Mirror:
    """The reversed graph of a canonized model under a rule plan.

    Args:
        graph: a canonized :class:`~keras_patterns.graph.Graph` with one output.
        plan: a :class:`~keras_patterns.mapping.Plan` (node name -> Rule).
        state: analyzer-wide state given to every rule (e.g. patterns). Defaults to `None`.
    """

    def __init__(self, graph, plan, state=None):
        self.graph = graph
        self.plan = plan
        self.state = state

    def prepare(self, node):
        """What the node's rule derives from the live weights (W+, W*A, ...), computed in the
        traced function, so it follows every weight change without retracing."""
        rule = self.plan[node.name]
        return rule.prepare(node, self.state) if rule.prepare else {}

    def forward(self, inputs):
        """Runs the forward pass, recording each node.

        Returns:
            ``(values, records)``: every tensor's value, and per node name a :class:`Record` of
            the tape and of the inputs the node was computed from (after the cast to its compute
            dtype), which is what the tape watched.
        """
        records = {}

        def hook(node, xs):
            xs = _node_inputs(node, xs)
            floats = [x for x in xs if x.dtype.is_floating]
            if not floats:
                records[node.name] = Record(None, xs)
                return node.fn(xs)
            with tf.GradientTape() as tape:
                for x in floats:
                    tape.watch(x)
                ys = node.fn(xs)
            records[node.name] = Record(tape, xs)
            return ys

        return self.graph.run(inputs, hook), records

    def backward(self, values, records, seed):
        """Walks the graph in reverse from ``seed`` at the output (``values, records`` as returned
        by :meth:`forward`).

        Returns:
            A list with one signal per graph input (zeros for inputs nothing flows back to, None
            for integer inputs).
        """
        graph = self.graph
        signals = {graph.outputs[0]: seed}
        carry = self._start(seed)
        for node in reversed(graph.nodes):
            rs = [signals.pop(t, None) for t in node.outputs]
            if all(r is None for r in rs):
                continue
            ys = [values[t] for t in node.outputs]
            tape, xs = records[node.name]
            wide_xs, wide_ys = [_wide(x) for x in xs], [_wide(y) for y in ys]
            rs = [tf.zeros_like(y) if r is None else _cast_like(r, y) for r, y in zip(rs, wide_ys)]
            narrow = any(a is not b for a, b in zip(wide_xs + wide_ys, xs + ys))
            ctx = NodeContext(
                node, wide_xs, wide_ys, tape, self.prepare(node), self.state,
                tape_xs=xs if narrow else None, tape_ys=ys if narrow else None,
            )
            r_ins = self.plan[node.name].backward(ctx, rs)
            for t, r in zip(node.inputs, r_ins):
                if r is None:
                    continue
                r = _cast_like(r, values[t])
                signals[t] = signals[t] + r if t in signals else r
            signals, carry = self._after_node(node, signals, carry)
        out = []
        for t in graph.inputs:
            x = values[t]
            if t in signals:
                out.append(self._finish(signals[t], carry))
            else:
                out.append(tf.zeros_like(x) if x.dtype.is_floating else None)
        return out

    # Hooks for subclasses that carry per-sample state through the reverse walk (e.g. rescaling).
    def _start(self, seed):
        """State carried through the reverse walk; None by default."""
        return None

    def _after_node(self, node, signals, carry):
        """Called after each node with all pending signals; returns ``(signals, carry)``."""
        return signals, carry

    def _finish(self, signal, carry):
        """Turns the signal arriving at an input into the result."""
        return signal

    def __call__(self, inputs, seed_fn):
        """Forward, seed and backward in one go.

        Args:
            inputs: list of input tensors.
            seed_fn: ``seed_fn(y) -> tensor shaped like y``.

        Returns:
            (list of input signals, model output).
        """
        values, records = self.forward(inputs)
        y = values[self.graph.outputs[0]]
        return self.backward(values, records, seed_fn(y)), y
