"""A zoo of small Keras models covering every supported layer kind, for tests.

Each entry builds a model with deterministic random weights (``keras.utils.set_random_seed``) and
has a function giving matching inputs. ``SLOW_ZOO`` holds keras.applications models built with
``weights=None`` at a small input size; tests over them are marked slow.
"""

import numpy as np
import keras
from keras import layers as L


def _randomize_bn(model, seed=0):
    """Gives every BatchNormalization non-trivial statistics (fresh ones are the identity)."""
    rng = np.random.default_rng(seed)

    def visit(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
            elif isinstance(layer, L.BatchNormalization):
                ws = layer.get_weights()
                new = []
                for w, v in zip(ws, layer.weights):
                    if "variance" in v.path:
                        new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
                    elif "gamma" in v.path:
                        new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
                    else:
                        new.append(rng.normal(0, 0.2, w.shape).astype(w.dtype))
                layer.set_weights(new)

    visit(model)
    return model


def dense_mlp():
    return keras.Sequential([
        keras.Input((10,)), L.Dense(16, activation="relu"), L.Dropout(0.5),
        L.Dense(12, activation="relu"), L.Dense(4),
    ], name="dense_mlp")


def dense_rank3():
    inp = keras.Input((5, 4))
    h = L.Dense(6, activation="relu")(inp)
    h = L.Dense(3, activation="relu")(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(3)(h), name="dense_rank3")


def conv1d():
    inp = keras.Input((16, 3))
    h = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(inp)
    h = L.MaxPooling1D(2)(h)
    h = L.Conv1D(5, 3, strides=2, padding="same")(h)
    h = L.ReLU()(h)
    h = L.AveragePooling1D(2)(h)
    h = L.UpSampling1D(2)(h)
    h = L.ZeroPadding1D(1)(h)
    h = L.Cropping1D((0, 1))(h)
    h = L.GlobalAveragePooling1D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="conv1d")


def conv2d_pool():
    inp = keras.Input((12, 12, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = L.AveragePooling2D(2)(h)
    h = L.Conv2D(6, 3, strides=2, padding="valid")(h)
    h = L.Activation("relu")(h)
    h = L.MaxPooling2D(2, padding="same")(h)
    h = L.GlobalMaxPooling2D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="conv2d_pool")


def conv3d():
    inp = keras.Input((6, 6, 6, 2))
    h = L.Conv3D(3, 2, activation="relu")(inp)
    h = L.MaxPooling3D(2)(h)
    h = L.UpSampling3D(2)(h)
    h = L.ZeroPadding3D(1)(h)
    h = L.Cropping3D(1)(h)
    h = L.AveragePooling3D(2)(h)
    h = L.Conv3D(4, 1, activation="relu")(h)
    h = L.GlobalMaxPooling3D()(h)
    h2 = L.GlobalAveragePooling3D()(inp)
    h = L.Concatenate()([h, h2])
    return keras.Model(inp, L.Dense(3)(h), name="conv3d")


def depthwise_separable():
    inp = keras.Input((10, 10, 3))
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(inp)
    h = L.SeparableConv2D(5, 3, strides=2, activation="relu")(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(3)(h), name="depthwise_separable")


def depthwise_separable_1d():
    inp = keras.Input((12, 3))
    h = L.DepthwiseConv1D(3, depth_multiplier=2, activation="relu")(inp)
    h = L.SeparableConv1D(4, 3, dilation_rate=2, activation="relu")(h)
    h = L.GlobalMaxPooling1D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="depthwise_separable_1d")


def batchnorm():
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same")(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h2 = L.Conv2D(4, 3, padding="same", activation="relu")(h)
    h2 = L.BatchNormalization()(h2)  # after the activation: stays stand-alone
    h = L.Add()([h, h2])
    h = L.BatchNormalization()(h)  # after an Add: stand-alone
    h = L.Flatten()(h)
    h = L.Dense(6)(h)
    h = L.BatchNormalization()(h)
    h = L.Activation("relu")(h)
    return _randomize_bn(keras.Model(inp, L.Dense(3)(h), name="batchnorm"))


