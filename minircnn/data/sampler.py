"""Hierarchical mini-batch sampling: N images per SGD step, R/N RoIs from each (paper Sec. 2.3, spec §6).

RoIs of the same image share the conv computation, so a step takes many RoIs from few images (N = 2, R = 128)
rather than one RoI from each of 128 images. Per image (``FR:lib/roi_data_layer/minibatch.py``):

* foreground: rows with max IoU >= 0.5 -- ground-truth boxes included -- up to 25% of the image's share (16 of 64),
  drawn uniformly without replacement;
* background: rows with max IoU in [0.1, 0.5), filling the rest of the share, also without replacement; rows
  below 0.1 are never used (a heuristic for hard example mining, paper Sec. 2.3);
* no padding: an image short of candidates contributes fewer RoIs, and the batch has fewer than R (spec §14.10).

Images come in a random permutation of the roidb (originals and flipped copies alike), N at a time, reshuffled
when fewer than N are left (spec §5). All randomness comes from one ``numpy.random.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .transforms import Preprocessing, images_to_blob, prepare_image

__all__ = ["SamplerConfig", "MiniBatch", "sample_rois", "batch_order", "get_minibatch", "iterate_minibatches"]


@dataclass(frozen=True)
class SamplerConfig:
    """The numbers of the sampler; the defaults are the paper's (``FR:lib/fast_rcnn/config.py``, spec §4).

    Attributes:
        ims_per_batch: N, images per SGD step.
        batch_size: R, RoIs per step over all N images; must be a multiple of N.
        fg_fraction: largest share of foreground RoIs per image (0.25: at most 16 of 64).
        fg_thresh: a RoI is foreground if its max IoU >= this.
        bg_thresh_hi, bg_thresh_lo: a RoI is background if its max IoU is in ``[bg_thresh_lo, bg_thresh_hi)``.
        scales: target shorter sides; each image of a step draws one uniformly (multi-scale training).
        max_size: cap on the longer side of a scaled image.
    """
    ims_per_batch: int = 2
    batch_size: int = 128
    fg_fraction: float = 0.25
    fg_thresh: float = 0.5
    bg_thresh_hi: float = 0.5
    bg_thresh_lo: float = 0.1
    scales: tuple = (600,)
    max_size: int = 1000

    def __post_init__(self):
        for name in ("ims_per_batch", "batch_size", "max_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size % self.ims_per_batch:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of ims_per_batch "
                             f"({self.ims_per_batch})")
        for name in ("fg_fraction", "fg_thresh", "bg_thresh_hi", "bg_thresh_lo"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if self.bg_thresh_lo > self.bg_thresh_hi:
            raise ValueError(f"bg_thresh_lo ({self.bg_thresh_lo}) must not exceed bg_thresh_hi ({self.bg_thresh_hi})")
        scales = tuple(self.scales)
        if not scales or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive integers, got {self.scales!r}")
        object.__setattr__(self, "scales", tuple(int(s) for s in scales))

    @property
    def rois_per_image(self):
        """R / N: the RoI share of each image (64)."""
        return self.batch_size // self.ims_per_batch

    @property
    def fg_rois_per_image(self):
        """At most this many foreground RoIs per image: ``round(fg_fraction * R / N)`` (16)."""
        return int(np.round(self.fg_fraction * self.rois_per_image))


class MiniBatch(NamedTuple):
    """The inputs of one SGD step (the blobs of ``FR:lib/roi_data_layer/layer.py``).

    Attributes:
        blob: (N, 3, H, W) float32, the preprocessed images, zero-padded top-left.
        rois: (R', 5) float32, ``(batch_index, x1, y1, x2, y2)`` in blob coordinates; R' <= R (no padding).
        labels: (R',) int64, class of each RoI, 0 for background.
        bbox_targets: (R', 4 * num_classes) float32, normalised targets in the 4 columns of the RoI's class.
        bbox_weights: (R', 4 * num_classes) float32, 1 in those 4 columns of every foreground RoI, else 0.
    """
    blob: np.ndarray
    rois: np.ndarray
    labels: np.ndarray
    bbox_targets: np.ndarray
    bbox_weights: np.ndarray


def sample_rois(entry, config, rng):
    """Choose the RoIs of one image for a step (spec §6, ``_sample_rois``).

    Args:
        entry: a :class:`~minircnn.data.roidb.RoidbEntry`.
        config: a :class:`SamplerConfig`.
        rng: ``numpy.random.Generator``.

    Returns:
        keep: (k,) int64, rows of ``entry.boxes``: the foreground ones first, then the background ones;
            ``k <= config.rois_per_image``, no row twice.
        labels: (k,) int64, ``entry.max_classes`` of the foreground rows, 0 for the background rows.
    """
    overlaps = entry.max_overlaps
    fg = np.flatnonzero(overlaps >= config.fg_thresh)
    n_fg = min(config.fg_rois_per_image, fg.size)
    fg = rng.choice(fg, size=n_fg, replace=False)
    bg = np.flatnonzero((overlaps >= config.bg_thresh_lo) & (overlaps < config.bg_thresh_hi))
    n_bg = min(config.rois_per_image - n_fg, bg.size)
    bg = rng.choice(bg, size=n_bg, replace=False)
    keep = np.concatenate([fg, bg]).astype(np.int64)
    labels = entry.max_classes[keep].astype(np.int64)
    labels[n_fg:] = 0                            # a background RoI may still overlap some object a little
    return keep, labels


def batch_order(num_entries, ims_per_batch, rng):
    """Endless stream of roidb indices, ``ims_per_batch`` at a time (spec §5 data order).

    Each epoch is a fresh random permutation taken N at a time; when fewer than N indices are left they are dropped
    and a new permutation starts. (The original code reshuffled already when *exactly* N were left, ``cur + N >=
    len``, so it also dropped a full last batch; here that batch is used.)

    Args:
        num_entries: length of the roidb, >= ims_per_batch.
        ims_per_batch: N.
        rng: ``numpy.random.Generator``.

    Returns:
        An iterator of (N,) int64 arrays of indices into the roidb.
    """
    if num_entries < ims_per_batch:
        raise ValueError(f"num_entries ({num_entries}) must be at least ims_per_batch ({ims_per_batch})")

    def epochs():
        while True:
            perm = rng.permutation(num_entries)
            for start in range(0, num_entries - ims_per_batch + 1, ims_per_batch):
                yield perm[start:start + ims_per_batch]
    return epochs()


def _regression_blobs(entry, keep, labels, num_classes):
    """Class-wise targets and weights of the kept rows (spec §6, ``_get_bbox_regression_labels``).

    Row i gets its 4 normalised targets in columns ``4c .. 4c + 3`` of its class c and weight 1 there, if it is
    foreground and has a target; every other entry is 0.

    Returns:
        targets, weights: (len(keep), 4 * num_classes) float32 arrays.
    """
    t = np.zeros((keep.size, num_classes, 4), dtype=np.float32)
    w = np.zeros_like(t)
    cls = entry.target_classes[keep]
    rows = np.flatnonzero((labels > 0) & (cls > 0))
    t[rows, cls[rows]] = entry.bbox_targets[keep[rows]]
    w[rows, cls[rows]] = 1.0
    return t.reshape(keep.size, 4 * num_classes), w.reshape(keep.size, 4 * num_classes)


def get_minibatch(entries, load_image, num_classes, preprocessing, config, rng):
    """Build the inputs of one SGD step from N roidb entries (spec §6, ``FR:minibatch.py::get_minibatch``).

    Args:
        entries: the N :class:`~minircnn.data.roidb.RoidbEntry` of the step, with targets
            (:func:`~minircnn.data.roidb.compute_targets`).
        load_image: callable ``image_index -> (H, W, 3) uint8 RGB`` array of the *unflipped* image; flipped entries
            are mirrored here.
        num_classes: number of classes including background.
        preprocessing: the weights' :class:`~minircnn.data.transforms.Preprocessing`.
        config: a :class:`SamplerConfig`.
        rng: ``numpy.random.Generator``; draws the scale of each image, then the RoIs of each image in turn.

    Returns:
        :class:`MiniBatch`. A foreground RoI without a regression target (only when ``fg_thresh`` is below the
        roidb's 0.5) gets zero weights; background RoIs never get weights.
    """
    if not entries:
        raise ValueError("entries must hold at least one roidb entry")
    if not isinstance(preprocessing, Preprocessing):
        raise ValueError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
    scale_inds = rng.integers(0, len(config.scales), size=len(entries))
    images, rois, labels, targets, weights = [], [], [], [], []
    for b, (entry, scale_ind) in enumerate(zip(entries, scale_inds)):
        if entry.bbox_targets is None:
            raise ValueError(f"entries[{b}] has no regression targets: run compute_targets on the roidb first")
        if entry.max_classes.size and entry.max_classes.max() >= num_classes:
            raise ValueError(f"entries[{b}] has class {entry.max_classes.max()}, but num_classes is {num_classes}")
        image = load_image(entry.image_index)
        if np.shape(image)[:2] != (entry.height, entry.width):
            raise ValueError(f"load_image({entry.image_index}) returned an image of shape {np.shape(image)}, but the "
                             f"roidb entry is {entry.height}x{entry.width}")
        im, scale = prepare_image(image, config.scales[scale_ind], config.max_size, preprocessing,
                                  flip=entry.flipped)
        images.append(im)

        keep, lab = sample_rois(entry, config, rng)
        r = np.empty((keep.size, 5), dtype=np.float64)
        r[:, 0] = b
        r[:, 1:] = entry.boxes[keep].astype(np.float64) * scale            # no rounding (spec §5)
        rois.append(r.astype(np.float32))
        labels.append(lab)

        t, w = _regression_blobs(entry, keep, lab, num_classes)
        targets.append(t)
        weights.append(w)
    return MiniBatch(images_to_blob(images), np.concatenate(rois), np.concatenate(labels),
                     np.concatenate(targets), np.concatenate(weights))


def iterate_minibatches(roidb, load_image, num_classes, preprocessing, config=None, seed=0):
    """Endless stream of training mini-batches over a roidb: :func:`batch_order` then :func:`get_minibatch`.

    Args:
        roidb: list of :class:`~minircnn.data.roidb.RoidbEntry` with targets (flipped copies included).
        load_image: callable ``image_index -> (H, W, 3) uint8 RGB`` array.
        num_classes: number of classes including background.
        preprocessing: the weights' :class:`~minircnn.data.transforms.Preprocessing`.
        config: a :class:`SamplerConfig` (default: the paper's numbers).
        seed: seed of the one ``numpy.random.Generator`` behind the order, the scales and the RoI choice; the same
            seed gives the same stream.

    Returns:
        An iterator of :class:`MiniBatch`, one per SGD step.
    """
    config = SamplerConfig() if config is None else config
    rng = np.random.default_rng(seed)
    order = batch_order(len(roidb), config.ims_per_batch, rng)          # checks the roidb length now
    return (get_minibatch([roidb[i] for i in inds], load_image, num_classes, preprocessing, config, rng)
            for inds in order)
