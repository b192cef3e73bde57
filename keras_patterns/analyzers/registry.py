"""The analyzer registry: iNNvestigate's names -> analyzer classes."""

_ANALYZERS = {}


def register(name):
    """Class decorator registering an analyzer under ``name``."""

    def deco(cls):
        if name in _ANALYZERS:
            raise ValueError(f"An analyzer named {name!r} is already registered: {_ANALYZERS[name]}")
        _ANALYZERS[name] = cls
        cls.name = name
        return cls

    return deco


def register_alias(name, cls, **fixed_kwargs):
    """Registers ``name`` as ``cls`` with some constructor arguments fixed (presets as data)."""

    class Alias(cls):
        __doc__ = cls.__doc__

        def __init__(self, model, **kwargs):
            clash = sorted(set(kwargs) & set(fixed_kwargs))
            if clash:
                raise TypeError(
                    f"Analyzer {name!r} fixes {clash}; use the general analyzer to set them. "
                    f"Received: {', '.join(f'{k}={kwargs[k]!r}' for k in clash)}"
                )
            super().__init__(model, **fixed_kwargs, **kwargs)
            for k in fixed_kwargs:
                self._config.pop(k, None)

    Alias.__name__ = Alias.__qualname__ = cls.__name__
    Alias.name = name
    _ANALYZERS[name] = Alias
    return Alias


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
    return sorted(_ANALYZERS)


def get_analyzer_class(name):
    if name not in _ANALYZERS:
        raise KeyError(
            f"No analyzer with the name {name!r} could be found. All possible names are: "
            f"{list_analyzers()}"
        )
    return _ANALYZERS[name]


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

    Example:

    ```python
    analyzer = kp.create_analyzer("gradient", kp.model_wo_softmax(model))
    maps = analyzer.analyze(x)
    ```
    """
    return get_analyzer_class(name)(model, **kwargs)
