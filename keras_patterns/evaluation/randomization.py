"""Model parameter randomization check (Adebayo et al. 2018, "Sanity checks for saliency maps").

An explanation that does not change when the model's weights are replaced by random ones cannot be
explaining the model. The check randomizes the kernel layers one after the other and measures how
similar the maps stay to the maps of the trained model.
"""

import numpy as np

from keras_patterns.evaluation import _similarity
from keras_patterns.evaluation._validate import check_choice, check_positive_int
from keras_patterns.graph.layers import KERNEL_LAYERS, SEPARABLE

ORDERS = ("cascading", "independent")
SIMILARITIES = ("spearman", "spearman_abs", "ssim")


def randomization_check(analyzer, model, x, order="cascading", similarity="spearman", seed=0, *,
                        neuron_selection=None, fit_data=None):
    """Similarity of an analyzer's maps before and after randomizing the model's kernel layers.

    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity checks for saliency maps", NeurIPS
    2018 (arXiv 1810.03292), model parameter randomization test.

    The kernel layers of ``model`` (Dense, Conv, DepthwiseConv, SeparableConv, nested models
    included) are taken from the output down. ``"cascading"``: step ``j`` randomizes layers
    ``0..j`` of that list (the top ``j + 1`` layers), as the paper's cascading test;
    ``"independent"``: step ``j`` randomizes layer ``j`` alone, the others trained. Randomizing a
    layer replaces each of its weights (kernel, bias, ...) by i.i.d. normal values with mean 0 and
    the standard deviation of the trained tensor (so the scale of the activations is kept; an
    all-zero bias stays zero). The values of layer ``j`` are drawn from ``seed`` and ``j`` only:
    the same seed gives the same random layers in both orders and in every run.

    The analyzer is a live view of the model (it computes with the model's current weights), so
    ``analyzer`` must have been created on ``model`` or on a model sharing its variables, such as
    ``kp.model_wo_softmax(model)``. Pattern analyzers (``pattern.net``, ``pattern.attribution``)
    hold patterns fitted to the trained weights; fixed patterns would leave part of the
    explanation trained, so they are re-fitted on ``fit_data`` after every randomization (and
    their trained patterns put back at the end). Without ``fit_data`` they are refused.

    ``model`` is restored bit for bit when the check ends, also when the analyzer raises midway.

    Similarities per sample: ``"spearman"``, the Spearman rank correlation of the flattened maps
    (every channel); ``"spearman_abs"``, the same on absolute values; ``"ssim"``, the structural
    similarity of the maps summed over channels (channels last) and min-max scaled to [0, 1]
    (uniform 7x7 window, C1 = 0.01^2, C2 = 0.03^2, see :mod:`keras_patterns.evaluation._similarity`).
    A constant map has no rank structure: its Spearman similarity is 1 if both maps are equal, 0
    otherwise.

    Args:
        analyzer: a keras_patterns analyzer (single-input model).
        model: the Keras model whose weights are randomized (and restored).
        x: inputs to explain, batch first.
        order: ``"cascading"`` or ``"independent"``. Defaults to `"cascading"`.
        similarity: ``"spearman"``, ``"spearman_abs"`` or ``"ssim"``. Defaults to `"spearman"`.
        seed: seed of the random weights. Defaults to `0`.
        neuron_selection: passed to ``analyzer.analyze`` (``neuron_selection_mode="index"``:
            explain the same class before and after randomization). Defaults to `None` (the
            analyzer's mode; with ``"max_activation"`` each model explains its own top class).
        fit_data: data to re-fit a pattern analyzer on (anything its ``fit`` takes). Defaults to
            `None`.

    Returns:
        A dict: ``"layers"``, the names of the kernel layers from the output down;
        ``"similarity"``, a float64 array ``(n_layers, n_samples)``, row ``j`` after step ``j``;
        ``"order"`` and ``"measure"``, the options used.

    Raises:
        ValueError: unknown options, an analyzer not computing with ``model``'s variables, a model
            without kernel layers, a pattern analyzer without ``fit_data`` or not fitted, maps that
            ``"ssim"`` cannot read as images.

    Example:

    ```python
    logits = kp.model_wo_softmax(model)
    result = kp.evaluation.randomization_check(kp.create_analyzer("gradient", logits), model, x)
    result["similarity"].mean(axis=1)  # one value per randomized layer, from the top
    ```
    """
    check_choice("order", order, ORDERS)
    check_choice("similarity", similarity, SIMILARITIES)
    seed = check_positive_int("seed", seed, allow_zero=True)
    if not hasattr(analyzer, "analyze") or not hasattr(analyzer, "model"):
        raise ValueError(
            f"`analyzer` must be a keras_patterns analyzer. Received: analyzer of type {type(analyzer).__name__}"
        )
    own = {id(v) for v in model.weights}
    foreign = [v.path for v in analyzer.model.weights if id(v) not in own]
    if foreign:
        raise ValueError(
            "`analyzer` must compute with `model`'s variables (create it on `model` or on "
            f"kp.model_wo_softmax(model)). Received: an analyzer on model {analyzer.model.name!r}, "
            f"whose weights {foreign[:3]} are not variables of model {model.name!r}"
        )
    layers = [layer for layer in _kernel_layers(model) if layer.weights][::-1]
    if not layers:
        raise ValueError(f"`model` has no kernel layer (Dense, Conv, ...) to randomize. Received: model {model.name!r}")
    patterns = None
    if getattr(analyzer, "needs_fitting", False):
        if fit_data is None:
            raise ValueError(
                f"Analyzer {analyzer.name!r} holds patterns fitted to the trained weights; the check "
                "re-fits them after every randomization and needs `fit_data`. Received: fit_data=None"
            )
        patterns = analyzer.patterns
        if patterns is None:
            raise ValueError(f"Analyzer {analyzer.name!r} must be fitted before the check. Received: an unfitted analyzer")

    variables = list(model.weights)
    trained = [np.array(v.numpy(), copy=True) for v in variables]
    try:
        original = _analyze(analyzer, x, neuron_selection)
        rows = []
        for j, layer in enumerate(layers):
            if order == "independent" and j > 0:
                _restore(variables, trained)
            _randomize(layer, np.random.default_rng([seed, j]))
            if patterns is not None:
                analyzer.fit(fit_data, verbose=0)
            rows.append(_compare(original, _analyze(analyzer, x, neuron_selection), similarity))
    finally:
        _restore(variables, trained)
        if patterns is not None:
            analyzer._set_patterns(patterns)  # recorded against the restored weights: not outdated
    return {"layers": [layer.name for layer in layers], "similarity": np.stack(rows),
            "order": order, "measure": similarity}


