"""ReLU and (inverted) dropout, each as a forward/backward pair."""
from __future__ import annotations

from typing import NamedTuple

from ..backend import get_array_module
from ._checks import check_array, check_same_shape


class ReLUCache(NamedTuple):
    y: object  # the output; y > 0 exactly where x > 0, so it doubles as the mask (no extra pass in the forward)


def relu_forward(x):
    """y = max(x, 0).

    Args:
        x: any shape, floating.

    Returns:
        y: same shape and dtype as x.
        cache: the output (the gradient passes only where the input was positive, i.e. where y > 0).
    """
    check_array("x", x)
    xp = get_array_module(x)
    y = xp.maximum(x, x.dtype.type(0))
    return y, ReLUCache(y)


def relu_backward(dy, cache: ReLUCache):
    """dx = dy where x > 0, else 0 (the subgradient at exactly 0 is taken as 0, like Caffe)."""
    check_same_shape("dy", dy, "the forward input", cache.y.shape)
    return dy * (cache.y > 0)   # a multiply by the mask: several times faster than a where() on big maps


class DropoutCache(NamedTuple):
    mask: object   # float array of 0 and 1/(1-p), or None at test time
    shape: tuple


def dropout_forward(x, p: float = 0.5, train: bool = True, rng=None):
    """Inverted dropout: at train time each unit is zeroed with probability p and kept units are scaled by 1/(1-p),
    so the test-time layer is the identity (Caffe's dropout layer does the same).

    Args:
        x: any shape, floating.
        p: drop probability, 0 <= p < 1.
        train: False gives the identity.
        rng: ``numpy.random.Generator`` for NumPy inputs (``cupy.random`` generator for CuPy); None = a fresh
            default generator. Pass one for reproducible masks.

    Returns:
        y: same shape and dtype as x.
        cache: the scaled mask (None at test time).
    """
    check_array("x", x)
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p!r}")
    xp = get_array_module(x)
    if not train or p == 0.0:
        return x.copy(), DropoutCache(None, x.shape)
    if rng is None:
        rng = xp.random.default_rng()
    keep = rng.random(x.shape) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, DropoutCache(mask, x.shape)


def dropout_backward(dy, cache: DropoutCache):
    """dx = dy * mask (the same units are dropped and scaled as in the forward)."""
    check_same_shape("dy", dy, "the forward input", cache.shape)
    return dy.copy() if cache.mask is None else dy * cache.mask
