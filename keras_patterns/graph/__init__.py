"""Reading Keras models into flat layer graphs."""

from keras_patterns.graph.walker import Graph, GraphNode, walk

__all__ = ["Graph", "GraphNode", "walk"]
