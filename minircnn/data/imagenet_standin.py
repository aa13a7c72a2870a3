"""The generated ImageNet stand-in: square crops holding one object (or only background), labelled by its kind.

Fast R-CNN fine-tunes an ImageNet classifier (paper Sec. 2.2); we have no ImageNet, so the tiny backbone is
pretrained (:mod:`minircnn.training.pretrain`) on crops drawn here. To make the features generic rather than tuned to
the detection set, the stand-in has more variety than the built-in shapes dataset: 11 kinds of objects (filled
shapes, outlines, strokes, crescents, hearts, stars, arrows, ...), each drawn in a solid colour or a two-colour
texture (stripes, checks, dots, blotches), on muted textured backgrounds, at random sizes, aspect ratios and angles,
with pixel noise. Crops are a pure function of their seed.
"""
from __future__ import annotations

import numpy as np

from .transforms import PLAIN

KINDS = ("background", "ellipse", "ring", "rectangle", "frame", "triangle", "star5", "cross", "crescent", "heart",
         "arrow", "stroke")
MIN_CONTRAST = 80.0     # RGB distance between an object's mean colour and the mean background it covers
BACKGROUND_CONTRAST = 60.0   # backgrounds are textured but muted: loud ones kept 12 kinds at chance for longer


def _polar_polygon(r, theta, n):
    """Inside a regular n-gon of circumradius 1: r <= cos(pi/n) / cos(theta mod (2pi/n) - pi/n)."""
    a = np.mod(theta, 2 * np.pi / n) - np.pi / n
    return r <= np.cos(np.pi / n) / np.cos(a)


def _star(r, theta, n, inner):
    """Inside an n-pointed star: the radius goes linearly between 1 at the tips and ``inner`` between them."""
    a = np.abs(np.mod(theta, 2 * np.pi / n) - np.pi / n) / (np.pi / n)      # 1 at a tip, 0 between two tips
    return r <= inner + (1 - inner) * a


def object_mask(kind, u, v, rng):
    """Boolean mask of one object on a grid (u, v) in the object's own frame (the object spans about [-1, 1]^2)."""
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    w = rng.uniform(0.12, 0.3)                                   # stroke / bar width
    if kind == "ellipse":
        return r <= 1
    if kind == "ring":
        return (r <= 1) & (r >= rng.uniform(0.45, 0.75))
    if kind == "rectangle":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if kind == "frame":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1) & ((np.abs(u) >= 1 - w) | (np.abs(v) >= 1 - w))
    if kind == "triangle":
        return _polar_polygon(r, theta, 3)
    if kind == "star5":
        return _star(r, theta, 5, rng.uniform(0.35, 0.5))
    if kind == "cross":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1) & ((np.abs(u) <= w + 0.1) | (np.abs(v) <= w + 0.1))
    if kind == "crescent":
        return (r <= 1) & (np.hypot(u - rng.uniform(0.35, 0.6), v) > rng.uniform(0.7, 0.9))
    if kind == "heart":
        x, y = 1.2 * u, -1.2 * v + 0.2
        return (x ** 2 + y ** 2 - 1) ** 3 - x ** 2 * y ** 3 <= 0
    if kind == "arrow":
        shaft = (u <= 0.2) & (u >= -1) & (np.abs(v) <= w)
        head = (u > 0.2) & (u <= 1) & (np.abs(v) <= 0.8 * (1 - u) / 0.8)
        return shaft | head
    if kind == "stroke":
        return (np.abs(u) <= 1) & (np.abs(v) <= 0.5 * w)
    raise ValueError(f"unknown kind {kind!r}")


def _fill(rng, h, w, contrast=255.0):
    """An (h, w, 3) float image in [0, 255]: flat colour, gradient, stripes, checks, dots or blotchy noise, whose
    second colour differs from the first by at most ``contrast`` per channel."""
    c1 = rng.uniform(0, 255, 3)
    c2 = np.clip(c1 + rng.uniform(-contrast, contrast, 3), 0, 255)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    style = rng.integers(0, 6)
    if style == 0:
        t = np.zeros((h, w), np.float32)
    elif style == 1:                                            # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        t = (x * np.cos(a) + y * np.sin(a))
        t = (t - t.min()) / max(np.ptp(t), 1.0)
    elif style == 2:                                            # stripes
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        t = (np.mod((x * np.cos(a) + y * np.sin(a)) / period, 1.0) < 0.5).astype(np.float32)
    elif style == 3:                                            # checks
        p = rng.uniform(4, 14)
        t = ((np.floor(x / p) + np.floor(y / p)) % 2).astype(np.float32)
    elif style == 4:                                            # dots
        p = rng.uniform(5, 12)
        t = (np.hypot(np.mod(x, p) - p / 2, np.mod(y, p) - p / 2) < p / 4).astype(np.float32)
    else:                                                       # blotches: upsampled coarse noise
        g = rng.uniform(0, 1, (h // 16 + 2, w // 16 + 2)).astype(np.float32)
        t = g[(y / 16).astype(int), (x / 16).astype(int)]
    return c1 + t[..., None] * (c2 - c1)


def render_crop(label, size, rng):
    """One (size, size, 3) uint8 crop of kind ``KINDS[label]`` (label 0: background only)."""
    image = _fill(rng, size, size, BACKGROUND_CONTRAST)
    if label:
        s = size * np.exp(rng.uniform(np.log(0.2), np.log(0.45)))           # half-size of the object, px
        aspect = np.exp(rng.uniform(-0.5, 0.5))
        cx, cy = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
        a = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        du, dv = (x - cx) / s, (y - cy) / s
        u = (du * np.cos(a) + dv * np.sin(a)) * aspect
        v = (-du * np.sin(a) + dv * np.cos(a)) / aspect
        mask = object_mask(KINDS[label], u, v, rng)
        under = image[mask].mean(axis=0) if mask.any() else image.mean(axis=(0, 1))
        fg = _fill(rng, size, size) if rng.random() < 0.3 else np.broadcast_to(rng.uniform(0, 255, 3), image.shape)
        for _ in range(20):               # the object must stand out from what it covers, or the label is noise
            if not mask.any() or np.linalg.norm(fg[mask].mean(axis=0) - under) >= MIN_CONTRAST:
                break
            fg = np.broadcast_to(rng.uniform(0, 255, 3), image.shape)
        image = np.where(mask[..., None], fg, image)
    image = image + rng.normal(0, rng.uniform(2, 12), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_batch(config, b):
    """Batch ``b``: images (B, 3, S, S) float32 (PLAIN preprocessing) and labels (B,) int64, from seed (seed, b)."""
    rng = np.random.default_rng([config.seed, b])
    labels = rng.integers(0, len(KINDS), config.batch_size)
    images = np.stack([PLAIN.apply(render_crop(int(k), config.input_size, rng)) for k in labels])
    return images, labels
