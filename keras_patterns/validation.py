"""Argument checks and the one reader of model inputs, in the style of Keras'
``keras/src/utils/argument_validation.py``.

Every check returns the normalised value (a Python ``int``, ``float`` or ``bool``) or raises a
``ValueError`` worded as Keras words it::

    `batch_size` must be a positive int. Received: batch_size=0

Booleans are refused where an int or a number is expected (``True`` is an ``int`` in Python, and
``batch_size=True`` would otherwise mean one sample per call). NumPy scalars are accepted.

:func:`read_inputs` turns what a user passes as model inputs (an array, a tensor, a list of them or
a dict by input name) into one NumPy array per model input, checked and cast; :func:`input_list`
and :func:`check_input_shape` are its parts, used by the pattern statistics on tensors.
"""

import numpy as np


def _received(name, value):
    return f"Received: {name}={value!r}"


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def integer(name, value, minimum=None, allow_none=False):
    """Checks that ``value`` is an int (not a bool), at least ``minimum`` if given.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        minimum: the smallest accepted value, or None for any int. Defaults to `None`.
        allow_none: accept (and return) None. Defaults to `False`.

    Returns:
        ``int(value)``, or None.

    Raises:
        ValueError: e.g. "`size` must be an int >= 16. Received: size=12".

    Example:

    ```python
    integer("until_layer_idx", 3, minimum=0)     # 3
    integer("seed", None, allow_none=True)       # None
    ```
    """
    if value is None and allow_none:
        return None
    if not _is_int(value) or (minimum is not None and value < minimum):
        what = "an int" if minimum is None else f"an int >= {minimum}"
        if allow_none:
            what += " or None"
        raise ValueError(f"`{name}` must be {what}. {_received(name, value)}")
    return int(value)


def positive_int(name, value, allow_none=False):
    """Checks that ``value`` is an int > 0 (not a bool).

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        allow_none: accept (and return) None. Defaults to `False`.

    Returns:
        ``int(value)``, or None.

    Raises:
        ValueError: "`batch_size` must be a positive int. Received: batch_size=0" (with
            ``allow_none``: "must be None or a positive int").

    Example:

    ```python
    positive_int("batch_size", np.int64(64))          # 64
    positive_int("steps", None, allow_none=True)      # None
    ```
    """
    if value is None and allow_none:
        return None
    if not (_is_int(value) and value > 0):
        what = "None or a positive int" if allow_none else "a positive int"
        raise ValueError(f"`{name}` must be {what}. {_received(name, value)}")
    return int(value)


def non_negative_int(name, value, allow_none=False):
    """Checks that ``value`` is an int >= 0 (not a bool): :func:`integer` with ``minimum=0``.

    Raises:
        ValueError: "`n` must be an int >= 0. Received: n=-1".
    """
    return integer(name, value, minimum=0, allow_none=allow_none)


def _interval(minimum, maximum, min_open, max_open):
    if minimum is not None and maximum is not None:
        return f" in {'(' if min_open else '['}{minimum}, {maximum}{')' if max_open else ']'}"
    if minimum is not None:
        return f" {'>' if min_open else '>='} {minimum}"
    if maximum is not None:
        return f" {'<' if max_open else '<='} {maximum}"
    return ""


def finite_number(name, value, minimum=None, maximum=None, min_open=False, max_open=False,
                  allow_none=False):
    """Checks that ``value`` is a finite real number (int or float, not a bool) within bounds.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        minimum: lower bound, or None. Defaults to `None`.
        maximum: upper bound, or None. Defaults to `None`.
        min_open: exclude ``minimum`` itself. Defaults to `False`.
        max_open: exclude ``maximum`` itself. Defaults to `False`.
        allow_none: accept (and return) None. Defaults to `False`.

    Returns:
        ``float(value)``, or None.

    Raises:
        ValueError: "`noise_scale` must be a finite number >= 0. Received: noise_scale=-1";
            "`q` must be a finite number in (0, 1]. Received: q=0".

    Example:

    ```python
    finite_number("epsilon", 1e-7, minimum=0, min_open=True)    # 1e-07
    finite_number("alpha", 0.5, minimum=0, maximum=1)           # 0.5
    ```
    """
    if value is None and allow_none:
        return None
    ok = _is_number(value) and bool(np.isfinite(value))
    if ok and minimum is not None:
        ok = value > minimum if min_open else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if max_open else value <= maximum
    if not ok:
        what = "a finite number" + _interval(minimum, maximum, min_open, max_open)
        if allow_none:
            what += " or None"
        raise ValueError(f"`{name}` must be {what}. {_received(name, value)}")
    return float(value)


