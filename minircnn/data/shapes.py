"""The built-in dataset: coloured shapes on textured, noisy backgrounds, written in VOC layout.

Five classes (:data:`CLASS_NAMES`) of filled shapes, each with a random colour and a soft shading gradient:

* sizes 12-100 px, log-uniform in ``sqrt(w * h)``, aspect ratio ``h / w`` log-uniform in [1/2, 2] (each side kept in
  12-100 px); triangles point in any of four directions with a random apex position; crosses have random bar widths;
* 1-5 shapes per image of 200-300 px (each side uniform), drawn largest first; shapes may overlap, but every shape
  keeps at least 60% of its pixels unoccluded; up to 40% of a shape (per axis) may leave the image (truncation);
* backgrounds: a smooth random colour field, one to three sine or square-wave gratings, a few distractor lines, and
  Gaussian pixel noise over everything; saved as JPEG (quality 90).

A ground-truth box is the tight box of the shape's pixels that lie inside the image (so truncated shapes are clipped
to the image; occlusion by other shapes does not shrink a box, as in VOC). A shape whose box is tiny
(``sqrt(w * h) < 14`` px) is marked ``difficult``: kept for training, ignored by evaluation (docs/reference.md §5,
§14.11).

Everything comes from ``numpy.random.default_rng((seed, split, index))``, so the same seed writes byte-identical
files (JPEGs carry no metadata or timestamps), and the test split does not depend on the size of trainval.

Usage::

    python -m minircnn.data.shapes --out data/shapes --seed 0 --trainval 400 --test 150

or, from code, :func:`ensure_shapes_dataset` (generates ``data/shapes`` on first use and returns its path).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ..io import atomic_directory
from .statistics import split_statistics
from .voc_writer import add_generator_arguments, write_generated_dataset

__all__ = ["CLASS_NAMES", "ShapesImage", "shape_mask", "render_shapes_image", "generate_shapes_dataset", "ensure_shapes_dataset",
           "default_shapes_root"]

CLASS_NAMES = ("ellipse", "rectangle", "triangle", "diamond", "cross")
GENERATOR_VERSION = 1  # bump whenever the output changes: existing datasets are then regenerated
SPLITS = {"trainval": 400, "test": 150}  # default image counts
IMAGE_SIDE = (200, 300)  # px, each side uniform in this range (inclusive)
OBJECT_SIZE = (12, 100)  # px, sqrt(w * h) log-uniform; each side clipped into this range
MAX_ASPECT = 2.0  # h / w log-uniform in [1 / MAX_ASPECT, MAX_ASPECT]
OBJECTS_PER_IMAGE = (1, 5)
MAX_CUT = 0.4  # at most this fraction of a shape's width (height) may lie outside the image
MIN_UNOCCLUDED = 0.6  # every shape keeps this fraction of its in-image pixels visible
DIFFICULT_BELOW = 14  # px: a box with sqrt(w * h) below this is marked difficult
MIN_CONTRAST = 60.0  # minimum RGB distance between a shape's colour and the mean background under it
NOISE_SIGMA = (3.0, 10.0)  # per-image standard deviation of the Gaussian pixel noise, uniform in this range
MANIFEST = "shapes.json"


class ShapesImage(NamedTuple):
    """One generated image with its ground truth.

    Attributes:
        image: (H, W, 3) uint8, RGB.
        boxes: (n, 4) float32, ``(x1, y1, x2, y2)`` 0-based inclusive: the tight box of the shape's in-image pixels.
        labels: (n,) int64 in ``1..len(CLASS_NAMES)``.
        difficult: (n,) bool, tiny boxes.
        truncated: (n,) bool, the shape extends beyond the image border.
    """
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray


# ---------------------------------------------------------------------------------------------------------- drawing
def _unit_grid(h, w):
    """Pixel-centre coordinates of an (h, w) window scaled to [0, 1]: u (1, w) across, v (h, 1) down."""
    u = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    v = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    return u, v


def shape_mask(label, h, w, rng):
    """The pixels of a shape filling an (h, w) window.

    Args:
        label: class label in ``1..len(CLASS_NAMES)``.
        h, w: window size in pixels.
        rng: numpy Generator, for the shape's own random parameters (triangle direction, cross bar width).

    Returns:
        (h, w) bool mask, True on the shape (sampled at pixel centres).
    """
    name = CLASS_NAMES[label - 1]
    u, v = _unit_grid(h, w)
    if name == "ellipse":
        mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif name == "rectangle":
        mask = np.ones((h, w), dtype=bool)
    elif name == "diamond":
        mask = np.abs(u - 0.5) + np.abs(v - 0.5) <= 0.5
    elif name == "cross":
        half_bar = rng.uniform(0.25, 0.45) / 2
        mask = (np.abs(u - 0.5) <= half_bar) | (np.abs(v - 0.5) <= half_bar)
    else:  # triangle: apex on one side at a random position, base along the opposite side
        turns = int(rng.integers(4))
        hh, ww = (h, w) if turns % 2 == 0 else (w, h)
        u, v = _unit_grid(hh, ww)
        left = rng.uniform(0, 1) * (1 - v)  # at depth v the triangle spans [left, left + v]
        mask = np.ascontiguousarray(np.rot90((u >= left) & (u <= left + v), turns))
    return np.broadcast_to(mask, (h, w)).copy()


def _bilinear_weights(n, g):
    """(n, g) float32 weights that interpolate g evenly spaced control values onto n pixels."""
    pos = np.linspace(0, g - 1, n, dtype=np.float32)
    return np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(g, dtype=np.float32)))


def _background(rng, height, width):
    """(height, width, 3) float32 texture: smooth colour field + gratings + distractor lines (values ~0-255)."""
    g = int(rng.integers(2, 7))
    coarse = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
    rows = (_bilinear_weights(height, g) @ coarse.reshape(g, -1)).reshape(height, g, 3)
    img = _bilinear_weights(width, g) @ rows  # (W, g) @ (H, g, 3) -> (H, W, 3)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    for _ in range(int(rng.integers(1, 4))):
        theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        period = math.exp(rng.uniform(math.log(4), math.log(40)))
        wave = np.sin((x * math.cos(theta) + y * math.sin(theta)) * (2 * np.pi / period) + phase)
        if rng.random() < 0.5:
            wave = np.sign(wave)  # stripes
        img += wave[..., None] * (rng.uniform(5, 30) * rng.uniform(-1, 1, 3)).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # lines: clutter that is not an object
        (px, py), (qx, qy) = rng.uniform(0, 1, (2, 2)) * (width, height)
        dx, dy = qx - px, qy - py
        t = np.clip(((x - px) * dx + (y - py) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        dist2 = (x - px - t * dx) ** 2 + (y - py - t * dy) ** 2
        img[dist2 <= (rng.uniform(1, 4) / 2) ** 2] = rng.uniform(0, 255, 3)
    return img


def _shape_colour(rng, under):
    """A random RGB colour at least MIN_CONTRAST away from ``under`` (3,), the mean colour it will cover."""
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - under) >= MIN_CONTRAST:
            break
    return colour


def _find_place(rng, mask, owner, area, shown):
    """A random position for a shape, or None after 20 tries.

    A position is accepted when at least half of the shape lies inside the image (and at most MAX_CUT of its width
    or height outside) and no shape placed before would keep less than MIN_UNOCCLUDED of its in-image pixels.

    Args:
        rng: numpy Generator.
        mask: (h, w) bool, the shape over its window.
        owner: (H, W) int64, index of the placed shape each pixel shows, -1 for background.
        area: (m,) int64, in-image pixels of each of the m shapes placed so far.
        shown: (m,) int64, how many of them are still unoccluded.

    Returns:
        ``(inside, region, lost)``: slices of the part of the window inside the image, in window coordinates
        (``mask[inside]``) and in image coordinates (``image[region]``), and (m,) int64 pixels each placed shape
        would lose; or None.
    """
    (height, width), (h, w) = owner.shape, mask.shape
    for _attempt in range(20):
        x0 = int(rng.integers(-int(MAX_CUT * w), width - w + int(MAX_CUT * w) + 1))  # window top-left
        y0 = int(rng.integers(-int(MAX_CUT * h), height - h + int(MAX_CUT * h) + 1))
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        inside, region = np.s_[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0], np.s_[iy0:iy1, ix0:ix1]
        visible = mask[inside]
        if visible.sum() < 0.5 * mask.sum():
            continue
        covered = owner[region][visible]
        lost = np.bincount(covered[covered >= 0], minlength=len(area))
        if np.all(shown - lost >= MIN_UNOCCLUDED * area):
            return inside, region, lost
    return None


def render_shapes_image(rng) -> ShapesImage:
    """Draw one image of the built-in dataset.

    Args:
        rng: numpy Generator; the image is a deterministic function of its state.

    Returns:
        A :class:`ShapesImage`.
    """
    height, width = (int(s) for s in rng.integers(IMAGE_SIDE[0], IMAGE_SIDE[1] + 1, 2))
    img = _background(rng, height, width)
    n = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    size = np.exp(rng.uniform(math.log(OBJECT_SIZE[0]), math.log(OBJECT_SIZE[1]), n))
    aspect = np.exp(rng.uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT), n))
    ws = np.clip(np.rint(size / np.sqrt(aspect)), *OBJECT_SIZE).astype(int)
    hs = np.clip(np.rint(size * np.sqrt(aspect)), *OBJECT_SIZE).astype(int)
    labels = rng.integers(1, len(CLASS_NAMES) + 1, n)

    owner = np.full((height, width), -1, dtype=np.int64)
    area, shown = np.zeros(0, np.int64), np.zeros(0, np.int64)
    boxes, kept_labels, truncated = [], [], []
    for k in np.argsort(-(ws * hs), kind="stable"):  # largest first, so small shapes are not buried
        mask = shape_mask(int(labels[k]), int(hs[k]), int(ws[k]), rng)
        place = _find_place(rng, mask, owner, area, shown)
        if place is None:
            continue  # no room for this shape: leave it out
        inside, region, lost = place
        visible = mask[inside]
        n_visible = int(visible.sum())
        area, shown = np.append(area, n_visible), np.append(shown - lost, n_visible)

        u, v = _unit_grid(*mask.shape)
        shade = 1 + rng.uniform(-0.4, 0.4) * (u - 0.5) + rng.uniform(-0.4, 0.4) * (v - 0.5)
        colour = _shape_colour(rng, img[region][visible].mean(axis=0)).astype(np.float32)
        img[region][visible] = shade[inside][visible][:, None] * colour
        owner[region][visible] = len(boxes)

        # The ground truth: tight box of the shape's in-image pixels (image coordinates).
        rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
        y_start, x_start = region[0].start, region[1].start
        boxes.append((x_start + cols[0], y_start + rows[0], x_start + cols[-1], y_start + rows[-1]))
        kept_labels.append(int(labels[k]))
        truncated.append(n_visible < mask.sum())

    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(*NOISE_SIGMA))
    image = np.rint(np.clip(img, 0, 255)).astype(np.uint8)
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    box_side = np.sqrt((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))
    return ShapesImage(image, boxes, np.array(kept_labels, dtype=np.int64), box_side < DIFFICULT_BELOW,
                       np.array(truncated, dtype=bool))


# ---------------------------------------------------------------------------------------------------------- writing
def _manifest(seed, trainval, test):
    return {"generator": "minircnn.data.shapes", "version": GENERATOR_VERSION, "seed": int(seed),
            "trainval": int(trainval), "test": int(test), "classes": list(CLASS_NAMES)}


def _read_manifest(root: Path):
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def generate_shapes_dataset(out, seed: int = 0, trainval: int = SPLITS["trainval"], test: int = SPLITS["test"],
                            progress: bool = True) -> Path:
    """Write the built-in dataset in VOC layout into the folder ``out`` (created; must be empty if it exists).

    Writes ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/{trainval,test}.txt``, ``classes.txt`` and the
    manifest ``shapes.json`` (seed, sizes, generator version). Image ids are ``000000``, ``000001``, ... with the
    trainval images first. Not atomic by itself: :func:`ensure_shapes_dataset` wraps it in a temporary folder.

    Args:
        out: destination folder.
        seed: the random seed; the same seed gives byte-identical files.
        trainval, test: number of images per split (>= 1 each).
        progress: show a tqdm progress bar.

    Returns:
        ``Path(out)``.
    """
    out = write_generated_dataset(out, seed, {"trainval": trainval, "test": test},
                                  lambda rng, split, i: render_shapes_image(rng), CLASS_NAMES, "shapes",
                                  (MANIFEST, _manifest(seed, trainval, test)), progress)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in CLASS_NAMES), encoding="utf-8")
    return out


def default_shapes_root() -> Path:
    """Where the built-in dataset lives by default: ``$MINIRCNN_DATA/shapes`` if that variable is set, else
    ``data/shapes`` in the repository (a source checkout), else ``./data/shapes``."""
    if os.environ.get("MINIRCNN_DATA"):
        return Path(os.environ["MINIRCNN_DATA"]) / "shapes"
    repo = Path(__file__).resolve().parents[2]
    return (repo if (repo / "setup.py").is_file() else Path.cwd()) / "data" / "shapes"


def ensure_shapes_dataset(root=None, seed: int = 0, *, trainval: int = SPLITS["trainval"],
                          test: int = SPLITS["test"], progress: bool = True) -> Path:
    """The built-in dataset's folder, generated on first use.

    Nothing is done when ``root/shapes.json`` records the same generator version, seed and sizes. Otherwise the
    dataset is generated into a temporary sibling folder and renamed to ``root`` (replacing an older generated
    version), so an interrupted run never leaves a half-written dataset.

    Args:
        root: dataset folder; :func:`default_shapes_root` when None.
        seed, trainval, test, progress: as in :func:`generate_shapes_dataset`.

    Returns:
        Path of the dataset folder (use it with ``VOCDataset(path, "trainval")``).

    Raises:
        FileExistsError: ``root`` exists, is not empty and is not a generated shapes dataset (it is never deleted).
    """
    root = Path(root) if root is not None else default_shapes_root()
    found = _read_manifest(root)
    if found == _manifest(seed, trainval, test):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not (
            isinstance(found, dict) and found.get("generator") == "minircnn.data.shapes"):
        raise FileExistsError(f"{root} exists and is not a generated shapes dataset (no {MANIFEST}); "
                              "choose another folder or remove it")
    with atomic_directory(root, replace=True) as tmp:
        generate_shapes_dataset(tmp, seed, trainval, test, progress)
    return root


def main(argv=None):
    """The command: errors from the library become one line (:func:`minircnn.cli.run_command`)."""
    from ..cli import run_command     # here, not at the top: minircnn.cli imports the package's test-time side
    return run_command(_main)(argv)


def _main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minircnn.data.shapes",
        description="Generate the built-in shapes dataset in VOC layout (deterministic from --seed). Does nothing "
                    "if DIR already holds the same generated dataset; replaces an older generated one.")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help=f"destination folder (default: {default_shapes_root()})")
    add_generator_arguments(parser, SPLITS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = ensure_shapes_dataset(args.out, args.seed, trainval=args.trainval, test=args.test)
    print(f"{root}: ready in {time.perf_counter() - start:.1f} s, classes {', '.join(CLASS_NAMES)}")
    for split in SPLITS:
        print(f"  {split}: {split_statistics(root, split)}")


if __name__ == "__main__":
    main()
