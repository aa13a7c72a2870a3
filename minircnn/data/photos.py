"""Small objects pasted onto real photographs, written in VOC layout: a stand-in for your own photographs.

The built-in shapes dataset (:mod:`minircnn.data.shapes`) is easy to learn and easy to overfit a recipe to. This
generator writes a second dataset, as different from it as the installed packages allow, to check that the default
recipe generalises beyond coloured shapes::

    python -m minircnn.data.photos --out data/photos
    python -m minircnn.train --data data/photos

Everything is cut from images that ship with scikit-image (``skimage/data/*``) and matplotlib
(``mpl-data/sample_data/grace_hopper.jpg``); nothing is downloaded. The ten classes (:data:`PHOTO_CLASS_NAMES`)
and where their pixels come from:

=============  ===============================================================================================
astronaut      Eileen Collins' face and helmet ring (``astronaut.png``)
camera         the cameraman with his camera and tripod (``camera.png``, grey)
cat            Chelsea's head (``chelsea.png``)
coin           the 24 coins of ``coins.png``, each cut out by its own mask (watershed segmentation)
cup            the espresso cup (``coffee.png``)
face           the 100 faces of ``lfw_subset.npy`` (25 x 25 grey, randomly tinted; its other 100 images are
               non-faces) and Grace Hopper's face
horse          the silhouette of ``horse.png`` used as a mask, filled with a random crop of a background photo
motorcycle     the motorcycle of the stereo pair ``motorcycle_left.png`` / ``motorcycle_right.png``
rocket         the launcher of ``rocket.jpg`` and the shuttle model beside the astronaut
text           printed words found on ``page.png`` and handwritten symbols of ``text.png``
=============  ===============================================================================================

Each image (240-320 x 320-420 px) is a random crop, after a random rescale, flip and colour gain, of a photograph or
texture region that holds no object (hubble_deep_field, ihc, retina, brick, gravel, grass, moon, color,
clock_motion, and the object-free parts of astronaut, rocket, camera and grace_hopper). On it go 1-5 objects,
each resized so that its longer side is 16-80 px (log-uniform; the shorter one at least 4 px), its aspect ratio
jittered by up to 15%, flipped at random (except text), with brightness and contrast jitter and, for half of them,
an alpha edge feathered over 1-2 px.
Objects lie wholly inside the image and overlap an earlier one by IoU < 0.3 at most. A fixed crop window moves each
side by up to 4% at random, so even the one-photograph classes (cat, cup) vary a little.

The ground-truth box is the pasted object's exact extent: the patch for rectangular crops, the tight box of the
mask's pixels for coins and the horse (whose longer side can therefore be a pixel or two under 16). Boxes with
``sqrt(w * h) < 14`` px (thin rockets, small words) are marked ``difficult``, as in the shapes dataset.

There is no ``classes.txt``: :class:`~minircnn.data.voc.VOCDataset` then takes the sorted names found in a split's
annotations, which are :data:`PHOTO_CLASS_NAMES` because image ``i`` of each split holds class ``i % 10`` (so every
split of at least 10 images has all ten classes, and both splits get the same labels).

Image ``i`` of a split comes from ``numpy.random.default_rng((seed, split, i))`` alone: the same seed writes
byte-identical files, and the test split does not depend on the size of trainval.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..boxes import iou
from ..io import atomic_directory
from .shapes import DIFFICULT_BELOW
from .statistics import split_statistics
from .voc_writer import add_generator_arguments, write_generated_dataset

__all__ = ["PHOTO_CLASS_NAMES", "PhotosImage", "render_photos_image", "generate_photos_dataset"]

PHOTO_CLASS_NAMES = ("astronaut", "camera", "cat", "coin", "cup", "face", "horse", "motorcycle", "rocket", "text")
"""Sorted, so that they are the labels VOCDataset finds in the annotations (label k is ``PHOTO_CLASS_NAMES[k-1]``)."""
GENERATOR_VERSION = 1
SPLITS = {"trainval": 300, "test": 150}  # default image counts
IMAGE_HEIGHT, IMAGE_WIDTH = (240, 320), (320, 420)  # px, uniform, inclusive
OBJECT_SIDE = (16, 80)  # px, the longer side of the pasted patch, log-uniform
MIN_SIDE = 4  # px, the shorter side is kept at least this long (a 16 px rocket would otherwise be 3 px wide)
ASPECT_JITTER = 0.15
OBJECTS_PER_IMAGE = (1, 5)
MAX_IOU = 0.3  # between a new object's box and every earlier one
WINDOW_JITTER = 0.04  # each side of a fixed crop window moves by up to this fraction of the window
MANIFEST = "photos.json"
_GRACE = "matplotlib:grace_hopper.jpg"
_TEXT = PHOTO_CLASS_NAMES.index("text") + 1  # mirrored words are not text

# Crop windows (x0, y0, x1, y1) in source pixels, half-open like PIL's crop, chosen by looking at the images.
_OBJECT_WINDOWS = {
    "astronaut": [("astronaut.png", (115, 12, 305, 278))],
    "camera": [("camera.png", (0, 62, 345, 512))],
    "cat": [("chelsea.png", (10, 0, 445, 300))],
    "cup": [("coffee.png", (170, 15, 418, 280))],
    "face": [(_GRACE, (172, 145, 362, 335))],
    "motorcycle": [("motorcycle_left.png", (95, 72, 690, 452)), ("motorcycle_right.png", (42, 72, 637, 452))],
    "rocket": [("rocket.jpg", (294, 122, 348, 412)), ("astronaut.png", (362, 0, 462, 272))],
    "text": [("text.png", w) for w in ((0, 48, 70, 84), (100, 24, 162, 52), (240, 82, 302, 116),
                                       (168, 138, 282, 172), (52, 140, 130, 172))],
}
# Background regions, None for the whole image: none of them shows one of the objects above.
_BACKGROUNDS = [
    ("hubble_deep_field.jpg", None), ("ihc.png", None), ("retina.jpg", (260, 260, 1150, 1150)),
    ("brick.png", None), ("gravel.png", None), ("grass.png", None), ("moon.png", None), ("color.png", None),
    ("clock_motion.png", None), ("astronaut.png", (0, 290, 512, 512)), ("rocket.jpg", (0, 0, 290, 427)),
    ("rocket.jpg", (355, 0, 640, 427)),
    ("camera.png", (345, 0, 512, 512)), (_GRACE, (0, 0, 150, 340)), (_GRACE, (380, 0, 512, 330)),
]


class PhotosImage(NamedTuple):
    """One generated image with its ground truth.

    Attributes:
        image: (H, W, 3) uint8, RGB.
        boxes: (n, 4) float32, ``(x1, y1, x2, y2)`` 0-based inclusive: the exact extent of each pasted object.
        labels: (n,) int64 in ``1..len(PHOTO_CLASS_NAMES)``.
        difficult: (n,) bool, ``sqrt(w * h) < 14`` px.
    """
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


class _Source(NamedTuple):
    photo: np.ndarray  # (H, W, 3) uint8 RGB, the whole photograph (shared between sources)
    window: tuple  # (x0, y0, x1, y1) half-open: the object's crop
    mask: np.ndarray | None  # (y1 - y0, x1 - x0) bool, the object's pixels; None: the whole window
    tint: bool  # a grey face: give it a random skin-like colour


# ---------------------------------------------------------------------------------------------------------- sources
def _source_path(name) -> Path:
    """Path of an image shipped with scikit-image (``skimage/data/<name>``) or matplotlib (``matplotlib:<name>``)."""
    if name.startswith("matplotlib:"):
        import matplotlib
        path = Path(matplotlib.get_data_path()) / "sample_data" / name.split(":", 1)[1]
    else:
        import skimage.data  # only its folder: the loader functions may try to download
        path = Path(os.path.dirname(skimage.data.__file__)) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the photos dataset is cut from the images that ship with "
                                "scikit-image and matplotlib; reinstall them")
    return path


@functools.lru_cache(maxsize=None)
def _photo(name) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a shipped image (grey ones repeated over the three channels)."""
    with Image.open(_source_path(name)) as im:
        return np.asarray(im.convert("RGB"))


