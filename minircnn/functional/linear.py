"""Fully connected (inner product) layer: y = x W^T + b, with W stored (out, in) like Caffe and torchvision."""
from __future__ import annotations

from typing import NamedTuple

from ._checks import check_array


class LinearCache(NamedTuple):
    x: object        # (N, in) input, flattened
    w: object        # (out, in)
    x_shape: tuple   # the input's original shape, to un-flatten dx


def linear_forward(x, w, b):
    """y = x W^T + b.

    Args:
        x: (N, in) or (N, d1, d2, ...) with d1*d2*... == in (flattened like Caffe's InnerProduct, e.g. the
            (R, 512, 7, 7) RoI-pool output into fc6's 25088 inputs), floating.
        w: (out, in), same dtype as x.
        b: (out,), same dtype as x.

    Returns:
        y: (N, out).
        cache: for :func:`linear_backward`.
    """
    check_array("x", x)
    check_array("w", w, 2, "(out, in)")
    check_array("b", b, 1, "(out,)")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, in) or (N, ...), got shape {tuple(x.shape)}")
    x2 = x.reshape(x.shape[0], -1)
    if x2.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x2.shape[1]} features per row but w has shape {tuple(w.shape)} (out, in)")
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"b must have shape ({w.shape[0]},) to match w's {w.shape[0]} outputs, got {tuple(b.shape)}")
    if not (x.dtype == w.dtype == b.dtype):
        raise ValueError(f"x, w and b must share one dtype, got {x.dtype}, {w.dtype}, {b.dtype}")
    y = x2 @ w.T
    y += b
    return y, LinearCache(x2, w, tuple(x.shape))


def linear_backward(dy, cache: LinearCache):
    """Gradients of y = x W^T + b.

    Args:
        dy: (N, out) gradient of the loss with respect to y.

    Returns:
        dx: the input's shape, ``dy W``.
        dw: (out, in), ``dy^T x``.
        db: (out,), ``dy`` summed over rows.
    """
    x2, w, x_shape = cache
    if tuple(dy.shape) != (x2.shape[0], w.shape[0]):
        raise ValueError(f"dy must have shape {(x2.shape[0], w.shape[0])} (N, out), got {tuple(dy.shape)}")
    dx = (dy @ w).reshape(x_shape)
    dw = dy.T @ x2
    db = dy.sum(axis=0)
    return dx, dw, db
