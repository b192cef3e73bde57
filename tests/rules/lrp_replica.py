"""Float64 NumPy replicas of the LRP rules, tied to the rule registry by ``@replicates``.

A replica computes a rule's input relevance for one linear layer from its formula (Bach et al.
2015; Montavon et al. 2017, 2019), per sample, on the dense matrix M of the layer's bias-free map
(``x.reshape(-1) @ M == W^T x``), which :class:`LinearMap` builds with explicit loops (TensorFlow's
SAME padding: floor(total / 2) before). Nothing here touches keras_patterns.

``@replicates(name, examples=..., **fixed)`` registers a replica for the rule registered as
``name`` in :data:`keras_patterns.rules.lrp.LRP_RULES`: the rule is built as
``LRP_RULES[name](**example)`` for each example (``{}``: the factory's defaults, so the replica's
own defaults check the rule's) and compared with ``replica(lin, x, r, **fixed, **example)``.
:data:`REPLICAS` is checked for completeness against ``LRP_RULES`` in tests/test_lrp_rules.py.
"""

import dataclasses

import numpy as np

EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class Replica:
    name: str
    fn: object
    fixed: dict
    examples: tuple


#: ``{registry name: Replica}``.
REPLICAS = {}


def replicates(name, examples=({},), **fixed):
    """Registers the decorated function as the replica of the registry rule ``name``."""

    def register(fn):
        if name in REPLICAS:
            raise ValueError(f"Two replicas for {name!r}")
        REPLICAS[name] = Replica(name, fn, fixed, tuple(examples))
        return fn

    return register


