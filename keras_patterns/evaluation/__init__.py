"""Evaluating explanations: the paper's measures, faithfulness curves, sanity checks, ground truth."""

from keras_patterns.evaluation.signal_quality import signal_quality

__all__ = ["signal_quality"]
