"""The roidb: per training image, its candidate RoIs and what the sampler needs to know about them (docs/reference.md
    §5).

One :class:`RoidbEntry` per image (and one more per flipped copy). Its ``boxes`` are the ground-truth boxes first,
then the proposals, in **original image coordinates**; every row knows the ground-truth box it overlaps most
(``max_overlaps``, ``max_classes``, ``gt_assignment``). :func:`compute_targets` adds the regression targets, normalised
per class over the whole training set, flipped copies included (paper Sec. 2.3; docs/reference.md §5 and §14.7).

The pipeline, as in ``FR:lib/fast_rcnn/train.py``::

    roidb = build_roidb(gt_boxes, gt_labels, proposals, image_sizes, num_classes)
    roidb = append_flipped(roidb)                       # the paper trains on both orientations
    roidb, means, stds = compute_targets(roidb, num_classes)
    ...                                                 # train; keep means/stds with the weights
    deltas = unnormalize_deltas(bbox_pred, means, stds)  # at test time, before boxes.decode

Regression targets use :func:`minircnn.boxes.encode` with ``+1`` widths (py-faster-rcnn); the test-time decoding
must use :func:`minircnn.boxes.decode`, which inverts it (docs/reference.md §14.6).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..backend import get_array_module
from ..boxes import clip_boxes, encode, iou
from .transforms import flip_boxes

__all__ = ["RoidbEntry", "build_roidb", "roidb_from_dataset", "append_flipped", "compute_targets",
           "unnormalize_deltas"]

#: Rows whose max IoU with a ground-truth box reaches this get regression targets (``TRAIN.BBOX_THRESH``,
#docs/reference.md §4).
BBOX_THRESH = 0.5


@dataclass(frozen=True, eq=False)
class RoidbEntry:
    """The candidate RoIs of one (possibly flipped) training image.

    Attributes:
        image_index: index of the image in its dataset (a flipped copy shares it with the original).
        height, width: size of the original image in pixels.
        flipped: True for a left-right mirrored copy; ``boxes`` are then already mirrored, the image is not.
        boxes: (n, 4) float32, ``(x1, y1, x2, y2)`` in original image coordinates; the ``num_gt`` ground-truth
            boxes first, then the proposals.
        gt_classes: (n,) int32, the class of each ground-truth row, 0 for proposal rows.
        max_overlaps: (n,) float32, the highest IoU (``+1`` areas) of each row with any ground-truth box; 1 for
            ground-truth rows, 0 when the image has none.
        max_classes: (n,) int32, the class of that ground-truth box; 0 where ``max_overlaps`` is 0.
        gt_assignment: (n,) int32, the index (into the first ``num_gt`` rows) of that ground-truth box; each
            ground-truth row is assigned to itself; -1 where ``max_overlaps`` is 0.
        bbox_targets: (n, 4) float32 normalised ``(dx, dy, dw, dh)`` towards the assigned box, or None before
            :func:`compute_targets`; rows without a target hold zeros.
        target_classes: (n,) int32, the class whose regressor a row trains (``max_classes`` where
            ``max_overlaps >= 0.5``), 0 for rows without a target; None before :func:`compute_targets`.
    """
    image_index: int
    height: int
    width: int
    flipped: bool
    boxes: np.ndarray
    gt_classes: np.ndarray
    max_overlaps: np.ndarray
    max_classes: np.ndarray
    gt_assignment: np.ndarray
    bbox_targets: Optional[np.ndarray] = None
    target_classes: Optional[np.ndarray] = None

    @property
    def num_gt(self):
        """Number of ground-truth rows at the top of ``boxes``."""
        return int(np.count_nonzero(self.gt_classes))


# -------------------------------------------------------------------------------------------------------- build
def _check_boxes(boxes, name, height, width):
    """``boxes`` as (n, 4) float32 inside a ``height`` x ``width`` image; ValueError naming ``name`` if not."""
    arr = np.asarray(boxes)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) as (x1, y1, x2, y2) rows, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        raise ValueError(f"{name} row {int(np.argmax(bad))} has x2 < x1 or y2 < y1: {arr[np.argmax(bad)].tolist()}")
    # Flipping maps [0, W-1] onto itself; a box outside it would come back from the mirror in the wrong place.
    out = (arr[:, :2] < 0).any(axis=1) | (arr[:, 2] > width - 1) | (arr[:, 3] > height - 1)
    if out.any():
        raise ValueError(f"{name} row {int(np.argmax(out))} = {arr[np.argmax(out)].tolist()} leaves the "
                         f"{height}x{width} image; clip it first (minircnn.boxes.clip_boxes)")
    return arr


def _entry(index, height, width, gt_boxes, gt_labels, proposals):
    """The roidb entry of one image (validated inputs); overlaps as ``FR:lib/datasets/imdb.py`` (docs/reference.md
    §5)."""
    boxes = np.concatenate([gt_boxes, proposals], axis=0)
    num_gt, n = len(gt_boxes), len(gt_boxes) + len(proposals)
    gt_classes = np.zeros(n, dtype=np.int32)
    gt_classes[:num_gt] = gt_labels
    max_overlaps = np.zeros(n, dtype=np.float32)
    gt_assignment = np.full(n, -1, dtype=np.int32)
    if num_gt:
        # IoU in float64 like the original's Cython bbox_overlaps, then stored in float32 like its overlap matrix.
        overlaps = iou(boxes.astype(np.float64), gt_boxes.astype(np.float64))          # (n, num_gt)
        argmax = overlaps.argmax(axis=1)
        has = overlaps[np.arange(n), argmax] > 0
        max_overlaps[has] = overlaps[has, argmax[has]]
        gt_assignment[has] = argmax[has]
        # A ground-truth row belongs to itself with IoU 1, even if an identical box of another class precedes it.
        max_overlaps[:num_gt] = 1.0
        gt_assignment[:num_gt] = np.arange(num_gt)
    max_classes = np.where(gt_assignment >= 0, gt_classes[np.maximum(gt_assignment, 0)], 0).astype(np.int32)
    return RoidbEntry(image_index=index, height=height, width=width, flipped=False, boxes=boxes,
                      gt_classes=gt_classes, max_overlaps=max_overlaps, max_classes=max_classes,
                      gt_assignment=gt_assignment)


def build_roidb(gt_boxes_list, gt_labels_list, proposals_list, image_sizes, num_classes):
    """One :class:`RoidbEntry` per image: ground truth first, then proposals, with their overlaps (docs/reference.md
    §5).

    All ground-truth boxes are kept, ``difficult`` ones included, as in the paper (docs/reference.md §14.11). Proposals
    are not deduplicated or filtered (the original code did neither).

    Args:
        gt_boxes_list: per image, (g_i, 4) float array, ground-truth ``(x1, y1, x2, y2)``, 0-based inclusive.
        gt_labels_list: per image, (g_i,) int array, classes in ``[1, num_classes)``.
        proposals_list: per image, (p_i, 4) float or int array, proposals in the same coordinates.
        image_sizes: per image, ``(height, width)`` in pixels.
        num_classes: number of classes **including** background (21 for PASCAL VOC).

    Returns:
        list of :class:`RoidbEntry`, entry ``i`` with ``image_index = i``, not flipped, without targets.

    Raises:
        ValueError: lists of different lengths, bad shapes, labels out of range, boxes with ``x2 < x1`` or leaving
            their image (the message names the argument and the image index).
    """
    lists = {"gt_boxes_list": gt_boxes_list, "gt_labels_list": gt_labels_list,
             "proposals_list": proposals_list, "image_sizes": image_sizes}
    lengths = {name: len(v) for name, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"gt_boxes_list, gt_labels_list, proposals_list and image_sizes must have one item per "
                         f"image, got lengths {lengths}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (background included), got {num_classes!r}")
    roidb = []
    for i, (gt_boxes, gt_labels, proposals, size) in enumerate(zip(*lists.values())):
        if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
            raise ValueError(f"image_sizes[{i}] must be (height, width) >= 1, got {size!r}")
        height, width = int(size[0]), int(size[1])
        gt = _check_boxes(gt_boxes, f"gt_boxes_list[{i}]", height, width)
        props = _check_boxes(proposals, f"proposals_list[{i}]", height, width)
        labels = np.asarray(gt_labels)
        if labels.shape != (len(gt),) or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"gt_labels_list[{i}] must be an integer array of shape ({len(gt)},), "
                             f"got shape {labels.shape} dtype {labels.dtype}")
        if labels.size and (labels.min() < 1 or labels.max() >= num_classes):
            raise ValueError(f"gt_labels_list[{i}] must lie in [1, {num_classes}), got {labels.tolist()}")
        roidb.append(_entry(i, height, width, gt, labels, props))
    return roidb


def roidb_from_dataset(dataset, proposals_list):
    """:func:`build_roidb` for a dataset with VOCDataset's annotation API (no image is decoded).

    Proposals are clipped to their image first (selective search and proposal files can overshoot by a pixel).

    Args:
        dataset: has ``len()``, ``annotation(i)`` (with ``boxes``, ``labels``, ``height``, ``width``) and
            ``num_classes`` (background included), e.g. :class:`minircnn.data.VOCDataset`.
        proposals_list: per image of the dataset, (p_i, 4) proposals ``(x1, y1, x2, y2)``.

    Returns:
        list of :class:`RoidbEntry`, as :func:`build_roidb`.
    """
    if len(proposals_list) != len(dataset):
        raise ValueError(f"proposals_list has {len(proposals_list)} entries but the dataset has {len(dataset)} images")
    notes = [dataset.annotation(i) for i in range(len(dataset))]
    sizes = [(a.height, a.width) for a in notes]
    proposals = [clip_boxes(np.asarray(p, dtype=np.float32).reshape(-1, 4), size)
                 for p, size in zip(proposals_list, sizes)]
    return build_roidb([a.boxes for a in notes], [a.labels for a in notes], proposals, sizes, dataset.num_classes)


def append_flipped(roidb):
    """The roidb followed by a left-right mirrored copy of every entry (docs/reference.md §5,
    ``imdb.append_flipped_images``).

    Boxes become ``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``; overlaps, classes and assignments are unchanged
    (mirroring preserves IoU). Must run before :func:`compute_targets`, so that the statistics include the copies.

    Args:
        roidb: list of :class:`RoidbEntry` without targets.

    Returns:
        list of 2 x len(roidb) entries: the originals, then their copies with ``flipped`` toggled.
    """
    copies = []
    for i, entry in enumerate(roidb):
        if entry.bbox_targets is not None:
            raise ValueError(f"roidb[{i}] already has targets: call append_flipped before compute_targets")
        copies.append(dataclasses.replace(entry, flipped=not entry.flipped,
                                          boxes=flip_boxes(entry.boxes, entry.width)))
    return list(roidb) + copies


# ------------------------------------------------------------------------------------------------------ targets
def _raw_targets(entry):
    """Unnormalised targets of one entry: rows with a target, their classes and (dx, dy, dw, dh) (float64)."""
    rows = np.flatnonzero(entry.max_overlaps >= BBOX_THRESH)
    gt_rows = entry.gt_assignment[rows]
    deltas = encode(entry.boxes[rows].astype(np.float64), entry.boxes[gt_rows].astype(np.float64))
    return rows, entry.max_classes[rows], deltas


def compute_targets(roidb, num_classes):
    """Regression targets for every RoI with max IoU >= 0.5, normalised per class (docs/reference.md §5, paper Sec.
    2.3).

    Each such row (ground-truth rows included) regresses onto the ground-truth box it overlaps most. The per-class
    mean and (population) standard deviation of ``(dx, dy, dw, dh)`` are taken over **all** such rows of **all**
    entries -- pass the flipped-included training roidb -- and targets become ``(t - mean_c) / std_c``.

    Differences from the original code, none of which changes a well-posed case:

    * ``+1`` widths in the encoding (see the module docstring).
    * Statistics in float64 with the two-pass variance, not ``E[t^2] - mean^2``.
    * Safe to divide by: class 0 (background, never regressed) gets mean 0 and std 1, and so does every coordinate
      whose std is 0 (a class without examples, or with only ground-truth rows, whose targets are all 0). The
      original left std 0 there, which would give NaN.

    Args:
        roidb: list of :class:`RoidbEntry` (e.g. after :func:`append_flipped`).
        num_classes: number of classes including background.

    Returns:
        roidb: new entries with ``bbox_targets`` (n, 4) float32 normalised and ``target_classes`` (n,) int32 set.
        means: (num_classes, 4) float64, per-class mean of the raw targets.
        stds: (num_classes, 4) float64, per-class std of the raw targets (positive).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (background included), got {num_classes!r}")
    raw = [_raw_targets(entry) for entry in roidb]
    classes = np.concatenate([c for _, c, _ in raw] + [np.zeros(0, np.int32)]).astype(np.int64)
    deltas = np.concatenate([d for _, _, d in raw] + [np.zeros((0, 4))], axis=0)
    if classes.size and (classes.min() < 1 or classes.max() >= num_classes):
        raise ValueError(f"roidb has target classes in [{classes.min()}, {classes.max()}], "
                         f"outside [1, num_classes = {num_classes})")

    counts = np.bincount(classes, minlength=num_classes).astype(np.float64)
    means = np.zeros((num_classes, 4))
    stds = np.ones((num_classes, 4))
    seen = counts > 0
    for j in range(4):
        sums = np.bincount(classes, weights=deltas[:, j], minlength=num_classes)
        means[seen, j] = sums[seen] / counts[seen]
        squares = np.bincount(classes, weights=(deltas[:, j] - means[classes, j]) ** 2, minlength=num_classes)
        stds[seen, j] = np.sqrt(squares[seen] / counts[seen])
    means[0] = 0.0
    stds[~(stds > 0)] = 1.0                  # std 0 only where every target is equal: nothing to scale

    out = []
    for entry, (rows, cls, d) in zip(roidb, raw):
        targets = np.zeros((len(entry.boxes), 4), dtype=np.float32)
        targets[rows] = (d - means[cls]) / stds[cls]
        target_classes = np.zeros(len(entry.boxes), dtype=np.int32)
        target_classes[rows] = cls
        out.append(dataclasses.replace(entry, bbox_targets=targets, target_classes=target_classes))
    return out, means, stds