def _coin_sources():
    """The 24 coins of coins.png, each with its mask: watershed on the Sobel edges from sure-dark and sure-bright
    markers (the recipe of the region-based segmentation that page.png shows), holes filled."""
    from scipy import ndimage as ndi
    from skimage import filters, measure, segmentation
    photo = _photo("coins.png")
    grey = photo[..., 0]
    markers = np.where(grey < 30, 1, 0) + np.where(grey > 150, 2, 0)
    coins = ndi.binary_opening(ndi.binary_fill_holes(segmentation.watershed(filters.sobel(grey), markers) == 2),
                               iterations=2)
    regions = [r for r in measure.regionprops(measure.label(coins)) if r.area >= 300]
    return [_Source(photo, (r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]), r.image_filled, False) for r in regions]


def _word_sources():
    """Printed words (or short phrases) of page.png: dark pixels against a local threshold, smeared sideways so the
    letters of a word join, one connected component per word; the cut-off last line is left out."""
    from scipy import ndimage as ndi
    from skimage import filters, measure
    photo = _photo("page.png")
    grey = photo[..., 0].astype(np.float64)
    ink = ndi.binary_dilation(grey < filters.threshold_local(grey, 35, offset=10), structure=np.ones((3, 7)))
    sources = []
    for r in measure.regionprops(measure.label(ink)):
        y0, x0, y1, x1 = r.bbox
        if 8 <= y1 - y0 <= 40 and 12 <= x1 - x0 <= 160 and y1 < 175:
            sources.append(_Source(photo, (x0, y0, x1, y1), None, False))
    return sources