def reshaping():
    inp = keras.Input((6, 6, 2))
    h = L.ZeroPadding2D(1)(inp)
    h = L.Conv2D(3, 3, activation="relu")(h)
    h = L.Cropping2D(((1, 0), (0, 1)))(h)
    h = L.UpSampling2D(2)(h)
    h = L.SpatialDropout2D(0.3)(h)
    h = L.GaussianNoise(0.5)(h)
    h = L.Permute((2, 1, 3))(h)
    h = L.Reshape((10, 30))(h)
    h = L.Dense(4, activation="relu")(h)
    h = L.Flatten()(h)
    h = L.Dropout(0.2)(h)
    return keras.Model(inp, L.Dense(3)(h), name="reshaping")


def merges():
    inp = keras.Input((8,))
    a = L.Dense(6, activation="relu")(inp)
    b = L.Dense(6, activation="relu")(inp)
    c = L.Dense(6, activation="relu")(inp)
    h = L.Concatenate()([L.Add()([a, b]), L.Subtract()([b, c]), L.Average()([a, c])])
    return keras.Model(inp, L.Dense(3)(h), name="merges")


def preprocessing():
    inp = keras.Input((6,))
    h = L.Rescaling(0.5, offset=0.1)(inp)
    norm = L.Normalization(mean=np.linspace(-1, 1, 6), variance=np.linspace(0.5, 2, 6))
    h = norm(h)
    h = L.Dense(8, activation="relu")(h)
    return keras.Model(inp, L.Dense(3)(h), name="preprocessing")


def embedding():
    inp = keras.Input((7,), dtype="int32")
    h = L.Embedding(20, 4)(inp)
    h = L.Conv1D(5, 3, activation="relu")(h)
    h = L.GlobalMaxPooling1D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="embedding")


def residual():
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    r = L.Conv2D(4, 3, padding="same", use_bias=False)(h)
    r = L.BatchNormalization()(r)
    r = L.ReLU()(r)
    r = L.Conv2D(4, 3, padding="same", use_bias=False)(r)
    r = L.BatchNormalization()(r)
    h = L.Add()([h, r])
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    return _randomize_bn(keras.Model(inp, L.Dense(3)(h), name="residual"))


def nested():
    b_in = keras.Input((8, 8, 2))
    b = L.Conv2D(4, 3, activation="relu")(b_in)
    b = L.MaxPooling2D(2)(b)
    backbone = keras.Model(b_in, b, name="backbone")
    block = keras.Sequential([keras.Input((3, 3, 4)), L.Conv2D(4, 1, activation="relu"), L.Flatten()],
                             name="block")
    inp = keras.Input((8, 8, 2))
    h = block(backbone(inp))
    return keras.Model(inp, L.Dense(3)(h), name="nested")


def multi_input():
    img = keras.Input((6, 6, 2), name="image")
    vec = keras.Input((4,), name="vector")
    h = L.Conv2D(3, 3, activation="relu")(img)
    h = L.Flatten()(h)
    v = L.Dense(5, activation="relu")(vec)
    h = L.Concatenate()([h, v])
    return keras.Model([img, vec], L.Dense(3)(h), name="multi_input")


def shared_fanout():
    inp = keras.Input((6,))
    shared = L.Dense(6, activation="relu", name="shared_dense")
    h1 = shared(inp)
    h2 = shared(h1)  # the same layer called twice
    h = L.Add()([h1, h2, h1])  # h1 fans out three times
    return keras.Model(inp, L.Dense(3)(h), name="shared_fanout")


def nonrelu():
    return keras.Sequential([
        keras.Input((6,)), L.Dense(8, activation="tanh"), L.Dense(6), L.LeakyReLU(0.2), L.Dense(3),
    ], name="nonrelu")


# ------------------------------------------------------------------ models only gradients explain
# (issue 10): layers without a backward rule and a model without a layer graph. The gradient family
# differentiates through them; the rule-based analyzers refuse them, naming the gradient family.


