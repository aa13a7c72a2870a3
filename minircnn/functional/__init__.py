"""Layers as pure forward/backward pairs (the contract other code and the exercises rely on).

Every forward returns ``(y, cache)``; every backward takes ``(dy, cache)`` and returns the gradients of the
differentiable inputs. Losses return ``(loss, dinput)``. All run on NumPy or CuPy arrays alike.
"""
from ._checks import NonFiniteError
from .activations import dropout_backward, dropout_forward, relu_backward, relu_forward
from .conv import conv2d_backward, conv2d_forward, conv_output_size
from .linear import linear_backward, linear_forward
from .losses import smooth_l1_loss, softmax_cross_entropy
from .lrn import lrn_backward, lrn_forward
from .pool import max_pool2d_backward, max_pool2d_forward, pool_output_size
from .roi_pool import roi_bins, roi_pool_backward, roi_pool_forward, round_half_away

__all__ = [
    "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward",
    "relu_forward", "relu_backward",
    "lrn_forward", "lrn_backward",
    "dropout_forward", "dropout_backward",
    "linear_forward", "linear_backward",
    "softmax_cross_entropy", "smooth_l1_loss",
    "roi_pool_forward", "roi_pool_backward",
    "roi_bins", "round_half_away", "conv_output_size", "pool_output_size",
]
