"""Analyzer configuration: what ``get_config`` can save, canonizers by name, and iNNvestigate's
``reverse_*`` constructor arguments."""

import numpy as np

from keras_patterns import canonizers as C
from keras_patterns.analyzers.method import Method
from keras_patterns.canonizers import DEFAULT_CANONIZERS
from keras_patterns.rules import Rule

#: iNNvestigate's ``reverse_*`` constructor arguments (all default to False there).
#: ``reverse_check_finite``: maps are always checked (NonFiniteResultError), so both values are
#: accepted. ``reverse_reapply_on_copied_layers``: the model is never modified (the backward pass
#: runs on a mirror of it), so both values give the same maps and are accepted. The others ask for
#: debugging output or intermediate tensors that are not produced: only False is accepted, except
#: ``reverse_project_bottleneck_layers`` on the pattern analyzers (= ``project_bottleneck``).
REVERSE_KWARGS = {
    "reverse_verbose": "per-layer debug printing is not implemented; inspect `analyzer.plan` for "
                       "the rule of every layer",
    "reverse_clip_values": "clipping the backward signal at every layer is not implemented; clip "
                           "the returned maps with np.clip if needed",
    "reverse_project_bottleneck_layers": "bottleneck projection is implemented for the pattern "
                                         "analyzers only (their `project_bottleneck=True`)",
    "reverse_check_min_max_values": "per-layer min/max debug printing is not implemented",
    "reverse_check_finite": None,
    "reverse_keep_tensors": "intermediate backward tensors are not kept; the analyzer returns "
                            "input maps only",
    "reverse_reapply_on_copied_layers": None,
}


def check_reverse_kwargs(who, kwargs, allowed):
    """Validates iNNvestigate's ``reverse_*`` arguments; unknown names raise a TypeError."""
    cls_name = who.replace(".__init__()", "")
    for key, value in kwargs.items():
        if key not in REVERSE_KWARGS:
            raise TypeError(f"{who} got an unexpected keyword argument {key!r}")
        why = REVERSE_KWARGS[key]
        if why is None or value is False or value is None or key in allowed and allowed[key](value):
            continue
        raise ValueError(f"`{key}` (from iNNvestigate) is not supported by {cls_name}: {why}. "
                         f"Received: {key}={value!r}; only {key}=False is accepted.")


UNSAVEABLE = "<not saveable>"


def jsonable(v):
    """A JSON-serialisable copy of a constructor argument (Rule objects, classes and callables are
    marked unsaveable)."""
    if isinstance(v, (Rule, Method)) or isinstance(v, type) or callable(v):
        return UNSAVEABLE
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [jsonable(e) for e in v]
    if isinstance(v, dict):
        return {k: jsonable(e) for k, e in v.items()}
    return v


def has_unsaveable(v):
    if isinstance(v, list):
        return any(has_unsaveable(e) for e in v)
    if isinstance(v, dict):
        return any(has_unsaveable(e) for e in v.values())
    return isinstance(v, str) and v == UNSAVEABLE


def builtin_canonizers():
    return {f.__name__: f for f in (C.expand_attention, C.split_separable, C.split_activations,
                                    C.fold_batchnorm)}


def canonizer_functions(canonizers):
    """``canonizers`` (None, functions or built-in names) as a tuple of functions."""
    if canonizers is None:
        return DEFAULT_CANONIZERS
    known = builtin_canonizers()
    items = [canonizers] if isinstance(canonizers, str) or callable(canonizers) else canonizers
    try:
        items = list(items)
    except TypeError:
        items = [canonizers]
    out = []
    for c in items:
        if isinstance(c, str) and c in known:
            out.append(known[c])
        elif callable(c) and not isinstance(c, str):
            out.append(c)
        else:
            raise ValueError(
                "`canonizers` must be a list of graph -> graph functions or names of the built-in "
                f"ones {sorted(known)}. Received: canonizers={canonizers!r}"
            )
    return tuple(out)


def canonizer_names(functions):
    """Names of built-in canonizers (saveable), the unsaveable marker for others."""
    known = {f: n for n, f in builtin_canonizers().items()}
    return [known.get(f, UNSAVEABLE) for f in functions]
