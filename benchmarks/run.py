"""One benchmark table: every registered analyzer on five models, against the plain gradient.

    python benchmarks/run.py [--quick] [--models digits,vgg16] [--analyzers gradient,lrp.epsilon]
                             [--out benchmarks/results] [--compare-xplique] [--compare-innvestigate PYTHON]

For each model (the digits CNN of ``examples/digits_cnn.py`` on 16x16x1, keras.applications VGG16
and ResNet50 with ``weights=None`` at 64x64, EfficientNetB0 at 64x64 and the small ViT of
``bench_modern.py`` at 64x64), in one process:

* **throughput**: ``analyzer.analyze(x)`` at batch 16 against a plain ``tf.GradientTape`` gradient
  of the max logit compiled with ``tf.function`` (``_common.tape_gradient_fn``), timed alternately
  (``_common.interleaved_ratio``: the median of per-round ratios). SmoothGrad, SquareGrad, VarGrad
  and Integrated Gradients do ``n`` backward passes per sample and are compared against ``1/n`` of
  the gradient's throughput. Pattern methods are fitted first (not timed). An analyzer that refuses
  a model is reported as refused, with its error class.
* **first call**: constructing the analyzer plus its first ``analyze`` (tracing included; fitting
  excluded) against the first call of a freshly built compiled tape gradient.
* **pattern fitting**: ``pattern.attribution``'s ``fit`` over N samples against one ``model.fit``
  epoch over the same samples (as ``bench_patterns.py``), and the peak RSS of a process fitting
  patterns against one training (sibling subprocesses, peak counter reset after start-up).

Targets (issue 13, item 5) are a column: ratio >= 0.95 for the gradient family, the pattern
methods and lrp.epsilon; >= 0.75 for the other LRP rules and presets and Deep Taylor; >= 0.95 of
``1/n`` for SmoothGrad / SquareGrad / VarGrad / IG; fitting <= 0.5 epoch with peak memory <= 1.1x
training. Writes ``results.json`` (with the machine: CPU, cores, versions, date, load) and
``results.md`` into ``--out`` and prints the Markdown.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The checkout this script lives in is the one benchmarked (not an installed keras_patterns).
sys.path[:0] = [ROOT, HERE, os.path.join(ROOT, "examples")]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_patterns as kp  # noqa: E402
from _common import (  # noqa: E402
    compiled_for_training, interleaved_ratio, machine_info, memory_job, tape_gradient_fn,
)
from _report import markdown  # noqa: E402

SIZE = 64


def _digits():
    from digits_cnn import build_model

    return kp.model_wo_softmax(build_model())


def _vgg16():
    return keras.applications.VGG16(weights=None, input_shape=(SIZE, SIZE, 3), classes=10,
                                    classifier_activation=None)


def _resnet50():
    from bench_lrp import resnet50

    return resnet50(SIZE)


def _efficientnetb0():
    from bench_modern import MODELS as MODERN

    return MODERN["EfficientNetB0"](SIZE)


def _vit():
    from bench_modern import small_vit

    return small_vit(SIZE)


#: key -> (builder, sample shape, description)
MODELS = {
    "digits": (_digits, (16, 16, 1), "digits CNN (examples/digits_cnn.py), 16x16x1"),
    "vgg16": (_vgg16, (SIZE, SIZE, 3), "keras.applications.VGG16, 64x64x3"),
    "resnet50": (_resnet50, (SIZE, SIZE, 3), "keras.applications.ResNet50, 64x64x3"),
    "efficientnetb0": (_efficientnetb0, (SIZE, SIZE, 3), "keras.applications.EfficientNetB0, 64x64x3"),
    "vit": (_vit, (SIZE, SIZE, 3), "small ViT (bench_modern.small_vit), 64x64x3"),
}

#: Analyzers doing n backward passes per sample: compared against 1/n of the gradient.
PER_N = {"smoothgrad": "augment_by_n", "squaregrad": "augment_by_n", "vargrad": "augment_by_n",
         "integrated_gradients": "steps"}
FAST = {"gradient", "gradient.baseline", "input_t_gradient", "deconvnet", "guided_backprop",
        "pattern.net", "pattern.attribution", "lrp.epsilon"}


def target(name):
    """The issue 13 target of an analyzer's throughput ratio, or None where the issue sets none."""
    if name in FAST or name in PER_N:
        return 0.95
    if name.startswith("lrp") or name.startswith("deep_taylor"):
        return 0.75
    return None


