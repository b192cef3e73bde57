"""Canonizers: equivalent clones of the model graph that are easier to explain.

Each canonizer takes a :class:`~keras_patterns.graph.Graph` and returns a new one that computes the
same function; none of them touches the user's model (modified layers are fresh copies).
"""

from keras_patterns.canonizers.activation import split_activations
from keras_patterns.canonizers.batchnorm import fold_batchnorm
from keras_patterns.canonizers.separable import split_separable


def canonize(graph, fold_bn=True):
    """Applies all canonizers: separable split, activation split, then BatchNorm folding.

    Args:
        graph: a walked graph.
        fold_bn: fold BatchNormalization into preceding kernel layers. Defaults to `True`.

    Returns:
        An equivalent graph.
    """
    graph = split_separable(graph)
    graph = split_activations(graph)
    if fold_bn:
        graph = fold_batchnorm(graph)
    return graph


__all__ = ["canonize", "fold_batchnorm", "split_activations", "split_separable"]
