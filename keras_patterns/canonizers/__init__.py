"""Canonizers: equivalent clones of the model graph that are easier to explain.

Each canonizer takes a :class:`~keras_patterns.graph.Graph` and returns a new one that computes the
same function; none of them touches the user's model (changed nodes get unbuilt configuration
copies of their layers and live views of the weights: nothing is copied).
"""

from keras_patterns.canonizers.activation import split_activations
from keras_patterns.canonizers.attention import expand_attention
from keras_patterns.canonizers.batchnorm import fold_batchnorm
from keras_patterns.canonizers.separable import split_separable
from keras_patterns.graph import walk
from keras_patterns.graph.checks import check_single_output

#: The canonizers every analyzer and the pattern fitting apply, in order.
DEFAULT_CANONIZERS = (expand_attention, split_separable, split_activations, fold_batchnorm)


def canonize(graph, fold_bn=True):
    """Applies all canonizers: attention expansion, separable split, activation split, then
    BatchNorm folding.

    Args:
        graph: a walked graph.
        fold_bn: fold BatchNormalization into preceding kernel layers. Defaults to `True`.

    Returns:
        An equivalent graph.
    """
    canonizers = DEFAULT_CANONIZERS if fold_bn else DEFAULT_CANONIZERS[:-1]
    for canonizer in canonizers:
        graph = canonizer(graph)
    return graph


def prepare_graph(model, canonizers=DEFAULT_CANONIZERS, opaque=False):
    """The one path from a model to the canonized graph that analyzers and pattern fitting use
    (so that their node names and pattern keys always agree).

    Args:
        model: a Functional or Sequential Keras model with one output (never modified).
        canonizers: graph -> graph functions applied in order. Defaults to
            :data:`DEFAULT_CANONIZERS` (attention expansion, separable split, activation split,
            BatchNorm folding).
        opaque: a model without a layer graph (subclassed) becomes one node instead of an
            error (see :func:`~keras_patterns.graph.walk`). Defaults to `False`.

    Returns:
        A :class:`~keras_patterns.graph.Graph` whose nodes compute with the model's live weights.

    Raises:
        NotAnalyzeableModelError: a model that cannot be walked, or one with several outputs.
    """
    graph = walk(model, opaque=opaque)
    for canonizer in canonizers:
        graph = canonizer(graph)
    check_single_output(model, graph)
    return graph


__all__ = [
    "DEFAULT_CANONIZERS", "canonize", "expand_attention", "fold_batchnorm", "prepare_graph",
    "split_activations", "split_separable",
]
