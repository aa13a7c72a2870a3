"""The leaves of selective search's hierarchy: an over-segmentation of the image and what the grouping needs to know
about each region (Uijlings et al., IJCV 2013, Sec. 3.1-3.2). Steps 1-4 of :mod:`minircnn.data.selective_search`:

1. :func:`colour_space` puts the image into one colour space, with every channel in ``[0, 1]``.
2. :func:`segment` over-segments it with Felzenszwalb and Huttenlocher's graph method (scikit-image) at scale ``k``.
3. :func:`colour_codes` / :func:`texture_codes` give every pixel its colour-histogram bins (25 per channel) and
   texture-histogram bins (Gaussian derivatives in 8 orientations, 10 bins each, per channel);
   :func:`region_features` turns them into each region's size, box and L1-normalised histograms.
4. :func:`adjacent_pairs` lists the pairs of regions that touch.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage import color
from skimage.segmentation import felzenszwalb

__all__ = ["colour_space", "segment", "colour_codes", "texture_codes", "Regions", "region_features",
           "adjacent_pairs"]

COLOUR_BINS = 25             # per channel (Sec. 3.2, colour similarity)
ORIENTATIONS = 8             # Gaussian-derivative orientations (Sec. 3.2, texture similarity)
TEXTURE_BINS = 10            # per orientation and channel
SIGMA_TEXTURE = 1.0          # of the Gaussian derivatives
SIGMA_SEGMENT = 0.8          # pre-smoothing of the Felzenszwalb-Huttenlocher segmentation, as in the paper's code


# ------------------------------------------------------------------------------------------- 1. colour spaces
def colour_space(image, name):
    """The image in a colour space, every channel scaled to ``[0, 1]`` (paper Sec. 3.2, Table 1).

    Args:
        image: (H, W, 3) uint8 RGB image.
        name: ``"rgb"``, ``"hsv"``, ``"lab"``, ``"rgi"`` (normalised r, g and intensity), ``"h"`` (hue) or ``"i"``
            (intensity).

    Returns:
        (H, W, C) float32 array, C = 3 or 1 (``"h"``, ``"i"``).
    """
    rgb = image.astype(np.float32) / 255
    if name == "rgb":
        out = rgb
    elif name in ("hsv", "h"):
        out = _rgb_to_hsv(rgb)
        out = out[..., :1] if name == "h" else out
    elif name == "lab":
        lab = color.rgb2lab(rgb)                        # L in [0, 100], a and b within about [-128, 127]
        out = np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], axis=-1)
    elif name in ("rgi", "i"):
        total = (rgb[..., 0] + rgb[..., 1] + rgb[..., 2])[..., None]
        intensity = total / 3
        if name == "i":
            out = intensity
        else:                                           # chromaticity r, g; grey pixels (and black) get 1/3
            rg = np.divide(rgb[..., :2], total, out=np.full_like(rgb[..., :2], 1 / 3), where=total > 0)
            out = np.concatenate([rg, intensity], axis=-1)
    else:
        raise ValueError(f"unknown colour space {name!r}; expected rgb, hsv, lab, rgi, h or i")
    return np.clip(out, 0, 1).astype(np.float32, copy=False)


def _rgb_to_hsv(rgb):
    """Hue (as a fraction of the colour circle), saturation and value, all in ``[0, 1]``; grey pixels get hue 0.
    Equal to ``skimage.color.rgb2hsv``, about ten times faster (reductions over a last axis of 3 are slow)."""
    r, g, b = np.moveaxis(rgb, -1, 0)
    value = np.maximum(np.maximum(r, g), b)
    delta = value - np.minimum(np.minimum(r, g), b)
    saturation = np.divide(delta, value, out=np.zeros_like(value), where=value > 0)
    d = np.where(delta > 0, delta, 1)
    hue = np.where(value == r, (g - b) / d, np.where(value == g, 2 + (b - r) / d, 4 + (r - g) / d)) / 6
    hue[hue < 0] += 1
    return np.stack([hue, saturation, value], axis=-1)


# --------------------------------------------------------------------------------------------- 2. segmentation
def segment(image, k):
    """Felzenszwalb-Huttenlocher over-segmentation, the starting regions (paper Sec. 3.1).

    ``k`` is the scale of the original method (in 0-255 grey levels; larger gives bigger regions); like the paper's
    code we also use ``k`` as the minimum region size in pixels.

    Args:
        image: (H, W, C) float array with channels in ``[0, 1]`` (from :func:`colour_space`).
        k: the segmentation scale.

    Returns:
        (H, W) int64 array of region labels ``0 .. n-1``.
    """
    labels = felzenszwalb(image, scale=k, sigma=SIGMA_SEGMENT, min_size=int(k), channel_axis=-1)
    return labels.astype(np.int64, copy=False)


# ----------------------------------------------------------------------------------------- 3. region features
def colour_codes(image):
    """Each pixel's colour-histogram bin in each channel: ``COLOUR_BINS`` bins per channel, channel c's bins at
    ``c * COLOUR_BINS + b``.

    Args:
        image: (H, W, C) float array in ``[0, 1]``.

    Returns:
        (C, H*W) int64 array of bin indices in ``[0, C * COLOUR_BINS)``, row c for channel c.
    """
    channels = image.reshape(-1, image.shape[2]).T
    bins = np.minimum((channels * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1)
    return bins + np.arange(image.shape[2])[:, None] * COLOUR_BINS


def texture_codes(image):
    """Each pixel's texture-histogram bin per channel and orientation (paper Sec. 3.2, texture similarity).

    Gaussian derivatives (sigma 1) give the gradient ``(gx, gy)``; the derivative in direction ``theta`` is
    ``gx cos(theta) + gy sin(theta)``, kept where positive, for ``ORIENTATIONS`` directions around the circle (so
    opposite directions tell a dark-to-light edge from a light-to-dark one). Responses are binned into
    ``TEXTURE_BINS`` bins from 0 to the channel's largest response.

    Args:
        image: (H, W, C) float array in ``[0, 1]``.

    Returns:
        (C * ORIENTATIONS, H*W) int64 array of bin indices in ``[0, C * ORIENTATIONS * TEXTURE_BINS)``, row
        ``c * ORIENTATIONS + o`` for channel c and orientation o.
    """
    c = image.shape[2]
    channels = np.ascontiguousarray(np.moveaxis(image, 2, 0))                                # (C, H, W)
    gy = ndimage.gaussian_filter(channels, sigma=(0, SIGMA_TEXTURE, SIGMA_TEXTURE), order=(0, 1, 0))
    gx = ndimage.gaussian_filter(channels, sigma=(0, SIGMA_TEXTURE, SIGMA_TEXTURE), order=(0, 0, 1))
    gx, gy = gx.reshape(c, 1, -1), gy.reshape(c, 1, -1)
    theta = 2 * np.pi * np.arange(ORIENTATIONS, dtype=np.float32) / ORIENTATIONS
    response = gx * np.cos(theta)[:, None] + gy * np.sin(theta)[:, None]                  # (C, O, H*W)
    np.maximum(response, 0, out=response)
    top = response.reshape(c, -1).max(axis=1)                                              # per channel
    response *= np.divide(TEXTURE_BINS, top, out=np.zeros_like(top), where=top > 0)[:, None, None]
    np.minimum(response, TEXTURE_BINS - 1, out=response)           # the largest response goes in the top bin
    response += (np.arange(c * ORIENTATIONS, dtype=np.float32) * TEXTURE_BINS).reshape(c, ORIENTATIONS, 1)
    return response.astype(np.int64).reshape(c * ORIENTATIONS, -1)  # truncation = floor, all values >= 0


class Regions(NamedTuple):
    """What the grouping needs to know about each of ``n`` regions.

    Attributes:
        sizes: (n,) float64, pixel counts.
        boxes: (n, 4) int64, bounding boxes ``(x1, y1, x2, y2)``, 0-based inclusive.
        histograms: (n, D) float64, the colour histogram (first ``colour_dims`` columns) and the texture histogram
            (the rest), each L1-normalised to sum 1.
        colour_dims: number of colour-histogram columns, ``C * COLOUR_BINS``.
    """
    sizes: np.ndarray
    boxes: np.ndarray
    histograms: np.ndarray
    colour_dims: int


def region_features(labels, colour, texture):
    """Size, box and histograms of every region of a segmentation.

    Args:
        labels: (H, W) int array, region labels ``0 .. n-1`` (from :func:`segment`).
        colour: (C, H*W) int array, the pixels' colour bins (from :func:`colour_codes`).
        texture: (C*ORIENTATIONS, H*W) int array, the pixels' texture bins (from :func:`texture_codes`).

    Returns:
        :class:`Regions`.
    """
    n = int(labels.max()) + 1
    flat = labels.reshape(1, -1)
    sizes = np.bincount(flat[0], minlength=n).astype(np.float64)
    parts = []
    for codes, dims in ((colour, len(colour) * COLOUR_BINS), (texture, len(texture) * TEXTURE_BINS)):
        counts = np.bincount((codes + flat * dims).ravel(), minlength=n * dims)   # region r's bin b at r * D + b
        parts.append(counts.reshape(n, dims) / (sizes * len(codes))[:, None])    # L1: each pixel counted per row
    hist = np.concatenate(parts, axis=1)
    colour_dims = parts[0].shape[1]
    boxes = np.array([(sx.start, sy.start, sx.stop - 1, sy.stop - 1)
                      for sy, sx in ndimage.find_objects(labels + 1)], dtype=np.int64).reshape(n, 4)
    return Regions(sizes, boxes, hist, colour_dims)


# ---------------------------------------------------------------------------------------------- 4. adjacency
def adjacent_pairs(labels):
    """The pairs of regions that share a horizontal or vertical pixel border (4-connectivity).

    Args:
        labels: (H, W) int array of region labels ``0 .. n-1``.

    Returns:
        (m, 2) int64 array of pairs ``(a, b)`` with ``a < b``, each pair once, sorted.
    """
    n = int(labels.max()) + 1
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])    # left and upper pixel ...
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])      # ... next to right and lower pixel
    differ = a != b
    lo, hi = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
    keys = np.unique(lo * n + hi)
    return np.stack([keys // n, keys % n], axis=1)
