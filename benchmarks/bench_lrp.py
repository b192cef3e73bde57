"""Analyze throughput of LRP analyzers against a plain compiled `tf.GradientTape` gradient, in one
process, on a VGG16-style CNN and on keras.applications.ResNet50 (weights=None).

    python benchmarks/bench_lrp.py [--size 64] [--batch 32] [--repeats 5] [--models vgg resnet50]

Both models take 64x64x3 inputs by default (ImageNet size is impractical on a 2-core CPU; the ratio
is what matters). The baseline is a `tf.function` computing the gradient of the max logit with a
tape around the user's model (BatchNormalization unfused, as Keras runs it); our timing is the
whole user call `analyzer.analyze(x)` (input checks, batching, numpy conversion). Warm-up (tracing)
is excluded for both; the median of `--repeats` runs is reported. Target: ratio >= 0.5.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_patterns as kp  # noqa: E402
from _common import median_time, tape_gradient_fn  # noqa: E402

ANALYZERS = ("lrp.epsilon", "lrp.sequential_preset_a", "lrp.alpha_2_beta_1", "lrp.z_plus", "deep_taylor")


def vgg_style(size, classes=10):
    """VGG16's layout (13 3x3 convs in 5 blocks, max-pooling, two dense layers), narrower."""
    inp = keras.Input((size, size, 3))
    h = inp
    for filters, convs in ((32, 2), (64, 2), (128, 3), (256, 3), (256, 3)):
        for _ in range(convs):
            h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(512, activation="relu")(h)
    h = keras.layers.Dense(512, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h), name="vgg16_style")


def resnet50(size, classes=10):
    return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=classes,
                                       classifier_activation=None)


MODELS = {"vgg": vgg_style, "resnet50": resnet50}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="input side (default 64)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--analyzers", nargs="*", default=list(ANALYZERS))
    args = p.parse_args(argv)
    x = np.random.default_rng(0).normal(size=(args.batch, args.size, args.size, 3)).astype("float32")
    xt = tf.constant(x)
    print(f"{os.cpu_count()} CPU threads, input {args.size}x{args.size}x3, batch {args.batch}")
    for model_name in args.models:
        keras.utils.set_random_seed(0)
        model = MODELS[model_name](args.size)

        tape_gradient = tape_gradient_fn(model, x.shape[1:])
        base = median_time(lambda: tape_gradient(xt).numpy(), args.repeats)
        print(f"\n{model_name}: {'tf.GradientTape (baseline)':28s} {args.batch / base:8.1f} img/s  ratio 1.00")
        for name in args.analyzers:
            analyzer = kp.create_analyzer(name, model, batch_size=args.batch)
            t = median_time(lambda: analyzer.analyze(x), args.repeats)
            print(f"{model_name}: {name:28s} {args.batch / t:8.1f} img/s  ratio {base / t:.2f}", flush=True)


if __name__ == "__main__":
    main()
