"""Region proposals for a dataset split: where Fast R-CNN's RoIs come from (paper Sec. 2, 5.5; docs/reference.md §12).

* :func:`~minircnn.data.selective_search.selective_search` (the paper's proposals) and :func:`dense_boxes` (sliding
  windows, the paper's Sec. 5.5 experiment) compute boxes for one image;
* :mod:`~minircnn.data.proposal_files` reads the original release's ``.mat`` files and our own ``.npz`` format
  (re-exported here), and resolves ``--proposals FILE`` to a split's file;
* :func:`compute_proposals` runs a method over a split in parallel, :func:`proposals_for_split` does it once and
  caches the result beside the dataset, :func:`proposal_recall` measures how many objects the boxes cover.

Command line (prints recall at IoU 0.5 / 0.7 and boxes per image)::

    python -m minircnn.data.proposals --data data/shapes --split test --method ss-fast

Every box is ``(x1, y1, x2, y2)``, 0-based, inclusive pixel corners, float32.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..boxes import iou
from .proposal_files import is_proposal_file, load_proposals, load_proposals_mat, proposals_from_file, save_proposals
from .selective_search import selective_search

__all__ = ["METHODS", "DENSE_SCALES", "DENSE_ASPECT_RATIOS", "dense_boxes", "load_proposals_mat", "save_proposals",
           "load_proposals", "compute_proposals", "proposals_for_split", "proposal_recall"]

METHODS = ("ss-fast", "ss-quality", "dense")
DENSE_SCALES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)   # window side sqrt(w * h), px: steps of ~1.4x
DENSE_ASPECT_RATIOS = (0.5, 1.0, 2.0)                                # h / w


# ------------------------------------------------------------------------------------------------- dense boxes
def _window_starts(length, size, stride):
    """First pixels of windows of ``size`` sliding over ``length`` pixels; the last window ends at the far edge."""
    if size >= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - size + 1, max(1, round(stride * size)))
    return starts if starts[-1] == length - size else np.append(starts, length - size)


def dense_boxes(image_shape, scales=DENSE_SCALES, aspect_ratios=DENSE_ASPECT_RATIOS, stride=0.25):
    """Sliding windows over positions, scales and aspect ratios (paper Sec. 5.5: dense boxes instead of selective
    search), clipped to the image, duplicates removed.

    A window of scale ``s`` and aspect ratio ``r = h / w`` has ``w = s / sqrt(r)``, ``h = s * sqrt(r)`` (rounded).
    Windows slide by ``stride`` times their own width (height), so every scale is covered equally densely; the last
    window of a row (column) touches the image's edge. A window larger than the image is clipped to it.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)``.
        scales: window sizes ``sqrt(w * h)`` in pixels, each > 0.
        aspect_ratios: ``h / w`` values, each > 0.
        stride: step between neighbouring windows as a fraction of the window size, in ``(0, 1]``.

    Returns:
        (n, 4) float32 array of boxes ``(x1, y1, x2, y2)``, ordered by scale, aspect ratio, then row-major position.

    Raises:
        ValueError: a bad ``image_shape``, ``scales``, ``aspect_ratios`` or ``stride`` (the message names it).
    """
    if len(image_shape) < 2 or int(image_shape[0]) < 1 or int(image_shape[1]) < 1:
        raise ValueError(f"image_shape must start with (H, W), both >= 1, got {tuple(image_shape)}")
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive sizes, got {scales}")
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"aspect_ratios must be a non-empty list of positive h / w ratios, got {aspect_ratios}")
    if not 0 < stride <= 1:
        raise ValueError(f"stride must be in (0, 1] (a fraction of the window size), got {stride}")
    height, width = int(image_shape[0]), int(image_shape[1])
    found = []
    for scale in scales:
        for ratio in aspect_ratios:
            w = max(1, round(scale / math.sqrt(ratio)))
            h = max(1, round(scale * math.sqrt(ratio)))
            x1, y1 = np.meshgrid(_window_starts(width, w, stride), _window_starts(height, h, stride))
            x1, y1 = x1.ravel(), y1.ravel()
            found.append(np.stack([x1, y1, np.minimum(x1 + w, width) - 1, np.minimum(y1 + h, height) - 1], axis=1))
    boxes = np.concatenate(found)
    _, first = np.unique(boxes, axis=0, return_index=True)                  # keep each box's first occurrence
    return boxes[np.sort(first)].astype(np.float32)


# ------------------------------------------------------------------------------------- computing for a split
def _image(dataset, i):
    """Image ``i`` of a :class:`~minircnn.data.voc.VOCDataset` or of a plain sequence of images."""
    if hasattr(dataset, "load_image"):
        return dataset.load_image(i)
    item = dataset[i]
    return item if isinstance(item, np.ndarray) else item.image


def propose(image, method="ss-fast", max_boxes=2000, seed=0):
    """One image's proposals by ``method`` (one of :data:`METHODS`): (P, 4) float boxes ``(x1, y1, x2, y2)``.

    Args:
        image: (H, W, 3) uint8 RGB.
        method: ``"ss-fast"``, ``"ss-quality"`` (selective search) or ``"dense"`` (sliding windows).
        max_boxes: at most this many selective-search boxes.
        seed: seed of selective search's ranking.
    """
    if method == "dense":
        return dense_boxes(image.shape)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    mode = {"ss-fast": "fast", "ss-quality": "quality"}[method]
    return selective_search(image, mode=mode, max_boxes=max_boxes, seed=seed)


def _boxes_for_image(dataset, i, method, seed, max_boxes):
    """One image's proposals. The seed is ``(seed, i)``: the same boxes whichever worker computes them."""
    return propose(_image(dataset, i), method, max_boxes, seed=(seed, i))


