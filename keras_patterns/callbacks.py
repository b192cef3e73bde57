"""Keras callbacks: explanations of a fixed probe batch while the model trains."""

import inspect
import os
import time
import warnings

import keras
import numpy as np

from keras_patterns import validation
from keras_patterns._warnings import user_stacklevel
from keras_patterns.registry import capabilities, create_analyzer, list_analyzers

FORMATS = ("png", "npz", "tensorboard")


def _method_specs(methods):
    """``[(label or None, name or None, kwargs, factory or None)]`` from the ``methods`` argument."""
    expected = (
        "an analyzer name, a (name, kwargs) pair, a factory `f(model) -> analyzer`, or a list of "
        f"these (names: {list_analyzers()})"
    )
    items = [methods] if isinstance(methods, str) or callable(methods) or (
        isinstance(methods, tuple) and len(methods) == 2 and isinstance(methods[0], str)
        and isinstance(methods[1], dict)) else methods
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"`methods` must be {expected}. Received: methods={methods!r}")
    specs = []
    for m in items:
        if isinstance(m, str):
            name, kwargs, factory = m, {}, None
        elif isinstance(m, (tuple, list)) and len(m) == 2 and isinstance(m[0], str) and isinstance(m[1], dict):
            name, kwargs, factory = m[0], dict(m[1]), None
        elif callable(m) and not isinstance(m, type):
            name, kwargs, factory = None, {}, m
        else:
            raise ValueError(f"`methods` must be {expected}. Received: {m!r} in methods={methods!r}")
        if name is not None and name not in list_analyzers():
            raise ValueError(f"Unknown analyzer name {name!r} in `methods`; expected one of "
                             f"{list_analyzers()}. Received: methods={methods!r}")
        specs.append((name, kwargs, factory))
    return specs


def _fit_key(analyzer):
    """What a pattern analyzer's fitted patterns depend on: its configuration without the
    arguments that only change the analysis. Analyzers with equal keys on the same model (e.g.
    ``pattern.net`` and ``pattern.attribution``) are fitted once per round and share the patterns.
    """
    config = analyzer.get_config()
    for name in ("neuron_selection_mode", "batch_size", "project_bottleneck"):
        config.pop(name, None)
    return repr(sorted(config.items())), id(getattr(analyzer, "strategy", None))


def _model_to_explain(model):
    """The logits model when ``model`` ends in a softmax, else ``model`` itself."""
    from keras_patterns.models import model_wo_softmax

    try:
        return model_wo_softmax(model)
    except ValueError:
        return model  # no final softmax (or not walkable: the analyzer says why)


def _image_summary(tag, images, step):
    """Writes uint8 images (N, H, W, 3) as a TensorBoard image summary.

    The format is the one of ``tf.summary.image`` (plugin ``"images"``: width, height, then one
    PNG per image), written with the core ``tf.summary.write``, which does not need the
    ``tensorboard`` package (TensorFlow's ``tf.summary.image`` does).
    """
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images", content=b""),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )
    pngs = [tf.io.encode_png(img).numpy() for img in images]
    h, w = images.shape[1:3]
    tensor = tf.constant([str(w).encode(), str(h).encode()] + pngs, dtype=tf.string)
    return tf.summary.write(tag, tensor, step=step, metadata=metadata)


