"""Rules that need no parameters: the plain gradient, ReLU variants, identity, Embedding."""

import tensorflow as tf

from keras_patterns.rules.base import Rule


def _gradient(ctx, rs):
    return ctx.vjp(rs)


def _identity(ctx, rs):
    return [rs[0]]


def _deconvnet_relu(ctx, rs):
    return [tf.nn.relu(rs[0])]


def _guided_relu(ctx, rs):
    # relu(r) through the rectifier's own gradient: relu(r) * [x > 0] for a ReLU (TensorFlow's
    # ReLU gradient is 0 at 0), and the clipped range too for ReLU6.
    return ctx.vjp([tf.nn.relu(rs[0])])


def _embedding_sum(ctx, rs):
    return [tf.reduce_sum(rs[0], axis=-1)]


def _embedding_times_input(ctx, rs):
    return [tf.reduce_sum(rs[0] * ctx.ys[0], axis=-1)]


#: The layer's own gradient (TensorFlow's, e.g. max-pooling routes to the arg-max, ReLU gates by x > 0).
GRADIENT = Rule("gradient", _gradient)
#: Passes the signal unchanged (LRP through activations).
IDENTITY = Rule("identity", _identity)
#: Deconvnet ReLU (Zeiler & Fergus 2014, arXiv 1311.2901): relu of the backward signal, forward mask ignored.
DECONVNET_RELU = Rule("deconvnet_relu", _deconvnet_relu)
#: Guided backprop ReLU (Springenberg et al. 2015, arXiv 1412.6806): relu(r) * [x > 0] (for
#: rectifier variants, relu(r) times the variant's gradient).
GUIDED_RELU = Rule("guided_relu", _guided_relu)
#: Embedding: the signal on the embedding vectors summed over the embedding axis (one value per token).
EMBEDDING_SUM = Rule("embedding_sum", _embedding_sum)
#: Embedding under input x gradient: sum over the embedding axis of signal * embedding vector.
EMBEDDING_TIMES_INPUT = Rule("embedding_times_input", _embedding_times_input)
