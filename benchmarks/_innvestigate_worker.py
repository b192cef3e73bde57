"""Runs ``run.py``'s workload in an iNNvestigate interpreter and prints one line of JSON.

    PYTHON benchmarks/_innvestigate_worker.py SPEC.json

Started by ``run.py --compare-innvestigate PYTHON`` (see ``_innvestigate.py``), in an interpreter
with iNNvestigate 2.1.2 (TensorFlow <= 2.14, graph mode) or 1.0.9 (Keras 2.2.4). It rebuilds the
model from the JSON description, loads the weights and batches from the ``.npz``, and times, against
its own compiled baseline (``K.function`` over ``K.gradients`` of the max logit, as iNNvestigate
itself computes gradients), alternately (``_common.interleaved_ratio``):

* ``gradient`` and ``lrp.epsilon``: ``analyzer.analyze(x)`` throughput ratios;
* ``pattern.attribution`` (iNNvestigate 1.x only; 2.x has no pattern methods): its ``fit`` against
  one ``model.fit`` epoch on the same samples, and its ``analyze`` throughput ratio.

Nothing here imports keras_patterns: the interpreter need not have it.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def _keras():
    """``(keras, K)`` of the interpreter: tf.keras in graph mode for iNNvestigate 2, keras for 1.x."""
    import innvestigate

    if innvestigate.__version__.startswith("1."):
        import keras
        import keras.backend as K
        return keras, K
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    from tensorflow import keras
    from tensorflow.keras import backend as K
    return keras, K


def build(spec, keras):
    """The model of the description (weights loaded separately)."""
    shape = tuple(spec["input_shape"])
    if spec["kind"] == "application":
        return getattr(keras.applications, spec["name"])(
            weights=None, input_shape=shape, classes=spec["classes"], classifier_activation=None)
    inp = keras.layers.Input(shape)
    h = inp
    for layer in spec["layers"]:
        cfg = dict(layer["config"])
        for k in ("kernel_size", "strides", "pool_size"):
            if isinstance(cfg.get(k), list):
                cfg[k] = tuple(cfg[k])
        h = getattr(keras.layers, layer["class"])(**cfg)(h)
    return keras.models.Model(inp, h)


def main(path):
    import innvestigate

    from _common import interleaved_ratio

    keras, K = _keras()
    with open(path) as f:
        spec = json.load(f)
    z = np.load(spec["npz"])
    model = build(spec, keras)
    weights = [z["arr_%d" % i] for i in range(spec["n_weights"])]
    theirs = model.get_weights()
    try:  # the distribution's version (2.1.2 reports __version__ "2.0.1")
        from importlib.metadata import version
        out = {"version": version("innvestigate")}
    except Exception:
        out = {"version": innvestigate.__version__}
    out["python"] = sys.version.split()[0]
    try:
        import tensorflow as tf
        out["tensorflow"] = tf.__version__
    except ImportError:
        out["tensorflow"] = "none (Keras %s)" % keras.__version__
    if len(theirs) == len(weights) and all(a.shape == b.shape for a, b in zip(theirs, weights)):
        model.set_weights(weights)
        out["weights"] = "ours"
    else:
        out["weights"] = "own random init (weight layout differs)"
    x, fit_x, fit_y = z["x"], z["fit_x"], z["fit_y"]
    rounds, min_round_s = spec["rounds"], spec["min_round_s"]

    grad = K.function([model.input], K.gradients(K.sum(K.max(model.output, axis=1)), model.input))

    def base():
        grad([x])

    for name in ("gradient", "lrp.epsilon"):
        try:
            a = innvestigate.create_analyzer(name, model)
            out[name] = interleaved_ratio(base, lambda: a.analyze(x), rounds, min_round_s=min_round_s)["ratio"]
        except Exception as e:
            out[name] = "refused (%s)" % type(e).__name__
    if "pattern.attribution" not in innvestigate.analyzer.analyzers:
        out["pattern.attribution"] = "not in iNNvestigate %s" % out["version"]
        out["pattern fit_epoch_ratio"] = out["pattern.attribution"]
    else:
        b = spec["fit_batch"]
        try:
            a = innvestigate.create_analyzer("pattern.attribution", model)
            a.fit(fit_x[:2 * b], batch_size=b, verbose=0)
            train = keras.models.clone_model(model)
            train.set_weights(model.get_weights())
            train.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            train.fit(fit_x[:2 * b], fit_y[:2 * b], batch_size=b, epochs=1, verbose=0)
            t0 = time.perf_counter()
            train.fit(fit_x, fit_y, batch_size=b, epochs=1, verbose=0)
            t_epoch = time.perf_counter() - t0
            t0 = time.perf_counter()
            a.fit(fit_x, batch_size=b, verbose=0)
            out["pattern fit_epoch_ratio"] = (time.perf_counter() - t0) / t_epoch
            out["pattern.attribution"] = interleaved_ratio(
                base, lambda: a.analyze(x), rounds, min_round_s=min_round_s)["ratio"]
        except Exception as e:
            out["pattern.attribution"] = "refused (%s)" % type(e).__name__
            out["pattern fit_epoch_ratio"] = out["pattern.attribution"]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