def _horse_mask() -> np.ndarray:
    """(h, w) bool: the black silhouette of horse.png, cropped to its tight box."""
    mask = _photo("horse.png")[..., 0] < 128
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


class _Library(NamedTuple):
    objects: dict  # class name -> list of _Source (the horse's is empty: see _cut)
    horse: np.ndarray
    backgrounds: list  # (photo, (x0, y0, x1, y1))


@functools.lru_cache(maxsize=1)
def _library() -> _Library:
    """Every object source and background region, read once per process."""
    objects = {name: [] for name in PHOTO_CLASS_NAMES}
    for name, windows in _OBJECT_WINDOWS.items():
        objects[name] += [_Source(_photo(file), window, None, False) for file, window in windows]
    with open(_source_path("lfw_subset.npy"), "rb") as f:
        faces = np.load(f)[:100]  # (200, 25, 25) float64 in [0, 1]: 100 faces, then 100 non-faces
    for face in faces:
        grey = np.rint(face * 255).astype(np.uint8)
        objects["face"].append(_Source(np.repeat(grey[..., None], 3, axis=2), (0, 0, 25, 25), None, True))
    objects["coin"] = _coin_sources()
    objects["text"] += _word_sources()
    backgrounds = []
    for file, window in _BACKGROUNDS:
        photo = _photo(file)
        backgrounds.append((photo, window or (0, 0, photo.shape[1], photo.shape[0])))
    return _Library(objects, _horse_mask(), backgrounds)