def boolean(name, value):
    """Checks that ``value`` is True or False (a Python or NumPy bool; not 0/1, not a string).

    Returns:
        ``bool(value)``.

    Raises:
        ValueError: "`allow_lambda_layers` must be True or False. Received: allow_lambda_layers=1".
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. {_received(name, value)}")
    return bool(value)


def _same(value, option):
    # 1 == True and 0 == False in Python: a bool matches only a bool option.
    if isinstance(value, (bool, np.bool_)) != isinstance(option, (bool, np.bool_)):
        return False
    try:
        return bool(value == option)
    except (TypeError, ValueError):  # arrays and other values without a plain truth value
        return False


def _listing(options):
    texts = [repr(o) for o in options]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def one_of(name, value, options):
    """Checks that ``value`` is one of ``options`` (a bool only matches a bool option).

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        options: the accepted values, in the order the message lists them.

    Returns:
        the matching option (so that e.g. ``np.int64(1)`` comes back as ``1``).

    Raises:
        ValueError: "`postprocess` must be None, 'abs' or 'square'. Received: postprocess='sqrt'".

    Example:

    ```python
    one_of("verbose", 2, ("auto", 0, 1, 2))      # 2
    ```
    """
    for option in options:
        if _same(value, option):
            return option
    raise ValueError(f"`{name}` must be {_listing(options)}. {_received(name, value)}")


# ---------------------------------------------------------------------------------- model inputs
def input_list(x, input_names):
    """The model inputs in ``x`` as a list in the model's input order (values not converted).

    Args:
        x: one array or tensor (single-input models), a list or tuple of them, or a dict by input
            name (extra keys are ignored).
        input_names: the model's input names, in order.

    Returns:
        A list with one entry per model input.

    Raises:
        ValueError: a dict without some input name; a list of the wrong length.
    """
    n_in = len(input_names)
    if isinstance(x, dict):
        missing = [n for n in input_names if n not in x]
        if missing:
            raise ValueError(
                f"Input dict is missing model inputs {missing}. Expected keys: "
                f"{list(input_names)}. Received keys: {sorted(map(str, x))}"
            )
        xs = [x[n] for n in input_names]
    elif isinstance(x, (list, tuple)):
        xs = list(x)
    else:
        xs = [x]
    if len(xs) != n_in:
        raise ValueError(
            f"The model has {n_in} input(s) {list(input_names)}; expected a list of {n_in} "
            f"arrays. Received: {len(xs)} array(s)"
        )
    return xs


def check_input_shape(i, name, shape, received, hint=""):
    """Checks one input's shape against the model's (``None`` matches any size; the batch
    dimension is not compared).

    Args:
        i: the input's position, for the message.
        name: the input's name, for the message.
        shape: the model input's shape, batch first.
        received: the shape received.
        hint: text added to the message. Defaults to `""`.

    Raises:
        ValueError: "Input 0 (x) must have shape ('batch', 10). Received: shape (2, 11)".
    """
    received = tuple(received)
    if len(received) != len(shape) or any(
        s is not None and a is not None and s != a for s, a in zip(shape[1:], received[1:])
    ):
        raise ValueError(
            f"Input {i} ({name}) must have shape {('batch',) + tuple(shape[1:])}. "
            f"Received: shape {received}{hint}"
        )


def non_numeric_error(i, dtype, example=None):
    """The TypeError for input ``i`` of a non-numeric ``dtype`` (with an example value if given)."""
    example = "" if example is None else f" (e.g. {example!r})"
    return TypeError(f"Input {i} must be numeric. Received: dtype {dtype}{example}")


def check_batch_sizes(sizes):
    """Raises unless every input has the same number of samples."""
    if len(set(sizes)) > 1:
        raise ValueError(f"All inputs must have the same batch size. Received: {list(sizes)}")


def read_inputs(x, input_specs, input_names):
    """The one reader of model inputs: ``x`` as checked NumPy arrays, one per model input.

    Checks, in this order: the number of inputs (or the keys of a dict), that every input is
    numeric, its rank and shape, that float inputs hold no NaN or Inf, and that all inputs have
    the same batch size. Inputs of a float model input are cast to its dtype (integer data for a
    float32 input becomes float32); integer model inputs keep the data's dtype.

    Args:
        x: an array or tensor shaped like the model input (batch first), or a list (or dict by
            input name) of them for multi-input models.
        input_specs: ``[(shape, dtype)]`` of the model inputs, batch first (``analyzer.input_specs``).
        input_names: the model's input names, in order.

    Returns:
        A list of NumPy arrays, one per model input.

    Raises:
        ValueError: wrong count, missing dict key, wrong rank or shape, NaN/Inf, unequal batch sizes.
        TypeError: non-numeric input (strings, objects).

    Example:

    ```python
    xs = read_inputs({"a": xa, "b": xb}, analyzer.input_specs, analyzer.graph.input_names)
    ```
    """
    xs = input_list(x, input_names)
    out = []
    for i, (xi, (shape, dtype)) in enumerate(zip(xs, input_specs)):
        arr = np.asarray(xi.numpy() if hasattr(xi, "numpy") else xi)
        if arr.dtype.kind not in "biuf":
            raise non_numeric_error(i, arr.dtype, arr.flat[0] if arr.size else None)
        check_input_shape(i, input_names[i], shape, arr.shape)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(
                f"Input {i} contains NaN or Inf (first at index {tuple(int(b) for b in bad)}); "
                "expected finite values."
            )
        if np.dtype(dtype).kind == "f":
            arr = arr.astype(dtype, copy=False)
        out.append(arr)
    check_batch_sizes([a.shape[0] for a in out])
    return out
