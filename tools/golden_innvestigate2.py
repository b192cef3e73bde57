"""Generate golden reference attributions with iNNvestigate 2.1.2.

This script writes ``tests/golden/innvestigate2_<model>.npz`` for every model in
``tests/golden/specs.py`` (``MODELS``). The files are compared against ``keras_patterns`` by
``tests/test_golden_innvestigate2.py``. Nothing from iNNvestigate is vendored: only its numbers are
stored.

Environment (iNNvestigate 2.x needs tf.keras 2 / TF <= 2.14 and NumPy 1; it does not run on Keras 3)::

    python3.11 -m venv /opt/inn212
    /opt/inn212/bin/pip install "tensorflow-cpu==2.14.1" "numpy<2" "innvestigate==2.1.2" h5py

Run from the repository root::

    /opt/inn212/bin/python tools/golden_innvestigate2.py

Optional arguments: ``--models mlp cnn`` (subset), ``--out DIR`` (default ``tests/golden``) and
``--n-samples N`` (default 4, as committed). A full run takes 3-7 minutes on a CPU.

What is computed, per model:

* the Sequential model ``tf.keras.Sequential([Input(input_shape), *layers])`` from the spec, with the
  weights of ``specs.make_weights(spec)`` (seed 0); inputs ``x = specs.make_inputs(spec, n=4)``
  (seed 1); the model outputs ``y = model.predict(x)``;
* for every analyzer configuration in :data:`CONFIGS` and every neuron selection mode
  ("max_activation", "index" with ``index = np.arange(4) % n_outputs``, "all"):
  ``innvestigate.create_analyzer(name, model, neuron_selection_mode=mode, **kwargs).analyze(x, ...)``.
  Each analyzer is built on a fresh graph (``clear_session`` + rebuilt model) so that nothing leaks
  between runs. Combinations that iNNvestigate rejects (exception at construction or at analyze time)
  are recorded in the manifest under ``"skipped"`` with the exception type and message.

Layout of each ``.npz`` (all float arrays are float32):

* ``x``: inputs, ``y``: model outputs, ``index``: the int32 neuron indices used in "index" mode;
* ``w_<layer>_<k>``: the ``k``-th weight array (0 = kernel, 1 = bias) of ``spec["layers"][layer]``;
* one array per analysis under a stable key ``<analyzer>[<k>=<v>,...]@<mode>`` (kwargs sorted by name,
  the ``[...]`` part omitted without kwargs). Bit-identical results are stored once: the manifest entry's
  ``"array"`` field names the key that holds the data (usually the entry's own key);
* ``manifest``: a JSON string with ``model``, ``spec``, ``versions``, ``seeds``, ``n_outputs``,
  ``modes``, ``weight_keys``, ``notes`` (observed iNNvestigate behaviour, see :data:`NOTES`),
  ``entries`` (key -> ``{"analyzer", "kwargs", "tuple_kwargs", "mode", "family", "array"}``) and
  ``skipped`` (list of ``{"analyzer", "kwargs", "mode", "family", "error"}``). ``tuple_kwargs`` lists the
  kwargs that were tuples in the call (JSON turns them into lists), e.g. ``input_layer_rule=(-3, 3)``.
  ``family`` is ``"gradient"`` (issue 2) or ``"lrp"`` (issue 4, LRP and DeepTaylor).
"""

import argparse
import importlib.metadata
import json
import os
import sys
import warnings
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

import specs  # noqa: E402  (numpy-only module next to the golden files)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

tf.compat.v1.disable_eager_execution()  # iNNvestigate 2.x is graph-mode only (tf.gradients).

import innvestigate  # noqa: E402

N_SAMPLES = 4
WEIGHT_SEED = 0
INPUT_SEED = 1
MODES = ("max_activation", "index", "all")

