"""Backward rules."""

from keras_patterns.rules.base import NodeContext, Rule
from keras_patterns.rules.structural import (
    DECONVNET_RELU,
    EMBEDDING_SUM,
    EMBEDDING_TIMES_INPUT,
    GRADIENT,
    GUIDED_RELU,
    IDENTITY,
)

__all__ = [
    "DECONVNET_RELU", "EMBEDDING_SUM", "EMBEDDING_TIMES_INPUT", "GRADIENT", "GUIDED_RELU",
    "IDENTITY", "NodeContext", "Rule",
]
