"""The layers of Fast R-CNN as modules: each wraps one forward/backward pair of :mod:`minircnn.functional`.

| module    | functional pair                              | parameters (lr_mult, decay_mult)            |
|-----------|----------------------------------------------|---------------------------------------------|
| Conv2d    | conv2d_forward / conv2d_backward             | weight (out, in/groups, kh, kw) (1, 1); bias (out,) (2, 0)
|
| Linear    | linear_forward / linear_backward             | weight (out, in) (1, 1); bias (out,) (2, 0)  |
| ReLU      | relu_forward / relu_backward                 | -                                           |
| LRN       | lrn_forward / lrn_backward                   | -                                           |
| MaxPool2d | max_pool2d_forward / max_pool2d_backward     | -                                           |
| Dropout   | dropout_forward / dropout_backward           | -                                           |
| RoIPool   | roi_pool_forward / roi_pool_backward         | -                                           |

New layers are created with zero parameters (``np.zeros`` costs nothing until written); a model initialises them
(:mod:`minircnn.nn.init`) or loads them from a file.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import get_array_module
from .module import Module

WEIGHT_MULTS = (1.0, 1.0)   # (lr_mult, decay_mult) of weights in every trainable layer of the paper's prototxts
BIAS_MULTS = (2.0, 0.0)     # biases: twice the learning rate, no weight decay (docs/reference.md §2, §14.9)


class Conv2d(Module):
    """Convolution, ``y = conv(x, weight) + bias``; Caffe layout ``weight (out, in/groups, kh, kw)``.

    ``groups`` > 1 splits the channels into that many blocks convolved separately (CaffeNet's ``group: 2``).
    A frozen Conv2d computes no ``dw``/``db`` (``need_dw=False``); one with ``need_dx`` False skips the input
    gradient, the largest GEMMs of the backward.
    """

    def __init__(self, name, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 pad: int = 1, dtype=np.float32, groups: int = 1):
        super().__init__(name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"conv {name}: groups={groups} must divide in_channels {in_channels} and out_channels "
                             f"{out_channels}")
        self.stride, self.pad, self.groups = stride, pad, groups
        self.add_param("weight", np.zeros((out_channels, in_channels // groups, kernel_size, kernel_size), dtype),
                       *WEIGHT_MULTS)
        self.add_param("bias", np.zeros((out_channels,), dtype), *BIAS_MULTS)

    def _forward(self, x, train):
        return F.conv2d_forward(x, self.params["weight"], self.params["bias"], stride=self.stride, pad=self.pad,
                                groups=self.groups)

    def _backward(self, dy, cache):
        dx, dw, db = F.conv2d_backward(dy, cache, need_dx=self.need_dx, need_dw=not self.frozen)
        if not self.frozen:
            self.grads["weight"], self.grads["bias"] = dw, db
        return dx

    def output_shape(self, input_shape):
        n, _, h, w = input_shape
        out, _, kh, kw = self.params["weight"].shape
        return (n, out, F.conv_output_size(h, kh, self.stride, self.pad),
                F.conv_output_size(w, kw, self.stride, self.pad))

    def _describe(self):
        out, c, kh, _ = self.params["weight"].shape
        groups = f" g{self.groups}" if self.groups > 1 else ""
        return f", {c * self.groups}->{out}, k{kh} s{self.stride} p{self.pad}{groups}"


class Linear(Module):
    """Fully connected layer, ``y = x weight^T + bias``; ``weight (out, in)``. An (N, C, H, W) input is flattened
    per row in (c, h, w) order, like Caffe's InnerProduct after roi_pool5.

    ``bias=False`` gives a layer without a bias parameter (Caffe's ``bias_term: false``), e.g. the first factor
    ``fc6_L`` of a truncated-SVD compressed fc layer (:mod:`minircnn.inference.svd`).
    """

    def __init__(self, name, in_features: int, out_features: int, dtype=np.float32, bias: bool = True):
        super().__init__(name)
        self.add_param("weight", np.zeros((out_features, in_features), dtype), *WEIGHT_MULTS)
        if bias:
            self.add_param("bias", np.zeros((out_features,), dtype), *BIAS_MULTS)

    def _forward(self, x, train):
        w = self.params["weight"]
        b = self.params.get("bias")
        if b is None:                  # the functional pair always adds a bias: give it zeros (out,), cheap
            b = get_array_module(w).zeros(w.shape[0], dtype=w.dtype)
        return F.linear_forward(x, w, b)

    def _backward(self, dy, cache):
        dx, dw, db = F.linear_backward(dy, cache)
        if not self.frozen:
            self.grads["weight"] = dw
            if "bias" in self.params:
                self.grads["bias"] = db
        return dx if self.need_dx else None

    def output_shape(self, input_shape):
        return (input_shape[0], self.params["weight"].shape[0])

    def _describe(self):
        out, inp = self.params["weight"].shape
        return f", {inp}->{out}"


class ReLU(Module):
    """``y = max(x, 0)``."""

    def _forward(self, x, train):
        return F.relu_forward(x)

    def _backward(self, dy, cache):
        return F.relu_backward(dy, cache)


class LRN(Module):
    """Local response normalisation across channels (Caffe's LRN: CaffeNet's and VGG_CNN_M's norm1, norm2)."""

    def __init__(self, name, local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__(name)
        self.local_size, self.alpha, self.beta, self.k = int(local_size), float(alpha), float(beta), float(k)

    def _forward(self, x, train):
        return F.lrn_forward(x, local_size=self.local_size, alpha=self.alpha, beta=self.beta, k=self.k)

    def _backward(self, dy, cache):
        return F.lrn_backward(dy, cache)

    def _describe(self):
        return f", size {self.local_size} alpha {self.alpha:g} beta {self.beta:g} k {self.k:g}"


class MaxPool2d(Module):
    """Max pooling with Caffe's ceil output size (VGG16: kernel 2, stride 2)."""

    def __init__(self, name, kernel_size: int = 2, stride: int = 2, pad: int = 0):
        super().__init__(name)
        self.kernel_size, self.stride, self.pad = kernel_size, stride, pad

    def _forward(self, x, train):
        return F.max_pool2d_forward(x, kernel_size=self.kernel_size, stride=self.stride, pad=self.pad)

    def _backward(self, dy, cache):
        return F.max_pool2d_backward(dy, cache)

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.pad
        return (n, c, F.pool_output_size(h, k, s, p), F.pool_output_size(w, k, s, p))

    def _describe(self):
        return f", k{self.kernel_size} s{self.stride}" + (f" p{self.pad}" if self.pad else "")


class _HostRandom:
    """Draws dropout's uniforms on the host with a NumPy Generator and moves them to the device, so a seed gives
    the same masks on the CPU and the GPU."""

    def __init__(self, rng, xp):
        self.rng, self.xp = rng, xp

    def random(self, shape):
        return self.xp.asarray(self.rng.random(shape))


_IDENTITY = "identity"   # the cache of a dropout layer that dropped nothing


class Dropout(Module):
    """Inverted dropout with drop probability ``p`` (0.5 after relu6 and relu7, docs/reference.md §2); identity at test
    time.

    Attributes:
        rng: the ``numpy.random.Generator`` the masks are drawn from (a network shares one among its dropout layers
            and saves its state in checkpoints).
    """

    def __init__(self, name, p: float = 0.5, rng=None):
        super().__init__(name)
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout {name}: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()

    def _forward(self, x, train):
        if not train or self.p == 0.0:
            return x, _IDENTITY                # the identity, without the copy dropout_forward would make
        xp = get_array_module(x)
        rng = self.rng if xp is np else _HostRandom(self.rng, xp)
        return F.dropout_forward(x, p=self.p, train=True, rng=rng)

    def _backward(self, dy, cache):
        return dy if cache is _IDENTITY else F.dropout_backward(dy, cache)

    def _describe(self):
        return f", p={self.p:g}"


class RoIPool(Module):
    """RoI max pooling: ``forward(features, rois)`` -> (R, C, pooled_h, pooled_w); backward gives d(features)."""

    def __init__(self, name, output_size=(7, 7), spatial_scale: float = 1.0 / 16):
        super().__init__(name)
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.spatial_scale = float(spatial_scale)

    def _forward(self, x, rois, train):
        return F.roi_pool_forward(x, rois, output_size=self.output_size, spatial_scale=self.spatial_scale)

    def _backward(self, dy, cache):
        return F.roi_pool_backward(dy, cache)

    def output_shape(self, input_shape, num_rois: int | None = None):
        return (num_rois, input_shape[1]) + self.output_size

    def _describe(self):
        ph, pw = self.output_size
        return f", {ph}x{pw} at 1/{1 / self.spatial_scale:g}"
