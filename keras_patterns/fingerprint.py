"""A cheap fingerprint of a model's weights, to tell when fitted state has gone out of date."""

import numpy as np
import tensorflow as tf

#: Entries read per variable (evenly spaced over the flattened variable, both ends included).
SAMPLES_PER_VARIABLE = 64


class WeightsFingerprint:
    """Reads a few fixed entries of every weight of a model (trainable or not) in one compiled call.

    Training changes nearly every entry of every trained variable and ``set_weights`` replaces
    them, so comparing two fingerprints tells whether the weights changed in between; it costs a
    gather of ``SAMPLES_PER_VARIABLE`` values per variable (microseconds, also for VGG16), not a
    pass over the weights. A change confined to entries that are not sampled goes unnoticed: this
    is a warning aid, not a guarantee.

    Args:
        model: a Keras model (read only).
        samples: entries read per variable. Defaults to `SAMPLES_PER_VARIABLE`.

    Example:

    ```python
    fp = WeightsFingerprint(model)
    before = fp()
    model.fit(x, y, epochs=1)
    changed = not np.array_equal(before, fp())
    ```
    """

    def __init__(self, model, samples=SAMPLES_PER_VARIABLE):
        self._variables = list(model.weights)
        self._indices = []
        for v in self._variables:
            size = int(np.prod(v.shape))
            n = min(size, samples)
            self._indices.append(np.unique(np.linspace(0, size - 1, n).astype("int64")) if n else None)
        self._read = tf.function(self.read_in_graph, autograph=False)

    def read_in_graph(self):
        """The current fingerprint as a float64 tensor, for use inside another ``tf.function``
        (the variables are read in that function's call, at no extra call's cost)."""
        # One gather per variable (multi-indices: no reshape), one concat and cast per dtype:
        # few ops, since this also runs inside every compiled analysis of a pattern analyzer.
        by_dtype = {}
        for v, idx in zip(self._variables, self._indices):
            if idx is None:
                continue
            value = tf.convert_to_tensor(v.value)
            if len(value.shape) == 0:
                picked = tf.reshape(value, [1])
            elif len(value.shape) == 1:
                picked = tf.gather(value, idx)
            else:
                picked = tf.gather_nd(value, np.stack(np.unravel_index(idx, value.shape), axis=1))
            by_dtype.setdefault(value.dtype, []).append(picked)
        out = [tf.cast(parts[0] if len(parts) == 1 else tf.concat(parts, axis=0), tf.float64)
               for parts in by_dtype.values()]
        if not out:
            return tf.zeros([0], tf.float64)
        return out[0] if len(out) == 1 else tf.concat(out, axis=0)

    def __call__(self):
        """The current fingerprint, a float64 NumPy vector."""
        return self._read().numpy()
