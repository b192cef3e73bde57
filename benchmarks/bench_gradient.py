"""Analyze throughput of keras_patterns' `gradient` (and the other gradient-family analyzers)
against a plain `tf.GradientTape` gradient compiled with `tf.function`, in one process.

    python benchmarks/bench_gradient.py [--size 64] [--batch 32] [--repeats 5]

Prints one line per analyzer: images/s and the ratio to the baseline (higher is better; 1.0 means
as fast as the plain gradient). The baseline includes nothing but the tape; our timing is the whole
user call `analyzer.analyze(x)` (input checks, batching, numpy conversion).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_patterns as kp  # noqa: E402
from _common import median_time, tape_gradient_fn  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="input side (default 64)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--analyzers", nargs="*", default=["gradient", "input_t_gradient", "deconvnet", "guided_backprop"])
    args = p.parse_args(argv)
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(
        weights=None, input_shape=(args.size, args.size, 3), classes=10, classifier_activation=None
    )
    x = np.random.default_rng(0).normal(size=(args.batch, args.size, args.size, 3)).astype("float32")

    tape_gradient = tape_gradient_fn(model, x.shape[1:])
    xt = tf.constant(x)
    base = median_time(lambda: tape_gradient(xt).numpy(), args.repeats)
    print(f"VGG16 {args.size}x{args.size}, batch {args.batch}, {os.cpu_count()} CPU threads")
    print(f"{'tf.GradientTape (baseline)':30s} {args.batch / base:8.1f} img/s  ratio 1.00")
    for name in args.analyzers:
        analyzer = kp.create_analyzer(name, model, batch_size=args.batch)
        t = median_time(lambda: analyzer.analyze(x), args.repeats)
        print(f"{name:30s} {args.batch / t:8.1f} img/s  ratio {base / t:.2f}")


if __name__ == "__main__":
    main()
