"""One evaluation run over many analyzers: the measures of the PatternNet paper and the sanity and
ground-truth checks, as JSON-ready dicts and figures.

Used by ``keras-patterns evaluate`` and ``examples/reproduce_paper.py``; each step is a thin loop
over the functions of :mod:`keras_patterns.evaluation` (:func:`signal_quality`,
:func:`region_perturbation` and :func:`aopc`, :func:`randomization_check`, :func:`localization`,
:func:`earth_movers_distance`/:func:`precision`), so every number in a report can be recomputed
with one call of those.
"""

import time

import numpy as np

#: The methods of the paper's degradation figure (Kindermans et al. 2018, Fig. 4) and our presets.
PAPER_METHODS = (
    "pattern.attribution", "pattern.net", "lrp.sequential_preset_a", "lrp.sequential_preset_b",
    "lrp.epsilon", "lrp.alpha_1_beta_0", "deep_taylor", "gradient", "input_t_gradient",
    "guided_backprop", "deconvnet", "integrated_gradients", "smoothgrad",
)

#: The measures a run can compute.
MEASURES = ("rho", "degradation", "sanity", "ground_truth")

#: The name of the random-order degradation curve (the patches in a random order, no map).
RANDOM_ORDER = "random order"


def method_kwargs(name, data):
    """Arguments inferred from the data for methods whose defaults depend on the input scale.

    ``smoothgrad``/``vargrad``/``squaregrad``: 32 samples, noise of standard deviation 15% of the
    data range (Smilkov et al. 2017 recommend 10-20%), seed 0; ``integrated_gradients``: 32 steps
    from a zero reference; ``deep_taylor.bounded``: ``low``/``high`` the data's min and max;
    ``random``: seed 0. Other methods: their defaults.

    Args:
        name: a registered analyzer name.
        data: a NumPy array of inputs (the fit data, else the inputs to explain).

    Returns:
        A dict of keyword arguments for :func:`keras_patterns.create_analyzer`.
    """
    lo, hi = float(np.min(data)), float(np.max(data))
    if name in ("smoothgrad", "vargrad", "squaregrad"):
        return {"augment_by_n": 32, "noise_scale": 0.15 * (hi - lo), "seed": 0}
    if name == "integrated_gradients":
        return {"steps": 32}
    if name == "deep_taylor.bounded":
        return {"low": lo, "high": hi}
    if name == "random":
        return {"seed": 0}
    return {}


def build_analyzers(model, names, fit_data=None, data=None, batch_size=32, log=print, overrides=None):
    """Creates (and fits) the analyzers; skips, with a reason, those that cannot be built.

    A method is skipped when it needs fitting and no ``fit_data`` is given, or when it needs
    arguments that cannot be inferred from the data (``lrp``: a rule; ``lrp.alpha_beta``: alpha or
    beta): the constructor's error message is the reason.

    Args:
        model: a Keras model without softmax.
        names: registered analyzer names.
        fit_data: training inputs for the pattern methods. Defaults to `None`.
        data: inputs whose range sets the inferred arguments (:func:`method_kwargs`); defaults to
            ``fit_data``.
        batch_size: samples per batch. Defaults to `32`.
        log: a print function (``lambda *a: None`` for silence). Defaults to `print`.
        overrides: ``{name: {argument: value}}``, the user's arguments of some methods, over the
            inferred ones. Defaults to `None`.

    Returns:
        ``(analyzers, kwargs, skipped)``: ``{name: analyzer}`` in the order of ``names``,
        ``{name: the arguments used}``, ``{name: reason}``.

    Raises:
        TypeError, ValueError: the constructor's error for a method given ``overrides`` (the
            user's arguments are wrong: the method is not skipped silently).
    """
    import keras_patterns as kp

    ref = fit_data if data is None else data
    unknown = sorted(set(overrides or {}) - set(names))
    if unknown:
        raise ValueError(f"`overrides` must name methods in `names`. Received: {unknown} for names {list(names)}")
    analyzers, used, skipped = {}, {}, {}
    for name in names:
        kwargs = method_kwargs(name, ref) if ref is not None else {}
        given = (overrides or {}).get(name)
        if given:
            kwargs = {**kwargs, **given}
        try:
            analyzer = kp.create_analyzer(name, model, batch_size=batch_size, **kwargs)
        except (TypeError, ValueError) as e:
            if given:
                kind = TypeError if isinstance(e, TypeError) else ValueError
                raise kind(f"{name} with the arguments {given}: {' '.join(str(e).split())}") from e
            reason = " ".join(str(e).split())
            skipped[name] = "needs arguments that cannot be inferred: " + (
                reason if len(reason) <= 150 else reason[:150].rsplit(" ", 1)[0] + " ...")
            log(f"  skip {name}: {skipped[name]}")
            continue
        if analyzer.needs_fitting:
            if fit_data is None:
                skipped[name] = "needs fitting data (fit_data / --fit-data)"
                log(f"  skip {name}: {skipped[name]}")
                continue
            analyzer.fit(fit_data, batch_size=max(batch_size, 128), verbose=0)
        analyzers[name], used[name] = analyzer, kwargs
    return analyzers, used, skipped


