"""Anchors: the reference boxes of a Region Proposal Network, k of them at every cell of the conv feature map
(Faster R-CNN, Ren et al. 2015, Sec. 3.1.1; docs/reference.md §16).

At each cell (y, x) of a feature map with stride s, the anchors are centred on the cell's centre in input-image
(blob) pixels, ``(x * s + (s - 1) / 2, y * s + (s - 1) / 2)``, one per (scale, aspect ratio) pair: an anchor of scale
``S`` and ratio ``r = h / w`` has ``w = S / sqrt(r)`` and ``h = S * sqrt(r)`` pixels, so its area is ``S**2`` whatever
its shape. The paper uses 3 scales (128, 256, 512) and 3 ratios (1:2, 1:1, 2:1) on 600-pixel images: from about a
fifth of the shorter side to nearly all of it. Our images are smaller (a shorter side of 288) and so are many of our
objects (the built-in set's span 12 to 128 pixels there), so :data:`DEFAULT_SCALES` runs in powers of two from the
backbone's stride, 16 pixels (the finest step the feature map can place a box at), to 256, nearly the whole shorter
side: every object from 12 pixels to the whole image has an anchor scale within a factor of sqrt(2) of its own.
Denser anchors for small objects (half-octave scales, and those up to 32 pixels tiled 2x2 per cell) fit the objects
better before training but trained into a clearly worse detector (``benchmarks/RESULTS.md``, "Region proposals").

Order: anchor ``j`` of the map is cell ``j // A`` in row-major order (y, then x) and shape ``j % A`` (scale-major,
then ratio). Boxes are ``(x1, y1, x2, y2)`` with inclusive corners (the project's convention,
docs/reference.md §7): an anchor ``w`` pixels wide has ``x2 - x1 + 1 = w``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_SCALES", "DEFAULT_RATIOS", "anchor_shapes", "grid_anchors"]

DEFAULT_SCALES = (16, 32, 64, 128, 256)     # sqrt(area) in blob pixels: from one stride to the image (docstring)
DEFAULT_RATIOS = (0.5, 1.0, 2.0)       # h / w, the paper's 1:2, 1:1, 2:1


def _positive(values, name):
    values = tuple(float(v) for v in values)
    if not values or min(values) <= 0:
        raise ValueError(f"{name} must be a non-empty list of positive numbers, got {values}")
    return values


def anchor_shapes(scales=DEFAULT_SCALES, ratios=DEFAULT_RATIOS):
    """The A = len(scales) * len(ratios) anchor shapes, centred on (0, 0).

    Returns:
        (A, 4) float64 ``(x1, y1, x2, y2)`` offsets from a cell centre, scale-major: row ``i * len(ratios) + j`` has
        scale ``scales[i]`` and ratio ``ratios[j]``; ``x2 - x1 + 1 = S / sqrt(r)`` and ``y2 - y1 + 1 = S * sqrt(r)``.
    """
    scales, ratios = _positive(scales, "scales"), _positive(ratios, "ratios")
    s, r = np.meshgrid(scales, ratios, indexing="ij")
    w, h = (s / np.sqrt(r)).ravel(), (s * np.sqrt(r)).ravel()
    # inclusive corners: the box spans w pixels centred on 0, so x2 - x1 = w - 1
    return np.stack([-(w - 1) / 2, -(h - 1) / 2, (w - 1) / 2, (h - 1) / 2], axis=1)


def grid_anchors(feature_shape, stride, scales=DEFAULT_SCALES, ratios=DEFAULT_RATIOS):
    """Every anchor of an (h, w) feature map, in blob pixels.

    Args:
        feature_shape: ``(h, w)`` of the conv feature map.
        stride: input pixels per feature cell (16 for every backbone here).
        scales, ratios: the anchor shapes (:func:`anchor_shapes`).

    Returns:
        (h * w * A, 4) float32 boxes; row ``(y * w + x) * A + a`` is shape ``a`` centred on cell (y, x).
    """
    h, w = (int(v) for v in feature_shape)
    if h < 1 or w < 1 or stride < 1:
        raise ValueError(f"need a feature map of at least 1x1 and stride >= 1, got {feature_shape} and {stride}")
    shapes = anchor_shapes(scales, ratios)                                    # (A, 4)
    cy, cx = np.meshgrid(np.arange(h) * stride, np.arange(w) * stride, indexing="ij")
    centres = np.stack([cx, cy, cx, cy], axis=-1).reshape(-1, 1, 4) + (stride - 1) / 2
    return (centres + shapes[None]).reshape(-1, 4).astype(np.float32)
