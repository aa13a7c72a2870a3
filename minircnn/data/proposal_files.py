"""Proposal files: the original release's ``.mat`` files and our ``.npz`` format, and which file holds a split.

* :func:`load_proposals_mat` reads ``selective_search_data/voc_2007_<split>.mat`` (docs/reference.md §12);
* :func:`save_proposals` / :func:`load_proposals` are our own ``.npz`` format (what the cache of
  :func:`~minircnn.data.proposals.proposals_for_split` holds, and what you can precompute proposals into);
* :func:`split_proposal_file` / :func:`proposals_from_file` make ``--proposals FILE`` work: a training run reads
  its training split's and its test split's boxes from precomputed files instead of running selective search.

Every box is ``(x1, y1, x2, y2)``, 0-based, inclusive pixel corners, float32.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import scipy.io

from ..io import atomic_save_npz

__all__ = ["load_proposals_mat", "save_proposals", "load_proposals", "split_proposal_file", "proposals_from_file",
           "is_proposal_file"]

FORMAT_VERSION = 1                                                   # of our .npz proposal files
SUFFIXES = (".mat", ".npz")


def _mat_strings(cell):
    """The strings of a MATLAB cell array (or char matrix) read by ``scipy.io.loadmat``."""
    cell = np.asarray(cell)
    if cell.dtype.kind == "U":
        return [str(s).strip() for s in cell.ravel()]
    return [str(np.asarray(s).ravel()[0]).strip() if np.asarray(s).size else "" for s in cell.ravel()]


def load_proposals_mat(path, image_ids=None, layout="selective_search"):
    """Proposals from a ``.mat`` file of the original Fast R-CNN release (docs/reference.md §12, §14.17).

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


# ------------------------------------------------------------------------------------------ --proposals FILE
def is_proposal_file(spec: str) -> bool:
    """Whether a ``proposals`` setting names files (a ``{split}`` template, a folder, or a .mat/.npz file) rather
    than a method (``ss-fast``, ``ss-quality``, ``dense``)."""
    spec = str(spec)
    return "{split}" in spec or spec.endswith(SUFFIXES) or "/" in spec or "\\" in spec or Path(spec).is_dir()


def split_proposal_file(spec, split: str) -> Path:
    """The file that holds ``split``'s proposals.

    Args:
        spec: a path template with ``{split}`` (``selective_search_data/voc_2007_{split}.mat``), a folder holding
            exactly one ``*<split>.mat`` or ``*<split>.npz`` (the original release's folder:
            ``voc_2007_trainval.mat``, ``voc_2007_test.mat``), or one file (then used for every split; its image
            list must match each split that reads it).
        split: the image set, e.g. ``"trainval"``.

    Raises:
        FileNotFoundError: the resolved file does not exist, or the folder has no file for the split; the message
            names the path, and for a folder what it does hold.
        ValueError: a folder holds more than one file for the split.
    """
    spec = str(spec)
    if "{split}" in spec:
        path = Path(spec.format(split=split))
    elif Path(spec).is_dir():
        folder = Path(spec)
        found = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES
                       and (p.stem == split or p.stem.endswith("_" + split)))
        if len(found) > 1:
            raise ValueError(f"--proposals {folder}: several files for split {split!r}: "
                             f"{', '.join(p.name for p in found)}; name one with a {{split}} template")
        if not found:
            held = sorted(p.name for p in folder.iterdir() if p.suffix in SUFFIXES)
            raise FileNotFoundError(f"--proposals {folder}: no <prefix>_{split}.mat or .npz file for split "
                                    f"{split!r} (the folder holds {held or 'no .mat or .npz files'})")
        path = found[0]
    else:
        path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--proposals: no proposal file {path} for split {split!r}")
    return path


def proposals_from_file(spec, dataset):
    """The proposals of ``dataset``'s split read from precomputed files (:func:`split_proposal_file`).

    ``.mat`` files are the original release's (``[y1 x1 y2 x2]``, 1-based: converted); ``.npz`` files are ours. The
    boxes are used as they are, all of them, like the original code (no deduplication, size filter or cap).

    Args:
        spec: the ``proposals`` setting (template, folder or file).
        dataset: a :class:`~minircnn.data.voc.VOCDataset` (its ``split`` and ``ids``).

    Returns:
        list of (n_i, 4) float32 arrays, one per image of the split, in the split's order.

    Raises:
        FileNotFoundError, ValueError: no file, or a file whose images differ from the split (named in the message).
    """
    path = split_proposal_file(spec, dataset.split)
    if path.suffix == ".mat":
        return load_proposals_mat(path, dataset.ids)
    return load_proposals(path, dataset.ids)
