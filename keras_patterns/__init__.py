"""keras_patterns: PatternNet, PatternAttribution, LRP and gradient methods for Keras 3.

Example:

```python
import keras_patterns as kp
analyzer = kp.create_analyzer("gradient", kp.model_wo_softmax(model))
maps = analyzer.analyze(x)
```
"""

from keras_patterns import analyzers as _analyzers  # noqa: F401  (registers the analyzers)
from keras_patterns import callbacks
from keras_patterns.analyzers.registry import create_analyzer, list_analyzers
from keras_patterns.errors import (
    AnalyzerFileError,
    KerasPatternsError,
    NonFiniteDataError,
    NonFiniteResultError,
    NotAnalyzeableModelError,
    NotFittedError,
    UnsupportedLayerError,
)
from keras_patterns.io import load_analyzer
from keras_patterns.mapping import register_rule, unregister_rule
from keras_patterns.models import model_wo_softmax
from keras_patterns.patterns import PatternComputer

__version__ = "0.1.0"

__all__ = [
    "AnalyzerFileError", "KerasPatternsError", "NonFiniteDataError", "NonFiniteResultError",
    "NotAnalyzeableModelError", "NotFittedError", "PatternComputer", "UnsupportedLayerError",
    "create_analyzer", "list_analyzers", "load_analyzer", "model_wo_softmax", "register_rule",
    "unregister_rule",
]