# (family, analyzer name, kwargs). family "gradient" = issue 2, "lrp" = issue 4.
CONFIGS = [
    ("gradient", "input", {}),
    ("gradient", "gradient", {}),
    ("gradient", "gradient", {"postprocess": "abs"}),
    ("gradient", "gradient", {"postprocess": "square"}),
    ("gradient", "gradient.baseline", {}),
    ("gradient", "input_t_gradient", {}),
    ("gradient", "deconvnet", {}),
    ("gradient", "guided_backprop", {}),
    ("gradient", "integrated_gradients", {"steps": 64, "reference_inputs": 0}),
    ("gradient", "integrated_gradients", {"steps": 64, "reference_inputs": 0.5}),
    ("lrp", "lrp.z", {}),
    ("lrp", "lrp.epsilon", {}),
    ("lrp", "lrp.epsilon", {"epsilon": 0.1}),
    ("lrp", "lrp.w_square", {}),
    ("lrp", "lrp.flat", {}),
    ("lrp", "lrp.alpha_2_beta_1", {}),
    ("lrp", "lrp.alpha_2_beta_1_IB", {}),
    ("lrp", "lrp.alpha_1_beta_0", {}),
    ("lrp", "lrp.alpha_1_beta_0_IB", {}),
    ("lrp", "lrp.alpha_beta", {"alpha": 3, "beta": 2}),
    ("lrp", "lrp.alpha_beta", {"alpha": 3, "beta": 2, "bias": False}),
    ("lrp", "lrp.z_plus", {}),
    ("lrp", "lrp.z_plus_fast", {}),
    ("lrp", "lrp", {"rule": "Z", "input_layer_rule": "Flat"}),
    ("lrp", "lrp", {"rule": "Z", "input_layer_rule": (-3, 3)}),
    ("lrp", "lrp.sequential_preset_a", {}),
    ("lrp", "lrp.sequential_preset_b", {}),
    ("lrp", "lrp.sequential_preset_a_flat", {}),
    ("lrp", "lrp.sequential_preset_b_flat", {}),
    ("lrp", "lrp.sequential_preset_b_flat_until_idx", {"until_layer_idx": 2}),
    ("lrp", "deep_taylor", {}),
    ("lrp", "deep_taylor.bounded", {"low": -3, "high": 3}),
]


# Behaviour observed while generating these files (checked against an independent float64
# re-implementation of innvestigate-spec.md sections 3-4; every entry agreed to <= 2e-6 of the map's
# max-abs, except lrp.z_plus_fast on the conv models, see the last note).
NOTES = [
    "until_layer_idx (lrp.sequential_preset_b_flat_until_idx) indexes model.layers; for a tf.keras "
    "Sequential model that list does NOT contain the InputLayer, so until_layer_idx=2 gives FlatRule to "
    "model.layers[0..2] = the first three real layers (all three Dense of 'mlp'; conv, pool, conv on "
    "'cnn'; conv, conv, pool on 'cnn_strided').",
    "deep_taylor: every Dense/Conv layer (also the linear output layer and the first layer) gets "
    "Alpha1Beta0IgnoreBias; the head is relu(y), so samples whose selected output is <= 0 are all-zero.",
    "innvestigate.__version__ reports '2.0.1' for the 2.1.2 wheel; versions.innvestigate comes from "
    "importlib.metadata.",
    "lrp.z_plus_fast does not clip x, so on the conv models first-layer denominators W+^T x come within "
    "~1e-4 of zero; the float32 maps then carry relative errors of ~1e-5..1e-4 of their max-abs.",
]


def entry_key(name, kwargs, mode):
    """Stable npz key for one (analyzer, kwargs, mode) combination."""
    parts = []
    for k in sorted(kwargs):
        v = kwargs[k]
        if isinstance(v, (tuple, list)):
            v = "(" + ",".join(str(e) for e in v) + ")"
        parts.append(f"{k}={v}")
    kw = "[" + ",".join(parts) + "]" if parts else ""
    return f"{name}{kw}@{mode}"


def build_model(spec, weights):
    layers = [getattr(tf.keras.layers, cls)(**kw) for cls, kw in spec["layers"]]
    model = tf.keras.Sequential([tf.keras.layers.Input(shape=tuple(spec["input_shape"])), *layers])
    assert len(model.layers) == len(weights), (len(model.layers), len(weights))
    for layer, ws in zip(model.layers, weights):
        if ws:
            layer.set_weights(ws)
    return model


def _json_spec(spec):
    def conv(v):
        if isinstance(v, (tuple, list)):
            return [conv(e) for e in v]
        if isinstance(v, dict):
            return {k: conv(e) for k, e in v.items()}
        return v

    return conv(spec)


def _error_text(exc):
    msg = " ".join(str(exc).split())
    if len(msg) > 400:
        msg = msg[:400] + " ..."
    return f"{type(exc).__name__}: {msg}"


