"""Why PatternNet does not recover the make_shapes signal best: the experiments of
docs/evaluation_signal.md. Run from the repository root:

    python tools/shapes_patternnet_study.py [experiment ...]

Experiments (all of them when none is named): ``baseline`` (the issue's
measurement, signed and |map|), ``seed`` (PatternNet seeded with the output value vs with 1, per
sign of the true-class logit), ``conventions`` (pattern type, class-specific patterns), ``rho``
(kp.evaluation.signal_quality per layer), ``linear`` / ``linear_clean`` (a variant whose signal is
a fixed template per class, with / without ramp and blob), ``linear_network`` (linear models:
PatternNet against the network's own pattern), ``distractor`` (distractor scale 0, 1, 3),
``first_layer`` and ``layer_dependence`` (how much of each layer's output is the distractor),
``more_data`` (patterns from 30000 images), ``picture`` (docs/_static/shapes_patternnet_study.png;
``linear_clean`` writes docs/_static/shapes_fixed_clean.png). The demo CNN is trained once
and cached under /tmp/kp_evalrho (see tools/shapes_study_common.py). Each experiment takes well
under a few CPU minutes.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
import shapes_study_common as common  # noqa: E402

METHODS = ("pattern.net", "gradient", "input_t_gradient", "lrp.epsilon", "deconvnet", "pattern.attribution",
           "guided_backprop", "integrated_gradients", "lrp.sequential_preset_a", "deep_taylor",
           "lrp.alpha_1_beta_0")


def _maps(name, logits, x_fit, x, labels, **kwargs):
    import keras_patterns as kp

    analyzer = kp.create_analyzer(name, logits, neuron_selection_mode="index", **kwargs)
    if analyzer.needs_fitting:
        analyzer.fit(x_fit, batch_size=128, verbose=0)
    return analyzer.analyze(x, neuron_selection=labels)


def _summary(maps, s):
    r = common.pearson_per_image(maps, s)
    ra = common.pearson_per_image(np.abs(maps), s)
    return r.mean(), ra.mean()


def baseline(distractor=1.0):
    """The issue's table: mean per-image Pearson correlation of each map with the signal image."""
    model, logits, acc = common.trained_model(distractor)
    (x, y, _), _, (xt, yt, st) = common.data(distractor)
    print(f"[baseline] distractor={distractor} test accuracy {acc:.3f}")
    print(f"{'method':26s} {'corr(map, s)':>13s} {'corr(|map|, s)':>15s}")
    for name in METHODS:
        kw = {"steps": 32} if name == "integrated_gradients" else {}
        m = _maps(name, logits, x, xt, yt, **kw)
        c, ca = _summary(m, st)
        print(f"{name:26s} {c:13.2f} {ca:15.2f}")


def seed():
    """PatternNet/PatternAttribution maps are linear in the seed, which is the true-class logit."""
    model, logits, _ = common.trained_model()
    (x, y, _), _, (xt, yt, st) = common.data()
    z = logits(xt).numpy()[np.arange(len(yt)), yt]
    neg = z < 0
    print(f"[seed] true-class logit < 0 for {neg.sum()} of {len(z)} test images "
          f"(logit quartiles {np.round(np.percentile(z, [25, 50, 75]), 2)})")
    for name in ("pattern.net", "pattern.attribution", "gradient", "deep_taylor"):
        m = _maps(name, logits, x, xt, yt)
        r = common.pearson_per_image(m, st)
        # seeding with 1 instead of the logit: divide the (seed-linear) map by the logit's sign
        unit = r * np.sign(z) if name.startswith("pattern") else r
        print(f"{name:22s} mean corr {r.mean():.2f}  (logit>0: {r[~neg].mean():.2f}, logit<0: "
              f"{r[neg].mean() if neg.any() else float('nan'):.2f})  seeded with +1: {unit.mean():.2f}")