def _kernel_layers(model):
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and not isinstance(layer, KERNEL_LAYERS + SEPARABLE):
            out.extend(_kernel_layers(layer))
        elif isinstance(layer, KERNEL_LAYERS + SEPARABLE):
            out.append(layer)
    return out


def _randomize(layer, rng):
    for v in layer.weights:
        w = v.numpy()
        v.assign(rng.normal(0.0, float(np.std(w)), size=w.shape).astype(w.dtype))


def _restore(variables, values):
    for v, value in zip(variables, values):
        v.assign(value)


def _analyze(analyzer, x, neuron_selection):
    maps = analyzer.analyze(x, neuron_selection=neuron_selection)
    if isinstance(maps, list):
        raise ValueError(
            f"randomization_check supports single-input models. Received: maps for {len(maps)} inputs"
        )
    return np.asarray(maps, dtype="float64")


def _compare(a, b, similarity):
    if similarity == "spearman":
        return _similarity.spearman(a, b)
    if similarity == "spearman_abs":
        return _similarity.spearman(np.abs(a), np.abs(b))
    if a.ndim == 4:
        a, b = a.sum(axis=-1), b.sum(axis=-1)
    if a.ndim != 3:
        raise ValueError(
            "similarity='ssim' needs image maps (n, height, width) or (n, height, width, channels). "
            f"Received: maps of shape {a.shape}"
        )
    return _similarity.ssim(a, b)
