"""Shared setup of the make_shapes PatternNet study (docs/evaluation_signal.md).

The demo CNN (keras_patterns.demo.build_model) trained on make_shapes(6000, seed=0) for 4 epochs
(batch 64, seed 0), cached under /tmp/kp_evalrho/ so that every experiment script reuses it.
"""

import os

import numpy as np

CACHE = os.environ.get("KP_STUDY_CACHE", "/tmp/kp_evalrho")


def data(distractor=1.0, n_train=6000, n_test=500, n_v=3000):
    """(x_train, y_train, s_train), (x_v, y_v, s_v), (x_test, y_test, s_test) of make_shapes."""
    from keras_patterns.datasets import make_shapes

    return (make_shapes(n_train, seed=0, distractor=distractor),
            make_shapes(n_v, seed=2, distractor=distractor),
            make_shapes(n_test, seed=1, distractor=distractor))


def trained_model(distractor=1.0, epochs=4, tag="", maker=None):
    """The demo CNN trained on the shapes (cached); returns (model, logits_model, accuracy)."""
    import keras

    import keras_patterns as kp
    from keras_patterns.demo import build_model

    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"shapes_cnn_d{distractor}{tag}.keras")
    (x, y, _), _, (xt, yt, _) = data(distractor) if maker is None else maker()
    if os.path.exists(path):
        model = keras.saving.load_model(path)
    else:
        keras.utils.set_random_seed(0)
        model = build_model(size=x.shape[1])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
        model.save(path)
    acc = float(np.mean(model.predict(xt, verbose=0).argmax(1) == yt))
    return model, kp.model_wo_softmax(model), acc


def pearson_per_image(maps, signal):
    """Pearson correlation of each map with its signal image (over pixels), shape (n,)."""
    m = maps.reshape(len(maps), -1).astype("float64")
    s = signal.reshape(len(signal), -1).astype("float64")
    m = m - m.mean(1, keepdims=True)
    s = s - s.mean(1, keepdims=True)
    den = np.sqrt((m * m).sum(1) * (s * s).sum(1))
    return np.where(den > 0, (m * s).sum(1) / np.where(den > 0, den, 1.0), 0.0)
