"""Selective search (Uijlings, van de Sande, Gevers and Smeulders, IJCV 2013): class-agnostic region proposals by
hierarchical grouping, the proposals Fast R-CNN was trained and tested with.

One strategy, one function per step (paper Sec. 3.1):

1. :func:`colour_space` puts the image into one colour space, with every channel in ``[0, 1]``.
2. :func:`segment` over-segments it with Felzenszwalb and Huttenlocher's graph method (scikit-image) at scale ``k``:
   these small regions are the leaves of the hierarchy.
3. :func:`colour_codes` / :func:`texture_codes` give every pixel its colour-histogram bins (25 per channel) and
   texture-histogram bins (Gaussian derivatives in 8 orientations, 10 bins each, per channel);
   :func:`region_features` turns them into each region's size, box and L1-normalised histograms.
4. :func:`adjacent_pairs` lists the pairs of regions that touch.
5. :func:`pair_similarity` scores pairs: colour, texture, size and fill similarity, summed (Sec. 3.2).
6. :func:`merge_hierarchy` merges the most similar neighbouring pair, again and again, until one region is left.
   Every region ever formed, leaf or merged, is a candidate object box.

Diversification (Sec. 3.2): :func:`selective_search` runs several strategies (colour spaces x ``k`` values x
similarity measures, :data:`MODES`) and :func:`rank_boxes` pools their hierarchies the way the paper does (Sec. 3.3).
"""
from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage import color
from skimage.segmentation import felzenszwalb

__all__ = ["MODES", "colour_space", "segment", "colour_codes", "texture_codes",
           "Regions", "region_features", "adjacent_pairs", "pair_similarity", "Hierarchy", "merge_hierarchy",
           "rank_boxes", "selective_search"]

COLOUR_BINS = 25             # per channel (Sec. 3.2, colour similarity)
ORIENTATIONS = 8             # Gaussian-derivative orientations (Sec. 3.2, texture similarity)
TEXTURE_BINS = 10            # per orientation and channel
SIGMA_TEXTURE = 1.0          # of the Gaussian derivatives
SIGMA_SEGMENT = 0.8          # pre-smoothing of the Felzenszwalb-Huttenlocher segmentation, as in the paper's code