def conventions():
    """Pattern type, class-specific patterns, ReLU gating in the backward pass."""
    import keras_patterns as kp

    model, logits, _ = common.trained_model()
    (x, y, _), _, (xt, yt, st) = common.data()
    z = logits(xt).numpy()[np.arange(len(yt)), yt]
    print("[conventions] PatternNet, mean corr(map * sign(logit), s) and corr(|map|, s)")
    for ptype in ("relu", "linear"):
        m = _maps("pattern.net", logits, x, xt, yt, pattern_type=ptype)
        r = common.pearson_per_image(m * np.sign(z)[:, None, None, None], st)
        print(f"  pattern_type={ptype:7s} {r.mean():.2f}  |map| {_summary(m, st)[1]:.2f}")
    # patterns fitted on the images of the explained class only
    m = np.zeros_like(xt)
    for c in range(3):
        a = kp.create_analyzer("pattern.net", logits, neuron_selection_mode="index")
        a.fit(x[y == c], batch_size=128, verbose=0)
        sel = yt == c
        m[sel] = a.analyze(xt[sel], neuron_selection=c)
    r = common.pearson_per_image(m * np.sign(z)[:, None, None, None], st)
    print(f"  class-specific patterns  {r.mean():.2f}  |map| {_summary(m, st)[1]:.2f}")


def rho():
    """rho(S) per layer (mean over units) on the demo CNN."""
    import keras_patterns as kp

    model, logits, _ = common.trained_model()
    (x, _, _), (xv, _, _), (xt, _, _) = common.data()
    t0 = time.perf_counter()
    out = kp.evaluation.signal_quality(logits, x, xv, xt, batch_size=128)
    print(f"[rho] signal_quality on 6000/3000/500 images took {time.perf_counter() - t0:.1f}s")
    layers = list(next(iter(out.values())))
    print(f"{'estimator':10s} " + " ".join(f"{k:>10s}" for k in layers))
    for est, per in out.items():
        print(f"{est:10s} " + " ".join(f"{np.nanmean(per[k]):10.3f}" for k in layers))
    return out


