"""Backward rules."""

from keras_patterns.rules.base import NodeContext, Rule, is_refusal, refusal
from keras_patterns.rules.lrp import (
    LRP_RULES,
    alpha_beta_rule,
    bounded_rule,
    epsilon_rule,
    gamma_rule,
    z_rule,
)
from keras_patterns.rules.redistribution import Group, Term, redistribution_rule
from keras_patterns.rules.structural import (
    DECONVNET_RELU,
    EMBEDDING_SUM,
    EMBEDDING_TIMES_INPUT,
    GRADIENT,
    GUIDED_RELU,
    IDENTITY,
)

__all__ = [
    "DECONVNET_RELU", "EMBEDDING_SUM", "EMBEDDING_TIMES_INPUT", "GRADIENT", "GUIDED_RELU",
    "IDENTITY", "LRP_RULES", "Group", "NodeContext", "Rule", "Term", "alpha_beta_rule", "bounded_rule",
    "epsilon_rule", "gamma_rule", "is_refusal", "redistribution_rule", "refusal", "z_rule",
]
