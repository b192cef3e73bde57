"""Fitting patterns over a sharded ``tf.data`` pipeline with ``tf.distribute`` (multi-GPU, multi-host).

Every worker runs this same script; ``TF_CONFIG`` tells it the cluster and which worker it is.
Without ``TF_CONFIG`` it runs as a single worker (all local GPUs, or the CPU).

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' python examples/distributed_fit.py --out patterns.npz

The analyzer is built under the strategy's scope, exactly as a Keras model for ``model.fit``; its
``fit`` then splits every global batch over all replicas of all workers, each replica adds its
part to its own float64 sums, and the sums are all-reduced once, at the end. Worker 0 (the chief)
saves the patterns.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: samples per step over all replicas of all workers (as ``batch_size`` in ``model.fit``)
GLOBAL_BATCH = 64
#: samples in the (synthetic) data set
N_SAMPLES = 1024


def build_model():
    """A small digits CNN; every worker builds the same weights (same seed)."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="logits"),
    ], name="digits_cnn")


def load_data():
    """The images (a real pipeline reads files: ``tf.data.Dataset.list_files(...)``)."""
    from keras_patterns.datasets import make_digits

    return make_digits(N_SAMPLES, seed=0)[0]


def dataset_fn(input_context):
    """One input pipeline: this worker's shard of the data, in per-replica batches."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(load_data())
    ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds.batch(input_context.get_per_replica_batch_size(GLOBAL_BATCH)).prefetch(2)


def main(argv=None):
    """Fits the patterns on all workers; the chief saves them.

    Args:
        argv: command line arguments (``--out``, ``--analyzer``). Defaults to `None`
            (``sys.argv[1:]``).

    Returns:
        The fitted analyzer.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="where the chief saves the patterns (.npz)")
    p.add_argument("--analyzer", default="pattern.attribution")
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    import keras_patterns as kp

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build_model()
        analyzer = kp.create_analyzer(args.analyzer, model)
    analyzer.fit(dataset_fn, verbose=0)  # every worker reads its shard; the sums are all-reduced

    resolver = strategy.cluster_resolver
    if args.out and (resolver.task_type in (None, "chief") or resolver.task_type == "worker" and resolver.task_id == 0):
        np.savez(args.out, **analyzer.patterns)
        print(f"{strategy.num_replicas_in_sync} replicas; patterns of {len(analyzer.patterns)} layers saved to {args.out}")
    return analyzer


if __name__ == "__main__":
    main()
