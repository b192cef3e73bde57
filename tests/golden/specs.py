"""Framework-neutral model specifications shared by the golden-file generators and the tests.

This module imports nothing but NumPy, so the same file can be read by the iNNvestigate 2.1.2
(tf.keras 2.14) and 1.0.9 (Keras 2.2.4, Python 3.7) generator scripts under ``tools/`` and by the
Keras 3 tests. A spec is ``{"input_shape": tuple, "layers": [(class_name, kwargs), ...]}`` for a
Sequential model; class names and keyword arguments are valid in Keras 2.2.4, tf.keras 2.14 and
Keras 3 alike. Weights are drawn by :func:`make_weights` from a fixed seed and stored next to the
reference outputs in the golden ``.npz`` file, so the tests never depend on an RNG matching across
frameworks.
"""

import numpy as np

MODELS = {
    # ReLU MLP with biases.
    "mlp": {
        "input_shape": (6,),
        "layers": [
            ("Dense", {"units": 8, "activation": "relu"}),
            ("Dense", {"units": 5, "activation": "relu"}),
            ("Dense", {"units": 4, "activation": "linear"}),
        ],
    },
    # ReLU CNN with max- and average-pooling, SAME and VALID padding.
    "cnn": {
        "input_shape": (12, 12, 2),
        "layers": [
            ("Conv2D", {"filters": 4, "kernel_size": (3, 3), "padding": "same", "activation": "relu"}),
            ("MaxPooling2D", {"pool_size": (2, 2)}),
            ("Conv2D", {"filters": 5, "kernel_size": (3, 3), "padding": "valid", "activation": "relu"}),
            ("AveragePooling2D", {"pool_size": (2, 2)}),
            ("Flatten", {}),
            ("Dense", {"units": 6, "activation": "relu"}),
            ("Dense", {"units": 3, "activation": "linear"}),
        ],
    },
    # Strided / dilated convolutions, max-pooling only (the pattern methods' home ground).
    "cnn_strided": {
        "input_shape": (11, 11, 3),
        "layers": [
            ("Conv2D", {"filters": 4, "kernel_size": (3, 3), "strides": (2, 2), "padding": "same",
                        "activation": "relu"}),
            ("Conv2D", {"filters": 6, "kernel_size": (2, 2), "dilation_rate": (2, 2), "padding": "valid",
                        "activation": "relu"}),
            ("MaxPooling2D", {"pool_size": (2, 2)}),
            ("Flatten", {}),
            ("Dense", {"units": 4, "activation": "linear"}),
        ],
    },
}


def make_weights(spec, seed=0, bias_scale=0.1):
    """Deterministic weights for a spec, in Keras ``get_weights()`` order (kernel, bias per layer).

    Args:
        spec: one entry of :data:`MODELS`.
        seed: RNG seed. Defaults to `0`.
        bias_scale: standard deviation of the biases. Defaults to `0.1`.

    Returns:
        A list with one list of arrays per layer (empty for layers without weights).
    """
    rng = np.random.default_rng(seed)
    shape = tuple(spec["input_shape"])
    out = []
    for cls, kw in spec["layers"]:
        if cls == "Dense":
            fan_in = int(np.prod(shape[-1:]))
            k = rng.normal(0, 1 / np.sqrt(fan_in), (shape[-1], kw["units"]))
            b = rng.normal(0, bias_scale, (kw["units"],))
            out.append([k.astype("float32"), b.astype("float32")])
            shape = shape[:-1] + (kw["units"],)
        elif cls == "Conv2D":
            kh, kw_ = kw["kernel_size"]
            cin = shape[-1]
            fan_in = kh * kw_ * cin
            k = rng.normal(0, 1 / np.sqrt(fan_in), (kh, kw_, cin, kw["filters"]))
            b = rng.normal(0, bias_scale, (kw["filters"],))
            out.append([k.astype("float32"), b.astype("float32")])
            shape = _conv_out(shape, kw)
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            p = kw["pool_size"]
            s = kw.get("strides") or p
            shape = ((shape[0] - p[0]) // s[0] + 1, (shape[1] - p[1]) // s[1] + 1, shape[2])
            out.append([])
        elif cls == "Flatten":
            shape = (int(np.prod(shape)),)
            out.append([])
        else:
            raise ValueError(f"make_weights does not know layer class {cls!r}")
    return out


def _conv_out(shape, kw):
    kh, kw_ = kw["kernel_size"]
    sh, sw = kw.get("strides", (1, 1))
    dh, dw = kw.get("dilation_rate", (1, 1))
    ekh, ekw = (kh - 1) * dh + 1, (kw_ - 1) * dw + 1
    if kw.get("padding", "valid") == "same":
        h, w = -(-shape[0] // sh), -(-shape[1] // sw)
    else:
        h, w = (shape[0] - ekh) // sh + 1, (shape[1] - ekw) // sw + 1
    return (h, w, kw["filters"])


def make_inputs(spec, n=4, seed=1):
    """Deterministic float32 inputs of shape (n, *input_shape), standard normal."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n,) + tuple(spec["input_shape"])).astype("float32")
