"""Helpers shared by the benchmarks: timing and the plain tf.GradientTape baseline."""

import os
import time

import numpy as np
import tensorflow as tf


def median_time(fn, repeats):
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run (tracing)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def tape_gradient_fn(model, sample_shape):
    """A compiled plain gradient of the max logit w.r.t. the input: the baseline of every ratio."""

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(sample_shape), tf.float32)])
    def grad(xb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            top = tf.reduce_max(model(xb, training=False), axis=1)
        return tape.gradient(top, xb)

    return grad


def interleaved_ratio(base_fn, fn, rounds, scale=1.0, min_round_s=0.05):
    """Times ``base_fn`` and ``fn`` alternately, robust to the load of a shared machine.

    One warm-up call of each (tracing), then ``rounds`` rounds of ``base_fn(); fn()``, each timed.
    Both see the same machine load within a round, so the median of the per-round ratios is steadier
    than the ratio of two medians taken minutes apart.

    Args:
        base_fn: the baseline (e.g. the compiled tape gradient), called without arguments.
        fn: the candidate, called without arguments.
        rounds: timed rounds (>= 1).
        scale: multiplies every ratio (``n`` compares ``fn`` against ``1/n`` of the baseline's
            throughput, for methods that do ``n`` backward passes).
        min_round_s: each timing repeats its function ``k`` times, ``k`` chosen from the warm-up
            calls so that the slower one takes at least this long (a 5 ms call timed once is
            mostly scheduler noise).

    Returns:
        dict with ``base_s`` and ``s`` (median seconds per call), ``calls_per_round`` (``k``) and
        ``ratio``, the median over rounds of ``scale * t_base / t`` (higher is better; 1.0 means
        as fast).
    """
    base_fn()
    fn()
    t0 = time.perf_counter()
    base_fn()
    t1 = time.perf_counter()
    fn()
    t2 = time.perf_counter()
    k = int(min(100, max(1, np.ceil(min_round_s / max(min(t1 - t0, t2 - t1), 1e-6)))))

    def timed(f):
        t = time.perf_counter()
        for _ in range(k):
            f()
        return (time.perf_counter() - t) / k

    tb, tf_ = [], []
    for _ in range(rounds):
        tb.append(timed(base_fn))
        tf_.append(timed(fn))
    tb, tf_ = np.array(tb), np.array(tf_)
    return {"base_s": float(np.median(tb)), "s": float(np.median(tf_)), "calls_per_round": k,
            "ratio": float(np.median(scale * tb / tf_))}


def status_mib(field):
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; NaN where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_peak_rss():
    """Resets the kernel's peak-RSS counter (VmHWM) of this process, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    """Peak RSS since the last :func:`reset_peak_rss` (the process lifetime's without /proc)."""
    import resource

    peak = status_mib("VmHWM")
    if peak != peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def compiled_for_training(model):
    """``model`` compiled as the benchmarks train it (Adam, sparse categorical cross-entropy on logits)."""
    import keras

    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def memory_job(mode, model, x, y, batch):
    """Runs one job after resetting the peak-RSS counter; returns ``(peak MiB, RSS before MiB)``.

    The model is called once first (so its variables and the runtime exist before the reset).

    Args:
        mode: ``"train"`` (one ``model.fit`` epoch), ``"patterns"`` (``pattern.attribution``'s
            fit) or ``"baseline"`` (one more predict call).
        model, x, y, batch: the model, its data and the batch size.
    """
    import keras_patterns as kp

    model.predict(x[:batch], verbose=0)
    before = status_mib("VmRSS")
    reset_peak_rss()
    if mode == "train":
        compiled_for_training(model).fit(x, y, batch_size=batch, epochs=1, verbose=0)
    elif mode == "patterns":
        kp.create_analyzer("pattern.attribution", model).fit(x, batch_size=batch, verbose=0)
    elif mode == "baseline":
        model.predict(x[:batch], verbose=0)
    else:
        raise ValueError(f"mode must be 'train', 'patterns' or 'baseline'. Received: {mode!r}")
    return peak_rss_mib(), before


def machine_info():
    """CPU model, cores, library versions, date and load: the context of every benchmark number."""
    import datetime
    import platform

    import keras

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    import keras_patterns

    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable, "gpus": gpus,
        "loadavg_1_5_15": load, "python": platform.python_version(), "platform": platform.platform(),
        "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
        "keras_patterns": getattr(keras_patterns, "__version__", "unknown"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