def recurrent():
    """A float sequence through LSTM, then a bidirectional GRU (tanh/sigmoid gates, no rule)."""
    inp = keras.Input((6, 3))
    h = L.LSTM(5, return_sequences=True)(inp)
    h = L.Bidirectional(L.GRU(3))(h)
    return keras.Model(inp, L.Dense(3)(h), name="recurrent")


def lstm_text():
    """Token ids -> Embedding (mask_zero: token 0 is padding) -> LSTM -> logits."""
    inp = keras.Input((7,), dtype="int32")
    h = L.Embedding(20, 4, mask_zero=True)(inp)
    h = L.LSTM(5)(h)
    return keras.Model(inp, L.Dense(3)(h), name="lstm_text")


def lambda_layer():
    """A Lambda layer (t * tanh(t) + t / 2) and a Keras operation used as a layer (ops.mean)."""
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu")(inp)
    h = L.Lambda(lambda t: t * keras.ops.tanh(t) + 0.5 * t)(h)
    h = h - keras.ops.mean(h, axis=-1, keepdims=True)
    return keras.Model(inp, L.Dense(3)(h), name="lambda_layer")


@keras.saving.register_keras_serializable(package="keras_patterns_zoo")
class GatedScale(L.Layer):
    """A custom layer with a weight: ``x * sigmoid(alpha * x)``, one learned ``alpha`` per channel
    (a swish with a learned slope)."""

    def build(self, input_shape):
        self.alpha = self.add_weight(
            shape=(input_shape[-1],), initializer=keras.initializers.RandomUniform(0.5, 2.0), name="alpha"
        )

    def call(self, x):
        return x * keras.ops.sigmoid(self.alpha * x)


def custom_layer():
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same")(inp)
    h = GatedScale()(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="custom_layer")


