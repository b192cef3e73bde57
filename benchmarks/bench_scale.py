"""Dataset scale on one machine: time, throughput and peak memory of streaming N samples.

N samples are generated on the fly by a ``tf.data`` pipeline from a seed (never materialised):
``tf.data.Dataset.range(N).batch(B).map(make_batch)``, where ``make_batch`` draws the batch with
``tf.random.stateless_normal`` seeded by (seed, index of its first sample). Each point runs in a
fresh subprocess, so that its peak RSS is its own, for two jobs:

* ``fit``: ``analyzer.fit(dataset)`` of pattern.attribution (the float64 pattern statistics);
* ``analyze``: ``analyzer.analyze(dataset, out="maps.npy")`` of pattern.attribution, the maps
  written batch by batch into one ``.npy`` file on disk (deleted afterwards).

In every child the model is built, the analyzer created and warmed up (traced) on two batches;
then the peak-RSS counter is reset (``/proc/self/clear_refs`` 5) and the job runs. Reported: wall
time, samples/s, the RSS before the job and the job's peak RSS (VmHWM), and a trace of the RSS
sampled every 0.25 s during the job (with the size of the maps file, i.e. the samples written).

Three sweeps: N (``--sizes``, digits CNN, batch ``--batch``), batch size (``--batch-sizes`` at
N = ``--batch-n``) and model size (``--models`` at N = ``--model-n``): the digits CNN of
``examples/digits_cnn.py`` (16x16x1, softmax removed), a 4x wider digits CNN and a VGG16-style CNN
at 32x32x3 (``bench_patterns.vgg_style``). The results go to a JSON file and the figures
``scale_n.png``, ``scale_batch.png``, ``scale_models.png`` and ``scale_trace.png``.

Usage::

    python benchmarks/bench_scale.py                       # everything (about 10 min on 2 cores)
    python benchmarks/bench_scale.py --sizes 1e4 1e5 --batch-sizes 64 256 --models digits
    python benchmarks/bench_scale.py --plot-only           # redraw the figures from the JSON
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATIC = os.path.join(ROOT, "docs", "_static")
JOBS = ("fit", "analyze")
MODELS = ("digits", "digits_wide", "vgg32")
SEED = 1234


# ----------------------------------------------------------------------------------- models, data
def build_model(name):
    """The benchmark models, seeded, softmax removed; returns ``(model, sample_shape)``."""
    import keras

    import keras_patterns as kp

    keras.utils.set_random_seed(0)
    if name == "digits":
        sys.path.insert(0, os.path.join(ROOT, "examples"))
        from digits_cnn import build_model as digits

        return kp.model_wo_softmax(digits()), (16, 16, 1)
    if name == "digits_wide":  # the digits CNN with 4x the filters and units
        L = keras.layers
        return keras.Sequential([
            keras.Input((16, 16, 1)),
            L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(128, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Flatten(), L.Dense(256, activation="relu"), L.Dense(10),
        ], name="digits_wide"), (16, 16, 1)
    if name == "vgg32":
        sys.path.insert(0, HERE)
        from bench_patterns import vgg_style

        return vgg_style(size=32), (32, 32, 3)
    raise ValueError(f"`model` must be one of {MODELS}. Received: model={name!r}")


def generated_dataset(n, batch, sample_shape, seed=SEED):
    """N samples in batches of ``batch``, drawn on the fly (stateless: the same data every pass).

    Batch ``k`` is ``stateless_normal`` with seed ``(seed, k * batch)``: a function of the seed and
    of the index of its first sample only, so the data never exist as a whole.
    """
    import tensorflow as tf

    def make_batch(idx):
        shape = tf.concat([tf.shape(idx)[:1], tf.constant(sample_shape, tf.int32)], 0)
        return tf.random.stateless_normal(shape, seed=tf.stack([tf.constant(seed, tf.int64), idx[0]]))

    return tf.data.Dataset.range(n).batch(batch).map(make_batch).prefetch(2)


# --------------------------------------------------------------------------------------- memory
def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Samples ``(seconds, VmRSS MiB, bytes of the maps file, samples taken from the data)`` every
    ``period`` seconds; ``progress`` is a one-item list that the data pipeline counts up."""

    def __init__(self, path=None, progress=None, period=0.25):
        super().__init__(daemon=True)
        self.path, self.period, self.trace = path, period, []
        self.progress = progress if progress is not None else [0]
        self._stop_event = threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        while not self._stop_event.is_set():
            size = os.path.getsize(self.path) if self.path and os.path.exists(self.path) else 0
            self.trace.append((time.perf_counter() - self.t0, _status_mib("VmRSS"), size, self.progress[0]))
            self._stop_event.wait(self.period)

    def stop(self):
        self._stop_event.set()
        self.join()


