"""Adapters: a keras_patterns analyzer as a Quantus ``explain_func`` or an xplique explainer.

Neither Quantus nor xplique is imported here: the adapters follow their calling conventions.

- Quantus (``quantus.metrics``): ``explain_func(model, inputs, targets, **kwargs) -> np.ndarray``
  with ``inputs`` a NumPy batch that Quantus has put channels first (``make_channel_first``
  before it calls the function; it hands Keras models their channels-last layout in its own
  ``predict``), ``targets`` one integer label per sample, and the explanation shaped like
  ``inputs``.
- xplique (``xplique.attributions``): ``explainer(inputs, targets)`` (alias of
  ``explainer.explain``) with channels-last ``inputs`` (or a ``tf.data.Dataset`` of
  ``(inputs, targets)`` batches), ``targets`` one-hot of shape (N, outputs), returning a
  ``tf.Tensor``.

Both need an analyzer with ``neuron_selection_mode="index"``: the targets become its
``neuron_selection``.
"""

import numpy as np

from keras_patterns.analyzers import registry


def _check_index_mode(analyzer):
    if getattr(analyzer, "neuron_selection_mode", None) != "index":
        raise ValueError(
            "The adapters explain the given targets, so the analyzer needs "
            "neuron_selection_mode='index' (kp.create_analyzer(name, model, "
            "neuron_selection_mode='index')). Received: an analyzer with "
            f"neuron_selection_mode={getattr(analyzer, 'neuron_selection_mode', None)!r}"
        )


def _input_shape(analyzer):
    specs = analyzer._input_specs
    if len(specs) != 1:
        raise ValueError("The adapters support models with one input. Received: a model with "
                         f"{len(specs)} inputs")
    return specs[0][0][1:]


def _fits(shape, expected):
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


class QuantusExplainFunc:
    """A keras_patterns analyzer as a Quantus ``explain_func``.

    Call it as Quantus does: ``explain_func(model, inputs, targets, **kwargs)``. ``targets`` (one
    int per sample, or one int for all) select the explained output in index mode. ``inputs`` may
    come channels first (as Quantus passes them) or in the model's own layout; the explanation is
    returned in the layout of ``inputs``, float32, with all channels (Quantus accepts that shape).
    A ``model`` other than the analyzer's (for example a randomized copy in Quantus' ``MPRT``)
    gets a fresh analyzer of the same name and configuration; analyzers that need fitting refuse
    it, since their patterns belong to the original model.

    Args:
        analyzer: a keras_patterns analyzer created with ``neuron_selection_mode="index"``.
        channel_first: whether ``inputs`` are channels first. `None` decides from the model's
            input shape and raises when both layouts fit. Defaults to `None`.

    Raises:
        ValueError: an analyzer not in index mode, or with several inputs.

    Example:

    ```python
    analyzer = kp.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index")
    metric = quantus.RelevanceRankAccuracy()
    scores = metric(model=model, x_batch=x_nchw, y_batch=y, s_batch=masks,
                    explain_func=kp.evaluation.adapters.QuantusExplainFunc(analyzer))
    ```
    """

    #: keyword arguments Quantus adds on its own; accepted and not used.
    QUANTUS_KWARGS = ("device",)

    def __init__(self, analyzer, channel_first=None):
        _check_index_mode(analyzer)
        if channel_first not in (None, True, False):
            raise ValueError(f"`channel_first` must be None, True or False. "
                             f"Received: channel_first={channel_first!r}")
        self.analyzer = analyzer
        self.channel_first = channel_first
        self._shape = _input_shape(analyzer)

    def _analyzer_for(self, model):
        if model is None or model is self.analyzer.model:
            return self.analyzer
        if self.analyzer.needs_fitting:
            raise ValueError(
                f"explain_func got a model other than the analyzer's ({getattr(model, 'name', model)!r}"
                f" vs {self.analyzer.model.name!r}), and {self.analyzer.name!r} needs fitting: its "
                "patterns belong to the analyzer's model. Pass the analyzer's model."
            )
        return registry.create_analyzer(self.analyzer.name, model, **self.analyzer.get_config())

    def _channels_first(self, shape):
        if self.channel_first is not None:
            return self.channel_first
        last = _fits(shape, self._shape)
        first = len(shape) >= 2 and _fits(shape[1:] + shape[:1], self._shape)
        if last and first:
            raise ValueError(
                f"Cannot tell whether inputs of shape {shape} per sample are channels first or "
                f"last for a model input of shape {self._shape}: pass channel_first=True or False."
            )
        if not (last or first):
            raise ValueError(
                f"`inputs` must be shaped like the model input {self._shape} per sample, channels "
                f"last or first. Received: inputs of shape {shape} per sample"
            )
        return first and not last

    def __call__(self, model, inputs, targets, **kwargs):
        unknown = sorted(set(kwargs) - set(self.QUANTUS_KWARGS))
        if unknown:
            raise ValueError(f"Unknown keyword arguments for a keras_patterns explain_func: "
                             f"{unknown}. Configure the analyzer instead (create_analyzer(...)).")
        inputs = np.asarray(inputs)
        first = self._channels_first(tuple(inputs.shape[1:]))
        x = np.moveaxis(inputs, 1, -1) if first else inputs
        targets = np.asarray(targets)
        if targets.ndim == 0:
            targets = np.full((len(x),), targets)
        maps = self._analyzer_for(model).analyze(x, neuron_selection=targets.reshape(-1))
        maps = np.moveaxis(maps, -1, 1) if first else maps
        return np.ascontiguousarray(maps, dtype="float32")