# mode: (colour spaces, k values, similarity measures), every combination a strategy. "fast" and "quality" are the
# paper's "Selective Search Fast" and "Quality" settings; "single" is one strategy, for lessons and tests.
# Measure letters: C colour, T texture, S size, F fill.
MODES = {
    "single": (("hsv",), (100,), ("CTSF",)),
    "fast": (("hsv", "lab"), (50, 100), ("CTSF", "TSF")),
    "quality": (("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300), ("CTSF", "TSF", "F", "S")),
}


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


# --------------------------------------------------------------------------------------------- 5. similarity
class Weights(NamedTuple):
    """A similarity measure as weights: ``histogram`` (D,) float64 is 1 on the colour and/or texture columns it
    uses (None when it uses neither), ``size`` and ``fill`` say whether those terms count."""
    histogram: np.ndarray | None
    size: bool
    fill: bool


def measure_weights(measure, colour_dims, dims):
    """:class:`Weights` for a measure such as ``"CTSF"`` (a subset of the letters C, T, S, F)."""
    if not measure or set(measure) - set("CTSF"):
        raise ValueError(f"a similarity measure is a non-empty subset of 'CTSF', got {measure!r}")
    hist = None
    if "C" in measure or "T" in measure:
        hist = np.zeros(dims)
        hist[:colour_dims] = "C" in measure
        hist[colour_dims:] = "T" in measure
    return Weights(hist, "S" in measure, "F" in measure)


def pair_similarity(hist, sizes, boxes, i, j, image_area, weights):
    """Similarity of regions ``i`` and ``j`` (paper Sec. 3.2), a sum of up to four terms in ``[0, 1]``:

    * colour and texture: histogram intersection ``sum_k min(h_i[k], h_j[k])``;
    * size: ``1 - (size_i + size_j) / size(image)``, so small regions merge first;
    * fill: ``1 - (size(box_ij) - size_i - size_j) / size(image)`` with ``box_ij`` the box around both, so regions
      that fill each other's gaps merge first.

    Args:
        hist: (N, D) float array, region histograms.
        sizes: (N,) float array, region pixel counts.
        boxes: (N, 4) int array, region boxes ``(x1, y1, x2, y2)``.
        i: int or (k,) int array, region indices.
        j: (k,) int array, region indices.
        image_area: ``H * W``.
        weights: :class:`Weights` of the measure.

    Returns:
        (k,) float64 array.
    """
    both = sizes[i] + sizes[j]
    sim = np.zeros(len(j))
    if weights.histogram is not None:
        sim += np.minimum(hist[i], hist[j]) @ weights.histogram
    if weights.size:
        sim += 1 - both / image_area
    if weights.fill:
        box_i, box_j = boxes[i], boxes[j]
        wh = np.maximum(box_i[..., 2:], box_j[:, 2:]) - np.minimum(box_i[..., :2], box_j[:, :2]) + 1
        sim += 1 - (wh[:, 0] * wh[:, 1] - both) / image_area
    return sim


# ------------------------------------------------------------------------------------------------ 6. grouping
class Hierarchy(NamedTuple):
    """The result of grouping ``n`` leaf regions.

    Attributes:
        boxes: (n + m, 4) int64, every region's box ``(x1, y1, x2, y2)``: the leaves ``0 .. n-1``, then region
            ``n + s`` formed at merge step ``s``.
        merges: (m, 2) int64, the two regions joined at each step; ``m = n - 1`` when the regions were connected.
        sizes: (n + m,) float64, every region's pixel count.
    """
    boxes: np.ndarray
    merges: np.ndarray
    sizes: np.ndarray


def _pop_live_pair(heap, alive):
    """The most similar pair on the heap whose regions both still exist, or None when there is none. Entries of
    regions merged since they were pushed are stale and dropped here ("lazy deletion")."""
    while heap:
        _, i, j = heapq.heappop(heap)
        if alive[i] and alive[j]:
            return i, j
    return None


def merge_hierarchy(regions, pairs, image_area, measure="CTSF"):
    """Greedy hierarchical grouping (paper Sec. 3.1, Algorithm 1).

    Repeatedly merge the most similar pair of neighbouring regions into a new region ``t`` whose histograms are the
    size-weighted mean of its parts, whose box covers both, and whose neighbours are theirs. Only the similarities of
    ``t`` with its neighbours are new; every other pair's similarity is unchanged, so a heap of pairs (stale pairs
    skipped when popped) finds the next merge without rescoring anything.

    Args:
        regions: :class:`Regions` of the ``n`` leaves.
        pairs: (p, 2) int array, the adjacent leaf pairs (from :func:`adjacent_pairs`).
        image_area: ``H * W``.
        measure: similarity measure, letters from ``"CTSF"``.

    Returns:
        :class:`Hierarchy`.
    """
    n, dims = regions.histograms.shape
    total = 2 * n - 1
    hist = np.empty((total, dims))
    hist[:n] = regions.histograms
    sizes = np.empty(total)
    sizes[:n] = regions.sizes
    boxes = np.empty((total, 4), dtype=np.int64)
    boxes[:n] = regions.boxes
    weights = measure_weights(measure, regions.colour_dims, dims)

    neighbours = [set() for _ in range(total)]
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    sims = pair_similarity(hist, sizes, boxes, pairs[:, 0], pairs[:, 1], image_area, weights)
    heap = list(zip((-sims).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist()))    # heapq is a min-heap
    heapq.heapify(heap)
    alive = [True] * n + [False] * (n - 1)

    merges = []
    for t in range(n, total):
        pair = _pop_live_pair(heap, alive)
        if pair is None:                                 # the adjacency graph was not connected
            break
        i, j = pair
        merges.append(pair)
        alive[i] = alive[j] = False
        alive[t] = True
        sizes[t] = sizes[i] + sizes[j]
        hist[t] = (sizes[i] * hist[i] + sizes[j] * hist[j]) / sizes[t]
        boxes[t, :2] = np.minimum(boxes[i, :2], boxes[j, :2])
        boxes[t, 2:] = np.maximum(boxes[i, 2:], boxes[j, 2:])

        around = (neighbours[i] | neighbours[j]) - {i, j}
        for k in around:
            neighbours[k].discard(i)
            neighbours[k].discard(j)
            neighbours[k].add(t)
        neighbours[t], neighbours[i], neighbours[j] = around, None, None
        if around:
            ks = np.fromiter(around, dtype=np.int64, count=len(around))
            sims = pair_similarity(hist, sizes, boxes, t, ks, image_area, weights)
            for s, k in zip((-sims).tolist(), ks.tolist()):
                heapq.heappush(heap, (s, k, t))
    end = n + len(merges)
    return Hierarchy(boxes[:end], np.array(merges, dtype=np.int64).reshape(-1, 2), sizes[:end])


# -------------------------------------------------------------------------------------- 7. pooling strategies
def rank_boxes(hierarchy_boxes, rng, max_boxes):
    """Pool the boxes of several hierarchies into one ranked, duplicate-free list (paper Sec. 3.3).

    Within a hierarchy, region ``r`` of ``R`` gets position ``R - r``: 1 for the last merge (the whole image), larger
    further down. Each position is multiplied by a random number in ``[0, 1)`` so that no strategy's large regions
    crowd out everything else; boxes are sorted by that value, and a box that several strategies found keeps its
    best place.

    Args:
        hierarchy_boxes: sequence of (R_s, 4) int arrays, each hierarchy's region boxes in formation order.
        rng: ``numpy.random.Generator``; one draw per box, hierarchy by hierarchy.
        max_boxes: keep at most this many.

    Returns:
        (n, 4) float32 array of boxes ``(x1, y1, x2, y2)``, best first, no two equal.
    """
    values = [rng.random(len(b)) * np.arange(len(b), 0, -1) for b in hierarchy_boxes]
    boxes = np.concatenate(hierarchy_boxes).astype(np.int64)
    order = np.argsort(np.concatenate(values), kind="stable")
    boxes = boxes[order]
    side = int(boxes.max()) + 1                # one integer per box, to find duplicates quickly (side**4 < 2**63)
    keys = ((boxes[:, 0] * side + boxes[:, 1]) * side + boxes[:, 2]) * side + boxes[:, 3]
    _, first = np.unique(keys, return_index=True)       # first occurrence = best value
    return boxes[np.sort(first)[:max_boxes]].astype(np.float32)


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or image.shape[0] < 1 or image.shape[1] < 1:
        desc = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {desc}")


def selective_search(image, mode="fast", max_boxes=2000, seed=0):
    """Selective search object proposals for one image.

    Runs every strategy of the mode (colour space x segmentation scale ``k`` x similarity measure, see
    :data:`MODES`), each a full hierarchical grouping, and pools and ranks their boxes (:func:`rank_boxes`).

    Args:
        image: (H, W, 3) uint8 RGB image.
        mode: ``"fast"`` (2 colour spaces x 2 ``k`` x 2 measures = 8 strategies), ``"quality"`` (5 x 4 x 4 = 80)
            or ``"single"`` (one strategy); see :data:`MODES`.
        max_boxes: keep at most this many boxes (the best ranked).
        seed: seed (int or sequence of ints) of the random ranking; same seed, same boxes.

    Returns:
        (n, 4) float32 array of boxes ``(x1, y1, x2, y2)``, 0-based inclusive pixel corners, best first, unique.

    Raises:
        ValueError: ``image`` is not an (H, W, 3) uint8 array, or ``mode`` or ``max_boxes`` is invalid.
    """
    _check_image(image)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if int(max_boxes) < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    spaces, ks, measures = MODES[mode]
    area = image.shape[0] * image.shape[1]
    found = []
    for space in spaces:
        converted = colour_space(image, space)
        colour, texture = colour_codes(converted), texture_codes(converted)
        for k in ks:
            labels = segment(converted, k)
            regions = region_features(labels, colour, texture)
            pairs = adjacent_pairs(labels)
            for measure in measures:
                found.append(merge_hierarchy(regions, pairs, area, measure).boxes)
    return rank_boxes(found, np.random.default_rng(seed), int(max_boxes))
