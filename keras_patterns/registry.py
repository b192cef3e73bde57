"""The analyzer registry: names -> analyzer classes, and presets as data.

The ground floor of the package: this module imports nothing from keras_patterns when it is
imported. Analyzer modules register themselves into it (``@register``, ``@register_preset``);
:func:`create_analyzer` and :func:`list_analyzers` load the built-in analyzers
(``keras_patterns.analyzers``) on first use, as a plugin registry does, so that they work whichever
module a user imports first.

A preset is a name, an analyzer class and a data function: the function's parameters are the
preset's own arguments (with their defaults), and it returns constructor arguments of the class
that the preset fixes. Everything else a user passes goes to the class. For example

```python
@register_preset("lrp.epsilon", LRP)
def epsilon(epsilon=1e-7, bias=True):
    rule = R.epsilon_rule(epsilon, bias=bias)
    return dict(rule=rule, bn_layer_rule=rule)
```

makes ``create_analyzer("lrp.epsilon", model, epsilon=0.1, input_layer_rule="Flat")`` the analyzer
``LRP(model, rule=..., bn_layer_rule=..., input_layer_rule="Flat")`` named ``"lrp.epsilon"``, whose
``get_config()`` is ``{"epsilon": 0.1, "bias": True, "input_layer_rule": "Flat", ...}``.
"""

import dataclasses
import importlib
import inspect


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered name: the analyzer class and, for a preset, its data function."""

    name: str
    cls: type
    preset: object = None
    flags: object = None

    def parameters(self):
        """The preset's own argument names (empty for a plain class)."""
        return () if self.preset is None else tuple(inspect.signature(self.preset).parameters)

    def fixed(self, **params):
        """``(preset arguments with defaults, constructor arguments they fix)``."""
        if self.preset is None:
            return {}, {}
        bound = inspect.signature(self.preset).bind(**params)
        bound.apply_defaults()
        return dict(bound.arguments), dict(self.preset(**bound.arguments))


_ANALYZERS = {}
_LOADED = False


def _add(entry):
    if entry.name in _ANALYZERS:
        raise ValueError(f"An analyzer named {entry.name!r} is already registered: {_ANALYZERS[entry.name]}")
    _ANALYZERS[entry.name] = entry


def register(name):
    """Class decorator registering an analyzer class under ``name``.

    Args:
        name: the name :func:`create_analyzer` accepts.

    Returns:
        The decorator (it sets ``cls.name`` and returns the class unchanged).

    Raises:
        ValueError: the name is taken.
    """

    def deco(cls):
        _add(Entry(name, cls))
        cls.name = name
        return cls

    return deco


def register_preset(name, cls, flags=None):
    """Function decorator registering a preset: ``name`` is ``cls`` with what the function returns.

    Args:
        name: the name :func:`create_analyzer` accepts.
        cls: the analyzer class the preset configures.
        flags: an object with the capability flags of the preset (e.g. its
            :class:`~keras_patterns.analyzers.method.Method`), for presets that have required
            arguments; otherwise :func:`capabilities` reads them from the preset's defaults.

    Returns:
        The decorator (it returns the function unchanged, so that it stays documented and callable).

    Raises:
        ValueError: the name is taken.
    """

    def deco(fn):
        _add(Entry(name, cls, fn, flags))
        fn.preset_name = name
        return fn

    return deco


def _load():
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("keras_patterns.analyzers")


def list_analyzers():
    """The names accepted by :func:`create_analyzer`, sorted.

    Returns:
        A list of strings.

    Example:

    ```python
    >>> "pattern.attribution" in kp.list_analyzers()
    True
    ```
    """
    _load()
    return sorted(_ANALYZERS)


def get_entry(name):
    """The :class:`Entry` registered under ``name``.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    _load()
    if not isinstance(name, str) or name not in _ANALYZERS:
        raise KeyError(
            f"No analyzer with the name {name!r} could be found. All possible names are: "
            f"{list_analyzers()}"
        )
    return _ANALYZERS[name]


def get_analyzer_class(name):
    """The analyzer class behind ``name`` (for a preset, the class it configures)."""
    return get_entry(name).cls


def capabilities(name):
    """The capability flags of a registered analyzer, without building it.

    Args:
        name: a registered name.

    Returns:
        ``{"output_kind", "multiplies_by_input", "conserves_relevance", "needs_fitting"}`` with the
        values the analyzer has with its default arguments.
    """
    entry = get_entry(name)
    source = entry.flags
    if source is None:
        _, fixed = entry.fixed()
        source = fixed.get("method") or getattr(entry.cls, "method", None) or entry.cls
    flags = ("output_kind", "multiplies_by_input", "conserves_relevance", "needs_fitting")
    return {f: getattr(source, f, getattr(entry.cls, f, None)) for f in flags}


def create_analyzer(name, model, **kwargs):
    """Creates an analyzer by its iNNvestigate name.

    Args:
        name: one of :func:`list_analyzers` (``"gradient"``, ``"lrp.epsilon"``,
            ``"pattern.attribution"``, ...).
        model: a Keras model without softmax output.
        **kwargs: the analyzer's arguments (``neuron_selection_mode``, ``postprocess``, ...).
            Unknown arguments raise a TypeError.

    Returns:
        An analyzer; call ``analyzer.analyze(x)``.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        TypeError: an argument the preset fixes (use the general analyzer to set it), or an
            unknown argument.

    Example:

    ```python
    analyzer = kp.create_analyzer("gradient", kp.model_wo_softmax(model))
    maps = analyzer.analyze(x)
    ```
    """
    entry = get_entry(name)
    if entry.preset is None:
        return entry.cls(model, **kwargs)
    own = {k: kwargs.pop(k) for k in entry.parameters() if k in kwargs}
    params, fixed = entry.fixed(**own)
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise TypeError(
            f"Analyzer {name!r} fixes {clash}; use the general analyzer to set them. "
            f"Received: {', '.join(f'{k}={kwargs[k]!r}' for k in clash)}"
        )
    # Named before __init__ runs, so that its warnings and errors name the preset.
    analyzer = entry.cls.__new__(entry.cls)
    analyzer._set_preset(name, params, fixed)
    analyzer.__init__(model, **fixed, **kwargs)
    return analyzer
