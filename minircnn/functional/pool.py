"""Max pooling with Caffe's output-size rule (docs/reference.md §2: ceil, so VGG16 maps 600 rows to 38 at conv5).

Vectorised over the k×k window offsets: for offset (i, j) the candidates of every output cell form one strided view
of the (padded) input, so the pooling is k*k elementwise maxima. The backward routes each output gradient to the
input that won its window (the "switch"), found by comparing each offset's view with the output in row-major order:
the first equal one is the first maximum, which is the one Caffe's strict ``>`` keeps. Finding the switches in the
backward instead of the forward keeps the forward (all that inference and frozen layers need) to the k*k maxima.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import get_array_module
from ._checks import check_array, check_positive_int


def pool_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooling output size: ``ceil((size + 2*pad - kernel) / stride) + 1``, minus one when padding is used
    and the last window would start at or beyond ``size + pad`` (so no window lies entirely in the padding)."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class MaxPoolCache(NamedTuple):
    src: object         # (N, C, Hp, Wp) the input the windows were read from (padded with -inf where needed)
    y: object           # (N, C, H_out, W_out) the output, i.e. each window's maximum
    x_shape: tuple
    kernel_size: int
    stride: int
    pad: int


def _window_view(a, i, j, stride, h_out, w_out):
    """Strided view of the (N, C, Hp, Wp) array ``a``: element (n, c, oh, ow) is a[n, c, oh*s + i, ow*s + j]."""
    return a[:, :, i: i + stride * (h_out - 1) + 1: stride, j: j + stride * (w_out - 1) + 1: stride]


def max_pool2d_forward(x, kernel_size: int = 2, stride: int = 2, pad: int = 0):
    """Max pooling forward.

    Windows are clipped to the input: padding and the cells that Caffe's ceil rule adds past the border are never
    picked (they are filled with -inf). Within a window the first maximum in row-major order wins (strict ``>``),
    as in Caffe.

    Args:
        x: (N, C, H, W) floating.
        kernel_size: window size k (square), >= 1.
        stride: window step, >= 1.
        pad: implicit padding on each side, 0 <= pad < kernel_size.

    Returns:
        y: (N, C, H_out, W_out), sizes from :func:`pool_output_size`.
        cache: input and output, from which :func:`max_pool2d_backward` finds the switches.
    """
    check_array("x", x, 4, "(N, C, H, W)")
    k = check_positive_int("kernel_size", kernel_size, 1)
    s = check_positive_int("stride", stride, 1)
    p = check_positive_int("pad", pad, 0)
    if p >= k:
        raise ValueError(f"pad must be smaller than kernel_size, got pad {p} with kernel_size {k}")
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if h + 2 * p < k or w + 2 * p < k:
        raise ValueError(f"the {k}x{k} window does not fit the padded input (x {tuple(x.shape)}, pad {p})")
    h_out, w_out = pool_output_size(h, k, s, p), pool_output_size(w, k, s, p)
    hp, wp = max(h + 2 * p, (h_out - 1) * s + k), max(w + 2 * p, (w_out - 1) * s + k)
    if (hp, wp) == (h, w):
        src = x
    else:
        src = xp.full((n, c, hp, wp), -xp.inf, dtype=x.dtype)
        src[:, :, p:p + h, p:p + w] = x

    y = _window_view(src, 0, 0, s, h_out, w_out).copy()
    for i in range(k):
        for j in range(k):
            if i or j:
                xp.maximum(y, _window_view(src, i, j, s, h_out, w_out), out=y)
    return y, MaxPoolCache(src, y, tuple(x.shape), k, s, p)


def max_pool2d_backward(dy, cache: MaxPoolCache):
    """Max pooling backward: each output gradient goes to the input its window picked (summed where windows overlap).

    Args:
        dy: (N, C, H_out, W_out).

    Returns:
        dx: (N, C, H, W).
    """
    src, y, (n, c, h, w), k, s, p = cache
    if tuple(dy.shape) != tuple(y.shape):
        raise ValueError(f"dy must have shape {tuple(y.shape)} (N, C, H_out, W_out), got {tuple(dy.shape)}")
    xp = get_array_module(dy)
    h_out, w_out = y.shape[2:]
    dx_pad = xp.zeros(src.shape, dtype=dy.dtype)
    unclaimed = xp.ones(y.shape, dtype=bool)
    zero = dy.dtype.type(0)
    for i in range(k):            # row-major over the window: the first input equal to the max is the switch
        for j in range(k):
            switch = (_window_view(src, i, j, s, h_out, w_out) == y) & unclaimed
            target = _window_view(dx_pad, i, j, s, h_out, w_out)
            if s >= k:            # windows do not overlap: each input gets at most one gradient, so write it
                xp.multiply(dy, switch, out=target)
            else:
                target += xp.where(switch, dy, zero)
            unclaimed &= ~switch
    return xp.ascontiguousarray(dx_pad[:, :, p:p + h, p:p + w])
