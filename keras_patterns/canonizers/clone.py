"""Building modified copies of layers (the user's layers are never changed)."""

import keras


def clone_layer(layer, input_shape, weights, **config_overrides):
    """A fresh layer of the same class with an updated config and the given weights.

    Args:
        layer: the layer to copy.
        input_shape: the input shape to build the copy with.
        weights: list of numpy arrays for ``set_weights``.
        **config_overrides: config entries to replace (e.g. ``activation="linear"``).

    Returns:
        A built layer whose variables are independent of ``layer``'s.
    """
    config = layer.get_config()
    config.update(config_overrides)
    new = type(layer).from_config(config)
    new.build(input_shape)
    new.set_weights([w for w in weights])
    return new


def node_fn(layer):
    """A graph-node function calling a single-input layer."""

    def fn(xs):
        return [layer(xs[0])]

    return fn


def activation_layer(activation, name, dtype=None):
    """A stand-alone ``Activation`` layer; ``dtype`` (a dtype policy) keeps the kernel layer's."""
    return keras.layers.Activation(activation, name=name, dtype=dtype)
