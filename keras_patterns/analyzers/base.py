"""The analyzer base class: model checks, input reading, batching, the compiled per-batch function,
configuration and state. Reverse analyzers are in :mod:`keras_patterns.analyzers.reverse`."""

import threading
import warnings

import numpy as np
import tensorflow as tf

from keras_patterns import io, selection, validation
from keras_patterns.analyzers import streaming
from keras_patterns.analyzers.config import (
    canonizer_functions,
    canonizer_names,
    check_reverse_kwargs,
    has_unsaveable,
    jsonable,
)
from keras_patterns.canonizers import prepare_graph
from keras_patterns.errors import NonFiniteResultError, NotAnalyzeableModelError
from keras_patterns.graph import _keras_internals as ki
from keras_patterns.graph.checks import check_no_softmax
from keras_patterns.patterns import distribution
from keras_patterns._warnings import user_stacklevel

#: Guards the lazy creation of ``Analyzer._compiled``: threads whose first ``analyze`` calls
#: overlap must share one tf.function (traced once), not each create and trace their own.
_COMPILE_LOCK = threading.Lock()


class Analyzer:
    """Base class of all analyzers.

    Args:
        model: a Keras model with one output and no softmax (see
            :func:`keras_patterns.model_wo_softmax`). It is never modified.
        neuron_selection_mode: ``"max_activation"``, ``"index"`` or ``"all"``. Defaults to
            `"max_activation"`.
        batch_size: default number of samples per compiled call in :meth:`analyze`. Defaults to `32`.
        disable_model_checks: iNNvestigate's switch. `True` turns the refusals of non-ReLU
            networks (``deconvnet``, ``guided_backprop``, ``deep_taylor``) into warnings. A softmax
            is refused all the same (the backward pass needs the logits). Defaults to `False`.
        allow_lambda_layers: iNNvestigate's switch. `True` lets ``keras.layers.Lambda`` layers
            through, handled by their gradient; `False` refuses them as layers without a rule.
            The gradient family differentiates through them (and any other layer) either way.
            Defaults to `False`.
        canonizers: graph -> graph functions applied to the model's graph before the analysis,
            in order (see :mod:`keras_patterns.canonizers`), or their names. Defaults to `None`,
            :data:`~keras_patterns.canonizers.DEFAULT_CANONIZERS` (attention expansion, separable
            split, activation split, BatchNormalization folding).
        **reverse_kwargs: iNNvestigate's ``reverse_*`` arguments, for code ported from it (see
            :data:`REVERSE_KWARGS`): accepted when they ask for what this library does anyway,
            a ValueError naming the alternative otherwise.

    Raises:
        NotAnalyzeableModelError: several outputs, a softmax, a subclassed model.
        UnsupportedLayerError: layers without a rule, all listed at once.
    """

    #: registry name, set by :func:`keras_patterns.registry.register` (a preset's instances carry
    #: the preset's name).
    name = None
    #: Capability flags (see :class:`~keras_patterns.analyzers.method.Method`), read by the
    #: pictures, the callback, the command line and evaluation instead of tables of names.
    #: whether :meth:`fit` does something.
    needs_fitting = False
    #: what the maps are: ``"attribution"`` (relevance/importance per input, drawn as a heat map
    #: symmetric around 0) or ``"signal"`` (a signal in input space, drawn with
    #: :func:`keras_patterns.visualization.project`).
    output_kind = "attribution"
    #: whether the maps are a product with the input.
    multiplies_by_input = False
    #: whether a map sums to the explained output on bias-free ReLU networks, by design.
    conserves_relevance = False
    #: ``(name, preset arguments, constructor arguments they fix)`` when built from a preset.
    _preset = None
    #: ``"error"`` or ``"gradient"``: whether a model without a layer graph (a subclassed model)
    #: is refused or read as one node (see :class:`~keras_patterns.analyzers.method.Method`).
    _unknown_layers = "error"

    def __init__(self, model, neuron_selection_mode="max_activation", batch_size=32,
                 disable_model_checks=False, allow_lambda_layers=False, canonizers=None,
                 **reverse_kwargs):
        self.disable_model_checks = validation.boolean("disable_model_checks", disable_model_checks)
        self.allow_lambda_layers = validation.boolean("allow_lambda_layers", allow_lambda_layers)
        check_reverse_kwargs(self._who(), reverse_kwargs, self._reverse_kwarg_allowed)
        self.model = model
        # The tf.distribute strategy whose scope is entered now, as a Keras model picks it up:
        # fit and analyze run per replica under it.
        self._strategy = distribution.current_strategy()
        self.neuron_selection_mode = selection.check_mode(neuron_selection_mode)
        self.batch_size = validation.positive_int("batch_size", batch_size)
        self._config = {"neuron_selection_mode": neuron_selection_mode, "batch_size": self.batch_size}
        # Saved only when set, so that files and configs of analyzers without them stay as they were.
        if self.disable_model_checks:
            self._config["disable_model_checks"] = True
        if self.allow_lambda_layers:
            self._config["allow_lambda_layers"] = True
        self.canonizers = canonizer_functions(canonizers)
        if canonizers is not None:
            self._config["canonizers"] = canonizer_names(self.canonizers)
        self.graph = self._prepare_graph(model)
        try:
            check_no_softmax(self.graph)
        except NotAnalyzeableModelError as e:
            if not self.disable_model_checks:
                raise
            raise NotAnalyzeableModelError(
                f"{e} disable_model_checks=True does not cover softmax: the backward rules are "
                "defined for the logits (a softmax would need a rule of its own), so this check "
                "cannot be turned into a warning."
            ) from None
        self._input_specs = [
            (tuple(self.graph.tensors[t].shape), self.graph.tensors[t].dtype) for t in self.graph.inputs
        ]
        out_shape = self.graph.tensors[self.graph.outputs[0]].shape[1:]
        self.n_outputs = int(np.prod(out_shape)) if all(d is not None for d in out_shape) else None
        self._compiled = None
        self._concrete = (None, None)  # (compiled, its concrete function): see analyze
        self._probed = None  # the compiled function that also returns the state probe, if any

    # ----------------------------------------------------------------------------------- config
    def _who(self):
        """``"LRP.__init__()"``, or for a preset ``"'lrp.epsilon' (a preset of LRP)"``."""
        if self._preset is None:
            return f"{type(self).__name__}.__init__()"
        name, params, _ = self._preset
        return f"{name!r} (a preset of {type(self).__name__} with the arguments {sorted(params)})"

    def _prepare_graph(self, model):
        """The canonized graph the analyzer explains (wrappers share their inner analyzer's)."""
        return prepare_graph(model, self.canonizers, opaque=self._unknown_layers == "gradient")

    def _check_ready(self, check_state=True):
        """Raises when the analyzer cannot explain yet (e.g. patterns not fitted); with
        ``check_state``, also warns when its state is outdated (e.g. patterns fitted to older
        weights). Called first by :meth:`analyze`, with ``check_state=False`` when the compiled
        function reads the state probe itself (see :meth:`_state_probe`)."""

    def _state_probe(self):
        """A function of no arguments, traced into the compiled per-batch function, whose tensor
        :meth:`_check_state_probe` reads after each call: the outdated-state check done in the
        same call as the analysis (for the pattern analyzers a fingerprint of the weights, a few
        gathers in the graph instead of a separate call of about 0.2 ms). None: no state to
        check (the default)."""
        return None

    def _check_state_probe(self, value):
        """Warns when the probed ``value`` (a NumPy array) says the state is outdated."""

    def _set_preset(self, name, params, fixed):
        """Marks the analyzer as built by preset ``name`` (see :func:`keras_patterns.create_analyzer`)."""
        self.name = name
        self._preset = (name, {k: jsonable(v) for k, v in params.items()}, tuple(fixed))

    def get_config(self):
        """The constructor arguments (JSON-serialisable), without the model.

        ``create_analyzer(analyzer.name, model, **analyzer.get_config())`` builds the same
        analyzer: for a preset, the preset's own arguments replace the ones it fixes.

        Raises:
            ValueError: arguments that cannot be saved (Rule objects, layer classes, conditions,
                canonizer functions); the message names them.
        """
        config = dict(self._config)
        if self._preset is not None:
            _, params, fixed = self._preset
            config = {**params, **{k: v for k, v in config.items() if k not in fixed}}
        bad = sorted(k for k, v in config.items() if has_unsaveable(v))
        if bad:
            raise ValueError(
                f"The analyzer's {bad} hold Rule objects, layer classes, conditions or functions, "
                "which cannot be saved. Use rule names (strings) and built-in canonizer names to "
                "make the analyzer saveable."
            )
        return config

    def __repr__(self):
        try:
            config = self.get_config()
        except Exception:  # a config holding unsaveable objects: the repr must not fail
            config = {}
        base = ("neuron_selection_mode", "batch_size")
        items = [(k, v) for k, v in config.items() if k not in base and v is not None]
        items.append(("neuron_selection_mode", self.neuron_selection_mode))
        if self.batch_size != 32:
            items.append(("batch_size", self.batch_size))
        if self.needs_fitting:
            items.append(("fitted", self._is_fitted()))
        text = " ".join(f"{k}={_short_repr(v)}" for k, v in items)
        model = getattr(self.model, "name", type(self.model).__name__)
        return f"<{type(self).__name__} {self.name!r} model={model!r} {text}>"

    def _is_fitted(self):
        return True

    #: iNNvestigate ``reverse_*`` arguments this class accepts with a value other than the default
    #: (name -> predicate on the value); see :func:`check_reverse_kwargs`.
    _reverse_kwarg_allowed = {}

    def fit(self, *args, **kwargs):
        """Does nothing for analyzers that need no fitting (warns and returns self)."""
        warnings.warn(f"Analyzer {self.name!r} needs no fitting; fit() does nothing.", stacklevel=user_stacklevel())
        return self

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose="auto", steps=None,
                      max_queue_size=None, workers=None, use_multiprocessing=None, **kwargs):
        """iNNvestigate's (and Keras 2's) ``fit_generator``: :meth:`fit` on batches from ``generator``.

        Args:
            generator: a Python generator, ``keras.utils.PyDataset`` or ``tf.data.Dataset`` yielding
                ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` batches (``y`` is ignored).
            steps_per_epoch: the number of batches to use (Keras' name). Defaults to `None` (all;
                an endless generator needs it).
            epochs: must be 1: patterns are computed in closed form in one pass. Defaults to `1`.
            verbose: as in :meth:`fit`. Defaults to `"auto"`.
            steps: iNNvestigate's name for ``steps_per_epoch``; give one of the two.
            max_queue_size, workers, use_multiprocessing: accepted and ignored (the batches are
                read in the calling thread; the result does not depend on them).
            **kwargs: further arguments of :meth:`fit` (e.g. ``skip_nonfinite``).

        Returns:
            The analyzer.
        """
        if steps is not None and steps_per_epoch is not None and steps != steps_per_epoch:
            raise ValueError(
                "Give `steps_per_epoch` or its iNNvestigate name `steps`, not both. Received: "
                f"steps_per_epoch={steps_per_epoch!r}, steps={steps!r}"
            )
        if epochs != 1 or isinstance(epochs, bool):
            raise ValueError(
                f"Patterns are computed in closed form in one pass; `epochs` must be 1. Received: epochs={epochs!r}"
            )
        if not self.needs_fitting:
            warnings.warn(f"Analyzer {self.name!r} needs no fitting; fit_generator() does nothing.",
                          stacklevel=user_stacklevel())
            return self
        return self.fit(generator, steps=steps if steps is not None else steps_per_epoch,
                        verbose=verbose, **kwargs)

    def save(self, path):
        """Saves configuration, fitted state and model to one file (see :mod:`keras_patterns.io`)."""
        io.save_analyzer(self, path)

    @property
    def input_specs(self):
        """The model inputs as ``((shape, dtype), ...)``, batch first (read-only)."""
        return tuple(self._input_specs)

    def get_state(self):
        """The analyzer's fitted state, for persistence (what :meth:`save` writes).

        Returns:
            A dict ``{name: NumPy array}``: the patterns of a fitted pattern analyzer, ``{}`` for
            analyzers without state (and for pattern analyzers not fitted yet).

        Example:

        ```python
        state = analyzer.get_state()
        other = kp.create_analyzer(analyzer.name, model, **analyzer.get_config())
        other.set_state(state)        # same maps as `analyzer`
        ```
        """
        return {}

    def set_state(self, state):
        """Restores what :meth:`get_state` returned (from this or another analyzer of the same
        kind and model).

        Args:
            state: a dict ``{name: array}``; ``{}`` leaves the analyzer as it is.

        Raises:
            ValueError: arrays for an analyzer without state, or arrays that do not fit.
        """
        if state:
            raise ValueError(
                f"Analyzer {self.name!r} has no state; expected state={{}}. "
                f"Received: arrays {sorted(state)}"
            )

    # ------------------------------------------------------------------------------------ input
    def _prepare_inputs(self, x):
        return validation.read_inputs(x, self._input_specs, self.graph.input_names)

    def _signature(self):
        specs = [
            tf.TensorSpec((None,) + shape[1:], dtype=dtype) for shape, dtype in self._input_specs
        ]
        return [specs, tf.TensorSpec((None,), tf.int32)] + self._extra_specs()

    def _extra_specs(self):
        """Specs of extra arguments of ``_analyze_batch`` (e.g. a random seed)."""
        return []

    def _extra_args(self):
        """Values of the extra arguments for one analyze() call."""
        return []

    # ---------------------------------------------------------------------------------- analyze
    def _analyze_batch(self, inputs, indices):
        raise NotImplementedError

    def _rows_per_call(self, batch_size):
        return batch_size

    @property
    def strategy(self):
        """The ``tf.distribute`` strategy the analyzer was built under (None: a single device)."""
        return self._strategy

    def _check_strategy(self):
        """Raises when called under the scope of another strategy than the one it was built under."""
        if tf.distribute.has_strategy():
            distribution.check_scope(self._strategy, f"The analyzer {self.name!r}")

    def analyze(self, x, neuron_selection=None, batch_size=None, on_batch=None, out=None):
        """Explains the model's output for a batch of inputs, or for a whole dataset.

        Args:
            x: an array shaped like the model input (batch first), or a list (or dict by input
                name) of arrays for multi-input models; ``np.memmap`` arrays are read one batch
                at a time. Also a ``tf.data.Dataset``, ``keras.utils.PyDataset``, Python
                generator or dataset function yielding batches ``x``, ``(x, y)`` or
                ``(x, y, sample_weight)`` (as for ``fit``); its batches are cut into pieces of
                ``batch_size``.
            neuron_selection: with ``neuron_selection_mode="index"``, an int for all samples or one
                int per sample (arrays only), indexing the flattened output. Must be None in the
                other modes.
            batch_size: samples per compiled call (split over the replicas under a strategy).
                Defaults to the analyzer's `batch_size`.
            on_batch: a writer ``on_batch(start, maps)`` called with the maps of every piece, in
                order (``start``: the index of its first sample; ``maps`` shaped as the return
                value); nothing is kept and None is returned. Defaults to `None`.
            out: the path of a ``.npy`` file to write the maps into, piece by piece (a list of
                paths, one per input, for multi-input models); the file is then returned opened
                with ``np.load(out, mmap_mode="r")``. Defaults to `None`.

        Returns:
            A numpy array shaped like ``x``, or a list with one array per model input (memory
            mapped with ``out``); None with ``on_batch``.

        Raises:
            ValueError: wrong input count, rank or shape, NaN/Inf input, bad ``neuron_selection``;
                called under another strategy's scope than the analyzer was built under; both
                ``on_batch`` and ``out``.
            TypeError: non-numeric input, a non-callable ``on_batch``.
            RuntimeError: ``on_batch`` raised (the message names the batch; the writer's error
                is its cause).
            NonFiniteResultError: NaN/Inf maps (when streaming: at the first such piece, naming
                it).
        """
        if (on_batch is not None or out is not None or self._strategy is not None
                or tf.distribute.has_strategy() or streaming.is_stream(x)):
            return self._analyze_general(x, neuron_selection, batch_size, on_batch, out)
        self._check_ready(check_state=False)
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        idx = selection.normalize_indices(
            neuron_selection, self.neuron_selection_mode, n, self.n_outputs or np.iinfo("int32").max
        )
        compiled = self._compiled
        if compiled is None:
            compiled = self._get_compiled()
        if compiled is None or compiled is not self._probed:
            self._check_ready()
        # The signature is fixed, so the one concrete function is called directly: this skips
        # the polymorphic function's per-call argument binding and cache lookup (about 0.3 ms a
        # call, a tenth of a small CNN's batch of 16 on a CPU). Keyed by the compiled function,
        # so that a reset of ``_compiled`` (re-fitted patterns, new rules) is followed.
        owner, concrete = self._concrete
        if owner is not compiled:
            concrete = compiled.get_concrete_function()
            self._concrete = (compiled, concrete)
        if batch_size is not None:
            batch_size = validation.positive_int("batch_size", batch_size)
        step = self._rows_per_call(batch_size or self.batch_size)
        extras = self._extra_args()
        chunks = []
        for start in range(0, n, step):
            stop = min(n, start + step)
            out = concrete([a[start:stop] for a in xs], idx[start:stop], *extras)
            maps = self._unprobe(compiled, out)
            # Under a mixed precision policy a reverse pass may end in float16/bfloat16: maps are
            # returned as float32 (float64 models keep float64 maps).
            chunks.append([_widen(m.numpy()) for m in maps])
        if n == 0:
            results = [np.zeros_like(a, dtype="float32") for a in xs]
        else:
            results = [np.concatenate([c[i] for c in chunks], axis=0) for i in range(len(xs))]
        self._check_finite(results)
        return results[0] if len(results) == 1 else results

    def _get_compiled(self):
        """The compiled per-batch function, created once (under a strategy: one replica step)."""
        with _COMPILE_LOCK:
            if self._compiled is None:
                # No tensor-dependent Python control flow in the reverse pass: AutoGraph would
                # only add transpiling time (seconds on deep models).
                probe = self._state_probe() if self._strategy is None else None
                if probe is not None:
                    fn = self._analyze_batch

                    def probed(*args):
                        return fn(*args), probe()

                    compiled = tf.function(probed, input_signature=self._signature(),
                                           autograph=False)
                    self._probed = compiled
                elif self._strategy is None:
                    compiled = tf.function(
                        self._analyze_batch, input_signature=self._signature(), autograph=False
                    )
                else:
                    strategy, fn = self._strategy, self._analyze_batch
                    compiled = tf.function(
                        lambda inputs, idx, *extras: strategy.run(fn, args=(inputs, idx, *extras)),
                        autograph=False, reduce_retracing=True,
                    )
                # Each analyzer's function traces once (fixed input_signature), but TensorFlow
                # sums traces over all analyzers of a class and would warn of "retracing".
                ki.omit_frequent_tracing_warning(compiled)
                self._compiled = compiled
            return self._compiled

    def _unprobe(self, compiled, out):
        """The maps of one call of ``compiled`` (or its concrete function); when it also returns
        the state probe, the probe is checked first (see :meth:`_state_probe`)."""
        if compiled is not self._probed:
            return out
        maps, value = out
        self._check_state_probe(value.numpy())
        return maps

    def _run_piece(self, compiled, xs, idx, extras):
        """The maps of one piece of samples (split over the local replicas under a strategy)."""
        if self._strategy is None:
            return [_widen(m.numpy()) for m in self._unprobe(compiled, compiled(xs, idx, *extras))]
        strategy = self._strategy
        n, k = len(idx), distribution.local_replicas(strategy)
        pad = -n % k  # equal slices, none empty (TensorFlow's CPU convolutions fail on 0 samples)
        if pad:
            take = np.r_[np.arange(n), np.full(pad, n - 1)]  # repeat the last sample
            xs, idx = [a[take] for a in xs], idx[take]
        with strategy.scope():
            maps = compiled(distribution.split_batch(strategy, xs),
                            distribution.split_batch(strategy, [idx]), *extras)
            maps = distribution.local_results(strategy, list(maps))
        return [_widen(m[:n]) for m in maps]

    def _analyze_general(self, x, neuron_selection, batch_size, on_batch, out, inspect=None):
        """:meth:`analyze` for datasets, streamed output and strategies (see :mod:`.streaming`)."""
        self._check_strategy()
        self._check_ready(check_state=False)
        if on_batch is not None and out is not None:
            raise ValueError("Give `on_batch` or `out`, not both. Received: both")
        if on_batch is not None and not callable(on_batch):
            raise TypeError(f"`on_batch` must be a function on_batch(start, maps). Received: {on_batch!r}")
        step = self._rows_per_call(
            self.batch_size if batch_size is None else validation.positive_int("batch_size", batch_size))
        names, mode = self.graph.input_names, self.neuron_selection_mode
        limit = self.n_outputs or np.iinfo("int32").max
        stream = streaming.is_stream(x)
        if stream:
            if neuron_selection is not None and np.ndim(neuron_selection) != 0:
                raise ValueError(
                    "A per-sample `neuron_selection` needs array inputs; for a dataset or generator "
                    "give one int for all samples. Received: neuron_selection of shape "
                    f"{np.shape(neuron_selection)} with {type(x).__name__} input"
                )
            pieces, n = streaming.stream_batches(x, names, step), None
        else:
            pieces, n = streaming.array_batches(x, names, step)
            all_idx = selection.normalize_indices(neuron_selection, mode, n, limit)
        sink = streaming.Sink(self, on_batch, out, len(names), inspect=inspect)
        compiled = self._get_compiled()
        if compiled is None or compiled is not self._probed:
            self._check_ready()
        extras = self._extra_args()
        try:
            for b, (start, raw) in enumerate(pieces):
                try:
                    xs = self._prepare_inputs(raw)
                except (ValueError, TypeError) as e:
                    raise type(e)(f"Batch {b} (samples from {start}) of the data: {e}") from None
                m = len(xs[0])
                idx = (selection.normalize_indices(neuron_selection, mode, m, limit) if stream
                       else all_idx[start:start + m])
                sink.add(b, start, self._run_piece(compiled, xs, idx, extras))
        except BaseException:
            sink.abort()
            raise
        return sink.finish(self._input_specs)

    def _check_finite(self, results):
        bad = sorted({
            int(i) for r in results
            for i in np.nonzero(~np.isfinite(r.reshape(len(r), -1)).all(axis=1))[0]
        })
        if bad:
            raise NonFiniteResultError(
                f"{self.name} produced NaN/Inf maps for samples {bad}: the backward signal "
                f"overflowed {results[0].dtype}. Rules that divide by unstabilized "
                "pre-activations (LRP-Z, W**2, Flat, proportional splits at Add layers) can blow "
                "up on deep networks; a "
                "stabilized rule such as lrp.epsilon with epsilon=0.1, or lrp.alpha_1_beta_0, "
                "avoids this. The maps of the other samples are in this error's `maps`.",
                samples=bad, maps=results,
            )


def _short_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _widen(m):
    """A float16/bfloat16 map as float32; other maps unchanged."""
    half = m.dtype.name in ("float16", "bfloat16")
    return m.astype(np.float32) if half else m
