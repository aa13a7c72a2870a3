"""The training data of a run: the roidb with flipped copies and normalised targets, and the mini-batch of step i.

Reproducibility: every random draw of iteration ``i`` comes from ``numpy.random.default_rng((seed, stream, i))``
(:func:`minircnn.data.sampler.step_rng`) -- stream 1 shuffles the roidb once per epoch (so the images of step ``i``
are a function of ``i``), stream 2 draws the scales and RoIs of the step, stream 3 the dropout masks, stream 4 the
subset of ``train_images``. So ``(seed, iteration)`` is the whole random state: ``--resume`` after a crash ends with
a ``checkpoint.npz`` identical, array for array, to that of an uninterrupted run.
"""
from __future__ import annotations

import numpy as np

from ..data import append_flipped, compute_targets, roidb_from_dataset
from ..data.sampler import SUBSET, minibatch_at, step_rng


def build_training_roidb(dataset, proposals, config):
    """The roidb of the training split (docs/reference.md §5): a nested random subset if ``config.train_images``,
    flipped copies appended if ``config.flip``, regression targets normalised.

    Returns:
        roidb (list of :class:`~minircnn.data.roidb.RoidbEntry`), means and stds ((K+1, 4) float64).

    Raises:
        ValueError: ``train_images`` exceeds the split's size.
    """
    roidb = roidb_from_dataset(dataset, proposals)
    if config.train_images:
        if config.train_images > len(roidb):
            raise ValueError(f"train_images={config.train_images}, but {dataset.split} has only {len(roidb)} images")
        # the first n of one fixed permutation: a smaller subset lies inside a larger one (same seed)
        chosen = np.sort(step_rng(config.seed, SUBSET, 0).permutation(len(roidb))[:config.train_images])
        roidb = [roidb[j] for j in chosen]
    if config.flip:
        roidb = append_flipped(roidb)
    return compute_targets(roidb, dataset.num_classes)


def training_minibatch(i, roidb, load_image, num_classes, preprocessing, config):
    """The mini-batch of iteration ``i`` of a run with this config (:func:`minircnn.data.sampler.minibatch_at`)."""
    return minibatch_at(i, roidb, load_image, num_classes, preprocessing, config.sampler, config.seed)


class ImageCache:
    """Decoded training images kept in memory (each is read from disk once)."""

    def __init__(self, dataset):
        self.dataset, self.images = dataset, {}

    def __call__(self, i):
        if i not in self.images:
            self.images[i] = self.dataset.load_image(i)
        return self.images[i]
