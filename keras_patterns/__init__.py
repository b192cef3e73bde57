"""keras_patterns: PatternNet, PatternAttribution, LRP and gradient methods for Keras 3.

Example:

```python
import keras_patterns as kp
analyzer = kp.create_analyzer("gradient", kp.model_wo_softmax(model))
maps = analyzer.analyze(x)
```

The public names are imported on first use (PEP 562), so that ``import keras_patterns.cli``
(``keras-patterns --help``) does not import TensorFlow. Accessing any of them, or importing
``keras_patterns.analyzers``, registers every analyzer.
"""

import importlib

__version__ = "0.1.0"

#: public name -> module defining it.
_LAZY = {
    "AnalyzerFileError": "keras_patterns.errors",
    "KerasPatternsError": "keras_patterns.errors",
    "NonFiniteDataError": "keras_patterns.errors",
    "NonFiniteResultError": "keras_patterns.errors",
    "NotAnalyzeableModelError": "keras_patterns.errors",
    "NotFittedError": "keras_patterns.errors",
    "UnsupportedLayerError": "keras_patterns.errors",
    "create_analyzer": "keras_patterns.analyzers.registry",
    "list_analyzers": "keras_patterns.analyzers.registry",
    "load_analyzer": "keras_patterns.io",
    "register_rule": "keras_patterns.mapping",
    "unregister_rule": "keras_patterns.mapping",
    "model_wo_softmax": "keras_patterns.models",
    "PatternComputer": "keras_patterns.patterns",
}

__all__ = sorted(_LAZY) + ["callbacks"]

#: submodules that ``import keras_patterns`` used to import eagerly (``kp.analyzers`` etc.).
_SUBMODULES = ("analyzers", "callbacks", "canonizers", "datasets", "errors", "graph", "io", "linear",
               "mapping", "mirror", "models", "patterns", "rules", "selection", "fingerprint", "evaluation",
               "visualization")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_patterns.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_patterns' has no attribute {name!r}")
    importlib.import_module("keras_patterns.analyzers")  # registers the analyzers
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
