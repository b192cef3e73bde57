"""Layer classification: which layers carry kernels, which are activations, which are supported."""

import keras

L = keras.layers

#: Kernel layers after canonization (SeparableConv is split into these two kinds).
DENSE = (L.Dense,)
CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
KERNEL_LAYERS = DENSE + CONV + DEPTHWISE

MAX_POOLING = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)
AVERAGE_POOLING = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
GLOBAL_MAX_POOLING = (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)
GLOBAL_AVERAGE_POOLING = (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
RESHAPING = (L.Flatten, L.Reshape, L.Permute)
PADDING_CROPPING = (
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
)
UPSAMPLING = (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)
#: Identity at analysis time.
NOISE_AND_DROPOUT = (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
)
MERGE = (L.Add, L.Subtract, L.Average, L.Concatenate)
ACTIVATIONS = (L.Activation, L.ReLU, L.LeakyReLU)
NORMALIZATION = (L.BatchNormalization,)
PREPROCESSING = (L.Rescaling, L.Normalization)
EMBEDDING = (L.Embedding,)

#: Every layer class with a built-in backward rule.
SUPPORTED_LAYERS = (
    KERNEL_LAYERS + SEPARABLE + MAX_POOLING + AVERAGE_POOLING + GLOBAL_MAX_POOLING
    + GLOBAL_AVERAGE_POOLING + RESHAPING + PADDING_CROPPING + UPSAMPLING + NOISE_AND_DROPOUT
    + MERGE + ACTIVATIONS + NORMALIZATION + PREPROCESSING + EMBEDDING + (L.InputLayer, L.Identity)
)


def activation_name(activation):
    """A readable name for an activation function ("relu", "linear", "softmax", ...)."""
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None)
    if name is None:
        name = type(activation).__name__
    return name


def layer_activation(layer):
    """The name of the non-linearity a layer applies, "linear" if none.

    Stand-alone ``ReLU`` layers count as "relu" only with their default arguments.
    """
    if isinstance(layer, L.ReLU):
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return "relu" if plain else "relu_variant"
    if isinstance(layer, L.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, L.Softmax):
        return "softmax"
    if hasattr(layer, "activation"):
        return activation_name(layer.activation)
    return "linear"


def is_relu(layer):
    """True for a stand-alone ReLU non-linearity (Activation("relu") or a plain ReLU layer)."""
    return isinstance(layer, (L.Activation, L.ReLU)) and layer_activation(layer) == "relu"


def is_rectifier(layer):
    """True for ReLU and its rectifying variants (zero for negative inputs): plain ReLU, ReLU6,
    and ReLU layers with ``max_value`` or ``threshold`` (but no negative slope)."""
    if is_relu(layer):
        return True
    if isinstance(layer, L.ReLU):
        return not layer.negative_slope
    return isinstance(layer, L.Activation) and layer_activation(layer) == "relu6"