def unnormalize_deltas(deltas, means, stds):
    """Undo the target normalisation on the network's class-wise deltas: ``d * std_c + mean_c`` (docs/reference.md
    §14.7).

    Call this at test time on ``bbox_pred`` before :func:`minircnn.boxes.decode` -- unless the statistics were
    folded into the ``bbox_pred`` weights (``W' = W * std``, ``b' = b * std + mean``), as the original snapshots do;
    never both.

    Args:
        deltas: (R, 4 * num_classes) float array (NumPy or CuPy), class k in columns ``4k .. 4k + 3``.
        means: (num_classes, 4) float array from :func:`compute_targets`.
        stds: (num_classes, 4) float array from :func:`compute_targets`.

    Returns:
        (R, 4 * num_classes) array on the device and of the float dtype of ``deltas``.
    """
    xp = get_array_module(deltas)
    deltas = xp.asarray(deltas)
    means, stds = np.asarray(means), np.asarray(stds)
    if means.ndim != 2 or means.shape[1] != 4 or stds.shape != means.shape:
        raise ValueError(f"means and stds must both have shape (num_classes, 4), got {means.shape} and {stds.shape}")
    if deltas.ndim != 2 or deltas.shape[1] != means.size:
        raise ValueError(f"deltas must have shape (R, {means.size}) to match means, got shape {deltas.shape}")
    dtype = deltas.dtype if deltas.dtype.kind == "f" else np.float64
    mean = xp.asarray(means.reshape(-1), dtype=dtype)
    std = xp.asarray(stds.reshape(-1), dtype=dtype)
    return deltas.astype(dtype, copy=False) * std + mean
