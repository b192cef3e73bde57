"""LRP analyzers: the general `lrp` analyzer with rule assignment as data, and its presets.

Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
Relevance Propagation", PLoS ONE 2015; Montavon et al., "Layer-Wise Relevance Propagation: An
Overview", 2019. Names and defaults follow iNNvestigate (2.1.2, plus 1.0.9's ``lrp.z_IB`` and
``lrp.epsilon_IB``); the deliberate differences are listed in docs/differences.md.
"""

import warnings

import numpy as np

from keras_patterns import validation
from keras_patterns.analyzers.base import ReverseAnalyzer
from keras_patterns.analyzers.registry import register, register_alias
from keras_patterns.graph.checks import non_relu_nodes
from keras_patterns.graph.layers import (
    ACTIVATIONS,
    BATCH_NORMALIZATION,
    CONV_LIKE,
    DENSE,
    KERNEL_LAYERS,
    TRANSPARENT,
    Z_LAYERS,
    as_condition,
    node_condition,
)
from keras_patterns.rules import IDENTITY, Rule
from keras_patterns.rules import lrp as R
from keras_patterns._warnings import user_stacklevel



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


_UNSAVEABLE = "<not saveable>"


def _jsonable(v):
    """A JSON-serialisable copy of a constructor argument (Rule objects and conditions are marked)."""
    if isinstance(v, Rule) or isinstance(v, type) or callable(v):
        return _UNSAVEABLE
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    return v


def _has_unsaveable(v):
    if isinstance(v, list):
        return any(_has_unsaveable(e) for e in v)
    return isinstance(v, str) and v == _UNSAVEABLE


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
    ``bn_layer_rule``; Embedding sums it over the embedding axis.

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
        **kwargs: ``neuron_selection_mode``, ``batch_size``.

    Precedence: ``input_layer_rule`` > ``until_layer_rule`` > ``rule``. ``analyzer.plan`` prints
    the resolved rule of every node.

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

    head = "value"
    #: Warn when the model has non-ReLU non-linearities (presets).
    _relu_advised = False

    def __init__(self, model, rule=None, input_layer_rule=None, until_layer_idx=None,
                 until_layer_rule=None, bn_layer_rule=None, **kwargs):
        if rule is None:
            raise ValueError(
                "Need LRP rule(s): a rule name, a Rule, a list of (condition, rule) pairs or a list of "
                f"rules. Received: rule=None. Valid names: {sorted(R.LRP_RULES)}"
            )
        self._rule_spec = self._parse_rule(rule)
        self._input_rule = None if input_layer_rule is None else _input_rule(input_layer_rule)
        if until_layer_idx is not None and until_layer_rule is None:
            raise ValueError(
                "`until_layer_idx` needs `until_layer_rule`. Received: until_layer_idx="
                f"{until_layer_idx!r}, until_layer_rule=None"
            )
        self._until_idx = validation.non_negative_int("until_layer_idx", until_layer_idx, allow_none=True)
        self._until_rule = None if until_layer_rule is None else R.get_rule(until_layer_rule, "until_layer_rule")
        self._bn_rule = R.Z if bn_layer_rule is None else R.get_rule(bn_layer_rule, "bn_layer_rule")
        super().__init__(model, **kwargs)
        self._config.update(
            rule=_jsonable(rule), input_layer_rule=_jsonable(input_layer_rule),
            until_layer_idx=None if until_layer_idx is None else int(until_layer_idx),
            until_layer_rule=_jsonable(until_layer_rule), bn_layer_rule=_jsonable(bn_layer_rule),
        )
        if self._relu_advised:
            bad = non_relu_nodes(self.graph)
            if bad:
                warnings.warn(
                    f"{type(self).__name__} is not advised for networks with non-ReLU activations. "
                    f"Received: {', '.join(bad)}.", stacklevel=user_stacklevel(),
                )

    @staticmethod
    def _parse_rule(rule):
        if isinstance(rule, (str, Rule)):
            return ("all", R.get_rule(rule))
        if isinstance(rule, (list, tuple)) and rule:
            if _is_pair_list(rule):
                return ("pairs", [(_kernel_condition(c), R.get_rule(r)) for c, r in rule])
            return ("list", [R.get_rule(r) for r in rule])
        raise TypeError(
            "`rule` must be a rule name, a Rule, a list of (condition, rule) pairs or a list of rules. "
            f"Received: rule={rule!r}"
        )

    # ------------------------------------------------------------------------------- rule lists
    def _top_level_names(self, idx):
        # Literally ``model.layers[: idx + 1]`` as iNNvestigate 2.1.2 does (checked against its
        # output): a Functional model lists its InputLayer first, a Sequential model does not.
        return {layer.name for layer in list(self.model.layers)[: idx + 1]}

    def _kernel_rules(self):
        kind, spec = self._rule_spec
        kernels = [n for n in self.graph.nodes if isinstance(n.layer, KERNEL_LAYERS)]
        if kind == "all":
            return [(KERNEL_LAYERS, spec)]
        if kind == "list":
            if len(spec) != len(kernels):
                raise ValueError(
                    f"A plain list of rules needs one rule per kernel layer ({len(kernels)}: "
                    f"{[n.name for n in kernels]}; the last rule goes to the first layer). "
                    f"Received: {len(spec)} rules"
                )
            return [
                ((lambda node, graph, name=n.name: node.name == name), r)
                for n, r in zip(kernels, reversed(spec))
            ]
        return list(spec)

    def _rule_list(self):
        pairs = []
        if self._input_rule is not None:
            pairs.append((is_input_layer, self._input_rule))
        if self._until_rule is not None and self._until_idx is not None:
            names = self._top_level_names(self._until_idx)
            pairs.append((
                lambda node, graph: isinstance(node.layer, KERNEL_LAYERS)
                and node.key.split("/")[0] in names,
                self._until_rule,
            ))
        pairs += self._kernel_rules()
        pairs += [(BATCH_NORMALIZATION, self._bn_rule), (Z_LAYERS, R.Z_NONKERNEL), (ACTIVATIONS, IDENTITY)]
        return pairs

    def _build_mirror(self):
        super()._build_mirror()
        if self._rule_spec[0] == "pairs":
            lrp_rules = {id(r) for _, r in self._rule_list()}
            missing = [n.name for n in self.graph.nodes
                       if isinstance(n.layer, KERNEL_LAYERS) and id(self.plan[n.name]) not in lrp_rules]
            if missing:
                raise ValueError(
                    f"No (condition, rule) pair of `rule` matches the kernel layer(s) {missing}. "
                    "Add a pair for them (e.g. (keras.layers.Dense, 'Epsilon'))."
                )

    def get_config(self):
        config = super().get_config()
        bad = sorted(k for k, v in config.items() if _has_unsaveable(v))
        if bad:
            raise ValueError(
                f"The analyzer's {bad} hold Rule objects, layer classes or conditions, which cannot be "
                "saved. Use rule names (strings) to make the analyzer saveable."
            )
        return config