# ---------------------------------------------------------------------------------------------------------- drawing
def _resize(array, width, height, box=None):
    """Bilinear resize of an (h, w, 3) uint8 or (h, w) float32 array (PIL; antialiased when shrinking)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize((width, height), Image.BILINEAR, box=box))


def _background(rng, backgrounds, height, width) -> np.ndarray:
    """(height, width, 3) float32: a random region, rescaled by 0.5-1.5 (more if it is too small), cropped at a
    random place, flipped at random and given a random colour gain per channel."""
    photo, (x0, y0, x1, y1) = backgrounds[int(rng.integers(len(backgrounds)))]
    scale = max(width / (x1 - x0), height / (y1 - y0), math.exp(rng.uniform(math.log(0.5), math.log(1.5))))
    crop_w, crop_h = width / scale, height / scale  # in source pixels
    cx = x0 + rng.uniform(0, max(0.0, x1 - x0 - crop_w))  # max: crop_w may exceed the region by a rounding error
    cy = y0 + rng.uniform(0, max(0.0, y1 - y0 - crop_h))
    image = _resize(photo, width, height, box=(cx, cy, cx + crop_w, cy + crop_h)).astype(np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return image * rng.uniform(0.85, 1.15, 3).astype(np.float32)


def _cut(rng, name, library):
    """A random instance of class ``name`` at source resolution: ``(rgb (h, w, 3) uint8, mask (h, w) bool or None)``."""
    if name == "horse":  # the silhouette filled with a random window (of its shape) of a background region
        mask = library.horse
        photo, (x0, y0, x1, y1) = library.backgrounds[int(rng.integers(len(library.backgrounds)))]
        k = min((x1 - x0) / mask.shape[1], (y1 - y0) / mask.shape[0]) * rng.uniform(0.3, 1.0)
        w, h = max(2, int(k * mask.shape[1])), max(2, int(k * mask.shape[0]))
        left, top = x0 + int(rng.integers(x1 - x0 - w + 1)), y0 + int(rng.integers(y1 - y0 - h + 1))
        return _resize(photo[top:top + h, left:left + w], mask.shape[1], mask.shape[0]), mask
    sources = library.objects[name]
    src = sources[int(rng.integers(len(sources)))]
    x0, y0, x1, y1 = src.window
    if src.mask is None and (x1 - x0, y1 - y0) != src.photo.shape[1::-1]:  # a window in a larger photograph
        dx, dy = rng.uniform(-WINDOW_JITTER, WINDOW_JITTER, 2) * (x1 - x0), rng.uniform(-WINDOW_JITTER,
                                                                                     WINDOW_JITTER, 2) * (y1 - y0)
        height, width = src.photo.shape[:2]
        x0, x1 = max(0, int(round(x0 + dx[0]))), min(width, int(round(x1 + dx[1])))
        y0, y1 = max(0, int(round(y0 + dy[0]))), min(height, int(round(y1 + dy[1])))
    rgb = src.photo[y0:y1, x0:x1]
    if src.tint:  # skin-like: red strongest, blue weakest
        gain = np.array([1.0, rng.uniform(0.7, 0.9), rng.uniform(0.5, 0.8)]) * rng.uniform(0.9, 1.1)
        rgb = np.clip(np.rint(rgb * gain), 0, 255).astype(np.uint8)
    return rgb, src.mask


def _object_patch(rgb, mask, height, width, *, flip=False, contrast=1.0, brightness=0.0, feather=0):
    """An object resized for pasting, and its alpha, cropped to the object's pixels.

    Args:
        rgb: (h, w, 3) uint8, the object's crop at source resolution.
        mask: (h, w) bool, the object's pixels, or None for the whole crop.
        height, width: the size to resize to.
        flip: mirror left-right.
        contrast, brightness: ``(v - mean) * contrast + mean + brightness`` on the resized pixels (mean over the
            object's pixels), rounded and clipped to 0-255.
        feather: 0, or the width in px of an alpha ramp inside the object's edge (its outermost pixel gets
            ``1 / (feather + 1)``, so the object's extent does not change).

    Returns:
        ``(patch, alpha)``: (h', w', 3) uint8 and (h', w') float32 in (0, 1] on the object's pixels, 0 off them;
        ``h' = height, w' = width`` without a mask, the tight box of the resized mask (pixels >= 0.5) with one.
    """
    from scipy import ndimage as ndi
    patch = _resize(rgb, width, height)
    if mask is None:
        inside = np.ones((height, width), dtype=bool)
    else:
        soft = _resize(mask.astype(np.float32), width, height)
        inside = soft >= min(0.5, soft.max())  # never empty
    if flip:
        patch, inside = patch[:, ::-1], inside[:, ::-1]
    if contrast != 1.0 or brightness != 0.0:
        values = patch.astype(np.float32)
        mean = values[inside].mean()
        patch = np.clip(np.rint((values - mean) * contrast + mean + brightness), 0, 255).astype(np.uint8)
    depth = ndi.distance_transform_cdt(np.pad(inside, 1), metric="chessboard")[1:-1, 1:-1]  # 1 on the edge pixels
    alpha = np.minimum(depth / (feather + 1), 1).astype(np.float32)
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    crop = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.ascontiguousarray(patch[crop]), alpha[crop]


def _paste(canvas, patch, alpha, x0, y0):
    """Blend ``patch`` (h, w, 3) with ``alpha`` (h, w) into ``canvas`` (H, W, 3) float32 at top-left (x0, y0)."""
    h, w = alpha.shape
    region = canvas[y0:y0 + h, x0:x0 + w]
    region[...] = region * (1 - alpha[..., None]) + patch * alpha[..., None]


def render_photos_image(rng, first_label=None) -> PhotosImage:
    """Draw one image of the photos dataset.

    Args:
        rng: numpy Generator; the image is a deterministic function of its state.
        first_label: class (``1..10``) of the first object, which always finds room; random when None.

    Returns:
        A :class:`PhotosImage`.
    """
    library = _library()
    height = int(rng.integers(IMAGE_HEIGHT[0], IMAGE_HEIGHT[1] + 1))
    width = int(rng.integers(IMAGE_WIDTH[0], IMAGE_WIDTH[1] + 1))
    canvas = np.ascontiguousarray(_background(rng, library.backgrounds, height, width))
    n = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    labels = rng.integers(1, len(PHOTO_CLASS_NAMES) + 1, n)
    if first_label is not None:
        labels[0] = first_label
    boxes, kept = np.zeros((0, 4), np.float32), []
    for label in labels:
        rgb, mask = _cut(rng, PHOTO_CLASS_NAMES[label - 1], library)
        aspect = (rgb.shape[0] / rgb.shape[1]) * rng.uniform(1 - ASPECT_JITTER, 1 + ASPECT_JITTER)  # h / w
        side = math.exp(rng.uniform(math.log(OBJECT_SIDE[0]), math.log(OBJECT_SIDE[1])))
        h, w = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
        flip = bool(rng.random() < 0.5) and label != _TEXT
        patch, alpha = _object_patch(rgb, mask, max(MIN_SIDE, round(h)), max(MIN_SIDE, round(w)), flip=flip,
                                     contrast=math.exp(rng.uniform(-0.25, 0.25)), brightness=rng.uniform(-25, 25),
                                     feather=int(rng.choice([0, 0, 1, 2])))
        ph, pw = alpha.shape
        for _attempt in range(20):
            x0, y0 = int(rng.integers(width - pw + 1)), int(rng.integers(height - ph + 1))
            box = np.array([[x0, y0, x0 + pw - 1, y0 + ph - 1]], np.float32)
            if not len(boxes) or iou(box, boxes).max() < MAX_IOU:
                _paste(canvas, patch, alpha, x0, y0)
                boxes = np.concatenate([boxes, box])
                kept.append(int(label))
                break
    side = np.sqrt((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))
    return PhotosImage(np.rint(np.clip(canvas, 0, 255)).astype(np.uint8), boxes, np.array(kept, np.int64),
                       side < DIFFICULT_BELOW)


# ---------------------------------------------------------------------------------------------------------- writing
def generate_photos_dataset(out, seed: int = 0, trainval: int = SPLITS["trainval"], test: int = SPLITS["test"],
                            progress: bool = True) -> Path:
    """Write the photos dataset in VOC layout into the folder ``out`` (created; must be empty if it exists).

    Writes ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/{trainval,test}.txt`` and the manifest
    ``photos.json`` (seed, sizes, generator version); no ``classes.txt`` (see the module docstring). Image ids are
    ``000000``, ``000001``, ... with the trainval images first.

    Args:
        out: destination folder.
        seed: the random seed; the same seed gives byte-identical files.
        trainval, test: number of images per split (>= 1 each; >= 10 for every class to occur in a split).
        progress: show a tqdm progress bar.

    Returns:
        ``Path(out)``.
    """
    out = Path(out)
    _library()  # a missing source file stops us before anything is written
    manifest = {"generator": "minircnn.data.photos", "version": GENERATOR_VERSION, "seed": int(seed),
                "trainval": int(trainval), "test": int(test), "classes": list(PHOTO_CLASS_NAMES)}
    return write_generated_dataset(
        out, seed, {"trainval": trainval, "test": test},
        lambda rng, split, i: render_photos_image(rng, first_label=i % len(PHOTO_CLASS_NAMES) + 1),
        PHOTO_CLASS_NAMES, "photos", (MANIFEST, manifest), progress)


def main(argv=None):
    """The command: errors from the library become one line (:func:`minircnn.cli.run_command`)."""
    from ..cli import run_command     # here, not at the top: minircnn.cli imports the package's test-time side
    return run_command(_main)(argv)


def _main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minircnn.data.photos",
        description="Generate a VOC-format dataset of small objects (faces, coins, cats, cups, rockets, ...) pasted "
                    "onto real photographs, all cut from images shipped with scikit-image and matplotlib; "
                    "deterministic from --seed. Train on it with `python -m minircnn.train --data DIR`.")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="destination folder (must not exist, or be empty)")
    add_generator_arguments(parser, SPLITS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.trainval < 1 or args.test < 1:
        raise ValueError(f"need at least one image per split, got --trainval {args.trainval} --test {args.test}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise FileExistsError(f"{args.out} is not an empty folder; generate into a new folder")
    with atomic_directory(args.out) as tmp:  # an interrupted run leaves no half-written dataset
        generate_photos_dataset(tmp, args.seed, args.trainval, args.test)
    print(f"{args.out}: ready in {time.perf_counter() - start:.1f} s, classes {', '.join(PHOTO_CLASS_NAMES)}")
    for split in SPLITS:
        print(f"  {split}: {split_statistics(args.out, split)}")


if __name__ == "__main__":
    main()
