"""LRP analyzers: the general `lrp` analyzer with rule assignment as data, and its presets.

Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
Relevance Propagation", PLoS ONE 2015; Montavon et al., "Layer-Wise Relevance Propagation: An
Overview", 2019. Names and defaults follow iNNvestigate (2.1.2, plus 1.0.9's ``lrp.z_IB`` and
``lrp.epsilon_IB``); the deliberate differences are listed in docs/differences.md.
"""



from keras_patterns import validation
from keras_patterns.analyzers.config import UNSAVEABLE, jsonable
from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.analyzers.method import Method
from keras_patterns.registry import register, register_preset
from keras_patterns.graph.layers import (
    ACTIVATIONS,
    ATTENTION,
    BATCH_NORMALIZATION,
    CONV_LIKE,
    DENSE_LIKE,
    KERNEL_LAYERS,
    TRANSPARENT,
    Z_LAYERS,
    as_condition,
    node_condition,
)
from keras_patterns.rules import IDENTITY, Rule
from keras_patterns.rules import lrp as R
from keras_patterns.rules.modern import LRP_MODERN_RULES
from keras_patterns.rules.attention import CONSTANT_ATTENTION



# ------------------------------------------------------------------------------------ conditions
@node_condition
def is_input_layer(node, graph):
    """True for a kernel layer whose inputs all come from model inputs, possibly through
    Flatten/Permute/Reshape (and ZeroPadding, Dropout-like layers, Identity)."""
    if not isinstance(node.layer, KERNEL_LAYERS):
        return False
    stack, seen = list(node.inputs), set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in graph.inputs:
            continue
        producer = graph.producer(t)
        if producer is None or not isinstance(producer.layer, TRANSPARENT):
            return False
        stack.extend(producer.inputs)
    return True


def _kernel_condition(condition):
    """A user condition (see :func:`~keras_patterns.graph.layers.as_condition`) restricted to
    kernel layers."""
    return node_condition(as_condition(condition, restrict_to=KERNEL_LAYERS))


def _is_pair_list(rule):
    return all(isinstance(e, (tuple, list)) and len(e) == 2 and not isinstance(e[0], (str, Rule))
               and isinstance(e[1], (str, Rule)) for e in rule)


def _input_rule(spec):
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and not any(isinstance(s, str) for s in spec):
        return R.bounded_rule(*spec)
    return R.get_rule(spec, "input_layer_rule")


class _KernelAt:
    """Condition: the ``k``-th of ``n`` kernel layers in graph order (iNNvestigate's plain list of
    rules, one per kernel layer). Raises the length error when the graph has another count."""

    def __init__(self, k, n):
        self.k, self.n = k, n

    def __call__(self, node, graph):
        kernels = [m.name for m in graph.nodes if isinstance(m.layer, KERNEL_LAYERS)]
        if len(kernels) != self.n:
            raise ValueError(
                f"A plain list of rules needs one rule per kernel layer ({len(kernels)}: "
                f"{kernels}; the last rule goes to the first layer). Received: {self.n} rules"
            )
        return node.name == kernels[self.k]


def _kernel_rules(rule):
    """``(condition, Rule)`` pairs for LRP's ``rule`` argument."""
    if isinstance(rule, (str, Rule)):
        return [(KERNEL_LAYERS, R.get_rule(rule))]
    if isinstance(rule, (list, tuple)) and rule:
        if _is_pair_list(rule):
            return [(_kernel_condition(c), R.get_rule(r)) for c, r in rule]
        rules = [R.get_rule(r) for r in rule]
        return [(_KernelAt(k, len(rules)), r) for k, r in enumerate(reversed(rules))]
    raise TypeError(
        "`rule` must be a rule name, a Rule, a list of (condition, rule) pairs or a list of rules. "
        f"Received: rule={rule!r}"
    )


def _until_condition(model, idx):
    # Literally ``model.layers[: idx + 1]`` as iNNvestigate 2.1.2 does (checked against its
    # output): a Functional model lists its InputLayer first, a Sequential model does not.
    names = {layer.name for layer in list(model.layers)[: idx + 1]}
    return lambda node, graph: isinstance(node.layer, KERNEL_LAYERS) and node.key.split("/")[0] in names


#: LRP: start from the selected output value; relevance is conserved by design.
#: Modern layers (gates, LayerNormalization, Keras operations, LayerScale) get the rules of
#: :data:`~keras_patterns.rules.modern.LRP_MODERN_RULES`.
LRP_METHOD = Method(rules=LRP_MODERN_RULES, seed="value", conserves_relevance=True)
#: The presets for ConvNets warn on networks with non-ReLU activations.
_RELU_ADVISED = LRP_METHOD.replace(requires_relu="advise")


