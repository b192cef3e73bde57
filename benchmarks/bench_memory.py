"""Resident memory of analyzers on keras.applications.VGG16 (weights=None, 224x224, 138M weights).

    python benchmarks/bench_memory.py [--batch 2]

Builds the model, then one analyzer after another (each analyzes one batch, and all are kept
alive, as a user keeping several analyzers would), printing the process's resident set size (RSS,
from /proc/self/status) after each step. An analyzer that copied the weights would add about
0.5 GiB per copy (VGG16's weights are 0.52 GiB in float32); a live view adds only its compiled
function and the transient buffers of one call.
"""

import argparse
import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_patterns as kp  # noqa: E402

ANALYZERS = ("gradient", "lrp.epsilon", "lrp.sequential_preset_a_flat", "pattern.attribution")


def rss_gib():
    """Current resident set size of this process in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--analyzers", nargs="*", default=list(ANALYZERS))
    args = p.parse_args(argv)
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, classifier_activation=None)
    x = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")
    model.predict(x, verbose=0)
    gc.collect()
    print(f"{'model':32s} RSS {rss_gib():.2f} GiB", flush=True)
    kept = []
    for name in args.analyzers:
        analyzer = kp.create_analyzer(name, model, batch_size=args.batch)
        if analyzer.needs_fitting:
            analyzer.fit(x, batch_size=args.batch, verbose=0)
        analyzer.analyze(x)
        kept.append(analyzer)
        gc.collect()
        print(f"{'+ ' + name:32s} RSS {rss_gib():.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