def _counted(ds):
    """``(dataset, progress)``: the same batches; ``progress[0]`` counts the samples taken from it
    (counted as each batch is handed to the consumer, after the prefetch buffer)."""
    import tensorflow as tf

    progress = [0]

    def bump(k):
        progress[0] += int(k)
        return k

    def count(x):
        k = tf.py_function(bump, [tf.shape(x)[0]], tf.int32)
        with tf.control_dependencies([k]):
            return tf.identity(x)

    return ds.map(count), progress


# ------------------------------------------------------------------------------------ one point
def child(job, model_name, n, batch):
    """One measurement process; prints one JSON line."""
    import keras_patterns as kp

    model, shape = build_model(model_name)
    analyzer = kp.create_analyzer("pattern.attribution", model, batch_size=batch)
    analyzer.fit(generated_dataset(2 * batch, batch, shape, seed=0), verbose=0)  # warm-up: traces
    tmp = tempfile.mkdtemp(prefix="bench_scale_")
    path = os.path.join(tmp, "maps.npy")
    if job == "analyze":
        analyzer.analyze(generated_dataset(2 * batch, batch, shape, seed=0), out=path)  # warm-up
        os.remove(path)
    data, progress = _counted(generated_dataset(n, batch, shape))
    before = _status_mib("VmRSS")
    reset = _reset_peak()
    sampler = RssSampler(path if job == "analyze" else None, progress)
    sampler.start()
    t0 = time.perf_counter()
    if job == "fit":
        analyzer.fit(data, verbose=0)
    elif job == "analyze":
        maps = analyzer.analyze(data, out=path)
        assert maps.shape == (n,) + shape, maps.shape
        del maps
    else:
        raise ValueError(f"`job` must be one of {JOBS}. Received: job={job!r}")
    wall = time.perf_counter() - t0
    sampler.stop()
    peak = _status_mib("VmHWM")
    if os.path.exists(path):
        os.remove(path)
    os.rmdir(tmp)
    print(json.dumps({
        "job": job, "model": model_name, "n": n, "batch": batch, "params": int(model.count_params()),
        "wall_s": wall, "samples_per_s": n / wall, "rss_before_mib": before, "peak_rss_mib": peak,
        "peak_reset": reset, "sample_shape": shape, "loadavg_1min": os.getloadavg()[0],
        "trace": [(round(t, 2), round(r, 1), b, k) for t, r, b, k in sampler.trace],
    }))


