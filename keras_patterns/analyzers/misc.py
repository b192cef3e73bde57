"""Trivial analyzers: the input itself and the input plus noise (baselines for evaluation)."""

import numpy as np
import tensorflow as tf

from keras_patterns import selection, validation
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.registry import register


@register("input")
class Input(Analyzer):
    """Returns the input unchanged (a baseline; drawn as a signal in input space)."""

    output_kind = "signal"
    _unknown_layers = "gradient"  # any model, subclassed ones included

    def _analyze_batch(self, inputs, indices):
        return [tf.cast(x, tf.float32) for x in inputs]


@register("random")
class Random(Analyzer):
    """Returns the input plus Gaussian noise N(0, stddev^2) (a baseline), as iNNvestigate.

    Args:
        model: a Keras model.
        stddev: standard deviation of the noise. Defaults to `1.0`.
        seed: int seed (same seed, same maps; noise depends on the sample's position in the
            analyze() call) or None for fresh noise per call. Defaults to `None`.
    """

    _unknown_layers = "gradient"  # any model, subclassed ones included

    def __init__(self, model, stddev=1.0, seed=None, **kwargs):
        self.stddev = validation.finite_number("stddev", stddev, minimum=0)
        self.seed = validation.integer("seed", seed, allow_none=True)
        super().__init__(model, **kwargs)
        self._config.update(stddev=self.stddev, seed=seed)

    def analyze(self, x, neuron_selection=None, batch_size=None):
        xs = self._prepare_inputs(x)
        selection.normalize_indices(neuron_selection, self.neuron_selection_mode, xs[0].shape[0], 1 << 30)
        rng = np.random.default_rng(self.seed)
        out = [a.astype("float32") + self.stddev * rng.standard_normal(a.shape).astype("float32") for a in xs]
        return out[0] if len(out) == 1 else out
