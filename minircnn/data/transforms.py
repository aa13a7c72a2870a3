"""Image preparation: pixel preprocessing, the scale rule, resizing, flipping, batching and image pyramids
    (docs/reference.md §5).

The path of one training or test image, in the order of the original code (``FR:lib/utils/blob.py``):

1. an (H, W, 3) uint8 RGB image, flipped left-right if its roidb entry says so;
2. pixel preprocessing in the original resolution -- channel order, value range, minus the mean, divided by the
   std -- as the weights expect (:class:`Preprocessing`); the mean is subtracted *before* resizing (docs/reference.md
   §14.14);
3. a bilinear resize by one factor for both axes, so that the shorter side becomes ``target_size`` unless the
   longer side would exceed ``max_size`` (:func:`scale_for`);
4. transposed to (3, H', W') float32 and padded with zeros at the bottom/right into an (N, 3, H, W) blob. Zero is
   the mean colour once the mean has been subtracted.

Boxes follow the image: :func:`flip_boxes` mirrors them, and multiplying by the returned scale (no rounding) puts
them in blob coordinates.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Preprocessing", "CAFFE_VGG16", "TORCHVISION", "PLAIN", "PREPROCESSING_PRESETS", "scale_for",
           "scaled_size", "resize_bilinear", "warp_region", "flip_image", "flip_boxes", "prepare_image",
           "images_to_blob", "image_pyramid", "pyramid_rois"]


# ------------------------------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become network input; a property of the weights, not of the dataset.

    A pixel ``p`` (uint8, RGB as decoded) becomes ``(reorder(p) * value_range / 255 - mean) / std``.

    Attributes:
        channel_order: ``"RGB"`` or ``"BGR"``, the channel order the network's first conv expects.
        value_range: 255.0 (pixels stay in [0, 255], Caffe) or 1.0 (pixels divided by 255, torchvision).
        mean: per-channel mean, **in ``channel_order``**, in units of ``value_range``.
        std: per-channel std in the same order and units (1.0 for Caffe models).
    """
    channel_order: str
    value_range: float
    mean: tuple
    std: tuple

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.value_range not in (1.0, 255.0):
            raise ValueError(f"value_range must be 1.0 or 255.0, got {self.value_range!r}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be three finite numbers (one per channel), got {getattr(self, name)!r}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        object.__setattr__(self, "value_range", float(self.value_range))

    def to_dict(self):
        """The fields as plain Python values, e.g. to store beside weights in a checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        unknown = set(d) - {"channel_order", "value_range", "mean", "std"}
        if unknown:
            raise ValueError(f"d has unknown preprocessing keys {sorted(unknown)}")
        return cls(**d)

    def apply(self, image_rgb):
        """Preprocess pixels at their original resolution, and move channels first.

        Args:
            image_rgb: (H, W, 3) uint8 array, RGB.

        Returns:
            (3, H, W) float32 array, channels in ``channel_order``, scaled and normalised.
        """
        x = image_rgb.transpose(2, 0, 1)
        if self.channel_order == "BGR":
            x = x[::-1]
        x = x.astype(np.float32)                                       # a contiguous copy
        if self.value_range == 1.0:
            x /= np.float32(255)
        x -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        if self.std != (1.0, 1.0, 1.0):
            x /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return x


#: VGG16 (and CaffeNet, VGG_CNN_M) weights from the original Caffe release: BGR, 0-255, minus the BGR pixel means
#: of ``FR:lib/fast_rcnn/config.py`` (docs/reference.md §4), no std.
CAFFE_VGG16 = Preprocessing("BGR", 255.0, (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0))
#: torchvision ImageNet weights: RGB, 0-1, ImageNet mean and std.
TORCHVISION = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: Our tiny model trained from scratch: RGB, 0-1, centred on mid-grey and spread to roughly unit variance.
PLAIN = Preprocessing("RGB", 1.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
PREPROCESSING_PRESETS = {"caffe_vgg16": CAFFE_VGG16, "torchvision": TORCHVISION, "plain": PLAIN}


# ------------------------------------------------------------------------------------------------------- scaling
def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def scale_for(h, w, target_size, max_size):
    """The resize factor of docs/reference.md §5 (``FR:lib/utils/blob.py::prep_im_for_blob``).

    ``scale = target_size / min(h, w)``; if ``round(scale * max(h, w)) > max_size`` then
    ``scale = max_size / max(h, w)``. The test rounds half to even like ``np.round``: a long side that would come out
    at exactly 1000.5 px rounds to 1000 and is *not* capped.

    Args:
        h, w: image height and width in pixels.
        target_size: wanted length of the shorter side (600 in the paper).
        max_size: cap on the longer side (1000 in the paper).

    Returns:
        float, the factor for both axes (Python float, i.e. float64).
    """
    h, w = _positive_int(h, "h"), _positive_int(w, "w")
    target_size, max_size = _positive_int(target_size, "target_size"), _positive_int(max_size, "max_size")
    scale = float(target_size) / float(min(h, w))
    if round(scale * max(h, w)) > max_size:        # Python's round is half-to-even, as np.round
        scale = float(max_size) / float(max(h, w))
    return scale


def scaled_size(h, w, scale):
    """Size ``(round(h * scale), round(w * scale))`` of an image resized by ``scale``, as ``cv2.resize(fx=fy=scale)``
    computes it (rounding half to even); at least 1 pixel."""
    return max(1, round(h * scale)), max(1, round(w * scale))


def _linear_taps(n_in, n_out, scale):
    """Source indices and weights along one axis for bilinear resizing with pixel centres aligned.

    Output pixel ``i`` samples the input at ``(i + 0.5) / scale - 0.5``, between pixels ``floor`` and ``floor + 1``;
    positions outside ``[0, n_in - 1]`` take the border pixel (``cv2.INTER_LINEAR``).
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) / scale - 0.5
    lo = np.floor(pos)
    frac = (pos - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    return np.clip(lo, 0, n_in - 1), np.clip(lo + 1, 0, n_in - 1), frac


def resize_bilinear(image, scale):
    """Resize a (C, H, W) float image by ``scale`` on both axes, like ``cv2.resize(fx=fy=scale, INTER_LINEAR)``.

    This is what the original code used (docs/reference.md §5). It is written out here rather than taken from PIL
    because PIL's bilinear filter widens its support when shrinking (an antialiasing blur), which the reference pipeline
    does not do, and because it works on float data (the mean is already subtracted) in all channels at once. Like
    OpenCV it interpolates along rows first, then along columns. Each output pixel is a convex combination of at most
    four input pixels, so a constant image stays constant and ``scale == 1`` returns the image unchanged. Checked
    against
    OpenCV 4.14: equal to float32 rounding.

    Args:
        image: (C, H, W) float32 array.
        scale: positive factor.

    Returns:
        (C, round(H * scale), round(W * scale)) float32 array.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got shape {image.shape}")
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    h, w = image.shape[1:]
    out_h, out_w = scaled_size(h, w, scale)
    return _resize(image, out_h, out_w, scale, scale)


def _resize(image, out_h, out_w, scale_y, scale_x):
    """Bilinear resize of a (C, H, W) image to (C, out_h, out_w), sampling with the given factor on each axis."""
    h, w = image.shape[1:]
    y0, y1, fy = _linear_taps(h, out_h, scale_y)
    x0, x1, fx = _linear_taps(w, out_w, scale_x)
    left, right = np.take(image, x0, axis=2), np.take(image, x1, axis=2)      # along each row: (C, H, out_w)
    rows = left + (right - left) * fx
    top, bottom = np.take(rows, y0, axis=1), np.take(rows, y1, axis=1)      # then down columns: (C, out_h, out_w)
    return top + (bottom - top) * fy[:, None]


def warp_region(image, box, size):
    """R-CNN's input: the pixels of one box, stretched to a fixed ``size x size`` square whatever its aspect ratio.

    R-CNN (Girshick et al., 2014, Sec. 2.1) runs the whole network once per region proposal on such a warped crop;
    Fast R-CNN replaces this by one conv pass per image and RoI pooling (lesson 01). R-CNN also added 16 pixels of
    image context around each box before warping; that is left out here. The corners are rounded to whole pixels and
    clipped to the image; each axis is then resized by ``size / extent`` like ``cv2.resize(dsize=(size, size))``.

    Args:
        image: (C, H, W) float32 array (e.g. :meth:`Preprocessing.apply` of an image).
        box: ``(x1, y1, x2, y2)``, inclusive pixel corners in the image.
        size: side of the output square in pixels.

    Returns:
        (C, size, size) float32 array.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got shape {image.shape}")
    size = _positive_int(size, "size")
    h, w = image.shape[1:]
    x1, y1, x2, y2 = (int(np.clip(round(float(v)), 0, limit - 1)) for v, limit in zip(box, (w, h, w, h)))
    x2, y2 = max(x1, x2), max(y1, y2)
    crop = image[:, y1:y2 + 1, x1:x2 + 1]
    return _resize(crop, size, size, size / crop.shape[1], size / crop.shape[2])


# ------------------------------------------------------------------------------------------------------ flipping
def flip_image(image):
    """Mirror an image left-right (the only augmentation of the paper, Sec. 2.3).

    Args:
        image: (H, W) or (H, W, C) array of any dtype.

    Returns:
        A contiguous copy with column ``x`` moved to ``W - x - 1``.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got shape {image.shape}")
    return np.ascontiguousarray(image[:, ::-1])


def flip_boxes(boxes, width):
    """Mirror boxes with their image: ``x1' = W - x2 - 1``, ``x2' = W - x1 - 1`` (docs/reference.md §5, inclusive
        corners).

    Args:
        boxes: (N, 4) array, ``(x1, y1, x2, y2)`` in an image ``width`` pixels wide.
        width: W, the image width in pixels.

    Returns:
        (N, 4) array of the same dtype; y coordinates unchanged. Flipping twice gives the boxes back.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got shape {boxes.shape}")
    width = _positive_int(width, "width")
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2] - 1
    out[:, 2] = width - boxes[:, 0] - 1
    return out


