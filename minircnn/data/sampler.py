"""Hierarchical mini-batch sampling: N images per SGD step, R/N RoIs from each (paper Sec. 2.3, docs/reference.md §6).

RoIs of the same image share the conv computation, so a step takes many RoIs from few images (N = 2, R = 128)
rather than one RoI from each of 128 images. Per image (``FR:lib/roi_data_layer/minibatch.py``):

* foreground: rows with max IoU >= 0.5 -- ground-truth boxes included -- up to 25% of the image's share (16 of 64),
  drawn uniformly without replacement;
* background: rows with max IoU in [0.1, 0.5), filling the rest of the share, also without replacement; rows
  below 0.1 are never used (a heuristic for hard example mining, paper Sec. 2.3);
* no padding: an image short of candidates contributes fewer RoIs, and the batch has fewer than R (docs/reference.md
  §14.10).

The order of the images (docs/reference.md §5), as training uses it: epoch e is a random permutation of the roidb
(originals and flipped copies alike) taken N at a time, E = len(roidb) // N steps per epoch; a last group of fewer than
N is dropped. Every random draw of iteration (or epoch) i comes from its own generator,
``numpy.random.default_rng((seed, stream, i))`` (:func:`step_rng`): stream 1 (:data:`ORDER`) the epoch's permutation,
stream 2 (:data:`ROIS`) the scales and RoIs of the step. So the mini-batch of step i is a pure function of ``(seed, i)``
(:func:`minibatch_at`): training can prepare it in another thread, and a resumed run sees the same batches.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..boxes import scatter_classwise
from .transforms import Preprocessing, images_to_blob, prepare_image

__all__ = ["SamplerConfig", "MiniBatch", "sample_rois", "step_rng", "images_of_step", "get_minibatch", "minibatch_at",
           "iterate_minibatches", "ORDER", "ROIS", "DROPOUT", "SUBSET"]

#: the random streams of a training run (see the module docstring); dropout masks and the image subset of
#: ``train_images`` are drawn by training from the same scheme
ORDER, ROIS, DROPOUT, SUBSET = 1, 2, 3, 4


def step_rng(seed, stream, i):
    """The generator of one random stream at iteration (or epoch) ``i``: a pure function of (seed, stream, i)."""
    return np.random.default_rng([seed, stream, i])


@dataclass(frozen=True)
class SamplerConfig:
    """The numbers of the sampler; the defaults are the paper's (``FR:lib/fast_rcnn/config.py``, docs/reference.md §4).

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
    """Choose the RoIs of one image for a step (docs/reference.md §6, ``_sample_rois``).

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


def images_of_step(i, num_entries, ims_per_batch, seed):
    """The roidb indices of step ``i`` (docs/reference.md §5 data order): epoch ``i // E``'s permutation, N at a time.

    Each epoch is a fresh random permutation (stream :data:`ORDER`), E = ``num_entries // N`` steps long; when fewer
    than N indices are left they are dropped. (The original code reshuffled already when *exactly* N were left,
    ``cur + N >= len``, so it also dropped a full last batch; here that batch is used.)

    Args:
        i: the step, from 0.
        num_entries: length of the roidb, >= ims_per_batch.
        ims_per_batch: N.
        seed: the run's seed.

    Returns:
        (N,) int64 indices into the roidb.
    """
    if num_entries < ims_per_batch:
        raise ValueError(f"the roidb has {num_entries} entries, fewer than ims_per_batch ({ims_per_batch})")
    epoch, pos = divmod(i, num_entries // ims_per_batch)
    order = step_rng(seed, ORDER, epoch).permutation(num_entries)
    return order[pos * ims_per_batch:(pos + 1) * ims_per_batch]


def _regression_blobs(entry, keep, labels, num_classes):
    """Class-wise targets and weights of the kept rows (docs/reference.md §6, ``_get_bbox_regression_labels``).

    Row i gets its 4 normalised targets in columns ``4c .. 4c + 3`` of its class c and weight 1 there, if it is
    foreground and has a target; every other entry is 0.

    Returns:
        targets, weights: (len(keep), 4 * num_classes) float32 arrays.
    """
    cls = np.where(labels > 0, entry.target_classes[keep], 0)
    return scatter_classwise(entry.bbox_targets[keep].astype(np.float32), cls, num_classes)


def get_minibatch(entries, load_image, num_classes, preprocessing, config, rng):
    """Build the inputs of one SGD step from N roidb entries (docs/reference.md §6, ``FR:minibatch.py::get_minibatch``).

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
        r[:, 1:] = entry.boxes[keep].astype(np.float64) * scale            # no rounding (docs/reference.md §5)
        rois.append(r.astype(np.float32))
        labels.append(lab)

        t, w = _regression_blobs(entry, keep, lab, num_classes)
        targets.append(t)
        weights.append(w)
    return MiniBatch(images_to_blob(images), np.concatenate(rois), np.concatenate(labels),
                     np.concatenate(targets), np.concatenate(weights))


def minibatch_at(i, roidb, load_image, num_classes, preprocessing, config, seed):
    """The mini-batch of step ``i``: :func:`images_of_step`, then :func:`get_minibatch` with stream :data:`ROIS`.

    Args:
        i: the step, from 0.
        roidb, load_image, num_classes, preprocessing, config: see :func:`get_minibatch`.
        seed: the run's seed; the batch is a pure function of ``(seed, i)``.
    """
    entries = [roidb[j] for j in images_of_step(i, len(roidb), config.ims_per_batch, seed)]
    return get_minibatch(entries, load_image, num_classes, preprocessing, config, step_rng(seed, ROIS, i))


def iterate_minibatches(roidb, load_image, num_classes, preprocessing, config=None, seed=0):
    """Endless stream of training mini-batches over a roidb: :func:`minibatch_at` for steps 0, 1, 2, ...

    Args:
        roidb: list of :class:`~minircnn.data.roidb.RoidbEntry` with targets (flipped copies included).
        load_image: callable ``image_index -> (H, W, 3) uint8 RGB`` array.
        num_classes: number of classes including background.
        preprocessing: the weights' :class:`~minircnn.data.transforms.Preprocessing`.
        config: a :class:`SamplerConfig` (default: the paper's numbers).
        seed: the run's seed; the same seed gives the same stream (the one training sees).

    Returns:
        An iterator of :class:`MiniBatch`, one per SGD step.
    """
    config = SamplerConfig() if config is None else config
    images_of_step(0, len(roidb), config.ims_per_batch, seed)          # checks the roidb length now
    return (minibatch_at(i, roidb, load_image, num_classes, preprocessing, config, seed) for i in itertools.count())
