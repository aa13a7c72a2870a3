"""A PASCAL VOC-format detection dataset: images, boxes, labels and ``difficult`` flags (docs/reference.md §5).

Folder layout (the VOC devkit's, e.g. ``VOCdevkit/VOC2007``, and the built-in dataset's)::

    root/
      Annotations/<id>.xml        one XML file per image (1-based pixel coordinates)
      JPEGImages/<id>.jpg         the image
      ImageSets/Main/<split>.txt  the ids of a split, one per line (trainval.txt, test.txt, ...)
      classes.txt                 optional: the foreground class names, one per line, in label order

Conventions (as in the original code, ``FR:lib/datasets/pascal_voc.py``):

* boxes are ``(x1, y1, x2, y2)``, 0-based, inclusive: XML ``xmin..ymax`` minus 1;
* ``difficult`` objects are kept (paper Sec. 4.3 trains with them); evaluation ignores them;
* label 0 is background; foreground label k is ``class_names[k - 1]``.

Class names come from ``classes.txt`` when present; otherwise the 20 PASCAL classes (in the devkit's order) when
every name in the split's annotations is one of them; otherwise the sorted set of names found in the split. The last
rule depends on the split, so give a dataset of your own a ``classes.txt`` to keep labels equal across splits.

Annotations are parsed on first use and cached; :meth:`VOCDataset.annotation` gives boxes and image size without
decoding the image. Bad input raises an error that names the file (and the object) at fault; a box that only pokes
outside the image is clipped with a :class:`VOCAnnotationWarning`.
"""
from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = ["VOCDataset", "VOCItem", "VOCAnnotation", "VOCFormatError", "VOCAnnotationWarning", "VOC_CLASS_NAMES"]

VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
"""The 20 PASCAL VOC classes in the devkit's order (label k is ``VOC_CLASS_NAMES[k - 1]``)."""

# Tried in this order after JPEGImages/<id>.jpg and the XML's <filename>.
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp")


class VOCFormatError(ValueError):
    """A dataset file is malformed: the message names the file (and the object index) at fault."""


class VOCAnnotationWarning(UserWarning):
    """An annotation was repaired on load (a box poking outside the image was clipped)."""


class VOCAnnotation(NamedTuple):
    """The annotation of one image, available without decoding the image.

    Attributes:
        id: the image id (its line in ``ImageSets/Main/<split>.txt``).
        height: image height in pixels.
        width: image width in pixels.
        boxes: (n, 4) float32, ``(x1, y1, x2, y2)`` 0-based inclusive, inside the image. Read-only.
        labels: (n,) int64, class labels in ``1..K``. Read-only.
        difficult: (n,) bool, the VOC ``difficult`` flag. Read-only.
        names: the n class names as written in the XML.
    """
    id: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    names: tuple


class VOCItem(NamedTuple):
    """One image with its ground truth, as returned by ``VOCDataset[i]``.

    Attributes:
        image: (H, W, 3) uint8, RGB.
        boxes: (n, 4) float32, ``(x1, y1, x2, y2)`` 0-based inclusive. Read-only (shared with the cache).
        labels: (n,) int64, class labels in ``1..K`` (0 is background and never appears here). Read-only.
        difficult: (n,) bool, the VOC ``difficult`` flag. Read-only.
        id: the image id.
    """
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    id: str


def _read_lines(path: Path) -> list[str]:
    """Non-blank, stripped lines of a text file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_split(path: Path) -> list[str]:
    """The image ids of ``ImageSets/Main/<split>.txt``: one per line, none repeated, at least one."""
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"split file {path} not found (splits there: {available or 'none'})")
    ids = _read_lines(path)
    if not ids:
        raise VOCFormatError(f"{path}: the split file is empty")
    for number, image_id in enumerate(ids, 1):
        if len(image_id.split()) != 1:
            raise VOCFormatError(f"{path}: entry {number} {image_id!r} is not a single image id "
                                 "(ImageSets/Main/<split>.txt holds one id per line)")
    seen = set()
    for image_id in ids:
        if image_id in seen:
            raise VOCFormatError(f"{path}: image id {image_id!r} is listed twice")
        seen.add(image_id)
    return ids


def _read_classes(path: Path) -> tuple[str, ...]:
    """The foreground class names of ``classes.txt``, one per line, in label order."""
    names = tuple(_read_lines(path))
    if not names:
        raise VOCFormatError(f"{path}: no class names (one foreground class name per line)")
    if len(set(names)) != len(names):
        raise VOCFormatError(f"{path}: a class name is listed twice: {names}")
    for bad in ("__background__", "background"):
        if bad in names:
            raise VOCFormatError(f"{path}: list only the foreground classes; background is label 0 implicitly")
    return names


class _RawAnnotation(NamedTuple):
    """An XML file's content before the class names and the image size are known."""
    size: tuple | None  # (height, width) from <size>, None when absent or zero
    filename: str | None
    names: tuple
    boxes: np.ndarray  # (n, 4) float64, 0-based, not yet checked against the image
    difficult: np.ndarray


