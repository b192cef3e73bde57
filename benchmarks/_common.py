"""Helpers shared by the benchmarks: timing and the plain tf.GradientTape baseline."""

import time

import numpy as np
import tensorflow as tf


def median_time(fn, repeats):
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run (tracing)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def tape_gradient_fn(model, sample_shape):
    """A compiled plain gradient of the max logit w.r.t. the input: the baseline of every ratio."""

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(sample_shape), tf.float32)])
    def grad(xb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            top = tf.reduce_max(model(xb, training=False), axis=1)
        return tape.gradient(top, xb)

    return grad
