"""A text model (Embedding -> Conv1D -> global max pooling) on synthetic token data.

Each sequence is random filler tokens plus one key token at a random position: key token 2 means
class 0, key token 3 class 1. The key token alone decides the class, so a good explanation puts most
of its relevance on the key token's position. Token inputs are integers: the analyzers propagate
the relevance to the embedding vectors and sum it over the embedding axis, one value per token.

    python examples/text_tokens.py [--quick]
"""

import argparse
import sys
import time

VOCAB, LENGTH, KEYS = 40, 24, (2, 3)
METHODS = (
    ("input_t_gradient", {}),
    ("lrp.epsilon", {"epsilon": 0.01}),
    ("lrp.alpha_1_beta_0", {}),
)


def make_tokens(n, seed=0):
    """``(tokens (n, LENGTH) int32, labels (n,) int32, key positions (n,) int64)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(len(KEYS) + 2, VOCAB, (n, LENGTH)).astype("int32")
    y = rng.integers(0, len(KEYS), n).astype("int32")
    pos = rng.integers(0, LENGTH, n)
    tokens[np.arange(n), pos] = np.asarray(KEYS, "int32")[y]
    return tokens, y, pos


def build_model():
    import keras
    from keras import layers as L

    return keras.Sequential([
        keras.Input((LENGTH,), dtype="int32"),
        L.Embedding(VOCAB, 8),
        L.Conv1D(16, 3, padding="same", activation="relu"),
        L.GlobalMaxPooling1D(),
        L.Dense(len(KEYS), activation="softmax"),
    ], name="token_cnn")


def main(argv=None):
    """Trains the token model and checks where the relevance goes; prints and returns the numbers.

    Args:
        argv: command line arguments (``--quick``, ``--epochs``). Defaults to `None`
            (``sys.argv[1:]``).

    Returns:
        dict with the test ``accuracy`` and, per method, ``key_share`` (mean share of the positive
        relevance on the key token) and ``key_top1`` (fraction of sequences whose most relevant
        token is the key token), and ``seconds``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="less data, fewer epochs")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 8, 5 with --quick)")
    args = p.parse_args(argv)
    n_train = 2000 if args.quick else 6000
    epochs = args.epochs or (5 if args.quick else 8)
    t0 = time.perf_counter()

    import keras
    import numpy as np

    import keras_patterns as kp

    keras.utils.set_random_seed(0)
    x_train, y_train, _ = make_tokens(n_train, seed=0)
    x_test, y_test, pos = make_tokens(200, seed=1)
    model = build_model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    logits = kp.model_wo_softmax(model)

    rows = np.arange(len(x_test))
    key_share, key_top1 = {}, {}
    for name, kwargs in METHODS:
        r = kp.create_analyzer(name, logits, **kwargs).analyze(x_test)  # (n, LENGTH)
        positive = np.maximum(r, 0)
        key_share[name] = float(np.mean(positive[rows, pos] / np.maximum(positive.sum(1), 1e-12)))
        key_top1[name] = float(np.mean(r.argmax(1) == pos))
    out = {"accuracy": accuracy, "key_share": key_share, "key_top1": key_top1,
           "seconds": time.perf_counter() - t0}
    print(f"test accuracy {accuracy:.3f} ({n_train} sequences of {LENGTH} tokens, {epochs} epochs)")
    print("relevance on the key token (1 of 24 tokens): share of positive relevance, top-1 rate")
    for name, _ in METHODS:
        print(f"  {name:20s} {key_share[name]:.1%}  {key_top1[name]:.1%}")
    print(f"done in {out['seconds']:.1f}s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