def _same_pad(n, k, s):
    out = -(-n // s)
    return out, max((out - 1) * s + k - n, 0) // 2


class LinearMap:
    """A Dense, Conv2D or DepthwiseConv2D layer as a matrix, for any kernel of its shape.

    Args:
        cfg: ``{"kind": "dense" | "conv" | "depthwise", "strides", "padding"}``.
        kernel, bias: the layer's weights (bias None without one).
        in_shape: one sample's input shape.
    """

    def __init__(self, cfg, kernel, bias, in_shape):
        self.cfg, self.kernel, self.in_shape = cfg, kernel, tuple(in_shape)
        m = self.m(kernel)
        self.b = np.zeros(m.shape[1]) if bias is None else np.tile(bias, m.shape[1] // bias.size)

    def m(self, kernel):
        """M with ``x.reshape(-1) @ M == lin(x, kernel).reshape(-1)`` for one sample."""
        cfg = self.cfg
        if cfg["kind"] == "dense":
            return kernel.copy()
        h, w, cin = self.in_shape
        kh, kw = kernel.shape[:2]
        depthwise = cfg["kind"] == "depthwise"
        cout = cin * kernel.shape[3] if depthwise else kernel.shape[3]
        s = cfg["strides"]
        if cfg["padding"] == "same":
            (oh, ph), (ow, pw) = _same_pad(h, kh, s), _same_pad(w, kw, s)
        else:
            oh, ow, ph, pw = (h - kh) // s + 1, (w - kw) // s + 1, 0, 0
        m = np.zeros((h * w * cin, oh * ow * cout))
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for b in range(kw):
                        row, col = i * s + a - ph, j * s + b - pw
                        if not (0 <= row < h and 0 <= col < w):
                            continue
                        for ci in range(cin):
                            src = (row * w + col) * cin + ci
                            dst = (i * ow + j) * cout
                            if depthwise:  # output channel ci * multiplier + k
                                mult = kernel.shape[3]
                                for k in range(mult):
                                    m[src, dst + ci * mult + k] += kernel[a, b, ci, k]
                            else:
                                for co in range(cout):
                                    m[src, dst + co] += kernel[a, b, ci, co]
        return m


def sdiv(a, b):
    """iNNvestigate's guarded division: the stabiliser only at exact zeros."""
    return a / (b + EPS * (b == 0))


def _pos(a):
    return np.maximum(a, 0)


def _neg(a):
    return np.minimum(a, 0)


@replicates("Z", bias=True)
@replicates("ZIgnoreBias", bias=False)
def z_rule(lin, x, r, bias):
    m = lin.m(lin.kernel)
    z = x @ m + (lin.b if bias else 0)
    return x * (sdiv(r, z) @ m.T)


@replicates("Epsilon", examples=({}, {"epsilon": 0.05}, {"epsilon": 2.0, "bias": False}))
@replicates("EpsilonIgnoreBias", bias=False)
def epsilon_rule(lin, x, r, epsilon=1e-7, bias=True):
    m = lin.m(lin.kernel)
    z = x @ m + (lin.b if bias else 0)
    sign = np.where(z >= 0, 1.0, -1.0)
    return x * ((r / (z + epsilon * sign)) @ m.T)


@replicates("WSquare", flat=False)
@replicates("Flat", flat=True)
def fan_in_rule(lin, x, r, flat):
    k2 = lin.m(np.ones_like(lin.kernel) if flat else lin.kernel ** 2)
    return sdiv(r, np.ones(x.shape[1]) @ k2) @ k2.T


@replicates("AlphaBeta", examples=({"alpha": 2}, {"beta": 0}, {"beta": 2}, {"alpha": 1.5, "bias": False}))
@replicates("AlphaBetaIgnoreBias", examples=({"beta": 1}, {"alpha": 3}), bias=False)
@replicates("Alpha2Beta1", alpha=2, beta=1)
@replicates("Alpha2Beta1IgnoreBias", alpha=2, beta=1, bias=False)
@replicates("Alpha1Beta0", alpha=1, beta=0)
@replicates("Alpha1Beta0IgnoreBias", alpha=1, beta=0, bias=False)
@replicates("ZPlus", alpha=1, beta=0, bias=False)
def alpha_beta_rule(lin, x, r, alpha=None, beta=None, bias=True):
    """Activator over W+ x+ and W- x- (with b+), inhibitor over W- x+ and W+ x- (with b-)."""
    alpha = beta + 1 if alpha is None else alpha
    beta = alpha - 1 if beta is None else beta
    mp, mn = lin.m(_pos(lin.kernel)), lin.m(_neg(lin.kernel))
    xp, xn = _pos(x), _neg(x)
    sa = sdiv(r, xp @ mp + xn @ mn + (_pos(lin.b) if bias else 0))
    si = sdiv(r, xp @ mn + xn @ mp + (_neg(lin.b) if bias else 0))
    act = xp * (sa @ mp.T) + xn * (sa @ mn.T)
    inh = xp * (si @ mn.T) + xn * (si @ mp.T)
    return alpha * act - beta * inh


@replicates("ZPlusFast")
def z_plus_fast_rule(lin, x, r):
    mp = lin.m(_pos(lin.kernel))
    return x * (sdiv(r, x @ mp) @ mp.T)


@replicates("Bounded", examples=({}, {"low": -2.0, "high": 3.0}))
def bounded_rule(lin, x, r, low=-1.0, high=1.0):
    m, mp, mn = lin.m(lin.kernel), lin.m(_pos(lin.kernel)), lin.m(_neg(lin.kernel))
    n = x.shape[0]
    lo = np.broadcast_to(low, (n,) + lin.in_shape).reshape(n, -1)
    hi = np.broadcast_to(high, (n,) + lin.in_shape).reshape(n, -1)
    s = sdiv(r, x @ m - (lo @ mp + hi @ mn))
    return x * (s @ m.T) - lo * (s @ mp.T) - hi * (s @ mn.T)


@replicates("Gamma", examples=({}, {"gamma": 0.5}, {"gamma": 0.1, "bias": False}, {"gamma": 0}))
def gamma_rule(lin, x, r, gamma=0.25, bias=True):
    mg = lin.m(lin.kernel + gamma * _pos(lin.kernel))
    z = x @ mg + (lin.b + gamma * _pos(lin.b) if bias else 0)
    return x * (sdiv(r, z) @ mg.T)


def replica_relevance(replica, example, cfg, kernel, bias, x, r):
    """The replica's input relevance for a batch ``x`` (any shape) and output relevance ``r``."""
    n = x.shape[0]
    lin = LinearMap(cfg, kernel, bias, x.shape[1:])
    out = replica.fn(lin, x.reshape(n, -1), r.reshape(n, -1), **replica.fixed, **example)
    return out.reshape(x.shape)
