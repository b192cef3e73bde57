"""User-facing analyzers; importing this package registers all of them."""

from keras_patterns.analyzers import (  # noqa: F401
    deep_taylor,
    gradient_based,
    misc,
    pattern_based,
    relevance_based,
    wrappers,
)
from keras_patterns.analyzers.base import Analyzer, ReverseAnalyzer
from keras_patterns.analyzers.registry import create_analyzer, list_analyzers, register

__all__ = ["Analyzer", "ReverseAnalyzer", "create_analyzer", "list_analyzers", "register"]