@keras.saving.register_keras_serializable(package="keras_patterns_zoo")
class SubclassedNet(keras.Model):
    """A subclassed model (no layer graph): conv, global pooling, a sigmoid gate, logits."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, activation="relu")
        self.pool = L.GlobalAveragePooling2D()
        self.gate = L.Dense(4, activation="sigmoid")
        self.head = L.Dense(3)

    def call(self, x):
        h = self.pool(self.conv(x))
        return self.head(h * self.gate(h))


def subclassed():
    model = SubclassedNet(name="subclassed")
    model(np.zeros((1, 8, 8, 2), keras.config.floatx()))  # builds it (records its input shape)
    return model


def conv2d_transpose():
    inp = keras.Input((6, 6, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu")(h)
    h = L.Conv2DTranspose(2, 2, padding="valid")(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(3)(h), name="conv2d_transpose")


#: The zoo models of issue 10 (recurrent, Lambda, custom layers, a subclassed model,
#: Conv2DTranspose): explained by the gradient family only (until rules for them exist).
ANY_MODEL_ZOO = ("recurrent", "lstm_text", "lambda_layer", "custom_layer", "subclassed", "conv2d_transpose")

class ChannelScale(L.Layer):
    """``x * gamma`` with one weight vector, as ConvNeXt's ``LayerScale`` (detected without
    registration by ``keras_patterns.graph.layers.is_channel_scale``)."""

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],), initializer=keras.initializers.RandomUniform(0.5, 1.5)
        )

    def call(self, x):
        return x * self.gamma


def modern_blocks(bias=True, name="modern_blocks"):
    """Conv -> LayerNorm -> GELU -> squeeze-excitation (swish, sigmoid, ``Multiply``) -> residual
    branch (GroupNorm, a LayerScale-like ``ChannelScale``, ``x + y``) -> GLU gate written as
    ``h * keras.activations.sigmoid(g)`` -> ``keras.ops.mean`` -> Dense(swish) -> UnitNormalization
    -> ``keras.activations.gelu``. With ``bias=False`` every layer is bias- and offset-free (for the
    conservation identities). The kernel layers on the relevance path have fan-ins of 12 or more:
    alpha-beta drops the relevance of a unit whose contributions all have one sign (an empty
    activator or inhibitor), which with random signs happens with probability 2**-fan_in per unit
    (a ReLU network gives such units no relevance; here LayerNorm and the proportional split of
    ``x + y`` can)."""
    inp = keras.Input((6, 6, 3))
    h = L.Conv2D(16, 3, padding="same", use_bias=bias)(inp)
    h = L.LayerNormalization(center=bias)(h)
    h = L.Activation("gelu")(h)
    s = L.GlobalAveragePooling2D(keepdims=True)(h)
    s = L.Conv2D(4, 1, activation="swish", use_bias=bias)(s)
    s = L.Conv2D(16, 1, activation="sigmoid", use_bias=bias)(s)
    h = L.Multiply()([h, s])
    r = L.Conv2D(16, 3, padding="same", use_bias=bias)(h)
    r = L.GroupNormalization(groups=4, center=bias)(r)
    r = ChannelScale()(r)
    h = h + r
    g = L.Dense(16, use_bias=bias)(h)
    h = h * keras.activations.sigmoid(g)
    h = keras.ops.mean(h, axis=[1, 2])
    h = L.Dense(12, activation="swish", use_bias=bias)(h)
    h = L.UnitNormalization()(h)
    h = keras.activations.gelu(h)
    return keras.Model(inp, L.Dense(3, use_bias=bias)(h), name=name)


def modern_bias_free():
    return modern_blocks(bias=False, name="modern_bias_free")

def conv_transpose():
    inp = keras.Input((4, 4, 3))
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(inp)
    h = L.BatchNormalization()(h)  # folded into the transposed convolution
    h = L.Conv2DTranspose(3, 2, padding="valid")(h)
    h = L.ReLU()(h)
    h = L.Conv1DTranspose(2, 3, strides=2)(L.Reshape((81, 3))(h))
    h = L.GlobalMaxPooling1D()(h)
    return _randomize_bn(keras.Model(inp, L.Dense(3)(h), name="conv_transpose"))


def attention():
    """A small ViT without LayerNormalization: patch embedding, MultiHeadAttention (residual), a
    ReLU MLP (residual), Keras' Attention, mean pooling."""
    inp = keras.Input((8, 8, 3))
    h = L.Reshape((4, 8))(L.Conv2D(8, 4, strides=4)(inp))
    h = L.Add()([h, L.MultiHeadAttention(2, 4)(h, h)])
    m = L.Dense(16, activation="relu")(h)
    h = L.Add()([h, L.Dense(8)(m)])
    h = L.Attention(use_scale=True)([h, h], use_causal_mask=True)
    h = L.GlobalAveragePooling1D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="attention")


def vit(bias=True, name="vit"):
    """A small ViT from Keras layers: Conv2D patch embedding, Reshape to tokens, pre-norm blocks
    (LayerNormalization -> MultiHeadAttention, residual; LayerNormalization -> GELU MLP, residual),
    a final LayerNormalization, mean pooling over the tokens and a Dense head. With ``bias=False``
    every Dense/Conv/attention projection is bias-free and LayerNormalization has no offset (for
    the conservation identities)."""
    inp = keras.Input((8, 8, 3))
    h = L.Reshape((4, 16))(L.Conv2D(16, 4, strides=4, use_bias=bias)(inp))
    a = L.LayerNormalization(center=bias)(h)
    h = L.Add()([h, L.MultiHeadAttention(2, 8, use_bias=bias)(a, a)])
    m = L.LayerNormalization(center=bias)(h)
    m = L.Dense(32, activation="gelu", use_bias=bias)(m)
    h = L.Add()([h, L.Dense(16, use_bias=bias)(m)])
    h = L.GlobalAveragePooling1D()(L.LayerNormalization(center=bias)(h))
    return keras.Model(inp, L.Dense(3, use_bias=bias)(h), name=name)


def vit_bias_free():
    return vit(bias=False, name="vit_bias_free")