# -------------------------------------------------------------------------------------- analyzer
@register("lrp")
class LRP(ReverseAnalyzer):
    """Layer-wise relevance propagation with a configurable rule per kernel layer.

    Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
    Relevance Propagation", PLoS ONE 2015; Montavon et al., "Layer-Wise Relevance Propagation: An
    Overview", 2019.

    The backward pass starts from the selected output value. Rules apply to kernel layers (Dense,
    ConvND, DepthwiseConvND; SeparableConv is split in two, BatchNormalization folded into the
    preceding kernel layer); activations pass relevance unchanged; average pooling, Add, Subtract
    and Average distribute it in proportion to the contributions (Z rule); max pooling routes it to
    the winner; Concatenate, Flatten, padding, ... route it; stand-alone BatchNormalization gets
    ``bn_layer_rule``; Embedding sums it over the embedding axis. The registered LRP names
    (``lrp.epsilon``, ``lrp.sequential_preset_a``, ...) are presets of this class: data functions
    in this module.

    Args:
        model: a Keras model without softmax.
        rule: the rule of every kernel layer: a rule name (``"Z"``, ``"Epsilon"``, ``"Flat"``, ...,
            see :data:`keras_patterns.rules.lrp.LRP_RULES`) or a :class:`~keras_patterns.rules.Rule`;
            or a list of ``(condition, rule)`` pairs, first match wins, where a condition is a layer
            class, a tuple of classes, ``condition(layer)`` or ``condition(node, graph)``; or a plain
            list with one rule per kernel layer, used from the end as in iNNvestigate (the last
            element goes to the first kernel layer).
        input_layer_rule: rule of the input layers (kernel layers fed by the model input, possibly
            through Flatten/Reshape/Permute/ZeroPadding/Dropout): a rule name, a Rule, or a
            ``(low, high)`` tuple meaning the bounded rule Z^B. Defaults to `None`.
        until_layer_idx: with ``until_layer_rule``, the kernel layers among
            ``model.layers[0..idx]`` (inclusive; Keras lists the InputLayer first in Functional
            models but not in Sequential ones, and a nested model counts as one entry) get
            ``until_layer_rule``, as in iNNvestigate. Defaults to `None`.
        until_layer_rule: see ``until_layer_idx``. Defaults to `None`.
        bn_layer_rule: rule for stand-alone BatchNormalization layers (those not folded).
            Defaults to `None`, the Z rule with bias.
        method: the :class:`~keras_patterns.analyzers.method.Method` the rules are added to.
            Defaults to `None`, :data:`LRP_METHOD`.
        **kwargs: ``layer_map`` (pairs put before all of the above), ``neuron_selection_mode``,
            ``batch_size``, ``canonizers`` (see :class:`~keras_patterns.analyzers.ReverseAnalyzer`).

    Precedence: ``layer_map`` > ``input_layer_rule`` > ``until_layer_rule`` > ``rule``.
    ``analyzer.plan`` prints the resolved rule of every node.

    Raises:
        ValueError: missing rule, unknown rule name, a plain list with the wrong length, a kernel
            layer no condition matches, invalid rule parameters.

    Example:

    ```python
    analyzer = kp.create_analyzer(
        "lrp", model, rule=[(keras.layers.Dense, "Epsilon"), (keras.layers.Conv2D, "Alpha1Beta0")],
        input_layer_rule=(-1.0, 1.0))
    print(analyzer.plan)
    maps = analyzer.analyze(x)
    ```
    """

    method = LRP_METHOD

    def __init__(self, model, rule=None, input_layer_rule=None, until_layer_idx=None,
                 until_layer_rule=None, bn_layer_rule=None, method=None, **kwargs):
        if rule is None:
            raise ValueError(
                "Need LRP rule(s): a rule name, a Rule, a list of (condition, rule) pairs or a list of "
                f"rules. Received: rule=None. Valid names: {sorted(R.LRP_RULES)}"
            )
        if until_layer_idx is not None and until_layer_rule is None:
            raise ValueError(
                "`until_layer_idx` needs `until_layer_rule`. Received: until_layer_idx="
                f"{until_layer_idx!r}, until_layer_rule=None"
            )
        until_layer_idx = validation.non_negative_int("until_layer_idx", until_layer_idx, allow_none=True)
        if method is not None and not isinstance(method, Method):
            raise TypeError(f"`method` must be a keras_patterns Method. Received: {type(method).__name__}")
        pairs = []
        if input_layer_rule is not None:
            pairs.append((is_input_layer, _input_rule(input_layer_rule)))
        if until_layer_rule is not None:
            until = R.get_rule(until_layer_rule, "until_layer_rule")
            if until_layer_idx is not None:
                pairs.append((_until_condition(model, int(until_layer_idx)), until))
        pairs += _kernel_rules(rule)
        bn_rule = R.Z if bn_layer_rule is None else R.get_rule(bn_layer_rule, "bn_layer_rule")
        pairs += [(BATCH_NORMALIZATION, bn_rule), (Z_LAYERS, R.Z_NONKERNEL), (ACTIVATIONS, IDENTITY),
                  (ATTENTION, CONSTANT_ATTENTION)]
        base = LRP_METHOD if method is None else method
        # The analyzer's method: its arguments as rules, before the base method's own.
        self.method = base.replace(rules=tuple(pairs) + base.rules)
        super().__init__(model, **kwargs)
        self._config.update(
            rule=jsonable(rule), input_layer_rule=jsonable(input_layer_rule),
            until_layer_idx=None if until_layer_idx is None else int(until_layer_idx),
            until_layer_rule=jsonable(until_layer_rule), bn_layer_rule=jsonable(bn_layer_rule),
        )
        if method is not None:
            self._config["method"] = UNSAVEABLE

    def _build_mirror(self):
        super()._build_mirror()
        chosen = {id(r) for _, r in self._all_rules()}
        missing = [n.name for n in self.graph.nodes
                   if isinstance(n.layer, KERNEL_LAYERS) and id(self.plan[n.name]) not in chosen]
        if missing:
            raise ValueError(
                f"No (condition, rule) pair of `rule` matches the kernel layer(s) {missing}. "
                "Add a pair for them (e.g. (keras.layers.Dense, 'Epsilon'))."
            )


