"""The only module that touches private Keras 3 (and TensorFlow) attributes.

Keras 3 keeps the layer graph of a Functional model on its symbolic tensors: every ``KerasTensor``
has a ``_keras_history`` (operation, node_index, tensor_index), every operation has
``_inbound_nodes``, and a node keeps the call's ``arguments`` (a ``SymbolicArguments`` that can
substitute concrete values for the symbolic tensors with ``fill_in``). Everything the walker needs
from Keras goes through the small functions below, so a change in Keras touches one file.
"""

import keras


def producer_node(tensor):
    """Returns the Keras ``Node`` that produced a symbolic tensor."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(
            f"Expected a symbolic Keras tensor of a Functional model. Received: {tensor!r}"
        )
    operation, node_index, _ = history
    return operation._inbound_nodes[node_index]


def node_operation(node):
    return node.operation


def node_is_input(node):
    return bool(node.is_input)


def node_input_tensors(node):
    """The symbolic input tensors of a node, flattened in call order (duplicates kept)."""
    return list(node.arguments.keras_tensors)


def node_output_tensors(node):
    return list(node.outputs)


def call_arguments(node):
    """``(args, kwargs)`` of a node's call, with the symbolic tensors in place."""
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def attention_projections(layer):
    """The ``EinsumDense`` sublayers of a built ``MultiHeadAttention``:
    ``{"query", "key", "value", "output"}`` (Keras keeps them as private attributes)."""
    return {
        "query": layer._query_dense, "key": layer._key_dense, "value": layer._value_dense,
        "output": layer._output_dense,
    }


def call_node(node, values_by_id):
    """Calls a node's operation on concrete values, keeping the call's non-tensor arguments.

    Args:
        node: a Keras ``Node``.
        values_by_id: dict from ``id(symbolic_tensor)`` to a concrete tensor.

    Returns:
        The operation's output, as a flat list.
    """
    args, kwargs = node.arguments.fill_in(values_by_id)
    if "training" in kwargs:
        kwargs = dict(kwargs, training=False)
    outputs = node.operation(*args, **kwargs)
    return list(keras.tree.flatten(outputs))


def is_functional(model):
    """True for models with a layer graph: Functional models and built Sequential models."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None) is not None
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth") and hasattr(
        model, "_operations"
    )


def built_input_shapes(model):
    """The input shape(s) a model without a layer graph (a subclassed model) was built with.

    Keras records the shapes of the first call (or of ``model.build(shape)``) in
    ``_build_shapes_dict`` (one entry per call argument, e.g. ``{"x_shape": (1, 3)}``).

    Returns:
        The recorded value of the model's one call argument (a shape tuple, or a list of shape
        tuples for a model called on a list), or None when the model was never built or was
        built with several arguments.
    """
    shapes = getattr(model, "_build_shapes_dict", None)
    if not shapes or len(shapes) != 1:
        return None
    return next(iter(shapes.values()))


def shared_clone(layer, **config_overrides):
    """A layer of the same class with some config entries replaced that computes with ``layer``'s
    own variables (the same objects, not copies), so it follows every change of them.

    Keras 3 layers hold their variables as attributes (``_kernel``, ``bias``, ``depthwise_kernel``,
    ...); the clone is made from the config, gets those attributes set to the very same variables
    (which Keras' attribute tracking records as the clone's variables) and is marked built instead
    of creating fresh ones. ``layer`` itself is not changed.

    Args:
        layer: a built layer.
        **config_overrides: config entries to replace (e.g. ``activation="linear"``).

    Returns:
        A built layer sharing ``layer``'s variables.
    """
    if not layer.built:
        raise ValueError(f"Expected a built layer. Received: unbuilt {type(layer).__name__} {layer.name!r}")
    config = layer.get_config()
    config.update(config_overrides)
    clone = type(layer).from_config(config)
    for name, value in list(vars(layer).items()):
        if isinstance(value, keras.Variable):
            setattr(clone, name, value)
    own = {id(v) for v in clone.weights}
    missing = [v.path for v in layer.weights if id(v) not in own]
    if missing:
        raise ValueError(
            f"Could not share the variables {missing} of {type(layer).__name__} {layer.name!r} "
            "(they are not plain attributes of the layer)."
        )
    clone.built = True
    return clone


def omit_frequent_tracing_warning(function):
    """Switches off TensorFlow's "N out of the last N calls ... triggered tf.function retracing"
    warning for one ``tf.function``.

    TensorFlow counts traces per Python code object, summed over every ``tf.function`` wrapping it:
    all analyzers of a class share ``_analyze_batch``'s, so a script building several analyzers
    (each traced once, with a fixed input signature) got the warning. A no-op where TensorFlow
    lacks the private attribute.
    """
    if hasattr(function, "_omit_frequent_tracing_warning"):
        function._omit_frequent_tracing_warning = True
    return function


def progbar_set_value(progbar, name, value):
    """Shows ``value`` as it is (an int, say) next to a ``keras.utils.Progbar``'s bar: values
    given to ``update`` are averaged and printed as %.4f; a value that is not a list is not."""
    if name not in progbar._values_order:
        progbar._values_order.append(name)
    progbar._values[name] = value


def operation_classes(module, names):
    """The classes of Keras operations (``keras.src.ops.<module>.<Name>``) that a Functional model
    records as nodes when ``x + y``, ``x * y``, ``keras.ops.mean(x)`` or ``keras.activations.gelu(x)``
    is applied to symbolic tensors. Keras exports only the functions, not these classes; names a
    Keras version lacks are skipped.

    Args:
        module: ``"numpy"`` or ``"nn"``.
        names: class names, e.g. ``("Add", "Multiply")``.

    Returns:
        A tuple of classes.
    """
    import importlib

    mod = importlib.import_module(f"keras.src.ops.{module}")
    return tuple(getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type))


def is_operation_class(cls):
    """True for a Keras operation class (``keras.Operation`` subclass) that is not a layer."""
    return isinstance(cls, type) and issubclass(cls, keras.Operation) and not issubclass(
        cls, keras.layers.Layer
    )
