"""Selective search (Uijlings, van de Sande, Gevers and Smeulders, IJCV 2013): class-agnostic region proposals by
hierarchical grouping, the proposals Fast R-CNN was trained and tested with.

One strategy, one function per step (paper Sec. 3.1); steps 1-4 live in :mod:`minircnn.data.segmentation`:

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

from .segmentation import Regions, adjacent_pairs, colour_codes, colour_space, region_features, segment, texture_codes

__all__ = ["MODES", "pair_similarity", "Hierarchy", "merge_hierarchy", "rank_boxes", "selective_search"]

# mode: (colour spaces, k values, similarity measures), every combination a strategy. "fast" and "quality" are the
# paper's "Selective Search Fast" and "Quality" settings; "single" is one strategy, for lessons and tests.
# Measure letters: C colour, T texture, S size, F fill.
MODES = {
    "single": (("hsv",), (100,), ("CTSF",)),
    "fast": (("hsv", "lab"), (50, 100), ("CTSF", "TSF")),
    "quality": (("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300), ("CTSF", "TSF", "F", "S")),
}


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
