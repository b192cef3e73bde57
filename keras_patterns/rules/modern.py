"""The (condition, Rule) pairs that the method families add for modern layers.

Put after a method's own pairs (the first match wins), so a ``layer_map`` or the method's rules
override them. Every layer here is listed in docs/support.md with its rule and paper.
"""

from keras_patterns.graph.layers import (
    ACTIVATION_OP_CLASSES,
    PER_SAMPLE_NORMALIZATION,
    is_channel_scale,
    is_scalar_op,
)
from keras_patterns.rules.gate import (
    AMBIGUOUS_PRODUCT,
    gate_rule,
    gate_signal_rule,
    gated,
    is_ambiguous_product,
)
from keras_patterns.rules.lrp import Z_NONKERNEL
from keras_patterns.rules.normalization import NORM_CONSTANT_GRADIENT, NORM_Z
from keras_patterns.rules.structural import GRADIENT, IDENTITY

#: LRP and Deep Taylor: constant scales (``x * 0.5``) by the Z rule (= identity), gates by
#: signal-take-all, per-sample normalizations by the z rule of their constant-statistics map,
#: activation operations and per-channel scales (ConvNeXt's LayerScale) by the identity.
LRP_MODERN_RULES = (
    (is_scalar_op, Z_NONKERNEL),
    (gated(0), gate_rule(0)),
    (gated(1), gate_rule(1)),
    (is_ambiguous_product, AMBIGUOUS_PRODUCT),
    (PER_SAMPLE_NORMALIZATION, NORM_Z),
    (ACTIVATION_OP_CLASSES, IDENTITY),
    (is_channel_scale, IDENTITY),
)

#: Deconvnet, guided backprop, PatternNet, PatternAttribution: gates constant (``r * gate`` to the
#: signal), normalizations with constant statistics; everything else linear by its gradient.
SIGNAL_MODERN_RULES = (
    (gated(0), gate_signal_rule(0)),
    (gated(1), gate_signal_rule(1)),
    (is_ambiguous_product, AMBIGUOUS_PRODUCT),
    (PER_SAMPLE_NORMALIZATION, NORM_CONSTANT_GRADIENT),
    (is_channel_scale, GRADIENT),
)
