"""Evaluation of explanations: faithfulness curves, sanity checks, ground-truth localization,
ground-truth benchmarks with their metrics and model-free baselines, and adapters for Quantus and
xplique."""

from keras_patterns.evaluation import adapters, baselines  # noqa: F401
from keras_patterns.evaluation.localization import localization  # noqa: F401
from keras_patterns.evaluation.perturbation import (  # noqa: F401
    aopc, deletion, insertion, region_insertion, region_perturbation,
)
from keras_patterns.evaluation.randomization import randomization_check  # noqa: F401
from keras_patterns.evaluation.signal_quality import signal_quality  # noqa: F401
from keras_patterns.evaluation.tris import earth_movers_distance, emd_score, precision  # noqa: F401
