"""Generate golden reference files from iNNvestigate 1.0.9 (PatternNet, PatternAttribution, LRP-IB).

iNNvestigate 1.0.9 is the last release that ships the pattern methods (``PatternComputer``,
``pattern.net``, ``pattern.attribution``) and the ``lrp.z_IB`` / ``lrp.epsilon_IB`` analyzers. It needs
TensorFlow 1.x, Keras 2.2.4 and Python 3.7, so it runs in its own virtual environment. This script only
*runs* iNNvestigate and stores the numbers it produces; no iNNvestigate code is copied into this
repository. The Keras 3 tests in ``tests/test_golden_innvestigate1.py`` compare ``keras_patterns``
against the files written here.

Creating the environment (pyenv's CPython 3.7.16; any CPython 3.7 works)::

    ~/.pyenv/versions/3.7.16/bin/python -m venv /opt/inn109
    /opt/inn109/bin/pip install --upgrade "pip<24"
    /opt/inn109/bin/pip install tensorflow==1.15.5 keras==2.2.4 innvestigate==1.0.9 \\
        "h5py<3" "protobuf<3.21" "numpy<1.19"

(numpy must be >= 1.17 for ``numpy.random.default_rng`` used by ``tests/golden/specs.py``, and < 1.19
for TensorFlow 1.15; the environment used for the committed files had numpy 1.18.5.)

Running it, from the repository root::

    /opt/inn109/bin/python tools/golden_innvestigate1.py

It writes ``tests/golden/innvestigate1_<model>.npz`` for the models "mlp" and "cnn_strided" of
``tests/golden/specs.py`` ("cnn" contains AveragePooling2D, which the 1.0.9 pattern code rejects, so it
is skipped). Every file contains a JSON string under the key ``manifest`` that describes each key and
records the library versions. Run it with ``--check-only`` to run the self-checks without writing.

Self-checks (the script fails if one of them fails):

* the 1.0.9 patterns equal a float64 numpy implementation of the estimator
  (cov = E_M[x y0] - E_M[x] E[y0] with E[y0] over all rows, a = cov / (w^T cov) with the divisor
  replaced by 1 where it is exactly 0; conv rows are zero-padded patches; mask from the layer's
  post-activation output, [z > 0] for the linear output layer);
* the patterns fitted through ``analyzer.fit`` equal the ``PatternComputer`` ones;
* the index-mode PatternNet/PatternAttribution maps equal a numpy backward pass
  (relu masks of the real network, kernels replaced by A resp. W * A, max-pool routed to the argmax);
* the lrp.z_IB / lrp.epsilon_IB maps equal a numpy LRP-z / LRP-epsilon(1e-7) pass without bias
  (max-pooling routed to the argmax, no bottleneck projection in either mode);
* the max_activation maps relate to the index-mode maps as described in the manifest
  (``projection_semantics``).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import platform
import sys
import warnings

import numpy as np
import pkg_resources

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

import specs  # noqa: E402  (numpy-only model specifications)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import keras.backend as K  # noqa: E402
import innvestigate  # noqa: E402
import innvestigate.tools  # noqa: E402

MODEL_NAMES = ("mlp", "cnn_strided")
PATTERN_TYPES = ("linear", "relu", "relu.negative")
MAP_PATTERN_TYPES = ("relu", "linear")
N_FIT, SEED_FIT = 64, 2
N_X, SEED_X = 4, 1
WEIGHT_SEED = 0
BATCH_SIZE = 16


# --------------------------------------------------------------------------------------------------
# model construction


def build_model(spec):
    """Keras 2.2.4 Sequential model for a spec, with the deterministic weights of make_weights(spec)."""
    layers = []
    for i, (cls, kw) in enumerate(spec["layers"]):
        kw = dict(kw)
        if i == 0:
            kw["input_shape"] = tuple(spec["input_shape"])
        layers.append(getattr(keras.layers, cls)(**kw))
    model = keras.models.Sequential(layers)
    weights = specs.make_weights(spec, seed=WEIGHT_SEED)
    for layer, w in zip(model.layers, weights):
        if w:
            layer.set_weights(w)
    return model, weights


def fetch(model, tensors, X):
    """Evaluate graph tensors of `model` on X (the model input itself is returned as is)."""
    todo = [t for t in tensors if t is not model.input]
    vals = iter(K.function([model.input], todo)([X]) if todo else [])
    return [X if t is model.input else next(vals) for t in tensors]


def kernel_layers(model):
    return [l for l in model.layers if hasattr(l, "kernel")]


# --------------------------------------------------------------------------------------------------
# numpy reference implementation (used only for self-checks)


def _pad_amounts(size, k, s, d, padding):
    ek = (k - 1) * d + 1
    if padding == "same":
        out = -(-size // s)
        total = max((out - 1) * s + ek - size, 0)
        return out, total // 2, total - total // 2
    return (size - ek) // s + 1, 0, 0


def conv_patch_index(in_shape, layer):
    """Index array (H_out, W_out, kh*kw*c_in) into the zero-padded, flattened (H*W*C + 1) input.

    The extra last entry (index H*W*C) is the zero used for padding. Feature order (row, col, channel).
    """
    h, w, c = in_shape
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation_rate
    ho, pt, _ = _pad_amounts(h, kh, sh, dh, layer.padding)
    wo, pl, _ = _pad_amounts(w, kw, sw, dw, layer.padding)
    idx = np.empty((ho, wo, kh, kw, c), dtype=np.int64)
    zero = h * w * c
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    r = i * sh + a * dh - pt
                    q = j * sw + b * dw - pl
                    if 0 <= r < h and 0 <= q < w:
                        idx[i, j, a, b] = (r * w + q) * c + np.arange(c)
                    else:
                        idx[i, j, a, b] = zero
    return idx.reshape(ho, wo, kh * kw * c)


def layer_rows(x, layer):
    """Per-neuron input rows of a kernel layer: (rows, D) plus a function mapping row-grads back."""
    x = np.asarray(x, dtype=np.float64)
    if isinstance(layer, keras.layers.Dense):
        return x, lambda g: g
    n = x.shape[0]
    idx = conv_patch_index(x.shape[1:], layer)
    flat = np.concatenate([x.reshape(n, -1), np.zeros((n, 1))], axis=1)
    rows = flat[:, idx]  # (n, ho, wo, D)
    ho, wo, d = idx.shape

    def back(g):  # g: (n*ho*wo, D) -> (n, h, w, c), col2im with zero-padding entries dropped
        out = np.zeros((n, flat.shape[1]))
        g = g.reshape(n, ho * wo * d)
        fi = idx.reshape(-1)
        for s in range(n):
            np.add.at(out[s], fi, g[s])
        return out[:, :-1].reshape(x.shape)

    return rows.reshape(n * ho * wo, d), back


def numpy_patterns(model, X, pattern_type):
    """Float64 numpy implementation of the pattern estimator (innvestigate-spec.md section 1.4)."""
    out = []
    for layer in kernel_layers(model):
        xin, yout = fetch(model, [layer.input, layer.output], X)
        W, b = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
        W2 = W.reshape(-1, W.shape[-1])
        rows, _ = layer_rows(xin, layer)
        y0 = rows.dot(W2)
        outv = np.asarray(yout, dtype=np.float64).reshape(-1, W2.shape[1])
        if pattern_type == "linear":
            m = np.ones_like(y0)
        elif pattern_type == "relu":
            m = (outv > 0).astype(np.float64)
        elif pattern_type == "relu.negative":
            m = (outv <= 0).astype(np.float64)
        else:
            raise ValueError(pattern_type)
        cnt = m.sum(0)
        cnt_safe = np.where(cnt == 0, 1.0, cnt)
        mean_x = rows.T.dot(m) / cnt_safe
        mean_xy = rows.T.dot(y0 * m) / cnt_safe
        mean_y = y0.mean(0)
        cov = mean_xy - mean_x * mean_y[None, :]
        d = (W2 * cov).sum(0)
        A = cov / (d + (d == 0))
        out.append(A.reshape(W.shape))
    return out


def numpy_pattern_backward(model, x, idx, patterns, attribution):
    """Raw (un-projected) PatternNet/PatternAttribution backward pass of y[idx] for each sample."""
    acts = fetch(model, [l.input for l in model.layers] + [model.output], x)
    y = np.asarray(acts[-1], dtype=np.float64)
    n = x.shape[0]
    r = np.zeros_like(y)
    r[np.arange(n), idx] = y[np.arange(n), idx]
    kls = kernel_layers(model)
    for li in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[li]
        xin = np.asarray(acts[li], dtype=np.float64)
        if layer in kls:
            W, b = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
            A = np.asarray(patterns[kls.index(layer)], dtype=np.float64)
            if attribution:
                A = A * W
            rows, back = layer_rows(xin, layer)
            z = rows.dot(W.reshape(-1, W.shape[-1])) + b
            if layer.get_config()["activation"] == "relu":
                r = r * (z.reshape(r.shape) > 0)
            g = r.reshape(-1, W.shape[-1]).dot(A.reshape(-1, W.shape[-1]).T)
            r = back(g).reshape(xin.shape)
        else:
            r = other_layer_back(layer, xin, r)
    return r


def other_layer_back(layer, xin, r):
    """Backward pass of Flatten (reshape) and MaxPooling2D (route to the forward argmax)."""
    if isinstance(layer, keras.layers.Flatten):
        return r.reshape(xin.shape)
    if isinstance(layer, keras.layers.MaxPooling2D):
        ph, pw = layer.pool_size
        sh, sw = layer.strides
        new = np.zeros_like(xin)
        for s in range(xin.shape[0]):
            for i in range(r.shape[1]):
                for j in range(r.shape[2]):
                    win = xin[s, i * sh:i * sh + ph, j * sw:j * sw + pw, :]
                    for c in range(xin.shape[3]):
                        a, bb = np.unravel_index(np.argmax(win[:, :, c]), (ph, pw))
                        new[s, i * sh + a, j * sw + bb, c] += r[s, i, j, c]
        return new
    raise NotImplementedError(type(layer))


def numpy_lrp_ib(model, x, sel, eps):
    """LRP-z (eps=0) / LRP-epsilon on every kernel layer, bias ignored: R_in = x * W (R / z0).

    z0 = W^T x without bias; eps=0 divides by 1 where z0 == 0, eps>0 adds eps * sign(z0) (sign(0) = +1).
    """
    acts = fetch(model, [l.input for l in model.layers] + [model.output], x)
    y = np.asarray(acts[-1], dtype=np.float64)
    n = x.shape[0]
    r = np.zeros_like(y)
    r[np.arange(n), sel] = y[np.arange(n), sel]
    for li in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[li]
        xin = np.asarray(acts[li], dtype=np.float64)
        if hasattr(layer, "kernel"):
            W = np.asarray(layer.get_weights()[0], dtype=np.float64)
            W2 = W.reshape(-1, W.shape[-1])
            rows, back = layer_rows(xin, layer)
            z = rows.dot(W2)
            z = z + (eps * np.where(z >= 0, 1.0, -1.0) if eps else (z == 0))
            r = xin * back((r.reshape(z.shape) / z).dot(W2.T)).reshape(xin.shape)
        else:
            r = other_layer_back(layer, xin, r)
    return r


def rel_dev(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# --------------------------------------------------------------------------------------------------
# generation


def generate(name, check_only=False):
    K.clear_session()
    spec = specs.MODELS[name]
    model, weights = build_model(spec)
    X_fit = specs.make_inputs(spec, n=N_FIT, seed=SEED_FIT)
    x = specs.make_inputs(spec, n=N_X, seed=SEED_X)
    y = model.predict(x)
    y_fit = model.predict(X_fit)
    n_out = y.shape[1]
    idx = (np.arange(N_X) % n_out).astype(np.int64)
    kls = kernel_layers(model)

    data = {"x": x, "X_fit": X_fit, "y": y, "y_fit": y_fit, "neuron_selection": idx}
    desc = {
        "x": "analysis inputs, make_inputs(spec, n=%d, seed=%d), float32" % (N_X, SEED_X),
        "X_fit": "pattern fitting inputs, make_inputs(spec, n=%d, seed=%d), float32" % (N_FIT, SEED_FIT),
        "y": "model outputs on x (Keras 2.2.4 predict)",
        "y_fit": "model outputs on X_fit",
        "neuron_selection": "per-sample output index used in neuron_selection_mode='index' (arange(n) %% n_out)",
    }
    for li, w in enumerate(weights):
        for wi, arr in enumerate(w):
            key = "weight__%d__%d" % (li, wi)
            data[key] = arr
            desc[key] = ("weights of spec layer %d (%s), get_weights() entry %d (%s); make_weights(spec, seed=%d)"
                         % (li, spec["layers"][li][0], wi, "kernel" if wi == 0 else "bias", WEIGHT_SEED))

    checks = {}

    # patterns ------------------------------------------------------------------------------------
    patterns = {}
    for t in PATTERN_TYPES:
        pc = innvestigate.tools.PatternComputer(model, pattern_type=t)
        pats = pc.compute(X_fit, batch_size=BATCH_SIZE)
        assert len(pats) == len(kls), (len(pats), len(kls))
        ref = numpy_patterns(model, X_fit, t)
        devs, rdevs = [], []
        for k, (p, r, l) in enumerate(zip(pats, ref, kls)):
            p = np.asarray(p)
            assert p.shape == l.get_weights()[0].shape, (p.shape, l.get_weights()[0].shape)
            devs.append(float(np.max(np.abs(p - r))))
            rdevs.append(rel_dev(p, r))
            key = "pattern__%s__%d" % (t, k)
            data[key] = p.astype(np.float32)
            desc[key] = ("PatternComputer(model, pattern_type=%r).compute(X_fit, batch_size=%d)[%d]: pattern of "
                         "kernel layer #%d (%s, spec layer %d), same shape as its kernel"
                         % (t, BATCH_SIZE, k, k, type(l).__name__, model.layers.index(l)))
        checks["pattern_vs_numpy_maxabs__%s" % t] = max(devs)
        checks["pattern_vs_numpy_per_layer_maxabs__%s" % t] = devs
        checks["pattern_vs_numpy_rel__%s" % t] = max(rdevs)
        checks["pattern_vs_numpy_per_layer_rel__%s" % t] = rdevs
        patterns[t] = [np.asarray(p) for p in pats]

    # patterns fitted through the analyzer's own fit() ----------------------------------------------
    a = innvestigate.create_analyzer("pattern.net", model, neuron_selection_mode="index")
    a.fit(X_fit, batch_size=BATCH_SIZE, verbose=0)  # pattern_type=None -> "relu"
    checks["analyzer_fit_vs_patterncomputer_relu_maxabs"] = max(
        float(np.max(np.abs(np.asarray(p) - q))) for p, q in zip(a._patterns, patterns["relu"]))
    data["map__pattern.net__fit__index"] = a.analyze(x, neuron_selection=idx)
    desc["map__pattern.net__fit__index"] = (
        "create_analyzer('pattern.net', model, neuron_selection_mode='index'); .fit(X_fit, batch_size=%d); "
        ".analyze(x, neuron_selection) (default pattern_type -> 'relu')" % BATCH_SIZE)

    # pattern maps --------------------------------------------------------------------------------
    for method in ("pattern.net", "pattern.attribution"):
        for t in MAP_PATTERN_TYPES:
            pats = patterns[t]
            ai = innvestigate.create_analyzer(method, model, neuron_selection_mode="index", patterns=pats)
            m_index = ai.analyze(x, neuron_selection=idx)
            am = innvestigate.create_analyzer(method, model, neuron_selection_mode="max_activation",
                                              patterns=pats)
            m_max = am.analyze(x)
            an = innvestigate.create_analyzer(method, model, neuron_selection_mode="max_activation",
                                              patterns=pats, reverse_project_bottleneck_layers=False)
            m_max_np = an.analyze(x)
            # index mode with the argmax index, to relate the max_activation outputs to raw backprops
            amax = np.argmax(y, axis=1)
            m_index_at_max = ai.analyze(x, neuron_selection=amax)

            base = "map__%s__%s__" % (method, t)
            data[base + "index"] = m_index
            desc[base + "index"] = ("create_analyzer(%r, model, neuron_selection_mode='index', patterns=<%r patterns>)"
                                    ".analyze(x, neuron_selection): raw backward pass scaled by y[i, idx[i]]"
                                    % (method, t))
            data[base + "max_activation"] = m_max
            desc[base + "max_activation"] = (
                "same with neuron_selection_mode='max_activation' and the 1.0.9 default "
                "reverse_project_bottleneck_layers=True (see manifest 'projection_semantics')")
            data[base + "max_activation_noproject"] = m_max_np
            desc[base + "max_activation_noproject"] = (
                "same with neuron_selection_mode='max_activation', reverse_project_bottleneck_layers=False "
                "(1.0.9 warns, then honours it): raw backward pass scaled by y_max")

            # self-checks
            raw = numpy_pattern_backward(model, x, idx, pats, attribution=(method == "pattern.attribution"))
            checks["%s__%s__index_vs_numpy_rel" % (method, t)] = rel_dev(m_index, raw)
            ymax = y[np.arange(N_X), amax].astype(np.float64)
            shape_b = (-1,) + (1,) * (x.ndim - 1)
            checks["%s__%s__max_noproject_vs_index_at_argmax_rel" % (method, t)] = rel_dev(m_max_np, m_index_at_max)
            # backprop of the one-hot (unscaled) at the argmax
            b = np.asarray(m_index_at_max, np.float64) / ymax.reshape(shape_b)
            sign_b = np.sign(ymax).reshape(shape_b) * b
            if x.ndim == 2:
                expect = sign_b
            else:
                mx = np.abs(sign_b).reshape(N_X, -1).max(1).reshape(shape_b)
                expect = sign_b / np.where(mx == 0, 1, mx)
            checks["%s__%s__max_project_vs_expected_rel" % (method, t)] = rel_dev(m_max, expect)
            checks["%s__%s__max_project_maxabs_per_sample" % (method, t)] = [
                float(v) for v in np.abs(np.asarray(m_max)).reshape(N_X, -1).max(1)]

    # LRP ignore-bias analyzers ---------------------------------------------------------------------
    for method in ("lrp.z_IB", "lrp.epsilon_IB"):
        ai = innvestigate.create_analyzer(method, model, neuron_selection_mode="index")
        am = innvestigate.create_analyzer(method, model, neuron_selection_mode="max_activation")
        base = "map__%s__" % method
        data[base + "index"] = ai.analyze(x, neuron_selection=idx)
        data[base + "max_activation"] = am.analyze(x)
        desc[base + "index"] = ("create_analyzer(%r, model, neuron_selection_mode='index')"
                                ".analyze(x, neuron_selection)" % method)
        desc[base + "max_activation"] = ("create_analyzer(%r, model, neuron_selection_mode='max_activation')"
                                         ".analyze(x) (no bottleneck projection for LRP)" % method)
        eps = 1e-7 if "epsilon" in method else 0.0
        for mode, sel in (("index", idx), ("max_activation", np.argmax(y, axis=1))):
            raw = numpy_lrp_ib(model, x, sel, eps)
            checks["%s__%s_vs_numpy_rel" % (method, mode)] = rel_dev(data[base + mode], raw)

    # sanity-check thresholds
    failed = []
    for k, v in checks.items():
        if ("_rel" in k or "_maxabs" in k) and not isinstance(v, list) and v > 1e-4:
            failed.append((k, v))
    for k, v in sorted(checks.items()):
        print("  %-70s %s" % (k, v))
    if failed:
        raise AssertionError("self-checks failed for %s: %r" % (name, failed))

    for k in list(data):
        if data[k].dtype == np.float64:
            data[k] = data[k].astype(np.float32)
    desc["manifest"] = "this JSON document"
    projection = {
        "rank2_input": ("max_activation + projection: map = sign(y_max) * B, where B is the backward pass of a "
                        "one-hot at the argmax output (rank-2 tensors are never rescaled by iNNvestigate's "
                        "Project layer; the rank-1 head y_max is turned into sign(y_max))"),
        "rank4_input": ("max_activation + projection: map = sign(y_max) * B / max|B| per sample, i.e. "
                        "(y_max * B) / max|y_max * B|; each sample's max-abs is exactly 1"),
        "index_mode": "never projected: map = y[i, idx[i]] * B_idx (raw)",
    }
    manifest = {
        "generator": "tools/golden_innvestigate1.py",
        "model": name,
        "spec": {"input_shape": list(spec["input_shape"]),
                 "layers": [[c, {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}]
                            for c, kw in spec["layers"]]},
        "kernel_layer_spec_indices": [model.layers.index(l) for l in kls],
        "keys": desc,
        "projection_semantics": projection,
        "self_checks": checks,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "innvestigate": pkg_resources.get_distribution("innvestigate").version,
        },
        "settings": {"batch_size": BATCH_SIZE, "weight_seed": WEIGHT_SEED, "fit_seed": SEED_FIT,
                     "x_seed": SEED_X, "pattern_types": list(PATTERN_TYPES),
                     "map_pattern_types": list(MAP_PATTERN_TYPES)},
    }
    missing = set(data) - set(desc)
    assert not missing, missing
    data["manifest"] = np.array(json.dumps(manifest, indent=1, sort_keys=True))
    if not check_only:
        path = os.path.join(ROOT, "tests", "golden", "innvestigate1_%s.npz" % name)
        np.savez_compressed(path, **data)
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    return checks


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check-only", action="store_true", help="run the self-checks, write nothing")
    p.add_argument("models", nargs="*", default=list(MODEL_NAMES))
    args = p.parse_args()
    np.random.seed(0)
    tf.set_random_seed(0)
    for name in args.models:
        print("== %s" % name)
        generate(name, check_only=args.check_only)


if __name__ == "__main__":
    main()
