"""Max pooling with Caffe's output-size rule (docs/reference.md §2: ceil, so VGG16 maps 600 rows to 38 at conv5).

Vectorised over the k×k window offsets: for offset (i, j) the candidates of every output cell form one strided view
of the (padded) input, so the pooling is k*k elementwise maxima. The backward routes each output gradient to the
input that won its window (the "switch"), found by comparing each offset's view with the output in row-major order:
the first equal one is the first maximum, which is the one Caffe's strict ``>`` keeps. Finding the switches in the
backward instead of the forward keeps the forward (all that inference and frozen layers need) to the k*k maxima.

On NumPy both passes run over blocks of whole (H, W) planes of about :data:`BLOCK_BYTES`: each of the k*k strided
views reads every cache line of its rows, so over a whole array the k*k passes would stream the input from memory
k*k times; over a block that stays in the core's L2 cache they read it from memory once. CuPy runs the whole array
at once: a GPU kernel per block would only add launches.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import get_array_module
from ._checks import check_array, check_positive_int

BLOCK_BYTES = 1 << 19     # input bytes per block on NumPy (whole planes; at least one): half of a small L2 cache


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
    """Strided view of the (..., Hp, Wp) array ``a``: element (..., oh, ow) is a[..., oh*s + i, ow*s + j]."""
    return a[..., i: i + stride * (h_out - 1) + 1: stride, j: j + stride * (w_out - 1) + 1: stride]


def _plane_blocks(xp, arrays):
    """Lists of (planes, ...) views of the given (N, C, ...) arrays, one block of whole planes at a time (see the
    module docstring); the views of one list cover the same planes. On CuPy, one block: the whole arrays."""
    flat = [a.reshape((-1,) + a.shape[2:]) for a in arrays]
    if xp is not np:
        yield flat
        return
    planes = flat[0].shape[0]
    per_block = max(1, BLOCK_BYTES // max(flat[0][0].nbytes, 1))
    for start in range(0, planes, per_block):
        yield [a[start:start + per_block] for a in flat]


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

    y = xp.empty((n, c, h_out, w_out), dtype=x.dtype)
    for src_b, y_b in _plane_blocks(xp, (src, y)):
        y_b[...] = _window_view(src_b, 0, 0, s, h_out, w_out)
        for i in range(k):
            for j in range(k):
                if i or j:
                    xp.maximum(y_b, _window_view(src_b, i, j, s, h_out, w_out), out=y_b)
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
    # Windows that tile the input exactly (stride = kernel, no padding) write every input once: no zeroing needed.
    tiled = s == k and p == 0
    dx_pad = (xp.empty if tiled else xp.zeros)(src.shape, dtype=dy.dtype)
    zero = dy.dtype.type(0)
    offsets = [(i, j) for i in range(k) for j in range(k)]   # row-major: the first input equal to the max wins
    for src_b, y_b, dy_b, dx_b in _plane_blocks(xp, (src, y, dy, dx_pad)):
        claimed = xp.empty(y_b.shape, dtype=bool)                 # windows whose switch an earlier offset holds
        switch = xp.empty(y_b.shape, dtype=bool)
        for t, (i, j) in enumerate(offsets):
            mine = claimed if t == 0 else switch
            xp.equal(_window_view(src_b, i, j, s, h_out, w_out), y_b, out=mine)
            if t:
                xp.greater(switch, claimed, out=switch)            # equal to the max and not claimed before
            target = _window_view(dx_b, i, j, s, h_out, w_out)
            if s >= k:            # windows do not overlap: each input gets at most one gradient, so write it
                xp.multiply(dy_b, mine, out=target)
            else:
                target += xp.where(mine, dy_b, zero)
            if 0 < t < len(offsets) - 1:
                xp.logical_or(claimed, switch, out=claimed)
    return xp.ascontiguousarray(dx_pad[:, :, p:p + h, p:p + w])
