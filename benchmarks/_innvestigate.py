"""``run.py --compare-innvestigate PYTHON``: the same workload in an iNNvestigate interpreter.

iNNvestigate 2.1.2 needs TensorFlow <= 2.14 (Keras 2) and 1.0.9 needs Keras 2.2.4, so it cannot
share our process. For each model that can be described to Keras 2 (a chain of Conv2D / pooling /
Flatten / Dense layers, or a ``keras.applications`` constructor), this writes the architecture as
JSON plus the weights and the batches as ``.npz`` into a temporary folder and runs
``_innvestigate_worker.py`` in ``PYTHON``, which rebuilds the model, loads the weights and prints
its timings as JSON: ratios against its own compiled ``K.gradients`` baseline, as ours are against
our compiled tape gradient. The small ViT is not described (iNNvestigate has no rule for
MultiHeadAttention).
"""

import json
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
APPLICATIONS = {"vgg16": "VGG16", "resnet50": "ResNet50", "efficientnetb0": "EfficientNetB0"}
CHAIN_KEYS = {"Conv2D": ("filters", "kernel_size", "strides", "padding", "activation", "use_bias"),
              "MaxPooling2D": ("pool_size", "strides", "padding"),
              "AveragePooling2D": ("pool_size", "strides", "padding"),
              "Flatten": (), "Dense": ("units", "activation", "use_bias"), "Dropout": ("rate",),
              "ReLU": ()}


def describe(key, model):
    """A JSON description Keras 2 can rebuild, or None (the model is not described)."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if key not in APPLICATIONS and all(type(layer).__name__ in CHAIN_KEYS for layer in layers):
        out = []
        for layer in layers:
            cfg = layer.get_config()
            out.append({"class": type(layer).__name__,
                        "config": {k: cfg[k] for k in CHAIN_KEYS[type(layer).__name__] if k in cfg}})
        return {"kind": "chain", "input_shape": list(model.input_shape[1:]), "layers": out}
    if key in APPLICATIONS:
        return {"kind": "application", "name": APPLICATIONS[key], "input_shape": list(model.input_shape[1:]),
                "classes": int(model.output_shape[-1])}
    return None


def compare_innvestigate(python, results, args):
    """Runs the worker in ``python`` on every described model; returns its parsed results."""
    import run  # the models and data of the benchmark

    models = {}
    info = None
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            model = run.build(key)
            spec = describe(key, model)
            if spec is None:
                models[key] = {"status": "not described (no Keras 2 rebuild)"}
                continue
            x, _ = run.data(key, args.batch, seed=1)
            fx, fy = run.data(key, args.n_fit)
            path = os.path.join(tmp, key + ".npz")
            np.savez(path, *model.get_weights(), x=x, fit_x=fx, fit_y=fy)
            spec.update(npz=path, n_weights=len(model.get_weights()), rounds=args.rounds,
                        min_round_s=args.min_round_s, fit_batch=args.fit_batch, key=key)
            with open(os.path.join(tmp, key + ".json"), "w") as f:
                json.dump(spec, f)
            print(f"  {key:15s} iNNvestigate worker ({python}) ...", flush=True)
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            try:
                p = subprocess.run([python, os.path.join(HERE, "_innvestigate_worker.py"),
                                    os.path.join(tmp, key + ".json")],
                                   capture_output=True, text=True, env=env, timeout=args.innvestigate_timeout)
            except subprocess.TimeoutExpired:
                models[key] = {"status": f"timed out after {args.innvestigate_timeout} s"}
                print(f"  {key:15s} iNNvestigate worker timed out", flush=True)
                continue
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if p.returncode or not lines:
                models[key] = {"status": f"worker failed (rc {p.returncode})", "stderr": p.stderr[-1500:]}
                print(f"  {key:15s} iNNvestigate worker failed:\n{p.stderr[-1500:]}", flush=True)
                continue
            out = json.loads(lines[-1])
            info = {k: out.pop(k) for k in ("version", "tensorflow", "python")}
            models[key] = out
            print(f"  {key:15s} iNNvestigate {json.dumps(out)}", flush=True)
    if info is None:
        return {"status": "failed", "message": "no model ran in the iNNvestigate interpreter", "models": models}
    return {"status": "ok", **info, "models": models}