def run_one(spec, weights, x, index, name, kwargs, mode):
    tf.keras.backend.clear_session()
    model = build_model(spec, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = innvestigate.create_analyzer(name, model, neuron_selection_mode=mode, **kwargs)
        if mode == "index":
            out = analyzer.analyze(x, neuron_selection=index)
        else:
            out = analyzer.analyze(x)
    out = np.asarray(out)
    if out.shape != x.shape:
        raise RuntimeError(f"unexpected analysis shape {out.shape}, expected {x.shape}")
    return out.astype("float32")


def write_npz(path, arrays):
    """Same format as ``np.savez_compressed`` (deflate), but byte-reproducible.

    The fixed member timestamps keep re-generated files identical in git when the numbers do not
    change. (LZMA members were tried: under 1% smaller, since each map is compressed on its own.)
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def generate(model_name, out_dir, n_samples=N_SAMPLES):
    spec = specs.MODELS[model_name]
    weights = specs.make_weights(spec, seed=WEIGHT_SEED)
    x = specs.make_inputs(spec, n=n_samples, seed=INPUT_SEED)

    tf.keras.backend.clear_session()
    model = build_model(spec, weights)
    y = model.predict(x, verbose=0).astype("float32")
    n_out = y.shape[-1]
    index = (np.arange(n_samples) % n_out).astype("int32")

    arrays = {"x": x, "y": y, "index": index}
    weight_keys = []
    for i, ws in enumerate(weights):
        keys = []
        for k, w in enumerate(ws):
            arrays[f"w_{i}_{k}"] = w
            keys.append(f"w_{i}_{k}")
        weight_keys.append(keys)

    entries = {}
    skipped = []
    stored = []  # (key, array) for bit-identical deduplication
    for family, name, kwargs in CONFIGS:
        for mode in MODES:
            key = entry_key(name, kwargs, mode)
            json_kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
            tuple_kwargs = sorted(k for k, v in kwargs.items() if isinstance(v, tuple))
            try:
                a = run_one(spec, weights, x, index, name, kwargs, mode)
            except Exception as exc:  # noqa: BLE001  (record whatever iNNvestigate rejects)
                err = _error_text(exc)
                print(f"[{model_name}] SKIP {key}: {err}", flush=True)
                skipped.append({"key": key, "analyzer": name, "kwargs": json_kwargs, "mode": mode,
                                "family": family, "error": err})
                continue
            if not np.all(np.isfinite(a)):
                err = "non-finite values in the analysis"
                print(f"[{model_name}] SKIP {key}: {err}", flush=True)
                skipped.append({"key": key, "analyzer": name, "kwargs": json_kwargs, "mode": mode,
                                "family": family, "error": err})
                continue
            target = key
            for other_key, other in stored:
                if other.shape == a.shape and np.array_equal(other, a):
                    target = other_key
                    break
            else:
                stored.append((key, a))
                arrays[key] = a
            entries[key] = {"analyzer": name, "kwargs": json_kwargs, "tuple_kwargs": tuple_kwargs,
                            "mode": mode, "family": family, "array": target}
            print(f"[{model_name}] ok   {key}  max|a|={np.abs(a).max():.4g}"
                  + ("" if target == key else f"  (== {target})"), flush=True)

    manifest = {
        "generator": "tools/golden_innvestigate2.py",
        "model": model_name,
        "spec": _json_spec(spec),
        "versions": {
            "innvestigate": importlib.metadata.version("innvestigate"),
            "innvestigate.__version__": getattr(innvestigate, "__version__", None),
            "tensorflow": tf.__version__,
            "keras": importlib.metadata.version("keras"),
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "seeds": {"weights": WEIGHT_SEED, "inputs": INPUT_SEED, "n_samples": n_samples},
        "n_outputs": int(n_out),
        "weight_keys": weight_keys,
        "modes": list(MODES),
        "entries": entries,
        "skipped": skipped,
        "notes": NOTES,
    }
    arrays["manifest"] = np.array(json.dumps(manifest, sort_keys=True, separators=(",", ":")))
    path = os.path.join(out_dir, f"innvestigate2_{model_name}.npz")
    write_npz(path, arrays)
    print(f"[{model_name}] wrote {path}: {len(entries)} entries, {len(stored)} distinct arrays, "
          f"{len(skipped)} skipped, {os.path.getsize(path)} bytes", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(specs.MODELS))
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    parser.add_argument("--n-samples", type=int, default=N_SAMPLES,
                        help="batch size of x (default 4; the committed files use 4)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        generate(name, args.out, args.n_samples)


if __name__ == "__main__":
    main()
