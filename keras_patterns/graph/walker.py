"""The graph walker: reads a Keras model into a flat, topologically ordered layer graph.

Sequential and Functional models are supported; models used as layers inside another model are
flattened (their layers appear under a ``"outer/inner/layer"`` path); shared layers give one node
per call; a tensor may fan out to any number of consumers.
"""

import dataclasses
from typing import Callable

import keras

from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.graph import _keras_internals as ki


@dataclasses.dataclass
class GraphNode:
    """One layer call in the flat graph.

    Attributes:
        name: unique node name (layer path, ``"@k"`` appended for the k-th call of a shared layer).
        layer: the Keras layer that computes the node (a canonized clone, or the user's own layer).
        inputs: ids of the input tensors, in call order.
        outputs: ids of the output tensors.
        fn: ``fn(list_of_input_tensors) -> list_of_output_tensors``.
        key: the name under which per-layer results (patterns, plans) are reported; calls of one
            shared layer share a key.
        folded: names of BatchNormalization nodes folded into this node by the canonizer.
        params: for kernel nodes changed by a canonizer, the live
            :class:`~keras_patterns.linear.LinearParams` view of the kernel and bias the node
            computes with (read from the user's variables at every call); None means the layer's
            own ``kernel`` and ``bias`` (see :func:`keras_patterns.linear.node_params`).
    """

    name: str
    layer: keras.layers.Layer
    inputs: list
    outputs: list
    fn: Callable
    key: str
    folded: tuple = ()
    params: object = None

    @property
    def class_name(self):
        return type(self.layer).__name__


@dataclasses.dataclass
class TensorInfo:
    shape: tuple
    dtype: str


class Graph:
    """A flat layer graph in topological order.

    Attributes:
        nodes: list of :class:`GraphNode`, producers before consumers.
        inputs: tensor ids of the model inputs.
        outputs: tensor ids of the model outputs.
        tensors: dict from tensor id to :class:`TensorInfo` (static shape with ``None`` batch).
        input_names: names of the model inputs.
    """

    def __init__(self, nodes, inputs, outputs, tensors, input_names):
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.tensors = dict(tensors)
        self.input_names = list(input_names)

    def producer(self, tensor_id):
        for node in self.nodes:
            if tensor_id in node.outputs:
                return node
        return None

    def consumers(self, tensor_id):
        return [node for node in self.nodes if tensor_id in node.inputs]

    def node(self, name):
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"No node named {name!r}. Nodes: {[n.name for n in self.nodes]}")

    def new_tensor(self, shape, dtype):
        tid = max(self.tensors) + 1 if self.tensors else 0
        self.tensors[tid] = TensorInfo(tuple(shape), dtype)
        return tid

    def copy(self):
        return Graph(
            [dataclasses.replace(n, inputs=list(n.inputs), outputs=list(n.outputs)) for n in self.nodes],
            self.inputs, self.outputs, self.tensors, self.input_names,
        )

    def run(self, inputs, hook=None):
        """Runs the graph forward.

        Args:
            inputs: list of tensors, one per graph input.
            hook: optional ``hook(node, xs) -> ys``; when given it computes each node (used by the
                mirror to record each node under its own tape).

        Returns:
            dict from tensor id to value for every tensor of the graph.
        """
        values = dict(zip(self.inputs, inputs))
        for node in self.nodes:
            xs = [values[t] for t in node.inputs]
            ys = hook(node, xs) if hook is not None else node.fn(xs)
            if len(ys) != len(node.outputs):
                raise RuntimeError(
                    f"Node {node.name} returned {len(ys)} tensors, expected {len(node.outputs)}."
                )
            values.update(zip(node.outputs, ys))
        return values

    def __call__(self, inputs):
        values = self.run(inputs)
        return [values[t] for t in self.outputs]

    def summary(self):
        lines = []
        for node in self.nodes:
            lines.append(f"{node.name:40s} {node.class_name:24s} {node.inputs} -> {node.outputs}")
        return "\n".join(lines)


def _topological_nodes(model):
    """Keras nodes of one (non-flattened) model, producers first, input nodes excluded."""
    input_ids = {id(t) for t in model.inputs}
    order, seen = [], set()
    stack = [(ki.producer_node(t), False) for t in reversed(model.outputs) if id(t) not in input_ids]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
            continue
        if id(node) in seen or ki.node_is_input(node):
            continue
        stack.append((node, True))
        for t in reversed(ki.node_input_tensors(node)):
            if id(t) in input_ids:
                continue
            parent = ki.producer_node(t)
            if id(parent) not in seen and not ki.node_is_input(parent):
                stack.append((parent, False))
    return order


def _make_call(knode, in_kts):
    ids = [id(t) for t in in_kts]

    def fn(xs):
        return ki.call_node(knode, dict(zip(ids, xs)))

    fn.keras_node = knode  # for canonizers that need the call's arguments (attention)
    return fn


def walk(model):
    """Reads a Keras model into a :class:`Graph`.

    Args:
        model: a built Sequential or Functional ``keras.Model``.

    Returns:
        A :class:`Graph` whose nodes call the model's own layers (nothing is copied or mutated).

    Raises:
        NotAnalyzeableModelError: for subclassed models and unbuilt Sequential models.
    """
    if not isinstance(model, keras.Model):
        raise NotAnalyzeableModelError(
            f"Expected a keras.Model. Received: {type(model).__name__}"
        )
    if not ki.is_functional(model):
        raise NotAnalyzeableModelError(
            f"Model {model.name!r} ({type(model).__name__}) has no layer graph. Expected a Functional "
            "model or a Sequential model built with an input shape (e.g. starting with keras.Input); "
            "subclassed models cannot be analyzed, wrap their layers in a Functional model."
        )
    tensors, nodes, names_used, key_calls = {}, [], set(), {}

    def new_tid(kt):
        tid = len(tensors)
        tensors[tid] = TensorInfo(tuple(kt.shape), str(kt.dtype))
        return tid

    def expand(mdl, in_tids, prefix):
        if not ki.is_functional(mdl):
            raise NotAnalyzeableModelError(
                f"Nested model {prefix + mdl.name!r} ({type(mdl).__name__}) has no layer graph; "
                "expected a Functional or built Sequential model."
            )
        kt2tid = {id(kt): tid for kt, tid in zip(mdl.inputs, in_tids)}
        for knode in _topological_nodes(mdl):
            op = ki.node_operation(knode)
            in_kts = ki.node_input_tensors(knode)
            ids = [kt2tid[id(kt)] for kt in in_kts]
            out_kts = ki.node_output_tensors(knode)
            if isinstance(op, keras.Model):
                out_tids = expand(op, ids, prefix + op.name + "/")
            else:
                key = prefix + op.name
                calls = key_calls.get(id(op), 0)
                key_calls[id(op)] = calls + 1
                name = key if calls == 0 else f"{key}@{calls}"
                while name in names_used:
                    name += "'"
                names_used.add(name)
                out_tids = [new_tid(kt) for kt in out_kts]
                nodes.append(GraphNode(name, op, ids, out_tids, _make_call(knode, in_kts), key))
            for kt, tid in zip(out_kts, out_tids):
                kt2tid[id(kt)] = tid
        return [kt2tid[id(kt)] for kt in mdl.outputs]

    in_tids = [new_tid(kt) for kt in model.inputs]
    out_tids = expand(model, in_tids, "")
    input_names = [getattr(kt, "name", f"input_{i}") for i, kt in enumerate(model.inputs)]
    return Graph(nodes, in_tids, out_tids, tensors, input_names)