# ---------------------------------------------------------------------------------------------- images to blobs
def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    return image


def prepare_image(image, target_size, max_size, preprocessing, flip=False):
    """One image, ready for a blob: flip, preprocess, resize (docs/reference.md §5).

    Args:
        image: (H, W, 3) uint8 array, RGB as decoded from the file.
        target_size: wanted shorter side in pixels (see :func:`scale_for`).
        max_size: cap on the longer side in pixels.
        preprocessing: a :class:`Preprocessing` (the weights').
        flip: mirror the image left-right first (a flipped roidb entry).

    Returns:
        image: (3, H', W') float32 array, ``H' = round(H * scale)``, ``W' = round(W * scale)``.
        scale: float, the factor that maps original-image box coordinates into this image.
    """
    image = _check_image(image)
    if not isinstance(preprocessing, Preprocessing):
        raise ValueError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
    scale = scale_for(image.shape[0], image.shape[1], target_size, max_size)
    if flip:
        image = flip_image(image)
    # The mean is subtracted before resizing (docs/reference.md §14.14): this is what the weights saw during
    # fine-tuning.
    return resize_bilinear(preprocessing.apply(image), scale), scale


def images_to_blob(images):
    """Stack images of different sizes into one zero-padded batch, each in the top-left corner (docs/reference.md §5).

    Args:
        images: non-empty sequence of (C, H_i, W_i) float arrays, all with the same C.

    Returns:
        (N, C, max H_i, max W_i) float32 array; padding is 0 (the mean colour after preprocessing).
    """
    images = list(images)
    if not images:
        raise ValueError("images must contain at least one image")
    for i, im in enumerate(images):
        if np.ndim(im) != 3 or im.shape[0] != images[0].shape[0]:
            raise ValueError(f"images[{i}] must be (C, H, W) with C = {np.shape(images[0])[0]}, "
                             f"got shape {np.shape(im)}")
    height = max(im.shape[1] for im in images)
    width = max(im.shape[2] for im in images)
    blob = np.zeros((len(images), images[0].shape[0], height, width), dtype=np.float32)
    for i, im in enumerate(images):
        blob[i, :, :im.shape[1], :im.shape[2]] = im
    return blob