# --------------------------------------------------------------------------------------- presets
def _fixed_rule(rule):
    """Preset arguments of an LRP analyzer with one rule for kernel and BatchNormalization layers."""
    return dict(rule=rule, bn_layer_rule=rule)


@register_preset("lrp.z", LRP)
def z():
    """LRP-Z (Bach et al., PLoS ONE 2015) for every kernel and BatchNormalization layer."""
    return _fixed_rule("Z")


@register_preset("lrp.z_IB", LRP)
def z_ignore_bias():
    """LRP-Z without biases in the denominators (iNNvestigate 1.0.9's ``lrp.z_IB``)."""
    return _fixed_rule("ZIgnoreBias")


@register_preset("lrp.w_square", LRP)
def w_square():
    """The W**2 rule (Montavon et al., Pattern Recognition 2017) for every kernel and BN layer."""
    return _fixed_rule("WSquare")


@register_preset("lrp.flat", LRP)
def flat():
    """The flat rule (Lapuschkin et al. 2019) for every kernel and BatchNormalization layer."""
    return _fixed_rule("Flat")


@register_preset("lrp.z_plus", LRP)
def z_plus():
    """LRP-Z+ (Montavon et al., Pattern Recognition 2017) for every kernel and BN layer."""
    return _fixed_rule("ZPlus")


@register_preset("lrp.z_plus_fast", LRP)
def z_plus_fast():
    """LRP-Z+ for non-negative inputs (iNNvestigate's fast variant) for every kernel and BN layer."""
    return _fixed_rule("ZPlusFast")


@register_preset("lrp.epsilon", LRP)
def epsilon(epsilon=1e-7, bias=True):
    """LRP-epsilon (Bach et al., PLoS ONE 2015) for every kernel and BatchNormalization layer.

    Args:
        epsilon: the stabiliser, > 0. Defaults to `1e-7` (iNNvestigate's default).
        bias: include biases in the denominators. Defaults to `True`.

    Other arguments (``input_layer_rule``, ``until_layer_idx``, ``until_layer_rule``,
    ``layer_map``, ``neuron_selection_mode``, ``batch_size``) are :class:`LRP`'s.

    Raises:
        ValueError: if epsilon <= 0.
    """
    return _fixed_rule(R.epsilon_rule(epsilon, bias=bias))


@register_preset("lrp.epsilon_IB", LRP)
def epsilon_ignore_bias(epsilon=1e-7):
    """LRP-epsilon without biases (iNNvestigate 1.0.9's ``lrp.epsilon_IB``)."""
    return _fixed_rule(R.epsilon_rule(epsilon, bias=False))


