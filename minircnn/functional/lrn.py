"""Local response normalisation across channels: Caffe's LRN layer (``ACROSS_CHANNELS``), in CaffeNet and VGG_CNN_M.

Each activation is divided by a power of the energy of its neighbours in the channel direction, at the same pixel
(docs/reference.md §2, "Caffe layer semantics", ``CF:src/caffe/layers/lrn_layer.cpp``)::

    scale[n, c, h, w] = k + (alpha / size) * sum of x[n, c', h, w]^2 over |c' - c| <= size // 2
    y = x * scale^(-beta)

Channels outside ``[0, C)`` count as zeros. Caffe divides ``alpha`` by the window ``size`` (its ``alpha_ / size_``),
which the AlexNet paper's formula does not; the prototxt values (``alpha 1e-4`` for CaffeNet, ``5e-4`` for
VGG_CNN_M) are meant for Caffe's formula.

Backward. With ``y_j = x_j s_j^(-beta)`` and ``ds_j / dx_i = (2 alpha / size) x_i`` when i is in j's window::

    dx_i = dy_i s_i^(-beta) - (2 alpha beta / size) x_i * sum over j with i in window(j) of dy_j y_j / s_j

The window is symmetric, so "i in window(j)" is "j in window(i)": the second term is the forward's window sum
applied to ``dy * y / scale`` (Caffe's ``CrossChannelBackward`` computes the same).

The window sum adds ``size`` shifted copies of the channel axis (5 for both models) rather than differencing a
cumulative sum: as cheap for so small a window, and exact in float32 (a running sum of squares over 96 channels of
activations in the hundreds would lose the low digits of each window's difference).
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import get_array_module
from ._checks import check_array, check_positive_int


class LRNCache(NamedTuple):
    x: object           # (N, C, H, W) the input
    scale: object       # (N, C, H, W) k + alpha/size * window sum of x^2
    scale_pow: object   # (N, C, H, W) scale^(-beta), so y = x * scale_pow
    size: int
    alpha: float
    beta: float


def channel_window_sum(a, size: int):
    """``out[:, c] = sum of a[:, c']`` over ``|c' - c| <= size // 2`` (axis 1; channels outside the array are 0).

    Args:
        a: (N, C, ...) array.
        size: odd window size.

    Returns:
        An array like ``a``.
    """
    out = a.copy()
    for d in range(1, size // 2 + 1):
        out[:, d:] += a[:, :-d]           # the neighbour d channels below
        out[:, :-d] += a[:, d:]           # and d channels above
    return out


def lrn_forward(x, local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """LRN forward, ``y = x / (k + alpha/local_size * window sum of x^2)^beta``.

    Args:
        x: (N, C, H, W) floating.
        local_size: channels in the window, odd (Caffe supports only odd sizes), centred on each channel.
        alpha: scale of the window's energy; divided by ``local_size`` as in Caffe.
        beta: the exponent.
        k: the constant added to the energy, > 0 (so the scale is never 0).

    Returns:
        y: (N, C, H, W), x's dtype.
        cache: for :func:`lrn_backward`.
    """
    check_array("x", x, 4, "(N, C, H, W)")
    size = check_positive_int("local_size", local_size, 1)
    if size % 2 == 0:
        raise ValueError(f"local_size must be odd (a window centred on each channel), got {size}")
    if not (alpha >= 0 and beta >= 0 and k > 0):
        raise ValueError(f"LRN needs alpha >= 0, beta >= 0 and k > 0, got alpha={alpha!r}, beta={beta!r}, k={k!r}")
    xp = get_array_module(x)
    t = x.dtype.type
    scale = channel_window_sum(x * x, size)
    scale *= t(alpha / size)
    scale += t(k)
    scale_pow = xp.power(scale, t(-beta))
    return x * scale_pow, LRNCache(x, scale, scale_pow, size, float(alpha), float(beta))


def lrn_backward(dy, cache: LRNCache):
    """LRN backward.

    Args:
        dy: (N, C, H, W) gradient of the loss with respect to y.
        cache: from :func:`lrn_forward`.

    Returns:
        dx: (N, C, H, W).
    """
    x, scale, scale_pow, size, alpha, beta = cache
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy must have shape {tuple(x.shape)} (N, C, H, W), got {tuple(dy.shape)}")
    dx = dy * scale_pow
    # dy_j * y_j / s_j, summed over each channel's window
    back = channel_window_sum(dx * x / scale, size)
    back *= x
    back *= x.dtype.type(2.0 * alpha * beta / size)
    dx -= back
    return dx
