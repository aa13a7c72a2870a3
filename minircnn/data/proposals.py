"""Region proposals for a dataset split: where Fast R-CNN's RoIs come from (paper Sec. 2, 5.5; spec §12).

* :func:`~minircnn.data.selective_search.selective_search` (the paper's proposals) and :func:`dense_boxes` (sliding
  windows, the paper's Sec. 5.5 experiment) compute boxes for one image;
* :func:`load_proposals_mat` reads the original release's ``.mat`` files; :func:`save_proposals` /
  :func:`load_proposals` are our own ``.npz`` format;
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
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from ..boxes import iou
from ..io import atomic_save_npz
from .selective_search import selective_search

__all__ = ["METHODS", "DENSE_SCALES", "DENSE_ASPECT_RATIOS", "dense_boxes", "load_proposals_mat", "save_proposals",
           "load_proposals", "compute_proposals", "proposals_for_split", "proposal_recall"]

METHODS = ("ss-fast", "ss-quality", "dense")
DENSE_SCALES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)   # window side sqrt(w * h), px: steps of ~1.4x
DENSE_ASPECT_RATIOS = (0.5, 1.0, 2.0)                                # h / w
FORMAT_VERSION = 1                                                   # of our .npz proposal files


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


# ----------------------------------------------------------------------------------------------- .mat files
def _mat_strings(cell):
    """The strings of a MATLAB cell array (or char matrix) read by ``scipy.io.loadmat``."""
    cell = np.asarray(cell)
    if cell.dtype.kind == "U":
        return [str(s).strip() for s in cell.ravel()]
    return [str(np.asarray(s).ravel()[0]).strip() if np.asarray(s).size else "" for s in cell.ravel()]


def load_proposals_mat(path, image_ids=None, layout="selective_search"):
    """Proposals from a ``.mat`` file of the original Fast R-CNN release (spec §12, gotcha 17).

    Args:
        path: the file, holding a variable ``boxes``: a cell array with one (n_i, 4) matrix per image, in the order
            of the split's ``ImageSets/Main/<split>.txt``, or a single matrix (one image, as in the demo files).
        image_ids: the split's image ids; when given, the number of images must match (and the ids, when the file
            has an ``images`` variable).
        layout: ``"selective_search"``: rows are ``[y1 x1 y2 x2]``, 1-based (``selective_search_data/*.mat``),
            converted by swapping columns and subtracting 1. ``"demo"``: rows are already ``[x1 y1 x2 y2]``,
            0-based (``data/demo/*_boxes.mat``), kept as they are.

    Returns:
        list with one (n_i, 4) float32 array of boxes ``(x1, y1, x2, y2)`` per image, 0-based. No duplicate removal
        or size filtering (the original code did neither).

    Raises:
        ValueError: ``layout`` is unknown, the file has no ``boxes``, a matrix is not (n, 4), a box is inverted or
            has negative coordinates, or the file does not match ``image_ids``. The message names the file.
    """
    if layout not in ("selective_search", "demo"):
        raise ValueError(f"layout must be 'selective_search' or 'demo', got {layout!r}")
    try:
        data = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise
    except (ValueError, OSError, TypeError, NotImplementedError) as e:   # not a .mat file, MATLAB v7.3 (HDF5), ...
        raise ValueError(f"{path}: cannot read it as a .mat file: {e}") from None
    if "boxes" not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: no 'boxes' variable (found {found})")
    raw = data["boxes"]
    per_image = list(raw.ravel()) if raw.dtype == object else [raw]
    out = []
    for k, b in enumerate(per_image):
        b = np.asarray(b)
        b = b.reshape(0, 4) if b.size == 0 else b
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{path}: boxes of image {k} must have shape (n, 4), got {b.shape}")
        b = b.astype(np.float32)                          # before subtracting: the files store unsigned ints
        if layout == "selective_search":
            b = b[:, [1, 0, 3, 2]] - 1                    # [y1 x1 y2 x2] 1-based -> [x1 y1 x2 y2] 0-based
        bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]) | (b < 0).any(axis=1))
        if bad.size:
            hint = " (a file already 0-based [x1 y1 x2 y2], like the demo files, needs layout='demo')" \
                if layout == "selective_search" and (b[bad] < 0).any() else ""
            raise ValueError(f"{path}: image {k}, box {bad[0]}: {b[bad[0]].tolist()} is inverted or has negative "
                             f"coordinates after conversion{hint}")
        out.append(b)
    if image_ids is not None:
        if len(out) != len(image_ids):
            raise ValueError(f"{path}: proposals for {len(out)} images, but the split has {len(image_ids)}")
        if "images" in data:
            _check_ids(path, _mat_strings(data["images"]), image_ids)
    return out


def _check_ids(path, found, expected):
    found, expected = [str(i) for i in found], [str(i) for i in expected]
    if len(found) != len(expected):
        raise ValueError(f"{path}: proposals for {len(found)} images, but the split has {len(expected)}")
    for k, (a, b) in enumerate(zip(found, expected)):
        if a != b:
            raise ValueError(f"{path}: image {k} is {a!r} in the proposal file but {b!r} in the split")


# ------------------------------------------------------------------------------------------- our .npz files
def save_proposals(path, boxes, image_ids, **meta):
    """Write proposals to an ``.npz`` file atomically (a crash never leaves half a file), without pickle.

    Layout: ``boxes`` (sum n_i, 4) float32 all images' boxes one after another, ``offsets`` (N + 1,) int64 where
    image i's boxes are ``boxes[offsets[i]:offsets[i + 1]]``, ``image_ids`` (N,) str, ``version``, plus ``meta``.

    Args:
        path: destination file.
        boxes: list of N (n_i, 4) arrays, one per image.
        image_ids: the N image ids, in the same order.
        **meta: scalars to store alongside (e.g. ``method="ss-fast"``, ``seed=0``).
    """
    if len(boxes) != len(image_ids):
        raise ValueError(f"boxes has {len(boxes)} images but image_ids has {len(image_ids)}")
    arrays = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in arrays])]).astype(np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros((0, 4), np.float32)
    atomic_save_npz(path, boxes=flat, offsets=offsets, image_ids=np.array([str(i) for i in image_ids], dtype=str),
                    version=FORMAT_VERSION, **{k: np.asarray(v) for k, v in meta.items()})


def load_proposals(path, image_ids=None, return_meta=False):
    """Read proposals written by :func:`save_proposals`.

    Args:
        path: the ``.npz`` file.
        image_ids: the split's image ids; when given they must equal the file's, in order.
        return_meta: also return the stored metadata as a dict of Python scalars.

    Returns:
        list of (n_i, 4) float32 arrays (and the metadata dict when ``return_meta``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a proposal file of this format, or its images differ from ``image_ids``
            (the message names the file).
    """
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read it as an .npz proposal file: {e}") from None
    if not hasattr(f, "files") or not {"boxes", "offsets", "image_ids"} <= set(f.files):   # (.npy: an array)
        raise ValueError(f"{path}: not a minircnn proposal file (needs boxes, offsets and image_ids)")
    with f:
        boxes, offsets, ids = f["boxes"], f["offsets"], f["image_ids"].tolist()
        meta = {k: f[k].item() for k in f.files if k not in ("boxes", "offsets", "image_ids")}
    if boxes.ndim != 2 or boxes.shape[1] != 4 or offsets.shape != (len(ids) + 1,) or offsets[0] != 0 \
            or offsets[-1] != len(boxes) or (np.diff(offsets) < 0).any():
        raise ValueError(f"{path}: corrupt proposal file (boxes {boxes.shape}, offsets {offsets.shape}, "
                         f"{len(ids)} image ids)")
    if image_ids is not None:
        _check_ids(path, ids, image_ids)
    out = [boxes[offsets[i]:offsets[i + 1]] for i in range(len(ids))]
    return (out, meta) if return_meta else out


# ------------------------------------------------------------------------------------- computing for a split
def _image(dataset, i):
    """Image ``i`` of a :class:`~minircnn.data.voc.VOCDataset` or of a plain sequence of images."""
    if hasattr(dataset, "load_image"):
        return dataset.load_image(i)
    item = dataset[i]
    return item if isinstance(item, np.ndarray) else item.image


def _boxes_for_image(dataset, i, method, seed, max_boxes):
    """One image's proposals. The seed is ``(seed, i)``: the same boxes whichever worker computes them."""
    image = _image(dataset, i)
    if method == "dense":
        return dense_boxes(image.shape)
    mode = {"ss-fast": "fast", "ss-quality": "quality"}[method]
    return selective_search(image, mode=mode, max_boxes=max_boxes, seed=(seed, i))


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
    """A split's proposals, computed once and cached as ``<root>/proposals/<split>_<method>.npz``.

    The cache is reused when it was made with the same method, seed and ``max_boxes`` for the same image ids;
    otherwise (or with ``recompute``) the proposals are computed again and the file replaced atomically.

    Args:
        dataset: a :class:`~minircnn.data.voc.VOCDataset` (needs ``root``, ``split`` and ``ids``).
        method, seed, max_boxes, workers, progress: as in :func:`compute_proposals`.
        cache_dir: folder of the cache file; ``<dataset root>/proposals`` when None.
        recompute: ignore an existing cache.

    Returns:
        list of (n_i, 4) float32 arrays, one per image of the split.
    """
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
