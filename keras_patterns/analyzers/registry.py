"""The analyzer registry, re-exported from :mod:`keras_patterns.registry` (the ground floor)."""

from keras_patterns.registry import (  # noqa: F401
    capabilities,
    create_analyzer,
    get_analyzer_class,
    get_entry,
    list_analyzers,
    register,
    register_preset,
)
