"""Summary numbers of a VOC-format split: images, objects per image and per class, box sizes, difficult and
truncated objects, overlaps. ``python -m minircnn.data.shapes`` prints them for the generated dataset; they work on
any VOC folder (``split_statistics("VOCdevkit/VOC2007", "trainval")``).
"""
from __future__ import annotations

import numpy as np

from ..boxes import iou
from .voc import VOCDataset


def split_statistics(root, split: str) -> dict:
    """Summary numbers of a split read back through :class:`~minircnn.data.voc.VOCDataset` (no image decoding).

    Returns:
        dict with ``images``, ``objects``, ``objects_per_image`` (min, mean, max), ``per_class`` counts,
        ``box_size`` (min, median, max of ``sqrt(w * h)`` in px), ``difficult``, ``at_border`` (boxes touching the
        image border: truncated shapes), ``images_with_overlap`` (some pair of boxes intersects) and
        ``image_sides`` (min, max).
    """
    ds = VOCDataset(root, split)
    anns = ds.annotations()
    counts = np.array([len(a.boxes) for a in anns])
    boxes = np.concatenate([a.boxes for a in anns])
    labels = np.concatenate([a.labels for a in anns])
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))
    border = sum(int(((a.boxes[:, :2] == 0) | (a.boxes[:, 2:] == (a.width - 1, a.height - 1))).any(1).sum())
                 for a in anns)
    overlap = sum(int((np.triu(iou(a.boxes, a.boxes), 1) > 0).any()) for a in anns)
    return {"images": len(anns), "objects": int(counts.sum()),
            "objects_per_image": (int(counts.min()), round(float(counts.mean()), 2), int(counts.max())),
            "per_class": {name: int((labels == k + 1).sum()) for k, name in enumerate(ds.class_names)},
            "box_size": tuple(round(float(q), 1) for q in np.percentile(sides, [0, 50, 100])),
            "difficult": int(sum(a.difficult.sum() for a in anns)), "at_border": border,
            "images_with_overlap": overlap,
            "image_sides": (min(min(a.height, a.width) for a in anns), max(max(a.height, a.width) for a in anns))}
