"""Why PatternNet does not recover the make_shapes signal best: the experiments of
docs/evaluation_signal.md. Run from the repository root:

    python tools/shapes_patternnet_study.py [experiment ...]

Experiments: ``baseline`` (the issue's measurement, signed and |map|), ``seed`` (PatternNet seeded
with the output value vs with 1, per sign of the true-class logit), ``conventions`` (pattern type,
class-specific patterns, ReLU gating), ``rho`` (kp.evaluation.signal_quality per layer),
``linear`` (a variant whose signal is a fixed template per class). The demo CNN is trained once
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


def linear():
    """The same methods on the fixed-position (linear-signal) variant."""
    def maker():
        return (linear_shapes(6000, 0), linear_shapes(3000, 2), linear_shapes(500, 1))

    model, logits, acc = common.trained_model(tag="_fixedpos", maker=maker)
    (x, y, _), _, (xt, yt, st) = maker()
    z = logits(xt).numpy()[np.arange(len(yt)), yt]
    print(f"[linear] fixed-position shapes, test accuracy {acc:.3f}, true-class logit < 0 for "
          f"{(z < 0).sum()} of {len(z)}")
    for name in ("pattern.net", "pattern.attribution", "gradient", "guided_backprop", "deep_taylor"):
        m = _maps(name, logits, x, xt, yt)
        c, ca = _summary(m, st)
        print(f"{name:22s} corr {c:.2f}  |map| {ca:.2f}")


EXPERIMENTS = {"baseline": baseline, "seed": seed, "conventions": conventions, "rho": rho, "linear": linear}

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in sys.argv[1:] or list(EXPERIMENTS):
        t0 = time.perf_counter()
        EXPERIMENTS[name]()
        print(f"({name}: {time.perf_counter() - t0:.0f}s)\n", flush=True)
