"""Exceptions raised by keras_patterns.

Every error a user can cause names what was received and what was expected.
"""


class KerasPatternsError(Exception):
    """Base class of all keras_patterns errors."""


class NotAnalyzeableModelError(KerasPatternsError, ValueError):
    """The model cannot be analyzed as given (softmax output, several outputs, subclassed model...)."""


class UnsupportedLayerError(NotAnalyzeableModelError):
    """The model contains layers without a backward rule for the chosen method.

    Attributes:
        layers: list of ``(layer_name, class_name)`` pairs, every offending layer at once.
    """

    def __init__(self, message, layers=()):
        super().__init__(message)
        self.layers = list(layers)


class AnalyzerFileError(KerasPatternsError, ValueError):
    """An analyzer file cannot be loaded: damaged, hostile, too large or from a newer version.

    Raised by :func:`keras_patterns.load_analyzer`. The message names the file, what was found and
    what was expected. Subclasses ``ValueError``, which ``load_analyzer`` raised before.

    Attributes:
        path: the file, as given to ``load_analyzer``.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class NotFittedError(KerasPatternsError, RuntimeError):
    """A pattern-based analyzer was used before its patterns were fitted or given."""


class NonFiniteResultError(KerasPatternsError, ArithmeticError):
    """The backward pass overflowed: some maps contain NaN or Inf.

    Attributes:
        samples: indices of the affected samples.
        maps: the raw result (a list with one array per model input), for the samples that are fine.
    """

    def __init__(self, message, samples=(), maps=None):
        super().__init__(message)
        self.samples = list(samples)
        self.maps = maps


class NonFiniteDataError(KerasPatternsError, ValueError):
    """Pattern fitting met NaN or Inf: in a batch of the data, or in the accumulated statistics.

    Raised by ``analyzer.fit`` and :meth:`~keras_patterns.PatternComputer.compute` for the first
    batch holding NaN/Inf (unless ``skip_nonfinite=True``), and by the pattern estimator when the
    statistics themselves are not finite (finite data whose float32 per-batch sums overflowed).

    Attributes:
        batch: index of the offending batch (0-based, in the order the data yielded them); None
            when the statistics overflowed.
        samples: indices, within that batch, of the samples holding NaN/Inf (empty when
            ``batch`` is None).
    """

    def __init__(self, message, batch=None, samples=()):
        super().__init__(message)
        self.batch = batch
        self.samples = list(samples)


#: The registered analyzers that need no rule per layer: they differentiate through any layer
#: (recurrent, Lambda, custom layers, Keras operations) and treat a model without a layer graph (a
#: subclassed model) as one node. Named by the errors of the rule-based methods.
_GRADIENT_FAMILY = (
    "gradient", "input_t_gradient", "smoothgrad", "vargrad", "squaregrad", "integrated_gradients",
    "gradient.baseline",
)


def _works_on_any_model():
    """The sentence the rule-based methods' refusals end with: which analyzers do work."""
    names = ", ".join(repr(n) for n in _GRADIENT_FAMILY)
    return (
        f"The gradient family ({names}) needs no rule per layer and works on this model: it "
        "differentiates through any layer TensorFlow can differentiate."
    )
