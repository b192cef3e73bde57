"""PatternComputer: fits patterns for a model in one streaming pass (iNNvestigate-compatible API)."""

from keras_patterns.canonizers import prepare_graph
from keras_patterns.patterns import distribution
from keras_patterns.patterns.data import run_pass
from keras_patterns.patterns.statistics import PatternStatistics


class PatternComputer:
    """Computes the patterns of every kernel layer of a model, training-free.

    Kindermans et al., "Learning how to explain neural networks: PatternNet and
    PatternAttribution", ICLR 2018 (arXiv 1705.05598), eqs. 4 (``"linear"``) and 8 (``"relu"``).

    One pass over the data accumulates per-layer sums (see
    :class:`~keras_patterns.patterns.statistics.PatternStatistics`); the patterns are then computed
    in closed form. The pass is compiled once and reads the model's current weights at every
    :meth:`compute`, so re-fitting after training needs no retracing. The model is canonized first, exactly as the analyzers do, so the patterns can
    be given to ``create_analyzer("pattern.net", model, patterns=...)``: a BatchNormalization
    directly after a kernel layer is folded into it, and the layer's pattern is the pattern of the
    folded layer (kernel ``W * s`` with ``s = gamma / sqrt(var + eps)``; its pattern is the
    unfolded layer's pattern divided by ``s``, so ``W * A`` is unchanged).

    Args:
        model: a Functional or Sequential Keras model (never modified).
        pattern_type: ``"linear"``, ``"relu"`` (alias ``"relu.positive"``) or ``"relu.negative"``,
            or a list of them. Defaults to `"linear"` (as iNNvestigate's PatternComputer; the
            analyzers default to `"relu"`).
        graph: the canonized graph, if already prepared. Defaults to `None`.
        strategy: the ``tf.distribute`` strategy to fit under. Defaults to `None`: the strategy
            whose scope is entered at construction (as a Keras model picks it up), if any. Under
            a strategy :meth:`compute` splits every global batch over the replicas, each replica
            adds its part to its own float64 sums, and the sums are all-reduced once, at the end
            (see the "Scaling out" page of the docs).

    Raises:
        ValueError: unknown pattern type, a model without kernel layers; :meth:`compute` called
            under the scope of another strategy than the one it was built under.
        NotAnalyzeableModelError: a model that cannot be walked.

    Example:

    ```python
    patterns = kp.PatternComputer(model, pattern_type="relu").compute(x_train, batch_size=64)
    patterns["conv2d"].shape == model.get_layer("conv2d").kernel.shape   # True
    analyzer = kp.create_analyzer("pattern.attribution", model, patterns=patterns)
    ```
    """

    def __init__(self, model, pattern_type="linear", graph=None, strategy=None):
        self.model = model
        self.pattern_type = pattern_type
        self.graph = prepare_graph(model) if graph is None else graph
        self.statistics = PatternStatistics(self.graph, pattern_type, strategy=strategy)
        #: samples the last :meth:`compute` left out for NaN/Inf (None before any).
        self.skipped_samples = None

    def compute(self, data, batch_size=32, steps=None, verbose="auto", skip_nonfinite=False):
        """Runs the fitting pass and returns the patterns.

        Every batch is checked for NaN and Inf inside the compiled statistics update (one flag per
        sample comes back to the host); samples holding them are never added to the sums.

        Args:
            data: a NumPy array (list/dict of arrays for several inputs), a ``tf.data.Dataset``, a
                ``keras.utils.PyDataset``, a Python generator yielding ``x``, ``(x, y)`` or
                ``(x, y, sample_weight)`` batches, or a function ``dataset_fn(input_context)``
                returning a ``tf.data.Dataset`` (a sharded input pipeline, given to
                ``strategy.distribute_datasets_from_function`` under a strategy).
            batch_size: samples per batch for array data (the global batch under a strategy).
                Defaults to `32`.
            steps: number of batches to use (bounds an endless generator). Defaults to `None`.
            verbose: ``"auto"``, 0, 1 or 2 as in ``model.fit``. Defaults to `"auto"`.
            skip_nonfinite: leave out the samples holding NaN or Inf (with a warning giving their
                number) instead of raising. The number is then in ``self.skipped_samples``.
                Defaults to `False`.

        Returns:
            ``{layer_name: pattern}`` (each shaped like that layer's kernel) for one pattern type;
            ``{pattern_type: {layer_name: pattern}}`` when a list of types was given.

        Raises:
            NonFiniteDataError: a batch holding NaN/Inf (it names the batch and its samples; not
                with ``skip_nonfinite=True``), or statistics that overflowed float32 (finite data
                of the order of 1e19).
            ValueError: empty data, no finite sample, bad ``batch_size``/``steps``/``verbose``,
                batches of the wrong shape.
            TypeError: data of an unsupported kind.

        Example:

        ```python
        computer = kp.PatternComputer(model, "relu")
        patterns = computer.compute(x_train, batch_size=64, skip_nonfinite=True)
        computer.skipped_samples    # samples left out for NaN/Inf
        ```
        """
        distribution.check_scope(self.statistics.strategy, f"The PatternComputer of model {self.model.name!r}")
        self.statistics.reset_state()
        summary = run_pass(
            self.statistics, data, batch_size=batch_size, steps=steps, verbose=verbose,
            skip_nonfinite=skip_nonfinite,
        )
        self.skipped_samples = summary.skipped
        result = self.statistics.result()
        if isinstance(self.pattern_type, str):
            return result[self.statistics.pattern_types[0]]
        return {t: result[t if t != "relu.positive" else "relu"] for t in self.pattern_type}
