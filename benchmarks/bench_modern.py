"""Analyze throughput on the models of issue 10 (EfficientNetB0, ConvNeXtTiny, a small ViT)
against a plain `tf.GradientTape` gradient compiled with `tf.function`, in one process.

    python benchmarks/bench_modern.py [--size 32] [--batch 16] [--repeats 5] [--models "small ViT"]

Prints one line per model and analyzer: images/s and the ratio to the baseline (higher is better).
The pattern methods are fitted first on 64 random images (not timed); on the ViT every
MultiHeadAttention projection (EinsumDense) gets a pattern, and the attention weights are held
constant in the backward pass.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers as L  # noqa: E402

import keras_patterns as kp  # noqa: E402
from _common import median_time, tape_gradient_fn  # noqa: E402


def small_vit(size, patch=4, dim=32, heads=4, depth=2):
    """A ViT from Keras layers: patch embedding, LayerNorm, MultiHeadAttention, GELU MLP, residuals."""
    inp = keras.Input((size, size, 3))
    h = L.Conv2D(dim, patch, strides=patch)(inp)
    h = L.Reshape(((size // patch) ** 2, dim))(h)
    for _ in range(depth):
        a = L.LayerNormalization()(h)
        h = L.Add()([h, L.MultiHeadAttention(heads, dim // heads)(a, a)])
        m = L.LayerNormalization()(h)
        m = L.Dense(2 * dim, activation="gelu")(m)
        h = L.Add()([h, L.Dense(dim)(m)])
    h = L.GlobalAveragePooling1D()(L.LayerNormalization()(h))
    return keras.Model(inp, L.Dense(10)(h), name="small_vit")


MODELS = {
    "EfficientNetB0": lambda s: keras.applications.EfficientNetB0(
        weights=None, input_shape=(s, s, 3), classes=10, classifier_activation=None),
    "ConvNeXtTiny": lambda s: keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(s, s, 3), classes=10, classifier_activation=None),
    "small ViT": small_vit,
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=32, help="input side (default 32)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--analyzers", nargs="*", default=["gradient", "lrp.epsilon", "pattern.attribution"])
    p.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS),
                   help="models to time (default: all)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.size, args.size, 3)).astype("float32")
    fit_x = rng.normal(size=(64, args.size, args.size, 3)).astype("float32")
    print(f"{args.size}x{args.size}, batch {args.batch}, {os.cpu_count()} CPU threads")
    for model_name in args.models:
        build = MODELS[model_name]
        keras.utils.set_random_seed(0)
        model = build(args.size)
        tape_gradient = tape_gradient_fn(model, x.shape[1:])
        xt = tf.constant(x)
        base = median_time(lambda: tape_gradient(xt).numpy(), args.repeats)
        print(f"{model_name:15s} {'tf.GradientTape (baseline)':22s} {args.batch / base:8.1f} img/s  ratio 1.00",
              flush=True)
        for name in args.analyzers:
            try:
                analyzer = kp.create_analyzer(name, model, batch_size=args.batch)
                if analyzer.needs_fitting:
                    analyzer.fit(fit_x, batch_size=32, verbose=0)
            except kp.KerasPatternsError as e:
                print(f"{model_name:15s} {name:22s} refused: {str(e).splitlines()[0][:90]}", flush=True)
                continue
            t = median_time(lambda: analyzer.analyze(x), args.repeats)
            print(f"{model_name:15s} {name:22s} {args.batch / t:8.1f} img/s  ratio {base / t:.2f}", flush=True)


if __name__ == "__main__":
    main()
