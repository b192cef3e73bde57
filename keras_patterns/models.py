"""Model utilities."""

import warnings

import keras

from keras_patterns._warnings import user_stacklevel

from keras_patterns.graph import _keras_internals as ki
from keras_patterns.graph.layers import layer_activation


def _strip(model):
    """New output tensor of ``model`` (in terms of model.inputs) without the final softmax."""
    (out,) = model.outputs
    node = ki.producer_node(out)
    layer = ki.node_operation(node)
    (inp,) = ki.node_input_tensors(node) if len(ki.node_input_tensors(node)) == 1 else (None,)
    if isinstance(layer, keras.Model):
        inner = model_wo_softmax(layer)
        return inner(ki.node_input_tensors(node) if len(layer.inputs) > 1 else inp)
    act = layer_activation(layer)
    if act != "softmax":
        return None
    if isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)):
        return inp
    # A linear twin of the last layer computing with its very variables: the logits model follows
    # every later weight change of ``model`` (training, set_weights), and nothing is copied.
    return ki.shared_clone(layer, activation="linear")(inp)


def model_wo_softmax(model):
    """Returns a copy of ``model`` whose final softmax is removed (the output are the logits).

    The last layer is re-created without its softmax (a Dense/Conv layer with
    ``activation="softmax"`` becomes a linear layer that shares that layer's variables; an
    ``Activation("softmax")`` or ``Softmax`` layer is dropped). All other layers are shared with
    ``model``, which is not modified. No weight is copied: the logits model always computes with
    ``model``'s current weights, also after ``model`` has been trained further. Nested models
    ending in a softmax are handled.

    Args:
        model: a Functional or Sequential Keras model with one output.

    Returns:
        A new ``keras.Model``; ``model`` itself, with a warning, when it does not end in a softmax
        (as code ported from iNNvestigate calls it on every model).

    Raises:
        ValueError: if the model has several outputs or is not Functional/Sequential.

    Example:

    ```python
    model = keras.applications.VGG16(weights=None)
    logits_model = kp.model_wo_softmax(model)
    ```
    """
    if not ki.is_functional(model):
        raise ValueError(
            f"model_wo_softmax expects a Functional or built Sequential model. Received: "
            f"{type(model).__name__} {model.name!r}"
        )
    if len(model.outputs) != 1:
        raise ValueError(f"Expected a model with one output. Received: {len(model.outputs)} outputs")
    new_out = _strip(model)
    if new_out is None:
        warnings.warn(
            f"Model {model.name!r} does not end in a softmax (its last layer is "
            f"{ki.node_operation(ki.producer_node(model.outputs[0])).name!r}); it is returned "
            "unchanged.", stacklevel=user_stacklevel(),
        )
        return model
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, new_out, name=model.name + "_wo_softmax")
