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


class NotFittedError(KerasPatternsError, RuntimeError):
    """A pattern-based analyzer was used before its patterns were fitted or given."""