def run_point(job, model, n, batch):
    """Runs :func:`child` in a fresh interpreter and returns its record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", job, model, str(n), str(batch)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{job:8s} {model:12s} N={n:>8d} B={batch:>5d}  {rec['wall_s']:8.1f} s  "
          f"{rec['samples_per_s']:8.0f} samples/s  peak RSS {rec['peak_rss_mib']:7.1f} MiB "
          f"(before {rec['rss_before_mib']:.1f})", flush=True)
    return rec


def machine():
    import keras
    import numpy as np
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU"))}


# ---------------------------------------------------------------------------------------- plots
def _segment_rates(t, done, n, parts=10):
    """Samples/s in each tenth of the samples, from a progress trace."""
    import numpy as np

    t, done = np.asarray(t), np.asarray(done)
    marks = [np.interp(k * n / parts, done, t) if done[-1] >= k * n / parts else np.nan
             for k in range(parts + 1)]
    return [n / parts / (b - a) for a, b in zip(marks, marks[1:]) if b > a]


def plot(results, out_dir=STATIC):
    """Draws ``scale_n.png``, ``scale_batch.png``, ``scale_models.png`` and ``scale_trace.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"fit": "tab:blue", "analyze": "tab:orange"}
    labels = {"fit": "fit (pattern statistics)", "analyze": "analyze, out=.npy"}
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    by_n = results.get("n", [])
    if by_n:
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
        for job in JOBS:
            pts = sorted((r for r in by_n if r["job"] == job), key=lambda r: r["n"])
            if not pts:
                continue
            ns = [r["n"] for r in pts]
            kw = dict(marker="o", color=colors[job], label=labels[job])
            axes[0].plot(ns, [r["wall_s"] for r in pts], **kw)
            axes[1].plot(ns, [r["samples_per_s"] for r in pts], **kw)
            axes[2].plot(ns, [r["peak_rss_mib"] for r in pts], **kw)
            axes[2].plot(ns, [r["rss_before_mib"] for r in pts], ls=":", color=colors[job],
                         label=f"{job}: RSS before the job")
            axes[3].plot(ns, [r["peak_rss_mib"] - r["rss_before_mib"] for r in pts], **kw)
        axes[0].set(xscale="log", yscale="log", xlabel="samples N", ylabel="wall time (s)",
                    title="time vs N")
        axes[1].set(xscale="log", xlabel="samples N", ylabel="samples / s", title="throughput vs N")
        axes[1].set_ylim(0, axes[1].get_ylim()[1] * 1.1)
        axes[2].set(xscale="log", xlabel="samples N", ylabel="peak RSS (MiB)", title="peak memory vs N")
        axes[2].set_ylim(0, axes[2].get_ylim()[1] * 1.15)
        axes[3].set(xscale="log", xlabel="samples N", ylabel="peak RSS - RSS before (MiB)",
                    title="the job's own peak vs N")
        axes[3].set_ylim(0, max(axes[3].get_ylim()[1] * 1.5, 5))
        for ax in axes:
            ax.grid(alpha=0.3, which="both")
        axes[0].legend(fontsize=8)
        axes[2].legend(fontsize=7, loc="lower right")
        b = by_n[0]["batch"]
        fig.suptitle(f"digits CNN, batch {b}, streamed from a generated tf.data pipeline", fontsize=10)
        save(fig, "scale_n.png")

    by_b = results.get("batch", [])
    if by_b:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for job in JOBS:
            pts = sorted((r for r in by_b if r["job"] == job), key=lambda r: r["batch"])
            if not pts:
                continue
            bs = [r["batch"] for r in pts]
            kw = dict(marker="o", color=colors[job], label=labels[job])
            axes[0].plot(bs, [r["samples_per_s"] for r in pts], **kw)
            axes[1].plot(bs, [r["peak_rss_mib"] for r in pts], **kw)
        axes[0].set(xscale="log", xlabel="batch size", ylabel="samples / s", title="throughput vs batch size")
        axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.1)
        axes[1].set(xscale="log", xlabel="batch size", ylabel="peak RSS (MiB)", title="peak memory vs batch size")
        axes[1].set_ylim(0, axes[1].get_ylim()[1] * 1.1)
        for ax in axes:
            ax.set_xticks(sorted({r["batch"] for r in by_b}))
            ax.set_xticklabels([str(v) for v in sorted({r["batch"] for r in by_b})])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"digits CNN, N = {by_b[0]['n']:,}", fontsize=10)
        save(fig, "scale_batch.png")

    by_m = results.get("models", [])
    if by_m:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        names = [m for m in MODELS if any(r["model"] == m for r in by_m)]
        width = 0.38
        for j, job in enumerate(JOBS):
            pts = {r["model"]: r for r in by_m if r["job"] == job}
            xs = [i + (j - 0.5) * width for i, m in enumerate(names) if m in pts]
            ms = [m for m in names if m in pts]
            axes[0].bar(xs, [pts[m]["samples_per_s"] for m in ms], width, color=colors[job], label=labels[job])
            axes[1].bar(xs, [pts[m]["peak_rss_mib"] for m in ms], width, color=colors[job], label=labels[job])
        params = {r["model"]: r["params"] for r in by_m}
        ticks = [f"{m}\n{params[m] / 1e3:.0f}k params" for m in names]
        axes[0].set(yscale="log", ylabel="samples / s (log)", title="throughput vs model")
        axes[1].set(ylabel="peak RSS (MiB)", title="peak memory vs model")
        for ax in axes:
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(ticks, fontsize=8)
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize=8)
        fig.suptitle(f"N = {by_m[0]['n']:,}, batch {by_m[0]['batch']}", fontsize=10)
        save(fig, "scale_models.png")

    big = [r for r in by_n if r["n"] == max(p["n"] for p in by_n) and r.get("trace")] if by_n else []
    if big:
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        for r in big:
            t = [p[0] for p in r["trace"]]
            rss = [p[1] for p in r["trace"]]
            c = colors[r["job"]]
            axes[0].plot(t, rss, color=c, label=f"{labels[r['job']]}: {r['wall_s']:.0f} s")
            axes[1].plot(t, [v - r["rss_before_mib"] for v in rss], color=c, label=labels[r["job"]])
            axes[1].axhline(r["peak_rss_mib"] - r["rss_before_mib"], color=c, ls=":", lw=1)
            if len(r["trace"][0]) > 3:  # samples taken from the pipeline: progress
                done = [p[3] for p in r["trace"]]
                rates = _segment_rates(t + [r["wall_s"]], done + [r["n"]], r["n"])  # ends at wall_s
                axes[2].plot(t, done, color=c, label=f"{r['job']}: {min(rates) / 1e3:.1f}k to "
                                                     f"{max(rates) / 1e3:.1f}k samples/s per tenth")
        axes[0].set(xlabel="seconds into the job", ylabel="RSS (MiB)", title="RSS (TensorFlow runtime included)")
        axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.15)
        axes[1].set(xlabel="seconds into the job", ylabel="RSS - RSS before the job (MiB)",
                    title="the job's own memory (dotted: its peak)")
        axes[1].set_ylim(min(0, axes[1].get_ylim()[0]), max(axes[1].get_ylim()[1] * 1.3, 5))
        axes[2].set(xlabel="seconds into the job", ylabel="samples taken from the pipeline",
                    title="progress")
        for ax, loc in zip(axes, ("lower right", "center right", "lower right")):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc=loc)
        fig.suptitle(f"during the N = {big[0]['n']:,} runs (digits CNN, batch {big[0]['batch']})", fontsize=10)
        save(fig, "scale_trace.png")
    return written