def compute_maps(analyzers, x, log=print):
    """``{name: maps (float32 array)}`` and ``{name: seconds}`` for every analyzer on ``x``."""
    maps, seconds = {}, {}
    for name, analyzer in analyzers.items():
        t = time.perf_counter()
        m = analyzer.analyze(x)
        if isinstance(m, list):
            raise ValueError(f"The evaluation supports single-input models. Received: maps for {len(m)} inputs")
        maps[name] = np.asarray(m, dtype="float32")
        seconds[name] = time.perf_counter() - t
    return maps, seconds


def rho(model, fit_data, v_data, test_data, estimators=("random", "S_w", "S_a", "S_a+-"), layers=None,
        batch_size=32, seed=0):
    """The paper's rho(S) per layer: :func:`signal_quality`, summarised.

    Returns:
        ``{"estimators": [...], "layers": [...], "mean": {est: [mean rho per layer]},
        "median": {...}, "per_unit": {est: {layer: [rho per unit]}}}`` (NaN units, constant on the
        test data, are left out of the mean and median and written as None).
    """
    from keras_patterns.evaluation import signal_quality

    values = signal_quality(model, fit_data, v_data, test_data, layers=layers, estimators=estimators,
                            batch_size=batch_size, seed=seed)
    layers = list(next(iter(values.values())))
    out = {"estimators": list(values), "layers": layers, "mean": {}, "median": {}, "per_unit": {}}
    for est, by_layer in values.items():
        out["mean"][est] = [float(np.nanmean(by_layer[k])) for k in layers]
        out["median"][est] = [float(np.nanmedian(by_layer[k])) for k in layers]
        out["per_unit"][est] = {k: [None if np.isnan(v) else float(v) for v in by_layer[k]] for k in layers}
    return out


def degradation(model, x, maps, patch_size=9, replacement="mean", output="logit", steps=None,
                batch_size=64, seed=0, random_order=True):
    """Region-perturbation (MoRF) curves and AOPC of each map, and a random-order curve.

    Every method's curve is :func:`region_perturbation` ``(model, x, maps[name], patch_size,
    steps, order="morf", replacement, output, neuron_selection=None, batch_size, seed)``: each image
    follows the class of its largest output; the random-order curve uses ``order="random"``.

    Returns:
        ``{"settings": {...}, "aopc": {name: mean AOPC}, "aopc_per_sample": {name: [...]},
        "curves": {name: mean curve (steps + 1 values)}}``, the random order under
        :data:`RANDOM_ORDER`.
    """
    from keras_patterns.evaluation import aopc, region_perturbation

    settings = {"patch_size": patch_size, "steps": steps, "order": "morf", "replacement": replacement,
                "output": output, "seed": seed, "n": int(len(x))}
    runs = dict(maps)
    if random_order:
        runs[RANDOM_ORDER] = next(iter(maps.values())) if maps else np.zeros(x.shape, "float32")
    out = {"settings": settings, "aopc": {}, "aopc_per_sample": {}, "curves": {}}
    for name, m in runs.items():
        curves = region_perturbation(model, x, m, patch_size=patch_size, steps=steps,
                                     order="random" if name == RANDOM_ORDER else "morf",
                                     replacement=replacement, output=output, batch_size=batch_size, seed=seed)
        scores = aopc(curves)
        out["aopc"][name] = float(scores.mean())
        out["aopc_per_sample"][name] = scores.tolist()
        out["curves"][name] = curves.mean(axis=0).tolist()
    return out


def sanity(analyzers, model, x, fit_data=None, order="cascading", similarity="spearman", seed=0, log=print):
    """The cascading (or independent) parameter randomization check of every analyzer.

    Each analyzer is :func:`randomization_check` ``(analyzer, model, x, order, similarity, seed,
    fit_data=fit_data)``; pattern analyzers are re-fitted on ``fit_data`` after each step.

    Returns:
        ``{"settings": {...}, "layers": [names from the output down], "similarity": {name: [mean
        similarity after each step]}}``.
    """
    from keras_patterns.evaluation import randomization_check

    out = {"settings": {"order": order, "similarity": similarity, "seed": seed, "n": int(len(x))},
           "layers": None, "similarity": {}}
    for name, analyzer in analyzers.items():
        result = randomization_check(analyzer, model, x, order=order, similarity=similarity, seed=seed,
                                     fit_data=fit_data if analyzer.needs_fitting else None)
        out["layers"] = result["layers"]
        out["similarity"][name] = result["similarity"].mean(axis=1).tolist()
    return out


