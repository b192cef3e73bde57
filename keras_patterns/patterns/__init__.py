"""Pattern fitting for PatternNet and PatternAttribution (Kindermans et al. 2018, arXiv 1705.05598).

* :mod:`~keras_patterns.patterns.statistics`: the streaming per-layer sums (filter-gradient identity,
  no patches, float64 totals);
* :mod:`~keras_patterns.patterns.estimators`: the closed-form pattern estimators (NumPy, float64);
* :mod:`~keras_patterns.patterns.data`: arrays, ``tf.data``, ``PyDataset`` and generators as batches;
* :mod:`~keras_patterns.patterns.computer`: :class:`PatternComputer`.
"""

from keras_patterns.patterns.computer import PatternComputer
from keras_patterns.patterns.estimators import PATTERN_TYPES, pattern_from_statistics
from keras_patterns.patterns.statistics import PatternStatistics

__all__ = ["PATTERN_TYPES", "PatternComputer", "PatternStatistics", "pattern_from_statistics"]
