"""A method as a value: what one reverse pass computes, as a small frozen record.

A reverse analyzer is a :class:`Method` applied to a model: ordered ``(condition, Rule)`` pairs (the
first match wins, the gradient otherwise), how the backward pass is seeded, what happens at the end
(times input, postprocessing), what the model must satisfy, and the capability flags that pictures,
callbacks and evaluation read instead of tables of method names. Presets are functions returning
such values (see :mod:`keras_patterns.registry`); a variant is ``method.replace(...)``, never a
subclass.

Example:

```python
from keras_patterns.analyzers.method import GRADIENT_METHOD
abs_gradient = GRADIENT_METHOD.replace(postprocess="abs")
analyzer = kp.analyzers.ReverseAnalyzer(model, method=abs_gradient)
```
"""

import dataclasses
import warnings

from keras_patterns.errors import NotAnalyzeableModelError, _works_on_any_model
from keras_patterns.graph.checks import RECTIFIER_VARIANTS, check_relu_only, list_nodes, non_relu_nodes
from keras_patterns.rules.base import Rule
from keras_patterns._warnings import user_stacklevel

#: How the backward pass starts: 1 at the selected output (``"ones"``, the gradient), the selected
#: output value (``"value"``, LRP and the signal methods) or its positive part (``"relu_value"``,
#: Deep Taylor).
SEEDS = ("ones", "value", "relu_value")
POSTPROCESS = (None, "abs", "square")
OUTPUT_KINDS = ("attribution", "signal")
#: What a method requires of the model's non-linearities: nothing (None); "advise" (a warning that
#: the method is not advised for non-ReLU networks); "warn" (a warning naming the non-ReLU layers);
#: "raise" (NotAnalyzeableModelError, a warning with ``disable_model_checks=True``).
RELU_REQUIREMENTS = (None, "advise", "warn", "raise")
#: What a method does with a layer no rule covers (a recurrent layer, a Lambda layer, a custom
#: layer, a Keras operation) and with a model the walker cannot read (a subclassed model):
#: ``"error"`` refuses it (UnsupportedLayerError / NotAnalyzeableModelError naming the methods that
#: do work); ``"gradient"`` differentiates through it (the mirror records every node under its own
#: tape, and an unwalkable model becomes one node whose call is differentiated as a whole).
UNKNOWN_LAYERS = ("error", "gradient")


@dataclasses.dataclass(frozen=True)
class Method:
    """What a reverse analyzer computes.

    Args:
        rules: ordered ``(condition, Rule)`` pairs; a condition is a layer class, a tuple of classes
            or ``condition(node, graph) -> bool``. The first match wins; layers no pair matches
            use the rules registered with :func:`keras_patterns.register_rule`, then the gradient.
        seed: ``"ones"``, ``"value"`` or ``"relu_value"`` (see :data:`SEEDS`).
        multiplies_by_input: multiply the backward signal by the (float) input at the end.
        postprocess: None, ``"abs"`` or ``"square"``, applied to the backward signal before the
            multiplication by the input.
        requires_relu: see :data:`RELU_REQUIREMENTS`.
        relu_variants: activation names treated like ReLU, with a warning (ReLU6, clipped ReLU, ...).
        output_kind: ``"attribution"`` (relevance per input, drawn symmetric around 0) or
            ``"signal"`` (a signal in input space, drawn with
            :func:`keras_patterns.visualization.project`).
        conserves_relevance: the method is designed so that a map sums to the explained output on
            bias-free ReLU networks (LRP, Deep Taylor).
        needs_fitting: the analyzer must be fitted before it explains (the pattern methods).
        unknown_layers: ``"error"`` or ``"gradient"`` (see :data:`UNKNOWN_LAYERS`): whether layers
            without a rule, and models without a layer graph, are refused or differentiated
            through. The gradient family sets ``"gradient"``; rule-based methods keep ``"error"``.
        relu_note: appended to the refusal or warning of :attr:`requires_relu` (e.g. the option
            that makes the method work on non-ReLU networks).

    Raises:
        ValueError: a field outside its allowed values.
    """

    rules: tuple = ()
    seed: str = "ones"
    multiplies_by_input: bool = False
    postprocess: str = None
    requires_relu: str = None
    relu_variants: tuple = RECTIFIER_VARIANTS
    output_kind: str = "attribution"
    conserves_relevance: bool = False
    needs_fitting: bool = False
    unknown_layers: str = "error"
    relu_note: str = ""

    def __post_init__(self):
        for field, allowed in (("seed", SEEDS), ("postprocess", POSTPROCESS),
                               ("output_kind", OUTPUT_KINDS), ("requires_relu", RELU_REQUIREMENTS),
                               ("unknown_layers", UNKNOWN_LAYERS)):
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"`{field}` must be one of {list(allowed)}. Received: {field}={value!r}")
        rules = tuple(self.rules)
        for pair in rules:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], Rule)):
                raise TypeError(
                    "`rules` must be (condition, Rule) pairs. Received: "
                    f"{pair!r}"
                )
        object.__setattr__(self, "rules", rules)

    def replace(self, **changes):
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def check_model(self, graph, name, disable_model_checks=False):
        """Applies :attr:`requires_relu` to a canonized graph (warns or raises)."""
        if self.requires_relu == "advise":
            bad = non_relu_nodes(graph)
            if bad:
                warnings.warn(
                    f"{name} is not advised for networks with non-ReLU activations. "
                    f"Received: {list_nodes(bad)}.", stacklevel=user_stacklevel(),
                )
        elif self.requires_relu is not None:
            action = "warn" if self.requires_relu == "warn" or disable_model_checks else "raise"
            try:
                check_relu_only(graph, name, warn_for=self.relu_variants, action=action, note=self.relu_note)
            except NotAnalyzeableModelError as e:
                raise NotAnalyzeableModelError(f"{e} {_works_on_any_model()}") from None


def check_postprocess(postprocess):
    """Validates a ``postprocess`` argument (None, ``"abs"`` or ``"square"``)."""
    if postprocess not in POSTPROCESS:
        raise ValueError(
            f"`postprocess` must be None, 'abs' or 'square'. Received: postprocess={postprocess!r}"
        )
    return postprocess


#: The capability flags every analyzer exposes as attributes (forwarded by wrappers).
CAPABILITIES = ("output_kind", "multiplies_by_input", "conserves_relevance", "needs_fitting")
