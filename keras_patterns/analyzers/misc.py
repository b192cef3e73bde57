"""Trivial analyzers: the input itself and the input plus noise (baselines for evaluation)."""

import numpy as np
import tensorflow as tf

from keras_patterns import selection, validation
from keras_patterns.analyzers import streaming
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

    def analyze(self, x, neuron_selection=None, batch_size=None, on_batch=None, out=None):
        """The input plus noise (see :meth:`Analyzer.analyze`; datasets, ``on_batch`` and ``out``
        as there). With a ``seed``, one generator is drawn from in sample order over the whole
        call, so a dataset gives the maps of the same samples given as one array."""
        self._rng = np.random.default_rng(self.seed)
        if on_batch is not None or out is not None or streaming.is_stream(x):
            return self._analyze_general(x, neuron_selection, batch_size, on_batch, out)
        xs = self._prepare_inputs(x)
        selection.normalize_indices(neuron_selection, self.neuron_selection_mode, xs[0].shape[0], 1 << 30)
        out = self._noisy(xs)
        return out[0] if len(out) == 1 else out

    def _noisy(self, xs):
        return [a.astype("float32") + self.stddev * self._rng.standard_normal(a.shape).astype("float32")
                for a in xs]

    def _get_compiled(self):
        return None  # computed on the host

    def _run_piece(self, compiled, xs, idx, extras):
        return self._noisy(xs)
