"""Exercise: the RoIs of one image for an SGD step, hierarchical sampling's second stage (paper Sec. 2.3
"Mini-batch sampling"; docs/reference.md §6; lesson 06).

Copy this file (e.g. to ``my_sampler.py``), fill in ``sample_rois``, and check it::

    python -m pytest tests/data/test_sampler.py --impl my_sampler.py

The package's answer is ``minircnn/data/sampler.py``: read it after your own attempt.
"""
import numpy as np


def sample_rois(entry, config, rng):
    """Choose the RoIs of one image: up to a quarter foreground, the rest background.

    Args:
        entry: one image's :class:`minircnn.data.roidb.RoidbEntry`. Its candidates are the rows of ``entry.boxes``
            (the ground-truth boxes first, then the proposals); ``entry.max_overlaps`` (rows,) is each row's best
            IoU with a ground-truth box and ``entry.max_classes`` (rows,) that box's class.
        config: a :class:`minircnn.data.sampler.SamplerConfig`: ``rois_per_image`` (R/N = 64),
            ``fg_rois_per_image`` (16), ``fg_thresh`` (0.5), ``bg_thresh_lo`` (0.1), ``bg_thresh_hi`` (0.5).
        rng: ``numpy.random.Generator``.

    Returns:
        keep: (k,) int64 rows of ``entry.boxes``, the foreground ones first, then the background ones; no row twice.
        labels: (k,) int64, ``max_classes`` of the foreground rows, 0 for the background rows.

    Steps:
        1. foreground candidates: rows with max IoU >= ``fg_thresh``; draw ``min(fg_rois_per_image, how many)`` of
           them uniformly without replacement (``rng.choice(rows, size=n, replace=False)``);
        2. background candidates: rows with max IoU in ``[bg_thresh_lo, bg_thresh_hi)``; draw
           ``min(rois_per_image - foreground drawn, how many)`` the same way;
        3. no padding: an image short of candidates gives fewer RoIs.
    """
    raise NotImplementedError("write sample_rois: see the steps in its docstring")
