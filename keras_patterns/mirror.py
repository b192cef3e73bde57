"""The mirror model: the reversed graph, one rule per node.

The forward pass records every node under its own small ``tf.GradientTape`` (so a gradient rule
back-propagates through that node only, never through the whole history), keeps every node's inputs
and outputs, seeds the selected output, and walks the nodes in reverse, summing the signal where a
tensor fans out to several consumers. It is plain TensorFlow code meant to run inside one
``tf.function`` (traced once per input signature).
"""

import tensorflow as tf

from keras_patterns.rules.base import NodeContext


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
        """Runs the forward pass, recording each node. Returns (values, tapes)."""
        tapes = {}

        def hook(node, xs):
            floats = [x for x in xs if x.dtype.is_floating]
            if not floats:
                tapes[node.name] = None
                return node.fn(xs)
            with tf.GradientTape() as tape:
                for x in floats:
                    tape.watch(x)
                ys = node.fn(xs)
            tapes[node.name] = tape
            return ys

        return self.graph.run(inputs, hook), tapes

    def backward(self, values, tapes, seed):
        """Walks the graph in reverse from ``seed`` at the output.

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
            rs = [tf.zeros_like(y) if r is None else r for r, y in zip(rs, ys)]
            xs = [values[t] for t in node.inputs]
            ctx = NodeContext(node, xs, ys, tapes.get(node.name), self.prepare(node), self.state)
            r_ins = self.plan[node.name].backward(ctx, rs)
            for t, r in zip(node.inputs, r_ins):
                if r is None:
                    continue
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
        values, tapes = self.forward(inputs)
        y = values[self.graph.outputs[0]]
        return self.backward(values, tapes, seed_fn(y)), y
