"""Run by tests/test_distribute.py in a fresh process: 3 logical CPU devices must be configured
before TensorFlow initialises its devices, which a pytest process has long done.

Fits and analyzes under a 3-replica MirroredStrategy and on a single device, and saves both
(``results.npz``) with the error messages (``errors.json``) into the folder given as argv[1].
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 3)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_patterns as kp  # noqa: E402

REPLICAS = 3


def build():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2), name="image")
    h = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    h = keras.layers.DepthwiseConv2D(3, activation="relu", name="depthwise")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(5, activation="relu", name="hidden")(h)
    return keras.Model(inp, keras.layers.Dense(4, name="logits")(h), name="child_cnn")


def main(folder):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 8, 8, 2)).astype("float32")
    model = build()
    res, errors = {}, {}
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
    res["replicas"] = np.array(strategy.num_replicas_in_sync)

    # ---------------------------------------------------------------------------------- fitting
    for name, batch in (("b16", 16), ("b2", 2)):  # batch 2 < 3 replicas: a replica without data
        ref = kp.PatternComputer(model, ["linear", "relu"]).compute(x, batch_size=batch, verbose=0)
        for t in ref:
            for k, v in ref[t].items():
                res[f"fit_ref_{name}_{t}_{k}"] = v
    with strategy.scope():
        computer = kp.PatternComputer(model, ["linear", "relu"])
    sources = {
        "array": (x, 16),
        "dataset": (tf.data.Dataset.from_tensor_slices((x, np.zeros(70))).batch(16), 16),
        "generator": ((x[i:i + 16] for i in range(0, 70, 16)), 16),
        "dataset_fn": (lambda ctx: tf.data.Dataset.from_tensor_slices(x).shard(
            ctx.num_input_pipelines, ctx.input_pipeline_id).batch(ctx.get_per_replica_batch_size(15)), 16),
        "array_b2": (x, 2),
    }
    for name, (data, batch) in sources.items():
        got = computer.compute(data, batch_size=batch, verbose=0)
        for t in got:
            for k, v in got[t].items():
                res[f"fit_{name}_{t}_{k}"] = v
    xb = x.copy()
    xb[20, 3, 3, 1] = np.nan
    try:
        computer.compute(xb, batch_size=16, verbose=0)
    except Exception as e:  # noqa: BLE001 (the test checks the type and message)
        errors["nan"] = f"{type(e).__name__}: {e}"
    got = computer.compute(xb, batch_size=16, verbose=0, skip_nonfinite=True)
    res["skipped"] = np.array(computer.skipped_samples)
    res["fit_skip_relu_conv"] = got["relu"]["conv"]
    res["fit_ref_skip_relu_conv"] = kp.PatternComputer(model, "relu").compute(
        np.delete(x, 20, axis=0), batch_size=16, verbose=0)["conv"]
    stats = computer.statistics.statistics()
    res["n_rows_hidden"] = np.array(stats["hidden"]["n_rows"])
    try:
        computer.compute(tf.data.Dataset.from_tensor_slices(x[:, :4]).batch(8), verbose=0)
    except ValueError as e:
        errors["shape"] = str(e)
    try:
        computer.compute(tf.data.Dataset.from_tensor_slices(x).batch(8).map(lambda b: (b, b, b, b)), verbose=0)
    except ValueError as e:
        errors["structure"] = str(e)
    plain = kp.PatternComputer(model, "relu")
    try:
        with strategy.scope():
            plain.compute(x, verbose=0)
    except ValueError as e:
        errors["fit_scope"] = str(e)

    # --------------------------------------------------------------------------------- analysis
    for name in ("gradient", "lrp.epsilon", "pattern.attribution", "smoothgrad"):
        kwargs = {"seed": 1, "augment_by_n": 4} if name == "smoothgrad" else {}
        single = kp.create_analyzer(name, model, **kwargs)
        with strategy.scope():
            dist = kp.create_analyzer(name, model, **kwargs)
        if single.needs_fitting:
            single.fit(x, verbose=0)
            dist.fit(x, verbose=0)
            res[f"fitted_{name}_conv"] = dist.patterns["conv"]
            dist.set_state(single.get_state())  # same patterns: the maps must agree exactly
        key = name.replace(".", "_")
        res[f"ref_{key}"] = single.analyze(x)
        res[f"dist_{key}_b16"] = dist.analyze(x, batch_size=16)
        res[f"dist_{key}_b1"] = dist.analyze(x[:5], batch_size=1)  # 1 sample on 3 replicas
        res[f"dist_{key}_ds"] = dist.analyze(tf.data.Dataset.from_tensor_slices(x).batch(7))
        pieces = []
        dist.analyze(x, batch_size=10, on_batch=lambda start, m: pieces.append((start, m.copy())))
        res[f"dist_{key}_starts"] = np.array([s for s, _ in pieces])
        res[f"dist_{key}_stream"] = np.concatenate([m for _, m in pieces])
        res[f"dist_{key}_npy"] = np.array(dist.analyze(
            (x[i:i + 9] for i in range(0, 70, 9)), out=os.path.join(folder, f"{key}.npy")))
    try:
        with strategy.scope():
            single.analyze(x)
    except ValueError as e:
        errors["analyze_scope"] = str(e)
    np.savez(os.path.join(folder, "results.npz"), **res)
    with open(os.path.join(folder, "errors.json"), "w") as f:
        json.dump(errors, f)


if __name__ == "__main__":
    main(sys.argv[1])
