"""Seeded weight initialisation, in place.

Values are always drawn in float32 on the host from a ``numpy.random.Generator`` and then cast and moved to the
layer's dtype and device, so a seed gives the same network on the CPU and the GPU, and a float64 network (gradient
checks) is the exact upcast of the float32 one.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module


def _fill_gaussian(param, std: float, rng) -> None:
    values = rng.standard_normal(param.shape, dtype=np.float32)
    values *= np.float32(std)
    xp = get_array_module(param)
    param[...] = xp.asarray(values, dtype=param.dtype)


def gaussian_(module, std: float, rng) -> None:
    """``weight ~ N(0, std^2)``, ``bias = 0`` (Caffe's "gaussian" filler; the heads: std 0.01 and 0.001,
    docs/reference.md §2).

    Args:
        module: a layer with ``params["weight"]`` and ``params["bias"]``.
        std: standard deviation.
        rng: ``numpy.random.Generator``.
    """
    _fill_gaussian(module.params["weight"], std, rng)
    module.params["bias"][...] = 0


def he_normal_(module, rng) -> None:
    """``weight ~ N(0, 2 / fan_in)``, ``bias = 0``: He et al. (2015), keeps activation variance through ReLU layers.

    ``fan_in`` is ``in * kh * kw`` for a conv weight (out, in, kh, kw) and ``in`` for an fc weight (out, in).
    """
    w = module.params["weight"]
    fan_in = int(np.prod(w.shape[1:]))
    gaussian_(module, math.sqrt(2.0 / fan_in), rng)
