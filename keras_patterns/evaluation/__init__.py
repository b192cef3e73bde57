"""Evaluation of explanations: ground-truth benchmarks, their metrics and baselines, adapters."""

from keras_patterns.evaluation import adapters, baselines  # noqa: F401
from keras_patterns.evaluation.tris import earth_movers_distance, emd_score, precision  # noqa: F401