def analyzer_kwargs(name, sample_shape, n):
    """Constructor arguments: required ones, seeds, ``n`` for the sampling methods."""
    kw = {"random": {"seed": 0}, "deep_taylor.bounded": {"low": -3.0, "high": 3.0},
          "lrp": {"rule": "Z"}, "lrp.alpha_beta": {"alpha": 2},
          # patches of a quarter of the side: 16 occluded copies per sample
          "occlusion": {"patch_size": max(1, sample_shape[0] // 4)}}.get(name, {})
    if name in PER_N:
        kw = {PER_N[name]: n, **({"seed": 0} if name != "integrated_gradients" else {})}
    return kw


def data(key, n, seed=0):
    """``n`` samples and labels for a model: rendered digits for the digits CNN, else N(0, 1) images."""
    shape = MODELS[key][1]
    if key == "digits":
        from keras_patterns.datasets import make_digits

        x, y = make_digits(n, seed=seed)
        return x.astype("float32"), y
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + shape).astype("float32"), rng.integers(0, 10, n)


def build(key):
    keras.utils.set_random_seed(0)
    return MODELS[key][0]()


def _refusal(e):
    kind = "refused" if isinstance(e, (kp.KerasPatternsError, ValueError, TypeError)) else "error"
    return {"status": kind, "error": type(e).__name__, "message": str(e).splitlines()[0][:300]}


def first_gradient_s(model, x, rounds):
    """Median over ``rounds`` freshly built compiled tape gradients of their first call (tracing)."""
    xt = tf.constant(x)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        tape_gradient_fn(model, x.shape[1:])(xt).numpy()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_analyzers(key, model, names, args):
    """Throughput and first-call latency of every analyzer on one model."""
    x, _ = data(key, args.batch, seed=1)
    fit_x, _ = data(key, args.n_pattern, seed=2)
    model(x[:1])
    t_first_grad = first_gradient_s(model, x, args.latency_rounds)
    grad = tape_gradient_fn(model, x.shape[1:])
    xt = tf.constant(x)

    def base():
        grad(xt).numpy()

    rows = {}
    for name in names:
        kw = analyzer_kwargs(name, x.shape[1:], args.n_samples)
        row = {"target": target(name), "per_n": args.n_samples if name in PER_N else None, "kwargs": kw}
        try:
            t0 = time.perf_counter()
            a = kp.create_analyzer(name, model, batch_size=args.batch, **kw)
            t_construct = time.perf_counter() - t0
            if a.needs_fitting:
                a.fit(fit_x, batch_size=32, verbose=0)
            t0 = time.perf_counter()
            maps = a.analyze(x)
            t_first = t_construct + time.perf_counter() - t0
        except Exception as e:  # a refusal is a result, not a crash of the benchmark
            row.update(_refusal(e))
            rows[name] = row
            print(f"  {key:15s} {name:38s} {row['status']}: {row['error']}", flush=True)
            continue
        finite = bool(np.all(np.isfinite(np.asarray(maps[0] if isinstance(maps, list) else maps))))
        r = interleaved_ratio(base, lambda: a.analyze(x), args.rounds,
                              scale=args.n_samples if name in PER_N else 1.0,
                              min_round_s=args.min_round_s)
        row.update(status="ok", ratio=r["ratio"], calls_per_round=r["calls_per_round"], samples_per_s=args.batch / r["s"],
                   gradient_samples_per_s=args.batch / r["base_s"], finite=finite,
                   first_call_s=t_first, first_call_ratio=t_first / t_first_grad,
                   passed=None if row["target"] is None else r["ratio"] >= row["target"])
        rows[name] = row
        print(f"  {key:15s} {name:38s} ratio {r['ratio']:5.2f}  first call {t_first:6.2f} s", flush=True)
        del a, maps
        gc.collect()
    return {"first_gradient_s": t_first_grad, "analyzers": rows}


def bench_fit(key, model, args):
    """Pattern fitting vs one model.fit epoch over the same N samples (alternated, median ratio)."""
    x, y = data(key, args.n_fit)
    b = args.fit_batch
    try:
        a = kp.create_analyzer("pattern.attribution", model)
        a.fit(x[: 2 * b], batch_size=b, verbose=0)  # warm-up: traces the statistics function
    except Exception as e:
        return _refusal(e)
    train = compiled_for_training(keras.models.clone_model(model))
    train.set_weights(model.get_weights())
    train.fit(x[: 2 * b], y[: 2 * b], batch_size=b, epochs=1, verbose=0)
    epochs, fits = [], []
    for _ in range(args.fit_rounds):
        t0 = time.perf_counter()
        train.fit(x, y, batch_size=b, epochs=1, verbose=0)
        epochs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        a.fit(x, batch_size=b, verbose=0)
        fits.append(time.perf_counter() - t0)
    ratio = float(np.median(np.array(fits) / np.array(epochs)))
    out = {"status": "ok", "n": args.n_fit, "batch": b, "epoch_s": float(np.median(epochs)),
           "fit_s": float(np.median(fits)), "fit_epoch_ratio": ratio, "fit_target": 0.5,
           "fit_passed": ratio <= 0.5}
    if not args.no_memory:
        out.update(bench_memory(key, args))
    return out


def memory_child(mode, key, n, batch):
    """One measurement process: the peak RSS (MiB) of fitting patterns or of one training epoch."""
    x, y = data(key, n)
    peak, before = memory_job(mode, build(key), x, y, batch)
    print(json.dumps({"peak_mib": peak, "before_mib": before}))


def bench_memory(key, args):
    """Peak RSS of training vs pattern fitting, in two sibling processes run side by side."""
    procs = {mode: subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", mode, "--models", key,
         "--n-fit", str(args.n_fit), "--fit-batch", str(args.fit_batch)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for mode in ("train", "patterns")}
    res = {}
    for mode, p in procs.items():
        out, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"memory child {mode} on {key} failed:\n{err[-2000:]}")
        res[mode] = json.loads(out.strip().splitlines()[-1])
    tr, pa = res["train"], res["patterns"]
    ratio = pa["peak_mib"] / tr["peak_mib"]
    return {"train_peak_mib": tr["peak_mib"], "fit_peak_mib": pa["peak_mib"],
            "train_before_mib": tr["before_mib"], "fit_before_mib": pa["before_mib"],
            "memory_ratio": ratio,
            "memory_increment_ratio": (pa["peak_mib"] - pa["before_mib"])
            / max(tr["peak_mib"] - tr["before_mib"], 1e-9),
            "memory_target": 1.1, "memory_passed": ratio <= 1.1}


def _split(s):
    return [v for v in s.split(",") if v] if isinstance(s, str) else s


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {','.join(MODELS)}")
    p.add_argument("--analyzers", default=None, help="comma-separated registry names (default: all)")
    p.add_argument("--quick", action="store_true", help="a few-minute smoke run: fewer rounds, smaller N")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for results.json/.md")
    p.add_argument("--batch", type=int, default=16, help="analyze batch size (default 16)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (7; 3 with --quick)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="n of SmoothGrad/SquareGrad/VarGrad/IG (16; 4 with --quick)")
    p.add_argument("--n-fit", type=int, default=None, help="samples for fit vs epoch (512; 64 with --quick)")
    p.add_argument("--fit-batch", type=int, default=32)
    p.add_argument("--fit-models", default="digits,vgg16,resnet50,efficientnetb0,vit",
                   help="models whose pattern fitting and memory are measured")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--compare-xplique", action="store_true", help="time xplique in the same process")
    p.add_argument("--compare-innvestigate", default=None, metavar="PYTHON",
                   help="an interpreter with iNNvestigate 2.1.2 or 1.0.9: the same workload there")
    p.add_argument("--innvestigate-timeout", type=int, default=600,
                   help="seconds per model in the iNNvestigate interpreter (default 600)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (3 if q else 7)
    args.n_samples = args.n_samples or (4 if q else 16)
    args.n_fit = args.n_fit or (64 if q else 512)
    args.n_pattern = 32 if q else 128
    args.latency_rounds = 1 if q else 3
    args.min_round_s = 0.03 if q else 0.2
    args.fit_rounds = 1 if q else 3
    args.models = _split(args.models)
    args.fit_models = _split(args.fit_models)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"--models must be among {sorted(MODELS)}. Received: {unknown}")
    names = kp.list_analyzers()
    args.analyzers = names if args.analyzers is None else _split(args.analyzers)
    unknown = [a for a in args.analyzers if a not in names]
    if unknown:
        p.error(f"--analyzers must be registered names (kp.list_analyzers()). Received: {unknown}")
    return args


def _write(results, out):
    """Writes results.json and results.md into ``out``; returns the Markdown."""
    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = markdown(results)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    return md


def main(argv=None):
    args = parse(argv)
    if args.child:
        memory_child(args.child, args.models[0], args.n_fit, args.fit_batch)
        return None
    results = {"machine": machine_info(), "keras_patterns_path": os.path.dirname(kp.__file__), "settings": {
        k: getattr(args, k) for k in ("quick", "batch", "rounds", "n_samples", "n_fit", "fit_batch",
                                      "n_pattern", "min_round_s", "latency_rounds", "fit_rounds", "models", "analyzers")},
        "models": {}}
    for key in args.models:
        print(f"{key}: {MODELS[key][2]}", flush=True)
        model = build(key)
        r = {"description": MODELS[key][2], "params": int(model.count_params())}
        r.update(bench_analyzers(key, model, args.analyzers, args))
        if key in args.fit_models:
            r["fit"] = bench_fit(key, model, args)
        if args.compare_xplique:
            from _xplique import compare_xplique

            r["xplique"] = compare_xplique(key, model, data(key, args.batch, seed=1)[0], args)
        results["models"][key] = r
        _write(results, args.out)  # after every model, so that a long run leaves partial tables
        del model
        keras.backend.clear_session()
        gc.collect()
    if args.compare_innvestigate:
        from _innvestigate import compare_innvestigate

        results["innvestigate"] = compare_innvestigate(args.compare_innvestigate, results, args)
    md = _write(results, args.out)
    print(md)
    return results


if __name__ == "__main__":
    main()