class _FixedRuleLRP(LRP):
    """An LRP analyzer whose kernel and BatchNormalization rule is fixed by the class."""

    def __init__(self, model, rule, **kwargs):
        super().__init__(model, rule=rule, bn_layer_rule=rule, **kwargs)
        for k in ("rule", "bn_layer_rule"):
            self._config.pop(k, None)


register_alias("lrp.z", LRP, rule="Z", bn_layer_rule="Z")
register_alias("lrp.z_IB", LRP, rule="ZIgnoreBias", bn_layer_rule="ZIgnoreBias")
register_alias("lrp.w_square", LRP, rule="WSquare", bn_layer_rule="WSquare")
register_alias("lrp.flat", LRP, rule="Flat", bn_layer_rule="Flat")
register_alias("lrp.z_plus", LRP, rule="ZPlus", bn_layer_rule="ZPlus")
register_alias("lrp.z_plus_fast", LRP, rule="ZPlusFast", bn_layer_rule="ZPlusFast")


@register("lrp.epsilon")
class LRPEpsilon(_FixedRuleLRP):
    """LRP-epsilon (Bach et al., PLoS ONE 2015) for every kernel and BatchNormalization layer.

    Args:
        model: a Keras model without softmax.
        epsilon: the stabiliser, > 0. Defaults to `1e-7` (iNNvestigate's default).
        bias: include biases in the denominators. Defaults to `True`.
        **kwargs: ``input_layer_rule``, ``until_layer_idx``, ``until_layer_rule``,
            ``neuron_selection_mode``, ``batch_size``.

    Raises:
        ValueError: if epsilon <= 0.
    """

    def __init__(self, model, epsilon=1e-7, bias=True, **kwargs):
        super().__init__(model, R.epsilon_rule(epsilon, bias=bias), **kwargs)
        self._config.update(epsilon=float(epsilon), bias=bool(bias))