class XpliqueExplainer:
    """A keras_patterns analyzer as an xplique explainer: ``explainer(inputs, targets)``.

    ``targets`` are one-hot, shape (N, outputs), exactly one nonzero entry per row (xplique:
    "one encoding per input and only one output at a time"); the explained output is each row's
    nonzero entry, in index mode. ``inputs`` are channels last as the model takes them (xplique's
    convention), or a ``tf.data.Dataset`` of ``(inputs, targets)`` batches with ``targets=None``.
    Returns a float32 ``tf.Tensor`` shaped like ``inputs``, as xplique's explainers do.

    Args:
        analyzer: a keras_patterns analyzer created with ``neuron_selection_mode="index"``.
        batch_size: samples per compiled call (xplique's argument). `None` keeps the analyzer's.
            Defaults to `None`.

    Raises:
        ValueError: an analyzer not in index mode, or with several inputs.

    Example:

    ```python
    explainer = kp.evaluation.adapters.XpliqueExplainer(
        kp.create_analyzer("gradient", model, neuron_selection_mode="index"))
    explanations = explainer(x, tf.one_hot(y, 10))
    ```
    """

    def __init__(self, analyzer, batch_size=None):
        _check_index_mode(analyzer)
        if batch_size is not None and (isinstance(batch_size, bool) or
                                       not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"`batch_size` must be None or a positive int. "
                             f"Received: batch_size={batch_size!r}")
        _input_shape(analyzer)
        self.analyzer = analyzer
        self.model = analyzer.model
        self.batch_size = batch_size

    def explain(self, inputs, targets=None):
        """The analyzer's maps for ``inputs`` and one-hot ``targets``, as a float32 tf.Tensor."""
        import tensorflow as tf

        if isinstance(inputs, tf.data.Dataset):
            if targets is not None:
                raise ValueError("With a tf.data.Dataset the targets come from the dataset. "
                                 f"Received: targets of type {type(targets).__name__}")
            parts = [self._explain(np.asarray(x), np.asarray(y)) for x, y in inputs]
            maps = np.concatenate(parts, axis=0) if parts else np.zeros((0,), "float32")
        else:
            if targets is None:
                raise ValueError("xplique explainers need one-hot `targets` (N, outputs). "
                                 "Received: targets=None")
            maps = self._explain(np.asarray(inputs), np.asarray(targets))
        return tf.convert_to_tensor(maps, dtype=tf.float32)

    __call__ = explain

    def _explain(self, x, targets):
        n_out = self.analyzer.n_outputs
        if targets.ndim != 2 or targets.shape[0] != len(x) or (n_out and targets.shape[1] != n_out):
            raise ValueError(
                f"`targets` must be one-hot of shape ({len(x)}, {n_out}). "
                f"Received: targets.shape={targets.shape}"
            )
        hot = targets != 0
        if not np.all(hot.sum(axis=1) == 1):
            bad = int(np.argmax(hot.sum(axis=1) != 1))
            raise ValueError("`targets` must have exactly one nonzero entry per row (one output "
                             f"at a time). Received: {int(hot[bad].sum())} in row {bad}")
        return self.analyzer.analyze(x, neuron_selection=np.argmax(hot, axis=1),
                                     batch_size=self.batch_size).astype("float32")
