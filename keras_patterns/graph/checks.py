"""Model checks run before an analyzer is built."""

import warnings

from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.graph.layers import layer_activation
from keras_patterns._warnings import user_stacklevel


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


RECTIFIER_VARIANTS = ("relu6", "relu_variant")


def non_relu_nodes(graph, allowed=()):
    """Descriptions "name (Class, activation)" of nodes with a non-linearity other than ReLU.

    Args:
        graph: a canonized graph.
        allowed: activation names to accept besides "linear" and "relu" (e.g.
            :data:`RECTIFIER_VARIANTS`).
    """
    ok = {"linear", "relu", *allowed}
    return [
        f"{node.name} ({node.class_name}, {layer_activation(node.layer)})"
        for node in graph.nodes if layer_activation(node.layer) not in ok
    ]


#: How many layers a message names before it counts the rest ("... and 63 more").
MAX_LISTED = 8


def list_nodes(descriptions, limit=MAX_LISTED):
    """``"a, b, c"``, or the first ``limit`` and ``"... and N more (k kinds: ...)"`` for long lists:
    a deep network's message names a few layers and counts the rest, with every distinct kind."""
    descriptions = list(descriptions)
    if len(descriptions) <= limit:
        return ", ".join(descriptions)
    kinds = sorted({d[d.rfind("(") + 1:].rstrip(")") for d in descriptions if "(" in d})
    rest = len(descriptions) - limit
    return (", ".join(descriptions[:limit]) + f", ... and {rest} more"
            + (f" (all kinds: {'; '.join(kinds)})" if kinds else ""))


def check_relu_only(graph, method, warn_for=RECTIFIER_VARIANTS, action="raise", note=""):
    """Checks that every non-linearity is a ReLU.

    Args:
        graph: a canonized graph.
        method: the analyzer name, for the message.
        warn_for: activation names that only give a warning (treated like ReLU). Defaults to the
            rectifier variants (ReLU6, thresholded/clipped ReLU layers).
        action: "raise" (NotAnalyzeableModelError) or "warn" for other non-linearities. Defaults
            to `"raise"`.
        note: a sentence appended to the message (e.g. the option that allows them). Defaults
            to `""`.

    Raises:
        NotAnalyzeableModelError: non-ReLU non-linearities with ``action="raise"``.
    """
    bad = non_relu_nodes(graph, allowed=warn_for)
    if bad:
        message = (
            f"{method} is only specified for networks with ReLU activations. Received non-ReLU "
            f"activations in: {list_nodes(bad)}." + (f" {note}" if note else "")
        )
        if action == "raise":
            raise NotAnalyzeableModelError(message)
        warnings.warn(message, stacklevel=user_stacklevel())
    variants = sorted(set(non_relu_nodes(graph)) - set(bad))
    if variants:
        warnings.warn(
            f"{method} is specified for plain ReLU networks; these ReLU variants are treated like "
            f"ReLU: {list_nodes(variants)}.", stacklevel=user_stacklevel(),
        )