ZOO = {
    f.__name__: f
    for f in [
        dense_mlp, dense_rank3, conv1d, conv2d_pool, conv3d, depthwise_separable,
        depthwise_separable_1d, batchnorm, reshaping, merges, preprocessing, embedding, residual,
        nested, multi_input, shared_fanout, nonrelu, modern_blocks,
        recurrent, lstm_text, lambda_layer, custom_layer, subclassed, conv2d_transpose,
        conv_transpose, attention, vit,
    ]
}
#: Built by name like the zoo but not in the contract matrix.
EXTRA = {"modern_bias_free": modern_bias_free, "vit_bias_free": vit_bias_free}


def _app(fn, size, **kw):
    def build():
        m = fn(weights=None, input_shape=(size, size, 3), classes=5, classifier_activation=None, **kw)
        return _randomize_bn(m)

    build.__name__ = fn.__name__.lower()
    return build


SLOW_ZOO = {
    "vgg16": _app(keras.applications.VGG16, 32),
    "resnet50": _app(keras.applications.ResNet50, 32),
    "mobilenetv2": _app(keras.applications.MobileNetV2, 32),
    "densenet121": _app(keras.applications.DenseNet121, 32),
    # issue 10: squeeze-excitation Multiply, swish / hard-swish, LayerNormalization, GELU,
    # LayerScale, Keras operations as layers.
    "efficientnetb0": _app(keras.applications.EfficientNetB0, 32),
    "mobilenetv3small": _app(keras.applications.MobileNetV3Small, 32),
    "convnexttiny": _app(keras.applications.ConvNeXtTiny, 32),
}
#: The applications of issue 10 (squeeze-excitation, swish / hard-swish / GELU, LayerNormalization,
#: LayerScale, Keras operations): explained by every method family except the ReLU-only ones.
ANY_MODEL_APPS = ("efficientnetb0", "mobilenetv3small", "convnexttiny")


def build(name, seed=0):
    """Builds zoo model ``name`` with deterministic weights."""
    keras.utils.set_random_seed(seed)
    return {**ZOO, **SLOW_ZOO, **EXTRA}[name]()


_CACHE = {}


def cached(name):
    """The model ``build(name)``, built once per test session (for read-only use: the contract
    test checks after every analyzer that the model's weights and config are unchanged)."""
    if name not in _CACHE:
        _CACHE[name] = build(name)
    return _CACHE[name]


_CACHE64 = {}


def cached_float64(name):
    """A float64 twin of ``cached(name)``: the same architecture built under the ``"float64"`` dtype
    policy, holding the float32 model's weights exactly (float32 -> float64 is exact)."""
    if name not in _CACHE64:
        model = cached(name)
        previous, floatx = keras.config.dtype_policy(), keras.config.floatx()
        keras.config.set_dtype_policy("float64")
        keras.config.set_floatx("float64")  # the model's Input too, not only its layers
        try:
            keras.utils.set_random_seed(0)
            twin = {**ZOO, **SLOW_ZOO, **EXTRA}[name]()
        finally:
            keras.config.set_dtype_policy(previous)
            keras.config.set_floatx(floatx)
        twin.set_weights([w.astype("float64") for w in model.get_weights()])
        _CACHE64[name] = twin
    return _CACHE64[name]


def input_specs(model):
    """``[(shape, dtype), ...]`` of a model's inputs; for a subclassed model (no ``inputs``),
    the shapes it was built with, read as the analyzers read them."""
    if hasattr(model, "inputs"):
        return [(tuple(t.shape), str(t.dtype)) for t in model.inputs]
    from keras_patterns.graph import walk

    graph = walk(model, opaque=True)
    return [(graph.tensors[t].shape, graph.tensors[t].dtype) for t in graph.inputs]


def inputs_for(model, n=3, seed=0):
    """Deterministic inputs for a model: standard normal floats, token ids for int inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for shape, dtype in input_specs(model):
        shape = (n,) + tuple(shape[1:])
        if "int" in dtype:
            out.append(rng.integers(0, 20, shape).astype("int32"))
        else:
            out.append(rng.normal(0, 1, shape).astype("float32"))
    return out[0] if len(out) == 1 else out