register_alias("lrp.epsilon_IB", LRPEpsilon, bias=False)


@register("lrp.alpha_beta")
class LRPAlphaBeta(_FixedRuleLRP):
    """LRP-alpha-beta (Bach et al., PLoS ONE 2015) for every kernel and BatchNormalization layer.

    With ``bias=True`` the bias is split (b+ to the activator, b- to the inhibitor); iNNvestigate
    puts the full bias in both denominators (see docs/differences.md).

    Args:
        model: a Keras model without softmax.
        alpha: activator weight (>= 1); inferred from beta if None.
        beta: inhibitor weight (>= 0); inferred from alpha if None. alpha - beta must be 1.
        bias: include the split bias. Defaults to `True`.
        **kwargs: see :class:`LRPEpsilon`.

    Raises:
        ValueError: alpha - beta != 1, alpha < 1, beta < 0, or neither given.
    """

    def __init__(self, model, alpha=None, beta=None, bias=True, **kwargs):
        alpha, beta = R.check_alpha_beta(alpha, beta)
        super().__init__(model, R.alpha_beta_rule(alpha, beta, bias=bias), **kwargs)
        self._config.update(alpha=alpha, beta=beta, bias=bool(bias))


register_alias("lrp.alpha_2_beta_1", LRPAlphaBeta, alpha=2, beta=1, bias=True)
register_alias("lrp.alpha_2_beta_1_IB", LRPAlphaBeta, alpha=2, beta=1, bias=False)
register_alias("lrp.alpha_1_beta_0", LRPAlphaBeta, alpha=1, beta=0, bias=True)
register_alias("lrp.alpha_1_beta_0_IB", LRPAlphaBeta, alpha=1, beta=0, bias=False)


@register("lrp.gamma")
class LRPGamma(_FixedRuleLRP):
    """LRP-gamma (Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019) for every
    kernel and BatchNormalization layer. Not in iNNvestigate.

    Args:
        model: a Keras model without softmax.
        gamma: boost of the positive weights, >= 0. Defaults to `0.25`.
        bias: include the (boosted) bias. Defaults to `True`.
        **kwargs: see :class:`LRPEpsilon`.
    """

    def __init__(self, model, gamma=0.25, bias=True, **kwargs):
        super().__init__(model, R.gamma_rule(gamma, bias=bias), **kwargs)
        self._config.update(gamma=float(gamma), bias=bool(bias))


@register("lrp.sequential_preset_a")
class LRPSequentialPresetA(LRP):
    """iNNvestigate's preset A for ConvNets: Dense layers LRP-epsilon (epsilon 0.1, with bias),
    convolutions LRP-alpha1beta0 (with the split bias); stand-alone BatchNormalization
    LRP-epsilon. Warns for non-ReLU networks.

    Args:
        model: a Keras model without softmax.
        epsilon: epsilon of the Dense layers. Defaults to `0.1`.
        **kwargs: ``input_layer_rule``, ``until_layer_idx``, ``until_layer_rule``,
            ``bn_layer_rule``, ``neuron_selection_mode``, ``batch_size``.
    """

    _conv_rule = R.ALPHA_1_BETA_0
    _relu_advised = True

    def __init__(self, model, epsilon=0.1, bn_layer_rule=None, **kwargs):
        eps_rule = R.epsilon_rule(epsilon)
        rule = [(DENSE, eps_rule), (CONV_LIKE, self._conv_rule)]
        super().__init__(model, rule=rule, bn_layer_rule=bn_layer_rule or eps_rule, **kwargs)
        self._config.pop("rule", None)
        self._config.update(epsilon=float(epsilon), bn_layer_rule=_jsonable(bn_layer_rule))


@register("lrp.sequential_preset_b")
class LRPSequentialPresetB(LRPSequentialPresetA):
    """iNNvestigate's preset B: as preset A, but convolutions use LRP-alpha2beta1 (with the split
    bias)."""

    _conv_rule = R.ALPHA_2_BETA_1


register_alias("lrp.sequential_preset_a_flat", LRPSequentialPresetA, input_layer_rule="Flat")
register_alias("lrp.sequential_preset_b_flat", LRPSequentialPresetB, input_layer_rule="Flat")
register_alias("lrp.sequential_preset_b_flat_until_idx", LRPSequentialPresetB,
               input_layer_rule="Flat", until_layer_rule="Flat")