class AnalysisCallback(keras.callbacks.Callback):
    """Explains a fixed probe batch at chosen steps of ``model.fit`` and logs the maps.

    The analyzers are built once, at the first logged step, on the logits of the model being
    trained (``kp.model_wo_softmax(model)`` if it ends in a softmax, else the model itself). They
    are live views of the model, so every logged step explains the current weights without any
    retracing. Pattern methods (``needs_fitting``) are re-fitted on ``fit_data`` before each logged
    step, reusing their compiled statistics pass.

    At each logged step the maps ``{method: array}`` go to ``on_maps(epoch, maps)`` and, with
    ``log_dir``, under ``log_dir/analysis/``: a PNG grid (one row per method, one column per
    probe sample, titled with the epoch, predicted and target class per column), the raw maps as
    ``.npz`` (one key per method), and TensorBoard image summaries next to those of the
    ``keras.callbacks.TensorBoard`` callback (step = the 0-based epoch, as its scalars). File names
    count epochs from 1: ``epoch_003.png`` is written after the third epoch, ``batch_000200.png``
    after the 200th training batch, ``train_end.png`` at the end of training.

    Args:
        methods: an analyzer name (``"gradient"``), a ``(name, kwargs)`` pair, a factory
            ``f(model) -> analyzer`` (called once with the model to explain), or a list of these.
        x: the probe batch, an array shaped like the model input (batch first). Its shape is
            checked by the analyzers at the first logged step.
        fit_data: data to fit pattern methods on (array, ``tf.data.Dataset``, ``PyDataset``, or an
            endless generator together with ``fit_steps``). Required if a method needs fitting.
            Defaults to `None`.
        log_dir: folder for the PNG, npz and TensorBoard files (``log_dir/analysis``). Defaults to
            `None` (nothing written).
        on_maps: ``f(epoch, maps)`` called at every logged step with the 0-based epoch and
            ``{method: array shaped like x}``. Defaults to `None`.
        neuron_selection: explain this output neuron (an int, or one per sample); analyzers built
            by name then use ``neuron_selection_mode="index"``. Defaults to `None` (the largest
            output).
        every_n_epochs: log after every n-th epoch. Defaults to `1`; None for never.
        every_n_batches: log after every n-th training batch (counted over all epochs). Defaults
            to `None` (never).
        at_train_end: log at the end of training too (skipped if the last logged step already saw
            the final weights). Defaults to `True`.
        fit_steps: batches of ``fit_data`` per pattern fit. Defaults to `None` (all).
        fit_batch_size: batch size for array ``fit_data``. Defaults to `32`.
        max_samples: explain at most this many samples of ``x``. Defaults to `8`.
        y: target classes of the probe samples, shown in the grid. Defaults to `None`.
        class_names: names of the classes for the grid. Defaults to `None`.
        formats: what to write under ``log_dir``: a subset of ``("png", "npz", "tensorboard")``.
            Defaults to all three.

    Attributes:
        analyzers: ``{method: analyzer}`` (empty until the first logged step).
        timings: one dict per logged step: ``epoch``, ``batch``, ``tag``, and the seconds spent in
            ``fit`` (patterns), ``analyze`` and ``write``.

    Raises:
        ValueError: (at construction) bad ``methods``, schedule values, ``max_samples``,
            ``formats``, a pattern method without ``fit_data``, a generator ``fit_data`` without
            ``fit_steps``; (at the first logged step) the analyzers' own errors, e.g. ``x`` of the
            wrong shape.

    Example:

    ```python
    cb = kp.callbacks.AnalysisCallback(
        ["gradient", ("lrp.epsilon", {"epsilon": 0.1}), "pattern.attribution"],
        x=x_test[:8], fit_data=x_train[:1024], log_dir="logs")
    model.fit(x_train, y_train, epochs=5,
              callbacks=[keras.callbacks.TensorBoard("logs"), cb])
    ```
    """

    def __init__(self, methods, x, fit_data=None, log_dir=None, on_maps=None, neuron_selection=None,
                 every_n_epochs=1, every_n_batches=None, at_train_end=True, fit_steps=None,
                 fit_batch_size=32, max_samples=8, y=None, class_names=None, formats=FORMATS):
        super().__init__()
        self._specs = _method_specs(methods)
        self.every_n_epochs = validation.positive_int("every_n_epochs", every_n_epochs, allow_none=True)
        self.every_n_batches = validation.positive_int("every_n_batches", every_n_batches, allow_none=True)
        self.at_train_end = validation.boolean("at_train_end", at_train_end)
        if self.every_n_epochs is None and self.every_n_batches is None and not self.at_train_end:
            raise ValueError(
                "Nothing would be logged: set `every_n_epochs`, `every_n_batches` or `at_train_end`. "
                "Received: every_n_epochs=None, every_n_batches=None, at_train_end=False"
            )
        self.fit_steps = validation.positive_int("fit_steps", fit_steps, allow_none=True)
        self.fit_batch_size = validation.positive_int("fit_batch_size", fit_batch_size)
        self.max_samples = validation.positive_int("max_samples", max_samples)
        if isinstance(x, dict) or x is None:
            raise ValueError(f"`x` must be an array shaped like the model input. Received: "
                             f"{type(x).__name__}")
        x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
        if x.ndim < 1 or len(x) == 0:
            raise ValueError(f"`x` must be a non-empty batch. Received: shape {x.shape}")
        self.x = x[: self.max_samples]
        self.y = None if y is None else np.asarray(y)[: self.max_samples]
        self.neuron_selection = self._check_selection(neuron_selection)
        needs_fit = [n for n, _, f in self._specs if f is None and capabilities(n)["needs_fitting"]]
        if needs_fit and fit_data is None:
            raise ValueError(f"Methods {needs_fit} need `fit_data` to fit their patterns. "
                             "Received: fit_data=None")
        if (inspect.isgenerator(fit_data) or (hasattr(fit_data, "__next__") and not hasattr(fit_data, "__len__"))) \
                and self.fit_steps is None:
            raise ValueError(
                "A generator `fit_data` is consumed as the patterns are re-fitted; pass an endless "
                "generator with `fit_steps`. Received: a generator and fit_steps=None"
            )
        self.fit_data = fit_data
        if on_maps is not None and not callable(on_maps):
            raise ValueError(f"`on_maps` must be callable f(epoch, maps). Received: {on_maps!r}")
        self.on_maps = on_maps
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        formats = (formats,) if isinstance(formats, str) else tuple(formats)
        if not set(formats) <= set(FORMATS):
            raise ValueError(f"`formats` must be a subset of {FORMATS}. Received: formats={formats!r}")
        self.formats = formats
        self.class_names = class_names
        self.analyzers = {}
        self.timings = []
        self._explained = None
        self._shared_fit = {}
        self._kinds = {}
        self._writer = None
        self._summary_warned = False
        self._batches = 0
        self._epoch = 0
        self._logged_at = None

    def _check_selection(self, sel):
        if sel is None:
            return None
        arr = np.asarray(sel)
        if arr.dtype.kind not in "iu" or arr.ndim > 1:
            raise ValueError(f"`neuron_selection` must be an int or a list of ints, one per sample. "
                             f"Received: neuron_selection={sel!r}")
        return int(arr) if arr.ndim == 0 else arr[: len(self.x)]

    # ------------------------------------------------------------------------------ analyzers
    def set_model(self, model):
        if model is not getattr(self, "model", None):
            self.analyzers, self._explained = {}, None
        super().set_model(model)

    def _build(self):
        self._explained = _model_to_explain(self.model)
        self._shared_fit = {}
        labels = {}
        for i, (name, kwargs, factory) in enumerate(self._specs):
            if factory is None:
                if self.neuron_selection is not None:
                    if kwargs.get("neuron_selection_mode", "index") != "index":
                        raise ValueError(
                            f"`neuron_selection` needs neuron_selection_mode='index'. Received: "
                            f"{name!r} with neuron_selection_mode={kwargs['neuron_selection_mode']!r}"
                        )
                    kwargs = {**kwargs, "neuron_selection_mode": "index"}
                analyzer = create_analyzer(name, self._explained, **kwargs)
            else:
                analyzer = factory(self._explained)
                if not hasattr(analyzer, "analyze"):
                    raise ValueError(f"The factory {factory!r} in `methods` must return an analyzer. "
                                     f"Received: {type(analyzer).__name__}")
                name = getattr(analyzer, "name", None) or getattr(factory, "__name__", f"method{i}")
                if analyzer.needs_fitting and self.fit_data is None:
                    raise ValueError(f"Method {name!r} needs `fit_data` to fit its patterns. "
                                     "Received: fit_data=None")
            labels[name] = labels.get(name, 0) + 1
            label = name if labels[name] == 1 else f"{name}_{labels[name]}"
            self.analyzers[label] = analyzer
            if factory is None and analyzer.needs_fitting:
                self._shared_fit[label] = _fit_key(analyzer)
            self._kinds[label] = getattr(analyzer, "output_kind", "attribution")

    def compute_maps(self):
        """Fits the pattern methods and explains the probe batch with the current weights.

        Pattern methods built by name whose patterns depend on the same settings (e.g.
        ``pattern.net`` and ``pattern.attribution`` with the same ``pattern_type``) are fitted once
        per round and share the patterns.

        Returns:
            ``{method: array shaped like x}``, and the seconds spent fitting and analyzing.
        """
        if not self.analyzers:
            self._build()
        maps, t_fit, t_analyze = {}, 0.0, 0.0
        fitted = {}  # shared-fit key -> patterns fitted this round
        for label, analyzer in self.analyzers.items():
            t0 = time.perf_counter()
            if analyzer.needs_fitting:
                key = self._shared_fit.get(label)
                if key is not None and key in fitted:
                    analyzer.set_state(fitted[key])
                else:
                    analyzer.fit(self.fit_data, batch_size=self.fit_batch_size, steps=self.fit_steps,
                                 verbose=0)
                    if key is not None:
                        fitted[key] = analyzer.get_state()
            t1 = time.perf_counter()
            maps[label] = analyzer.analyze(self.x, neuron_selection=self.neuron_selection)
            t_fit, t_analyze = t_fit + t1 - t0, t_analyze + time.perf_counter() - t1
        return maps, t_fit, t_analyze

    # ------------------------------------------------------------------------------- schedule
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.every_n_batches and self._batches % self.every_n_batches == 0:
            self._log(f"batch_{self._batches:06d}", batch=self._batches)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            self._log(f"epoch_{epoch + 1:03d}")

    def on_train_end(self, logs=None):
        if self.at_train_end and self._logged_at != self._batches:
            self._log("train_end")

    # -------------------------------------------------------------------------------- logging
    def _log(self, tag, batch=None):
        self._logged_at = self._batches
        maps, t_fit, t_analyze = self.compute_maps()
        t0 = time.perf_counter()
        if self.on_maps is not None:
            self.on_maps(self._epoch, maps)
        t1 = time.perf_counter()
        if self.log_dir is not None:
            self._write(tag, maps, batch)
        self.timings.append({"epoch": self._epoch, "batch": batch, "tag": tag, "fit": t_fit,
                             "analyze": t_analyze, "on_maps": t1 - t0,
                             "write": time.perf_counter() - t1})

    def _predicted(self):
        out = np.asarray(self._explained(self.x, training=False))
        return out.reshape(len(out), -1).argmax(1) if out.ndim >= 2 and out.shape[-1] > 1 else None

    def _write(self, tag, maps, batch):
        from keras_patterns import visualization as vis

        folder = os.path.join(self.log_dir, "analysis")
        os.makedirs(folder, exist_ok=True)
        if "npz" in self.formats:
            np.savez(os.path.join(folder, tag + ".npz"), **maps)
        pictures = self.x.ndim == 4
        if not pictures and not self._summary_warned and set(self.formats) & {"png", "tensorboard"}:
            self._summary_warned = True
            warnings.warn(
                f"AnalysisCallback draws pictures of image inputs (N, H, W, C) only; the probe batch "
                f"has shape {self.x.shape}, so only the npz files are written. This warning is "
                "shown once.", stacklevel=user_stacklevel(),
            )
        if "png" in self.formats and pictures:
            when = f"batch {batch} (epoch {self._epoch + 1})" if batch else (
                "end of training" if tag == "train_end" else f"epoch {self._epoch + 1}")
            vis.plot_grid(maps, images=self.x, title=f"after {when}",
                          predicted=self._predicted(), target=self.y, class_names=self.class_names,
                          kinds=self._kinds, path=os.path.join(folder, tag + ".png"))
        if "tensorboard" in self.formats and pictures:
            self._summaries(folder, maps, batch)

    def _summaries(self, folder, maps, batch):
        from keras_patterns import visualization as vis

        try:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(folder)
            step, prefix = (self._epoch, "analysis") if batch is None else (batch, "analysis_batch")
            with self._writer.as_default():
                for label, m in maps.items():
                    pics = vis.render(m, self._kinds[label])
                    _image_summary(f"{prefix}/{label}", np.round(pics * 255).astype("uint8"), step)
            self._writer.flush()
        except Exception as e:  # noqa: BLE001  (warned, never silently skipped)
            if not self._summary_warned:
                self._summary_warned = True
                warnings.warn(
                    f"AnalysisCallback could not write TensorBoard image summaries to {folder!r} "
                    f"({type(e).__name__}: {e}); the PNG and npz files are still written. This "
                    "warning is shown once.", stacklevel=user_stacklevel(),
                )
