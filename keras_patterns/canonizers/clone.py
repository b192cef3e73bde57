"""Configuration copies of layers (the user's layers are never changed, and no weight is copied).

A canonized node keeps a layer object that says *what* it computes (class, strides, padding,
activation, dtype policy) and a live :class:`~keras_patterns.linear.LinearParams` view that says
*with which weights*. The layer objects made here are therefore never built: they hold no
variables, so an analyzer holds no copy of the model's weights.
"""

import keras


def config_clone(layer, **config_overrides):
    """An unbuilt layer of the same class and config, with some config entries replaced.

    Args:
        layer: the layer to describe.
        **config_overrides: config entries to replace (e.g. ``activation="linear"``).

    Returns:
        An unbuilt layer (no variables).
    """
    config = layer.get_config()
    config.update(config_overrides)
    return type(layer).from_config(config)


def activation_layer(activation, name, dtype=None):
    """A stand-alone ``Activation`` layer; ``dtype`` (a dtype policy) keeps the kernel layer's."""
    return keras.layers.Activation(activation, name=name, dtype=dtype)