def linear_shapes(n, seed, distractor=1.0):
    """make_shapes with the shape of each class at one fixed (central) position: the class signal
    is then a fixed template t_c, x = t_c + background + noise, linear in the one-hot label."""
    from keras_patterns.datasets import make_shapes

    x, y, s = make_shapes(n, seed=seed, distractor=distractor)
    template = np.zeros((3, 24, 24, 1), "float32")
    c0, L = 8, 8
    template[0, c0 + L // 2, c0:c0 + L] = 1
    template[1, c0:c0 + L, c0 + L // 2] = 1
    template[2, c0, c0:c0 + L] = template[2, c0 + L - 1, c0:c0 + L] = 1
    template[2, c0:c0 + L, c0] = template[2, c0:c0 + L, c0 + L - 1] = 1
    fixed = template[y]
    return x - s + fixed, y, fixed


def linear(scale=1.0):
    """The same methods on the fixed-position (linear-signal) variant."""
    def maker():
        return tuple(linear_shapes(n, s, distractor=scale) for n, s in ((6000, 0), (3000, 2), (500, 1)))

    model, logits, acc = common.trained_model(scale, tag="_fixedpos", maker=maker)
    (x, y, _), _, (xt, yt, st) = maker()
    z = logits(xt).numpy()[np.arange(len(yt)), yt]
    # the whole network's linear pattern per class: a_c = Cov(x, z_c) / Var(z_c) over the
    # fitting data (the signal direction of logit c in the paper's sense, one map per class)
    zf = logits(x).numpy()
    xf = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    zc = zf - zf.mean(0)
    glob = ((xf.T @ zc) / (zc * zc).sum(0)).T.reshape((3,) + x.shape[1:])
    tmpl = np.stack([st[yt == c][0] for c in range(3)])
    print("[linear] corr(a_c, template_c):", np.round(common.pearson_per_image(glob, tmpl), 2),
          " corr(a_c, template_c - mean of the other two):",
          np.round(common.pearson_per_image(glob, tmpl - (tmpl.sum(0) - tmpl) / 2), 2))
    print(f"[linear] fixed-position shapes, distractor {scale}, test accuracy {acc:.3f}, true-class logit < 0 for "
          f"{(z < 0).sum()} of {len(z)}")
    shown = {}
    for name in ("pattern.net", "pattern.attribution", "gradient", "guided_backprop", "deep_taylor"):
        m = _maps(name, logits, x, xt, yt)
        shown[name] = m[:4]
        c, ca = _summary(m, st)
        cb = common.pearson_per_image(m, xt - st).mean()
        cg = common.pearson_per_image(m, glob[yt]).mean()
        print(f"{name:22s} corr {c:.2f}  |map| {ca:.2f}  corr(map, x - s) {cb:.2f}  corr(map, a_c) {cg:.2f}")
    if scale == 0:
        from keras_patterns import visualization as vis

        path = "docs/_static/shapes_fixed_clean.png"
        cols = [("input", vis.project(xt[:4])), ("true signal s", st[:4, ..., 0]),
                ("network pattern a_c", vis.project(glob[yt[:4]])),
                ("pattern.net", vis.project(shown["pattern.net"])),
                ("deep_taylor", vis.heatmap(shown["deep_taylor"]))]
        vis.plot_grid([[c[1][i] for c in cols] for i in range(4)], col_labels=[c[0] for c in cols], path=path)
        print(f"[linear] wrote {path}")


def distractor():
    """Retrain at distractor scales 0 (white noise only), 1 (default) and 3; correlation of the maps
    with the signal and with the background (x - s, the distractor)."""
    names = ("pattern.net", "pattern.attribution", "gradient", "guided_backprop", "deep_taylor")
    for scale in (0.0, 1.0, 3.0):
        model, logits, acc = common.trained_model(scale)
        (x, y, _), _, (xt, yt, st) = common.data(scale)
        bg = xt - st
        print(f"[distractor] scale {scale}: test accuracy {acc:.3f}")
        for name in names:
            m = _maps(name, logits, x, xt, yt)
            cs = common.pearson_per_image(m, st).mean()
            cb = common.pearson_per_image(m, bg).mean()  # at scale 0, x - s is the white noise
            print(f"  {name:22s} corr(map, s) {cs:5.2f}   corr(map, x - s) {cb:5.2f}")


def first_layer():
    """How much of each first-layer unit's output is the distractor d = x - s: var(w^T d) / var(w^T x)."""
    import keras_patterns as kp

    model, logits, _ = common.trained_model()
    _, _, (xt, yt, st) = common.data()
    layer = model.layers[0]
    w = layer.kernel.numpy()

    def lin(v):
        return kp.linear.apply_kernel(layer, v, w).numpy().reshape(-1, w.shape[-1])

    ys, yd, yx = lin(st), lin(xt - st), lin(xt)
    share_d = yd.var(0) / yx.var(0)
    share_s = ys.var(0) / yx.var(0)
    print("[first_layer] per conv1 unit: share of output variance from the background / from the shapes")
    print("  background:", np.round(np.sort(share_d), 2))
    print("  shapes:    ", np.round(np.sort(share_s), 2))
    print(f"  filter sums |sum w| / sum |w| (0 = cancels a constant background): "
          f"{np.round(np.abs(w.sum((0, 1, 2))) / np.abs(w).sum((0, 1, 2)), 2)}")


def more_data():
    """PatternNet with patterns fitted on 6000 vs 30000 images (estimation noise of the 1152-dim
    dense patterns)."""
    from keras_patterns.datasets import make_shapes

    model, logits, _ = common.trained_model()
    (x, y, _), _, (xt, yt, st) = common.data()
    xbig = make_shapes(30000, seed=5)[0]
    for label, xf in (("6000", x), ("30000", xbig)):
        for name in ("pattern.net", "pattern.attribution"):
            m = _maps(name, logits, xf, xt, yt)
            print(f"[more_data] fit on {label:5s} images: {name:20s} corr {common.pearson_per_image(m, st).mean():.2f}")


def picture(path="docs/_static/shapes_patternnet_study.png", n=5):
    """Inputs, true signal and maps of several methods for the first test images."""
    from keras_patterns import visualization as vis

    model, logits, _ = common.trained_model()
    (x, y, _), _, (xt, yt, st) = common.data()
    rows = [[vis.project(xt[i]) for i in range(n)], [st[i, ..., 0] for i in range(n)]]
    labels = ["input", "true signal"]
    for name, kind in (("pattern.net", "signal"), ("gradient", "signal"), ("pattern.attribution", "heat"),
                       ("deep_taylor", "heat")):
        m = _maps(name, logits, x, xt[:n], yt[:n])
        rows.append(list(vis.project(m) if kind == "signal" else vis.heatmap(m)))
        r = common.pearson_per_image(m, st[:n])
        labels.append(f"{name}\n(corr {r.mean():.2f})")
    grid = [list(col) for col in zip(*rows)]
    vis.plot_grid(grid, col_labels=labels, path=path)
    print(f"[picture] wrote {path}")


def layer_dependence():
    """Per layer: the share of each unit's (pre-activation) output variance that is due to the
    distractor d = x - s (ramp, blob and white noise): var(h(x) - h(s)) / var(h(x)) averaged over
    units."""
    import keras

    model, logits, _ = common.trained_model()
    _, _, (xt, yt, st) = common.data()
    clean = st
    kernel_layers = [lyr for lyr in logits.layers if hasattr(lyr, "kernel")]
    print("[layer_dependence] share of unit output variance caused by the background (mean over units)")
    for lyr in kernel_layers:
        sub = keras.Model(logits.inputs, lyr.output)
        act = lyr.activation
        lyr.activation = keras.activations.linear  # pre-activation; restored below
        try:
            hx, hc = sub(xt).numpy(), sub(clean).numpy()
        finally:
            lyr.activation = act
        hx, hc = hx.reshape(-1, hx.shape[-1]), hc.reshape(-1, hc.shape[-1])
        share = (hx - hc).var(0) / np.maximum(hx.var(0), 1e-12)
        print(f"  {lyr.name:10s} {np.mean(share):.2f}  (median {np.median(share):.2f})")


def linear_clean():
    """Fixed-position shapes without ramp/blob (white noise only): both causes removed."""
    linear(0.0)


def linear_network():
    """Purely linear models on the fixed-position shapes (distractor 1): PatternNet against the
    network's own pattern a_c = Cov(x, z_c) / Var(z_c). One layer: identical by construction. Two
    layers: the per-unit patterns compose into a_c only if the hidden units are uncorrelated."""
    import keras

    import keras_patterns as kp

    (x, y, _), _, (xt, yt, st) = tuple(linear_shapes(n, s) for n, s in ((6000, 0), (3000, 2), (500, 1)))
    xf = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    for hidden in (None, 64):
        keras.utils.set_random_seed(0)
        layers = [keras.Input(x.shape[1:]), keras.layers.Flatten()]
        if hidden:
            layers.append(keras.layers.Dense(hidden))
        layers.append(keras.layers.Dense(3))
        model = keras.Sequential(layers)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        model.fit(x, y, epochs=4, batch_size=64, verbose=0)
        acc = float(np.mean(model.predict(xt, verbose=0).argmax(1) == yt))
        z = model.predict(x, verbose=0)
        zc = z - z.mean(0)
        glob = ((xf.T @ zc) / (zc * zc).sum(0)).T.reshape((3,) + x.shape[1:])
        m = _maps("pattern.net", model, x, xt, yt, pattern_type="linear")
        zt = model.predict(xt, verbose=0)[np.arange(len(yt)), yt]
        sign = np.sign(zt)[:, None, None, None]  # the map is seeded with the logit z_c
        cg = common.pearson_per_image(m * sign, glob[yt]).mean()
        cs = common.pearson_per_image(m * sign, st).mean()
        extra = f", z_c < 0 for {(zt < 0).sum()} of {len(zt)} (maps sign-corrected)"
        if hidden:
            h = keras.Model(model.inputs, model.layers[1].output).predict(x, verbose=0)
            cc = np.corrcoef(h.T)
            extra += f", hidden units' mean |corr| {np.abs(cc[np.triu_indices(hidden, 1)]).mean():.2f}"
        print(f"[linear_network] {'one layer' if not hidden else f'two layers ({hidden} hidden)'}: "
              f"accuracy {acc:.3f}, corr(pattern.net, a_c) {cg:.3f}, corr(pattern.net, s) {cs:.2f}{extra}")


EXPERIMENTS = {"linear_network": linear_network, "layer_dependence": layer_dependence, "linear_clean": linear_clean, "baseline": baseline, "seed": seed, "conventions": conventions, "rho": rho, "linear": linear,
               "distractor": distractor, "first_layer": first_layer, "more_data": more_data,
               "picture": picture}

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in sys.argv[1:] or list(EXPERIMENTS):
        t0 = time.perf_counter()
        EXPERIMENTS[name]()
        print(f"({name}: {time.perf_counter() - t0:.0f}s)\n", flush=True)