def _text(element, tag, where):
    """The stripped text of ``element``'s child ``tag``; VOCFormatError naming ``where`` when absent or empty."""
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise VOCFormatError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(element, tag, where):
    """The child ``tag`` of ``element`` as a finite float; VOCFormatError naming ``where`` otherwise."""
    text = _text(element, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise VOCFormatError(f"{where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise VOCFormatError(f"{where}: <{tag}> is not finite: {text!r}")
    return value


def _parse_xml(path: Path) -> _RawAnnotation:
    """Read one annotation file; coordinates converted to 0-based, nothing checked against the image yet."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise VOCFormatError(f"{path}: malformed XML: {e}") from None
    size = None
    size_el = root.find("size")
    if size_el is not None:
        height, width = (int(_number(size_el, tag, f"{path}: <size>")) for tag in ("height", "width"))
        size = (height, width) if height > 0 and width > 0 else None  # some tools write 0: read the image header
    filename = root.findtext("filename")
    names, boxes, difficult = [], [], []
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object {k}"
        names.append(_text(obj, "name", where))
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise VOCFormatError(f"{where}: missing <bndbox>")
        boxes.append([_number(bndbox, tag, f"{where} <bndbox>") - 1 for tag in ("xmin", "ymin", "xmax", "ymax")])
        flag = obj.findtext("difficult", default="0").strip() or "0"
        if flag not in ("0", "1"):
            raise VOCFormatError(f"{where}: <difficult> must be 0 or 1, got {flag!r}")
        difficult.append(flag == "1")
    return _RawAnnotation(size, filename.strip() if filename else None, tuple(names),
                          np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(difficult, dtype=bool))


def _checked_boxes(boxes, height, width, where):
    """Validate (n, 4) 0-based boxes against an image; clip the ones poking outside, with a warning."""
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        box = [float(v) for v in (x1, y1, x2, y2)]          # printed as 101.0, not np.float64(101.0)
        # Inclusive corners: x2 == x1 is a one-pixel-wide box and valid.
        if x2 < x1 or y2 < y1:
            raise VOCFormatError(f"{where}: object {k} has xmax < xmin or ymax < ymin "
                                 f"(0-based box {box})")
        if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
            raise VOCFormatError(f"{where}: object {k} lies outside the {width}x{height} image "
                                 f"(0-based box {box})")
        if x1 < 0 or y1 < 0 or x2 > width - 1 or y2 > height - 1:
            warnings.warn(f"{where}: object {k} (0-based box {box}) pokes outside the "
                          f"{width}x{height} image; clipped", VOCAnnotationWarning, stacklevel=2)
    out = boxes.copy()
    np.clip(out[:, 0::2], 0, width - 1, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height - 1, out=out[:, 1::2])
    return out.astype(np.float32)


def _read_only(a):
    a.setflags(write=False)
    return a


def read_image(path) -> np.ndarray:
    """Decode an image file (JPEG, PNG, ...) into (H, W, 3) uint8 RGB (grey, palette and RGBA images are converted;
    EXIF orientation is not applied, like the original code's OpenCV reader).

    Raises:
        FileNotFoundError: no such file.
        VOCFormatError: the file is not an image PIL can decode (the message names it).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:  # PIL: UnidentifiedImageError, truncated data, ...
        raise VOCFormatError(f"{path}: cannot decode the image: {e}") from None


class VOCDataset:
    """A split of a VOC-format dataset.

    Args:
        root: the dataset folder (holding ``Annotations``, ``JPEGImages``, ``ImageSets/Main``).
        split: name of the id list ``ImageSets/Main/<split>.txt``, e.g. ``"trainval"`` or ``"test"``.

    Attributes:
        root: Path of the dataset folder.
        split: the split name.
        ids: list of the image ids, in the split file's order (the order proposal files follow, docs/reference.md §12).

    Raises:
        FileNotFoundError: ``root`` or the split file is missing.
        VOCFormatError: the split file is empty or malformed, or ``classes.txt`` is.
    """

    def __init__(self, root, split: str = "trainval"):
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} not found")
        self.ids = _read_split(self.root / "ImageSets" / "Main" / f"{split}.txt")
        classes_file = self.root / "classes.txt"
        self._class_names = _read_classes(classes_file) if classes_file.is_file() else None
        self._raw: list[_RawAnnotation | None] = [None] * len(self.ids)
        self._annotations: list[VOCAnnotation | None] = [None] * len(self.ids)
        self._image_paths: list[Path | None] = [None] * len(self.ids)

    def __repr__(self):
        return f"VOCDataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"

    def __len__(self) -> int:
        return len(self.ids)

    def _index(self, i) -> int:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"image index {i} out of range for {len(self)} images")
        return int(i) % len(self)

    # ------------------------------------------------------------------------------------------------ classes
    @property
    def class_names(self) -> tuple[str, ...]:
        """The foreground class names; label k (k >= 1) is ``class_names[k - 1]``, label 0 is background."""
        if self._class_names is None:
            found = {name for i in range(len(self)) for name in self._raw_annotation(i).names}
            if found <= set(VOC_CLASS_NAMES):
                self._class_names = VOC_CLASS_NAMES
            else:
                self._class_names = tuple(sorted(found))
        return self._class_names

    @property
    def num_classes(self) -> int:
        """Number of classes including background (the classifier's output size, K + 1)."""
        return len(self.class_names) + 1

    # ------------------------------------------------------------------------------------------------ annotations
    def annotation_path(self, i: int) -> Path:
        """Path of the XML annotation of image ``i``."""
        return self.root / "Annotations" / f"{self.ids[self._index(i)]}.xml"

    def _raw_annotation(self, i: int) -> _RawAnnotation:
        if self._raw[i] is None:
            self._raw[i] = _parse_xml(self.annotation_path(i))
        return self._raw[i]

    def annotation(self, i: int) -> VOCAnnotation:
        """Boxes, labels, difficult flags and image size of image ``i``, without decoding the image.

        Parsed on first call and cached. The image size comes from the XML ``<size>``; when that is absent or zero,
        from the image file's header (still no decoding).

        Raises:
            FileNotFoundError: the XML file (or, when the size must be read from it, the image) is missing.
            VOCFormatError: malformed XML, a missing field, a box with xmax < xmin or outside the image, or a class
                name not in ``class_names`` (message names the file and the object index).
        """
        i = self._index(i)
        if self._annotations[i] is None:
            raw = self._raw_annotation(i)
            xml = self.annotation_path(i)
            height, width = raw.size if raw.size is not None else self._header_size(i)
            boxes = _checked_boxes(raw.boxes, height, width, str(xml))
            index = {name: k + 1 for k, name in enumerate(self.class_names)}
            for k, name in enumerate(raw.names):
                if name not in index:
                    raise VOCFormatError(f"{xml}: object {k} has class {name!r}, which is not one of "
                                         f"{list(self.class_names)} (from {self._classes_source()})")
            labels = np.array([index[name] for name in raw.names], dtype=np.int64)
            self._annotations[i] = VOCAnnotation(
                self.ids[i], int(height), int(width), _read_only(boxes), _read_only(labels),
                _read_only(raw.difficult), raw.names)
        return self._annotations[i]

    def annotations(self) -> list[VOCAnnotation]:
        """The annotations of every image of the split, in order (see :meth:`annotation`)."""
        return [self.annotation(i) for i in range(len(self))]

    def image_size(self, i: int) -> tuple[int, int]:
        """``(height, width)`` of image ``i``, from its annotation (no decoding)."""
        a = self.annotation(i)
        return a.height, a.width

    def _classes_source(self) -> str:
        return str(self.root / "classes.txt") if (self.root / "classes.txt").is_file() else "the split's annotations"

    # ------------------------------------------------------------------------------------------------ images
    def image_path(self, i: int) -> Path:
        """Path of the image file of image ``i``: ``JPEGImages/<id>.jpg``, else the XML's ``<filename>``, else
        ``<id>`` with another common extension.

        Raises:
            FileNotFoundError: none of these exists (the message names ``JPEGImages/<id>.jpg``).
        """
        i = self._index(i)
        if self._image_paths[i] is None:
            folder = self.root / "JPEGImages"
            expected = folder / f"{self.ids[i]}.jpg"

            def candidates():  # the XML is only read when the usual name is missing
                yield expected
                filename = self._raw_annotation(i).filename if self.annotation_path(i).is_file() else None
                if filename:
                    yield folder / filename
                yield from (folder / f"{self.ids[i]}{ext}" for ext in _IMAGE_EXTENSIONS)

            found = next((p for p in candidates() if p.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"image file {expected} not found (image {i} of split {self.split!r}, "
                                        f"annotation {self.annotation_path(i)})")
            self._image_paths[i] = found
        return self._image_paths[i]

    def _header_size(self, i: int) -> tuple[int, int]:
        path = self.image_path(i)
        try:
            with Image.open(path) as im:  # reads the header only
                return im.height, im.width
        except (OSError, SyntaxError, ValueError) as e:
            raise VOCFormatError(f"{path}: cannot read the image: {e}") from None

    def load_image(self, i: int) -> np.ndarray:
        """Decode image ``i``.

        Returns:
            (H, W, 3) uint8 array, RGB (grey or palette images are converted; EXIF orientation is not applied,
            like the original code's OpenCV reader).

        Raises:
            FileNotFoundError: the image file is missing.
            VOCFormatError: the file is not a decodable image, or its size differs from the annotation's.
        """
        path = self.image_path(i)
        image = read_image(path)
        height, width = self.image_size(i)
        if image.shape[:2] != (height, width):
            raise VOCFormatError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but "
                                 f"{self.annotation_path(i)} says {width}x{height}")
        return image

    def __getitem__(self, i: int) -> VOCItem:
        """Image ``i`` with its ground truth (see :class:`VOCItem`)."""
        a = self.annotation(i)
        return VOCItem(self.load_image(i), a.boxes, a.labels, a.difficult, a.id)

    def __iter__(self):
        return (self[i] for i in range(len(self)))
