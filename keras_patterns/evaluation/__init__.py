"""Evaluation of explanations: faithfulness curves, sanity checks, ground-truth localization."""

from keras_patterns.evaluation.perturbation import (  # noqa: F401
    aopc, deletion, insertion, region_insertion, region_perturbation,
)
from keras_patterns.evaluation.randomization import randomization_check  # noqa: F401
from keras_patterns.evaluation.localization import localization  # noqa: F401
