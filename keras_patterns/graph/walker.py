"""The graph walker: reads a Keras model into a flat, topologically ordered layer graph.

Sequential and Functional models are supported; models used as layers inside another model are
flattened (their layers appear under a ``"outer/inner/layer"`` path); shared layers give one node
per call; a tensor may fan out to any number of consumers.

A model without a layer graph (a subclassed model, or one whose graph the walker cannot read) is
refused, except with ``opaque=True`` (what the gradient family asks for, as it needs no rule per
layer): then it becomes one node whose call is differentiated as a whole, and a nested model
without a layer graph becomes one node of the outer graph.
"""

import dataclasses
from typing import Callable

import keras

from keras_patterns.errors import NotAnalyzeableModelError, _works_on_any_model
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


def walk(model, opaque=False):
    """Reads a Keras model into a :class:`Graph`.

    Args:
        model: a built Sequential or Functional ``keras.Model``; with ``opaque=True`` also a
            subclassed model that has been built (called once, or ``model.build(shape)``).
        opaque: what to do with a model that has no layer graph (a subclassed model), or whose
            graph cannot be read: `False` raises; `True` makes it one node that calls the model
            (a nested one: one node of the outer graph). For methods that differentiate through
            any layer (the gradient family). Defaults to `False`.

    Returns:
        A :class:`Graph` whose nodes call the model's own layers (nothing is copied or mutated).

    Raises:
        NotAnalyzeableModelError: for subclassed models (with ``opaque=False``; the message names
            the methods that work on them), unbuilt models, and (``opaque=True``) a subclassed
            model whose input shapes are unknown or that has several outputs.
    """
    if not isinstance(model, keras.Model):
        raise NotAnalyzeableModelError(
            f"Expected a keras.Model. Received: {type(model).__name__}"
        )
    if not ki.is_functional(model):
        if opaque:
            return whole_model_graph(model)
        raise NotAnalyzeableModelError(
            f"Model {model.name!r} ({type(model).__name__}) has no layer graph. Expected a Functional "
            "model or a Sequential model built with an input shape (e.g. starting with keras.Input); "
            "subclassed models cannot be analyzed by the rule-based methods, wrap their layers in a "
            f"Functional model. {_works_on_any_model()}"
        )
    if not opaque:
        return _walk_functional(model, opaque=False)
    try:
        return _walk_functional(model, opaque=True)
    except (NotAnalyzeableModelError, ValueError, KeyError, AttributeError, TypeError, IndexError):
        # A layer graph the walker cannot read: the whole model is one node.
        return whole_model_graph(model)


def _walk_functional(model, opaque):
    """The flat graph of a Functional (or built Sequential) model (see :func:`walk`)."""
    tensors, nodes, names_used, key_calls = {}, [], set(), {}

    def new_tid(kt):
        tid = len(tensors)
        tensors[tid] = TensorInfo(tuple(kt.shape), str(kt.dtype))
        return tid

    def expand(mdl, in_tids, prefix):
        kt2tid = {id(kt): tid for kt, tid in zip(mdl.inputs, in_tids)}
        for knode in _topological_nodes(mdl):
            op = ki.node_operation(knode)
            in_kts = ki.node_input_tensors(knode)
            ids = [kt2tid[id(kt)] for kt in in_kts]
            out_kts = ki.node_output_tensors(knode)
            if isinstance(op, keras.Model) and ki.is_functional(op):
                out_tids = expand(op, ids, prefix + op.name + "/")
            elif isinstance(op, keras.Model) and not opaque:
                raise NotAnalyzeableModelError(
                    f"Nested model {prefix + op.name!r} ({type(op).__name__}) has no layer graph; "
                    "expected a Functional or built Sequential model for the rule-based methods. "
                    f"{_works_on_any_model()}"
                )
            else:  # a layer, a Keras operation, or (opaque) a model without a layer graph
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


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)