_WORKER_DATASET = None


def _init_worker(dataset):
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _worker(job):
    return _boxes_for_image(_WORKER_DATASET, *job)


def compute_proposals(dataset, method="ss-fast", seed=0, max_boxes=2000, workers=None, progress=True):
    """Proposals for every image of a dataset, in parallel over the CPU cores, with a progress bar.

    Deterministic: image i always uses seed ``(seed, i)``, so the result does not depend on ``workers``.

    Args:
        dataset: a :class:`~minircnn.data.voc.VOCDataset` (or any sequence of (H, W, 3) uint8 images).
        method: ``"ss-fast"``, ``"ss-quality"`` (selective search) or ``"dense"`` (:func:`dense_boxes`).
        seed: base seed of selective search's ranking.
        max_boxes: at most this many selective-search boxes per image (dense boxes are not capped).
        workers: processes to use; all cores when None, no extra process when 1.
        progress: show a tqdm progress bar.

    Returns:
        list of (n_i, 4) float32 arrays, one per image, in dataset order.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = len(dataset)
    workers = min(workers or os.cpu_count() or 1, max(n, 1))
    jobs = [(i, method, seed, max_boxes) for i in range(n)]
    bar = dict(total=n, desc=f"{method} proposals", unit="img", disable=not progress)
    if workers == 1:
        return [_boxes_for_image(dataset, *job) for job in tqdm(jobs, **bar)]
    with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(dataset,)) as pool:
        return list(tqdm(pool.imap(_worker, jobs, chunksize=max(1, n // (8 * workers))), **bar))


def proposals_for_split(dataset, method="ss-fast", seed=0, max_boxes=2000, workers=None, cache_dir=None,
                        recompute=False, progress=True):
    """A split's proposals, computed once and cached as ``<root>/proposals/<split>_<method>.npz``; or read from
    precomputed files when ``method`` names them (:func:`~minircnn.data.proposal_files.proposals_from_file`).

    The cache is reused when it was made with the same method, seed and ``max_boxes`` for the same image ids;
    otherwise (or with ``recompute``) the proposals are computed again and the file replaced atomically.

    Args:
        dataset: a :class:`~minircnn.data.voc.VOCDataset` (needs ``root``, ``split`` and ``ids``).
        method, seed, max_boxes, workers, progress: as in :func:`compute_proposals`; ``method`` may also be a
            proposal file setting (a ``{split}`` template, a folder, or a .mat/.npz file).
        cache_dir: folder of the cache file; ``<dataset root>/proposals`` when None.
        recompute: ignore an existing cache.

    Returns:
        list of (n_i, 4) float32 arrays, one per image of the split.
    """
    if is_proposal_file(method):                  # precomputed files (--proposals FILE): read, never cached
        return proposals_from_file(method, dataset)
    folder = Path(cache_dir) if cache_dir is not None else Path(dataset.root) / "proposals"
    path = folder / f"{dataset.split}_{method}.npz"
    meta = {"method": method, "seed": int(seed), "max_boxes": int(max_boxes)}
    if path.is_file() and not recompute:
        try:
            boxes, found = load_proposals(path, dataset.ids, return_meta=True)
            if all(found.get(k) == v for k, v in meta.items()):
                return boxes
        except ValueError as e:                          # other images (the split changed) or unreadable
            warnings.warn(f"recomputing the proposal cache: {e}", stacklevel=2)
    boxes = compute_proposals(dataset, method, seed, max_boxes, workers, progress)
    folder.mkdir(parents=True, exist_ok=True)
    save_proposals(path, boxes, dataset.ids, **meta)
    return boxes


# ------------------------------------------------------------------------------------------------------ recall
def proposal_recall(proposals, gt_boxes, thresholds=(0.5, 0.7), ignore=None):
    """Fraction of ground-truth objects that some proposal overlaps with IoU >= each threshold.

    Args:
        proposals: list of (n_i, 4) arrays, one per image.
        gt_boxes: list of (g_i, 4) arrays, the ground truth of the same images.
        thresholds: IoU thresholds.
        ignore: optional list of (g_i,) bool arrays; objects marked True (e.g. ``difficult``) are not counted.

    Returns:
        dict: ``recall`` {threshold: fraction}, ``objects`` (number counted), ``boxes_per_image`` (mean).
    """
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"proposals has {len(proposals)} images but gt_boxes has {len(gt_boxes)}")
    best = []
    for i, (props, gt) in enumerate(zip(proposals, gt_boxes)):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        if ignore is not None:
            gt = gt[~np.asarray(ignore[i], dtype=bool)]
        overlap = iou(gt, np.asarray(props, dtype=np.float64).reshape(-1, 4))
        best.append(overlap.max(axis=1) if overlap.shape[1] else np.zeros(len(gt)))
    best = np.concatenate(best) if best else np.zeros(0)
    return {"recall": {t: float(np.mean(best >= t)) if best.size else float("nan") for t in thresholds},
            "objects": int(best.size),
            "boxes_per_image": float(np.mean([len(p) for p in proposals])) if len(proposals) else 0.0}


def main(argv=None):
    """The command: errors from the library become one line (:func:`minircnn.cli.run_command`)."""
    from ..cli import run_command     # here, not at the top: minircnn.cli imports the package's test-time side
    return run_command(_main)(argv)


def _main(argv=None):
    from .shapes import ensure_shapes_dataset
    from .voc import VOCDataset
    parser = argparse.ArgumentParser(
        prog="python -m minircnn.data.proposals",
        description="Compute (once; cached in DIR/proposals/) the region proposals of a dataset split and print "
                    "their recall at IoU 0.5 and 0.7 and the number of boxes per image.")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="VOC-format dataset folder (default: the built-in shapes dataset, generated if needed)")
    parser.add_argument("--split", default="test", help="split name, ImageSets/Main/<split>.txt (default: test)")
    parser.add_argument("--method", choices=METHODS, default="ss-fast",
                        help="selective search fast or quality mode, or dense sliding windows (default: ss-fast)")
    parser.add_argument("--max-boxes", type=int, default=2000, help="selective-search boxes per image (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of selective search's ranking (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--recompute", action="store_true", help="ignore the cached proposals")
    args = parser.parse_args(argv)
    root = args.data if args.data is not None else ensure_shapes_dataset()
    dataset = VOCDataset(root, args.split)
    start = time.perf_counter()
    boxes = proposals_for_split(dataset, args.method, args.seed, args.max_boxes, args.workers,
                                recompute=args.recompute)
    elapsed = time.perf_counter() - start
    anns = dataset.annotations()
    counts = [len(b) for b in boxes]
    print(f"{args.method} proposals, {dataset}: {elapsed:.1f} s (cache: {Path(root) / 'proposals'})")
    print(f"  boxes per image: mean {np.mean(counts):.0f}, min {min(counts)}, max {max(counts)}")
    for name, ignore in (("non-difficult objects", [a.difficult for a in anns]), ("all objects", None)):
        r = proposal_recall(boxes, [a.boxes for a in anns], (0.5, 0.7), ignore)
        print(f"  recall over {r['objects']} {name}: IoU>=0.5 {r['recall'][0.5]:.3f}, "
              f"IoU>=0.7 {r['recall'][0.7]:.3f}")


if __name__ == "__main__":
    main()
