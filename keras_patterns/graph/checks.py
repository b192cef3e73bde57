"""Model checks run before an analyzer is built."""

from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.graph.layers import layer_activation


def check_single_output(model, graph):
    if len(graph.outputs) != 1:
        names = [getattr(t, "name", str(i)) for i, t in enumerate(model.outputs)]
        raise NotAnalyzeableModelError(
            f"Expected a model with one output tensor. Received: model {model.name!r} with "
            f"{len(graph.outputs)} outputs {names}. Pick one with e.g. "
            "keras.Model(model.inputs, model.outputs[i])."
        )


def check_no_softmax(graph):
    """Raises if the graph contains a softmax; at the output, the message names model_wo_softmax."""
    out = graph.outputs[0]
    for node in graph.nodes:
        if layer_activation(node.layer) != "softmax":
            continue
        if out in node.outputs:
            raise NotAnalyzeableModelError(
                f"The model ends in a softmax (layer {node.name!r}, {node.class_name}); explanations "
                "need the pre-softmax output. Received a model with a softmax output; expected "
                "logits. Use keras_patterns.model_wo_softmax(model) to remove it."
            )
        raise NotAnalyzeableModelError(
            f"Softmax inside the model (layer {node.name!r}, {node.class_name}) is not supported; "
            "expected softmax only as the last layer (remove it with keras_patterns.model_wo_softmax)."
        )


def check_relu_only(graph, method):
    """For deconvnet/guided backprop/deep taylor: every non-linearity must be a ReLU."""
    bad = []
    for node in graph.nodes:
        act = layer_activation(node.layer)
        if act not in ("linear", "relu"):
            bad.append(f"{node.name} ({node.class_name}, {act})")
    if bad:
        raise NotAnalyzeableModelError(
            f"{method} is only specified for networks with ReLU activations. Received non-ReLU "
            f"activations in: {', '.join(bad)}."
        )
