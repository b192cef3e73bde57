"""Throughput of `kp.evaluation.region_perturbation` against plain `model.predict` on the same
number of images, in one process.

    python benchmarks/bench_perturbation.py [--size 64] [--n 32] [--patch 8] [--batch 64] [--repeats 9]

The curves of ``n`` images over all ``(size / patch)**2`` patches need ``n * (patches + 1)`` model
evaluations. The baseline is ``model.predict`` on an array of that many images (already built, so
it pays nothing for building them) with the same batch size. Our timing is the whole user call:
patch scores, ordering, building every perturbed image in NumPy, the compiled model calls.
Prints images/s of both (medians) and the ratio (ours / predict; higher is better, 1.0 means as
fast), the median of per-round ratios with the two timed alternately.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_patterns import evaluation  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def small_cnn(size, classes=10):
    L = keras.layers
    return keras.Sequential([
        keras.Input((size, size, 3)),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(),
        L.Dense(classes),
    ])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=32, help="images (default 32)")
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--replacement", default="mean")
    args = p.parse_args(argv)
    keras.utils.set_random_seed(0)
    model = small_cnn(args.size)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.size, args.size, 3)).astype("float32")
    maps = rng.normal(size=x.shape).astype("float32")
    patches = (-(-args.size // args.patch)) ** 2
    rows = args.n * (patches + 1)
    flat = np.repeat(x, patches + 1, axis=0)  # the same number of images for predict

    def ours():
        evaluation.region_perturbation(model, x, maps, patch_size=args.patch,
                                       replacement=args.replacement, batch_size=args.batch)

    def predict():
        model.predict(flat, batch_size=args.batch, verbose=0)

    # Interleaved (ours, predict, ours, ...), so that both see the same load on a shared machine;
    # the ratio is the median of the per-round ratios.
    ours(), predict()  # tracing
    t_ours, t_pred = [], []
    for _ in range(args.repeats):
        t_ours.append(_timed(ours))
        t_pred.append(_timed(predict))
    ratio = float(np.median(np.array(t_pred) / np.array(t_ours)))
    t_ours, t_pred = float(np.median(t_ours)), float(np.median(t_pred))
    print(f"small CNN {args.size}x{args.size}x3, {args.n} images x {patches + 1} steps = {rows} "
          f"evaluations, batch {args.batch}, replacement {args.replacement!r}, {os.cpu_count()} CPU threads")
    print(f"{'model.predict (baseline)':28s} {rows / t_pred:9.1f} img/s  ratio 1.00")
    print(f"{'region_perturbation':28s} {rows / t_ours:9.1f} img/s  ratio {ratio:.2f} (median of "
          f"{args.repeats} interleaved rounds)")


if __name__ == "__main__":
    main()
