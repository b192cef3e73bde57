"""Benchmarks of pattern fitting and pattern.attribution against Keras training and a plain gradient.

Ratios, each measured within one process (timings) or between sibling subprocesses (memory):

* fit time: ``analyzer.fit`` over N samples / one ``model.fit`` epoch over the same samples
  (Adam, sparse categorical cross-entropy; warm-up excluded for both). Target <= 1.5.
* peak memory: peak RSS (VmHWM, reset after start-up) of a process that builds the model and fits
  patterns / of one that builds the model and runs one ``model.fit`` epoch, at the same batch
  size. Target <= 1.2. The ratio of the increments over each process's RSS before the job is
  reported as well (a stricter view: TensorFlow's resident runtime is left out).
* analyze throughput: pattern.attribution samples/s / samples/s of a plain ``tf.GradientTape``
  gradient (tf.function, same batch size; warm-up excluded). Target >= 0.7.

Usage: ``python benchmarks/bench_patterns.py [--n 512] [--batch 32] [--models vgg resnet]``
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def vgg_style(size=64, classes=10):
    """A VGG16-style CNN (3x3 convs in blocks, max-pooling, two dense layers), scaled down."""
    import keras
    from keras import layers as L

    inp = keras.Input((size, size, 3))
    h = inp
    for filters, convs in ((32, 2), (64, 2), (128, 3), (128, 3)):
        for _ in range(convs):
            h = L.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    h = L.Dense(256, activation="relu")(h)
    h = L.Dropout(0.5)(h)
    h = L.Dense(256, activation="relu")(h)
    return keras.Model(inp, L.Dense(classes)(h), name="vgg_style")


def resnet_style(size=64, classes=10):
    """A ResNet-style model: conv-BN-ReLU stem, 3 stages of 2 basic residual blocks, GAP, dense."""
    import keras
    from keras import layers as L

    def block(h, filters, stride):
        shortcut = h
        r = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(h)
        r = L.BatchNormalization()(r)
        r = L.ReLU()(r)
        r = L.Conv2D(filters, 3, padding="same", use_bias=False)(r)
        r = L.BatchNormalization()(r)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            shortcut = L.BatchNormalization()(shortcut)
        return L.ReLU()(L.Add()([shortcut, r]))

    inp = keras.Input((size, size, 3))
    h = L.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    for filters, stride in ((32, 1), (64, 2), (128, 2)):
        h = block(h, filters, stride)
        h = block(h, filters, 1)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(classes)(h), name="resnet_style")


MODELS = {"vgg": vgg_style, "resnet": resnet_style}


def _data(n, size=64, classes=10):
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (n, size, size, 3)).astype("float32"), rng.integers(0, classes, n)


def _build(name):
    import keras

    keras.utils.set_random_seed(0)
    return MODELS[name]()


def memory_child(mode, name, n, batch):
    """One measurement process: prints the peak RSS (MiB) of the given job.

    The model and data are built first; then the peak-RSS counter is reset (``clear_refs`` 5) so
    that the peak of TensorFlow's import and start-up, identical in every mode, does not hide the
    job's own peak. Reports the job's peak (VmHWM) and the RSS before the job.
    """
    from _common import memory_job

    x, y = _data(n)
    peak, before = memory_job({"fit": "train"}.get(mode, mode), _build(name), x, y, batch)
    print(json.dumps({"maxrss_mib": peak, "rss_before_mib": before}))


def _child(mode, name, n, batch):
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--models", name, "--n", str(n), "--batch", str(batch)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def timings(name, n, batch, n_analyze):
    import tensorflow as tf
    from _common import compiled_for_training, tape_gradient_fn

    import keras_patterns as kp

    model = _build(name)
    x, y = _data(n)
    # model.fit: warm-up on two batches, then one timed epoch over all samples
    train = _build(name)
    compiled_for_training(train).fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)
    t0 = time.perf_counter()
    train.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    t_fit = time.perf_counter() - t0
    # pattern fitting: warm-up on two batches (traces the statistics function), then timed
    a = kp.create_analyzer("pattern.attribution", model)
    a.fit(x[: 2 * batch], batch_size=batch, verbose=0)
    t0 = time.perf_counter()
    a.fit(x, batch_size=batch, verbose=0)
    t_pat = time.perf_counter() - t0
    # analyze throughput vs a plain GradientTape gradient of the max logit
    xa = x[:n_analyze]

    grad = tape_gradient_fn(model, x.shape[1:])

    def run_grad():
        for s in range(0, len(xa), batch):
            grad(tf.constant(xa[s:s + batch])).numpy()

    a.analyze(xa[:batch], batch_size=batch)
    run_grad()
    best_a = best_g = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a.analyze(xa, batch_size=batch)
        best_a = min(best_a, time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_grad()
        best_g = min(best_g, time.perf_counter() - t0)
    return {
        "params": int(model.count_params()),
        "fit_epoch_s": t_fit, "pattern_fit_s": t_pat, "fit_time_ratio": t_pat / t_fit,
        "analyze_samples_per_s": len(xa) / best_a, "gradient_samples_per_s": len(xa) / best_g,
        "analyze_throughput_ratio": best_g / best_a,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512, help="samples for fitting (default 512)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--n-analyze", type=int, default=128, help="samples for the throughput test")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    args = p.parse_args()
    if args.child:
        memory_child(args.child, args.models[0], args.n, args.batch)
        return
    results = {}
    for name in args.models:
        r = timings(name, args.n, args.batch, args.n_analyze)
        if not args.no_memory:
            fit = _child("fit", name, args.n, args.batch)
            pat = _child("patterns", name, args.n, args.batch)
            r.update(
                fit_peak_rss_mib=fit["maxrss_mib"], patterns_peak_rss_mib=pat["maxrss_mib"],
                fit_rss_before_mib=fit["rss_before_mib"], patterns_rss_before_mib=pat["rss_before_mib"],
                memory_ratio=pat["maxrss_mib"] / fit["maxrss_mib"],
                memory_increment_ratio=(pat["maxrss_mib"] - pat["rss_before_mib"])
                / max(fit["maxrss_mib"] - fit["rss_before_mib"], 1e-9),
            )
        results[name] = r
        print(name, json.dumps(r, indent=1), flush=True)
    print(json.dumps({"n": args.n, "batch": args.batch, "results": results}, indent=1))


if __name__ == "__main__":
    main()