def _opaque_inputs(model):
    """``(shapes, dtypes, names, as_list)`` of the inputs of a model treated as one node."""
    if ki.is_functional(model):
        kts = list(model.inputs)
        names = [getattr(kt, "name", f"input_{i}") for i, kt in enumerate(kts)]
        return ([tuple(kt.shape) for kt in kts], [str(kt.dtype) for kt in kts], names,
                len(kts) > 1)
    recorded = ki.built_input_shapes(model)
    if recorded is None or not model.built:
        raise NotAnalyzeableModelError(
            f"Model {model.name!r} ({type(model).__name__}) has no layer graph and no recorded input "
            "shape. Expected a model called once on a batch (model(x)) or built with "
            "model.build(input_shape), taking one tensor or a list of tensors. Received: "
            f"build shapes {getattr(model, '_build_shapes_dict', None)!r}."
        )
    as_list = not _is_shape(recorded)
    shapes = list(recorded) if as_list else [recorded]
    if not shapes or not all(_is_shape(s) and len(s) >= 1 for s in shapes):
        raise NotAnalyzeableModelError(
            f"Model {model.name!r} ({type(model).__name__}) has no layer graph and was called on "
            "something other than one tensor or a list of tensors. Expected a model taking one "
            "tensor or a list of tensors; wrap it in a Functional model: "
            "inp = keras.Input(shape); keras.Model(inp, model(inp)). Received: build shapes "
            f"{recorded!r}."
        )
    # Subclassed models do not record their input dtype: a float input of the model's variable
    # dtype (float32, float64 under a float64 policy). Integer (token) inputs need the Functional
    # wrapper above, with keras.Input(shape, dtype="int32").
    dtype = str(model.dtype_policy.variable_dtype)
    shapes = [(None,) + tuple(s[1:]) for s in shapes]
    names = [f"input_{i}" for i in range(len(shapes))] if as_list else ["input"]
    return shapes, [dtype] * len(shapes), names, as_list


def whole_model_graph(model):
    """A graph of one node that calls ``model`` as a whole (for methods that differentiate
    through any layer).

    Args:
        model: a built ``keras.Model`` (subclassed, or one whose layer graph cannot be read).

    Returns:
        A :class:`Graph` with one node, named after the model, computing ``model(x, training=False)``.

    Raises:
        NotAnalyzeableModelError: the model's inputs are unknown (never built) or it has several
            outputs.
    """
    shapes, dtypes, names, as_list = _opaque_inputs(model)
    specs = [keras.KerasTensor(shape, dtype=dtype) for shape, dtype in zip(shapes, dtypes)]
    try:
        out_specs = keras.tree.flatten(model.compute_output_spec(specs if as_list else specs[0]))
    except Exception as e:  # noqa: BLE001 (any failure of the symbolic call: say which)
        raise NotAnalyzeableModelError(
            f"Model {model.name!r} ({type(model).__name__}) has no layer graph and its output "
            f"shape could not be computed from inputs {shapes} ({dtypes[0]}): "
            f"{type(e).__name__}: {e}"
        ) from e
    if len(out_specs) != 1:
        raise NotAnalyzeableModelError(
            f"Expected a model with one output tensor. Received: model {model.name!r} with "
            f"{len(out_specs)} outputs. Wrap it in a model returning one of them."
        )
    tensors = {i: TensorInfo(tuple(s), d) for i, (s, d) in enumerate(zip(shapes, dtypes))}
    out_tid = len(tensors)
    tensors[out_tid] = TensorInfo(tuple(out_specs[0].shape), str(out_specs[0].dtype))

    def fn(xs):
        out = model(list(xs) if as_list else xs[0], training=False)
        return list(keras.tree.flatten(out))

    in_tids = list(range(len(shapes)))
    node = GraphNode(model.name, model, in_tids, [out_tid], fn, model.name)
    return Graph([node], in_tids, [out_tid], tensors, names)