@register_preset("lrp.alpha_beta", LRP, flags=LRP_METHOD)
def alpha_beta(alpha=None, beta=None, bias=True):
    """LRP-alpha-beta (Bach et al., PLoS ONE 2015) for every kernel and BatchNormalization layer.

    With ``bias=True`` the bias is split (b+ to the activator, b- to the inhibitor); iNNvestigate
    puts the full bias in both denominators (see docs/differences.md).

    Args:
        alpha: activator weight (>= 1); inferred from beta if None.
        beta: inhibitor weight (>= 0); inferred from alpha if None. alpha - beta must be 1.
        bias: include the split bias. Defaults to `True`.

    Raises:
        ValueError: alpha - beta != 1, alpha < 1, beta < 0, or neither given.
    """
    alpha, beta = R.check_alpha_beta(alpha, beta)
    return _fixed_rule(R.alpha_beta_rule(alpha, beta, bias=bias))


def _alpha_beta_preset(name, alpha, beta, bias):
    def preset():
        return _fixed_rule(R.alpha_beta_rule(alpha, beta, bias=bias))

    preset.__name__ = name.replace(".", "_")
    preset.__doc__ = f"LRP-alpha-beta with alpha={alpha}, beta={beta}" + ("" if bias else ", no bias") + "."
    return register_preset(name, LRP)(preset)


for _name, _a, _b, _bias in (("lrp.alpha_2_beta_1", 2, 1, True), ("lrp.alpha_2_beta_1_IB", 2, 1, False),
                             ("lrp.alpha_1_beta_0", 1, 0, True), ("lrp.alpha_1_beta_0_IB", 1, 0, False)):
    _alpha_beta_preset(_name, _a, _b, _bias)


@register_preset("lrp.gamma", LRP)
def gamma(gamma=0.25, bias=True):
    """LRP-gamma (Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019) for every
    kernel and BatchNormalization layer. Not in iNNvestigate.

    Args:
        gamma: boost of the positive weights, >= 0. Defaults to `0.25`.
        bias: include the (boosted) bias. Defaults to `True`.
    """
    return _fixed_rule(R.gamma_rule(gamma, bias=bias))


def _sequential(conv_rule, epsilon, bn_layer_rule, **extra):
    eps_rule = R.epsilon_rule(epsilon)
    return dict(rule=[(DENSE_LIKE, eps_rule), (CONV_LIKE, conv_rule)], bn_layer_rule=bn_layer_rule or eps_rule,
                method=_RELU_ADVISED, **extra)


@register_preset("lrp.sequential_preset_a", LRP)
def sequential_preset_a(epsilon=0.1, bn_layer_rule=None):
    """iNNvestigate's preset A for ConvNets: Dense layers LRP-epsilon (epsilon 0.1, with bias),
    convolutions LRP-alpha1beta0 (with the split bias); stand-alone BatchNormalization
    LRP-epsilon. Warns for non-ReLU networks.

    Args:
        epsilon: epsilon of the Dense layers. Defaults to `0.1`.
        bn_layer_rule: rule of stand-alone BatchNormalization layers. Defaults to `None`
            (LRP-epsilon).
    """
    return _sequential(R.ALPHA_1_BETA_0, epsilon, bn_layer_rule)


@register_preset("lrp.sequential_preset_b", LRP)
def sequential_preset_b(epsilon=0.1, bn_layer_rule=None):
    """iNNvestigate's preset B: as preset A, but convolutions use LRP-alpha2beta1 (with the split
    bias)."""
    return _sequential(R.ALPHA_2_BETA_1, epsilon, bn_layer_rule)


@register_preset("lrp.sequential_preset_a_flat", LRP)
def sequential_preset_a_flat(epsilon=0.1, bn_layer_rule=None):
    """Preset A with the flat rule on the input layers."""
    return _sequential(R.ALPHA_1_BETA_0, epsilon, bn_layer_rule, input_layer_rule="Flat")


@register_preset("lrp.sequential_preset_b_flat", LRP)
def sequential_preset_b_flat(epsilon=0.1, bn_layer_rule=None):
    """Preset B with the flat rule on the input layers."""
    return _sequential(R.ALPHA_2_BETA_1, epsilon, bn_layer_rule, input_layer_rule="Flat")


@register_preset("lrp.sequential_preset_b_flat_until_idx", LRP)
def sequential_preset_b_flat_until_idx(epsilon=0.1, bn_layer_rule=None):
    """Preset B with the flat rule on the input layers and on the kernel layers among
    ``model.layers[0..until_layer_idx]`` (pass ``until_layer_idx``)."""
    return _sequential(R.ALPHA_2_BETA_1, epsilon, bn_layer_rule, input_layer_rule="Flat",
                       until_layer_rule="Flat")