def markdown_table(results):
    """The measured figures as Markdown tables, one per sweep."""
    names = {"n": "N (digits CNN)", "batch": "batch size (digits CNN)", "models": "model size"}
    out = []
    for sweep in ("n", "batch", "models"):
        if not results.get(sweep):
            continue
        out += [f"{names[sweep]}:", "",
                "| job | model | N | batch | time (s) | samples/s | RSS before (MiB) | peak RSS (MiB) "
                "| job's own peak (MiB) |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in results[sweep]:
            out.append(f"| {r['job']} | {r['model']} | {r['n']:,} | {r['batch']} | {r['wall_s']:.1f} | "
                       f"{r['samples_per_s']:,.0f} | {r['rss_before_mib']:.1f} | {r['peak_rss_mib']:.1f} | "
                       f"{r['peak_rss_mib'] - r['rss_before_mib']:.1f} |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="*", type=float, default=[1e4, 1e5, 1e6], help="N for the N sweep")
    p.add_argument("--batch", type=int, default=256, help="batch size of the N and model sweeps")
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[32, 64, 128, 256, 512, 1024])
    p.add_argument("--batch-n", type=float, default=1e5, help="N of the batch-size sweep")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--model-n", type=float, default=1e4, help="N of the model sweep")
    p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    p.add_argument("--json", default=os.path.join(STATIC, "scale_results.json"), help="results file")
    p.add_argument("--figures", default=STATIC, help="folder of the PNGs")
    p.add_argument("--plot-only", action="store_true", help="redraw the figures from --json")
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        job, model, n, batch = args.child
        child(job, model, int(n), int(batch))
        return None
    if args.plot_only:
        with open(args.json) as f:
            results = json.load(f)
    else:
        results = {"machine": machine(), "n": [], "batch": [], "models": []}
        for n in args.sizes:
            for job in args.jobs:
                results["n"].append(run_point(job, "digits", int(n), args.batch))
        for b in args.batch_sizes:
            for job in args.jobs:
                results["batch"].append(run_point(job, "digits", int(args.batch_n), b))
        for m in args.models:
            for job in args.jobs:
                results["models"].append(run_point(job, m, int(args.model_n), args.batch))
        for sweep in ("n", "batch", "models"):  # keep the RSS traces of the largest N only
            for r in results[sweep]:
                if sweep != "n" or r["n"] != max(p["n"] for p in results["n"]):
                    r.pop("trace")
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    for path in plot(results, args.figures):
        print("wrote", path)
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
