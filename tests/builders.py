"""Small model builders shared by the tests (the zoo, ``tests/zoo.py``, holds the layer-coverage models).

Each builder creates its layers in a fixed order, so with the same ``seed`` it gives bit-identical
weights every time (``seed=None`` leaves the global RNG as it is, as an unseeded local model would).
A test that needs a model of its own (named layers with a meaning, a float64 model, a golden
architecture) keeps it local.
"""

import keras
import numpy as np
from keras import layers as L


def _seed(seed):
    if seed is not None:
        keras.utils.set_random_seed(seed)


def mlp(sizes, activation="relu", head=None, use_bias=True, names=None, name=None, seed=None):
    """A Sequential MLP: ``Input((sizes[0],))``, ``Dense(s, activation)`` for each hidden size, and
    ``Dense(sizes[-1], head)``.

    Args:
        sizes: ``(inputs, hidden..., outputs)``, at least two numbers.
        activation: the hidden layers' activation. Defaults to `"relu"`.
        head: the last layer's activation (e.g. ``"softmax"``). Defaults to `None` (logits).
        use_bias: for every Dense. Defaults to `True`.
        names: one name per Dense layer. Defaults to `None` (Keras' names).
        name: the model's name. Defaults to `None`.
        seed: ``keras.utils.set_random_seed(seed)`` first. Defaults to `None` (not seeded).

    Example:

    ```python
    mlp((5, 4, 3))   # 5 inputs -> Dense(4, relu) -> Dense(3)
    ```
    """
    if len(sizes) < 2:
        raise ValueError(f"`sizes` must hold the input and output sizes at least. Received: sizes={sizes}")
    _seed(seed)
    n_dense = len(sizes) - 1
    names = list(names) if names is not None else [None] * n_dense
    if len(names) != n_dense:
        raise ValueError(f"`names` must name {n_dense} Dense layers. Received: names={names}")
    dense = [L.Dense(units, activation=activation if i < n_dense - 1 else head, use_bias=use_bias,
                     name=names[i]) for i, units in enumerate(sizes[1:])]
    kwargs = {"name": name} if name is not None else {}
    return keras.Sequential([keras.Input((sizes[0],))] + dense, **kwargs)


def small_cnn(input_shape, filters, classes, pool=2, head=None, seed=None):
    """A Sequential CNN: ``Conv2D(filters, 3, relu)``, ``MaxPooling2D(pool)`` (none for
    ``pool=None``), ``Flatten``, ``Dense(classes, head)``."""
    _seed(seed)
    layers = [keras.Input(input_shape), L.Conv2D(filters, 3, activation="relu")]
    if pool is not None:
        layers.append(L.MaxPooling2D(pool))
    layers += [L.Flatten(), L.Dense(classes, activation=head)]
    return keras.Sequential(layers)


def two_inputs(a=3, b=2, units=2, seed=None):
    """Inputs ``"a"`` ``(a,)`` and ``"b"`` ``(b,)``, concatenated, then ``Dense(units)``."""
    _seed(seed)
    xa, xb = keras.Input((a,), name="a"), keras.Input((b,), name="b")
    return keras.Model([xa, xb], L.Dense(units)(L.Concatenate()([xa, xb])))


def dense_weights(model):
    """``[(kernel, bias), ...]`` of a model's Dense layers, in order (bias ``None`` without one)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, L.Dense):
            ws = layer.get_weights()
            out.append((ws[0], ws[1] if len(ws) > 1 else None))
    return out


def normal_inputs(shape, n, seed=0):
    """``n`` standard normal float32 samples of ``shape`` from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).normal(size=(n,) + tuple(shape)).astype("float32")
