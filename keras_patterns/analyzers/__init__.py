"""User-facing analyzers; importing this package registers all of them."""

from keras_patterns.analyzers import (  # noqa: F401
    cam,
    deep_taylor,
    gradient_based,
    misc,
    occlusion,
    pattern_based,
    relevance_based,
    wrappers,
)
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.analyzers.method import Method
from keras_patterns.analyzers.pattern_based import PatternAnalyzer
from keras_patterns.analyzers.relevance_based import LRP
from keras_patterns.analyzers.wrappers import IntegratedGradients, SmoothGrad, SquareGrad, VarGrad, Wrapper
from keras_patterns.registry import capabilities, create_analyzer, list_analyzers, register, register_preset

__all__ = [
    "Analyzer", "IntegratedGradients", "LRP", "Method", "PatternAnalyzer", "ReverseAnalyzer", "SmoothGrad",
    "SquareGrad", "VarGrad", "Wrapper", "capabilities", "create_analyzer", "list_analyzers", "register",
    "register_preset",
]