def _correlation(maps, masks):
    """Pearson correlation of each channel-summed map with its mask (0 for a constant map)."""
    m = maps.reshape(masks.shape + (-1,)).sum(-1) if maps.ndim > masks.ndim else maps
    a = m.reshape(len(m), -1).astype("float64")
    b = masks.reshape(len(masks), -1).astype("float64")
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.divide((a * b).sum(1), den, out=np.zeros(len(a)), where=den > 0)


def ground_truth(maps, masks, emd=False, solver="auto"):
    """Localization (Arras et al. 2022), correlation with the mask and, optionally, XAI-TRIS's EMD
    score and precision (Clark et al. 2024) of every map against ``masks``.

    Args:
        maps: ``{name: maps}``.
        masks: ``(n, H, W)`` or ``(n, H, W, 1)`` 0/1 masks.
        emd: also compute :func:`emd_score` and :func:`precision` (the EMD is an exact optimal
            transport per map: seconds per map above 16x16 without POT), and count the all-zero
            maps. Defaults to `False`.
        solver: the EMD solver. Defaults to `"auto"`.

    Returns:
        ``{name: {"relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game",
        "correlation"[, "emd_score", "precision", "zero_maps"]: mean over samples}}``. An all-zero
        map has no EMD: ``"emd_score"`` is the mean over the other maps (None if none is left) and
        ``"zero_maps"`` counts them.
    """
    from keras_patterns.evaluation import emd_score, localization, precision

    masks = np.asarray(masks)
    masks2 = masks[..., 0] if masks.ndim == 4 and masks.shape[-1] == 1 else masks
    out = {}
    for name, m in maps.items():
        m2 = m.sum(axis=-1) if m.ndim == masks2.ndim + 1 else m
        row = {k: float(v.mean()) for k, v in localization(m2, masks2 > 0).items()}
        row["correlation"] = float(_correlation(m2, masks2).mean())
        if emd:
            mass = np.abs(m2).reshape(len(m2), -1).sum(axis=1) > 0
            row["emd_score"] = float(emd_score(m2[mass], masks2[mass], solver=solver).mean()) if mass.any() else None
            row["precision"] = float(precision(m2, masks2).mean())
            row["zero_maps"] = int((~mass).sum())
        out[name] = row
    return out


# ----------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    """Lays out ``fig``, writes it to ``path`` (PNG, 100 dpi), closes it; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


_STYLE = {"pattern.attribution": ("C3", "-", 2.5), "pattern.net": ("C3", "--", 2.0),
          RANDOM_ORDER: ("k", ":", 2.0)}


#: tab20 without its reds (PatternNet/PatternAttribution are red): 18 distinct colours.
_COLORS = [i for i in range(20) if i not in (6, 7)]


def _style(name, i):
    if name in _STYLE:
        return _STYLE[name]
    import matplotlib

    return matplotlib.colormaps["tab20"](_COLORS[(2 * i) % 18 + (2 * i // 18) % 2]), "-", 1.3


def plot_rho(result, path):
    """The mean rho per layer of each estimator (the paper's Fig. 3), written to ``path``."""
    plt = _pyplot()
    layers = result["layers"]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(layers), 3.6))
    markers = {"random": "x", "S_w": "s", "S_a": "o", "S_a+-": "^"}
    for est in result["estimators"]:
        ax.plot(range(len(layers)), result["mean"][est], marker=markers.get(est, "."), label=est)
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right")
    ax.set_ylabel("rho(S), mean over units")
    ax.set_title("Signal-estimator quality per layer (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_degradation(result, path):
    """The mean MoRF curve of each method (the paper's Fig. 4) with its AOPC, written to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ranked = sorted(result["curves"], key=lambda n: -result["aopc"][n])
    for i, name in enumerate(ranked):
        color, ls, lw = _style(name, i)
        curve = result["curves"][name]
        ax.plot(range(len(curve)), curve, color=color, ls=ls, lw=lw,
                label=f"{name} ({result['aopc'][name]:.2f})")
    s = result["settings"]
    ax.set_xlabel(f"patches replaced ({s['patch_size']}x{s['patch_size']}, {s['replacement']}, most relevant first)")
    ax.set_ylabel(f"{s['output']} of the class, mean over {s['n']} images")
    ax.set_title("Region perturbation (legend: AOPC, higher = faster degradation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(plt, fig, path)


def plot_sanity(result, path):
    """The similarity after each cascading randomization step, per method, written to ``path``."""
    plt = _pyplot()
    layers = result["layers"] or []
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (name, values) in enumerate(result["similarity"].items()):
        color, ls, lw = _style(name, i)
        ax.plot(range(1, len(values) + 1), values, marker=".", color=color, ls=ls, lw=lw, label=name)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(range(1, len(layers) + 1), [f"+{n}" for n in layers], rotation=30, ha="right")
    s = result["settings"]
    ax.set_ylabel(f"{s['similarity']} similarity to the trained maps")
    ax.set_title(f"Model randomization ({s['order']}, from the output down; lower = passes)")
    ax.set_ylim(-0.3, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(plt, fig, path)