def image_pyramid(image, scales, max_size, preprocessing):
    """Multi-scale test input: the image prepared at every target size of ``scales`` (docs/reference.md §8, step 1).

    Args:
        image: (H, W, 3) uint8 array, RGB.
        scales: sequence of target shorter sides, e.g. ``(480, 576, 688, 864, 1200)`` with ``max_size=2000``.
        max_size: cap on the longer side.
        preprocessing: a :class:`Preprocessing`.

    Returns:
        blob: (S, 3, H, W) float32 array, level ``s`` top-left and zero-padded to the largest level.
        factors: (S,) float64 array, the scale factor of each level (multiply boxes by it).
    """
    scales = list(scales)
    if not scales:
        raise ValueError("scales must contain at least one target size")
    levels = [prepare_image(image, s, max_size, preprocessing) for s in scales]
    return images_to_blob([im for im, _ in levels]), np.array([f for _, f in levels], dtype=np.float64)


def pyramid_rois(boxes, factors, canonical_size=224):
    """Project boxes onto a pyramid: each goes to the level where its area is closest to ``canonical_size**2``.

    docs/reference.md §8 step 2 (``FR:lib/fast_rcnn/test.py::_project_im_rois``, after SPPnet): a box's area at a level
    is ``(x2 - x1 + 1)(y2 - y1 + 1) * factor**2``; ties go to the first level. With one level every box goes to level 0.

    Args:
        boxes: (R, 4) float array, ``(x1, y1, x2, y2)`` in original image coordinates.
        factors: (S,) float array, the level scale factors from :func:`image_pyramid`.
        canonical_size: side of the square the pre-trained network saw (224 for ImageNet models).

    Returns:
        (R, 5) float32 array ``(level, x1, y1, x2, y2)`` in that level's coordinates.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (R, 4), got shape {boxes.shape}")
    factors = np.asarray(factors, dtype=np.float64).reshape(-1)
    if factors.size == 0:
        raise ValueError("factors must contain at least one scale factor")
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    levels = np.abs(areas[:, None] * factors[None, :] ** 2 - canonical_size ** 2).argmin(axis=1)
    rois = np.empty((boxes.shape[0], 5), dtype=np.float64)
    rois[:, 0] = levels
    rois[:, 1:] = boxes * factors[levels, None]
    return rois.astype(np.float32)
