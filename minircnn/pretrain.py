"""Pretraining the tiny backbone as an image classifier: our stand-in for the paper's ImageNet models (Sec. 2.2).

Fast R-CNN never starts from random weights: it fine-tunes an ImageNet classifier. We have no ImageNet, so we
generate one in miniature: square crops, each holding one object or only background, labelled with the object's
kind (or "background"). To make the features generic rather than tuned to the detection set, the stand-in has more
variety than the built-in shapes dataset: 11 kinds of objects (filled shapes, outlines, strokes, crescents, hearts,
stars, arrows, ...), each drawn in a solid colour or a two-colour texture (stripes, checks, dots, blotches), on
muted textured backgrounds, at random sizes, aspect ratios and angles, with pixel noise.

Measured on the 2-core development machine: 1200 steps of 32 crops in 160 s alone (about 3 minutes in a first run,
where it shares the cores with the proposals), held-out accuracy 0.54 over the 12 classes (chance 0.08). What it took (each tried for 150-300 steps): with 19 kinds, or with loud
full-contrast backgrounds, the loss stayed at chance; a learning rate of 0.01 from the first step diverged, hence
the warm-up; 64-pixel crops (a 4x4 pool5 grid; the detector resamples fc6 to its 7x7 RoI grid,
:func:`minircnn.models.resize_fc6`) learn 3x more crops per second than 112-pixel ones (7x7).

The crops come from a seeded generator, batch ``b`` from seed ``(seed, b)``: the weights are a pure function of
:class:`PretrainConfig`. They are cached as ``data/pretrained/tiny_<hash>.npz`` (parameters, the classifier's config
and the preprocessing); ``train`` calls :func:`ensure_pretrained` and so runs this on first use.

Command line::

    python -m minircnn.pretrain [--iters N] [--out FILE] [--seed S]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .config import set_blas_threads
from .data.transforms import PLAIN
from .io import atomic_save_npz
from .models import build_classifier
from .optim import SGD

KINDS = ("background", "ellipse", "ring", "rectangle", "frame", "triangle", "star5", "cross", "crescent", "heart",
         "arrow", "stroke")
# also drawable by object_mask, left out: more classes slowed pretraining down (19 kinds stayed at chance for
# 300 steps where 12 did not)
EXTRA_KINDS = ("pentagon", "hexagon", "star4", "l_shape", "zigzag", "arc", "semicircle")

MIN_CONTRAST = 80.0     # RGB distance between an object's mean colour and the mean background it covers
BACKGROUND_CONTRAST = 60.0   # backgrounds are textured but muted: loud ones kept 12 kinds at chance for longer


@dataclass(frozen=True)
class PretrainConfig:
    """What the pretrained weights depend on (their cache name is a hash of it)."""
    input_size: int = 64         # crops; stride 16 -> a 4x4 conv5 map, so pool5 (kernel 1) gives a 4x4 grid
    pool_kernel: int = 1
    iters: int = 1200
    batch_size: int = 32
    base_lr: float = 0.01
    warmup: int = 50             # the rate rises linearly over the first steps: from scratch, 0.01 at once diverges
    stepsize: int = 1000
    seed: int = 0
    slices: int = 2              # each batch goes through the convs as 2 slices in parallel threads (2 cores used)
    version: int = 2             # bump when the generator changes


# ------------------------------------------------------------------------------------------------ the stand-in
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
    if kind in ("triangle", "pentagon", "hexagon"):
        return _polar_polygon(r, theta, {"triangle": 3, "pentagon": 5, "hexagon": 6}[kind])
    if kind in ("star5", "star4"):
        return _star(r, theta, 5 if kind == "star5" else 4, rng.uniform(0.35, 0.5))
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
    if kind == "l_shape":
        return ((np.abs(u) <= 1) & (v >= 1 - 2 * w) & (v <= 1)) | ((np.abs(v) <= 1) & (u >= -1) & (u <= -1 + 2 * w))
    if kind == "stroke":
        return (np.abs(u) <= 1) & (np.abs(v) <= 0.5 * w)
    if kind == "zigzag":
        teeth = rng.integers(2, 5)
        tri = 2 * np.abs(np.mod(u * teeth / 2 + 0.25, 1.0) - 0.5) * 2 - 1          # triangle wave in [-1, 1]
        return (np.abs(u) <= 1) & (np.abs(v - 0.6 * tri) <= 0.6 * w)
    if kind == "arc":
        return (r <= 1) & (r >= 1 - w) & (theta >= -np.pi * rng.uniform(0.1, 0.5)) & (theta <= np.pi * 0.8)
    if kind == "semicircle":
        return (r <= 1) & (v >= 0)
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


# ------------------------------------------------------------------------------------------------- training
def cache_path(config, root=None) -> Path:
    """``<root>/pretrained/tiny_<hash of config>.npz``; root defaults to the built-in data folder."""
    if root is None:
        from .data import default_shapes_root
        root = default_shapes_root().parent
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:10]
    return Path(root) / "pretrained" / f"tiny_{digest}.npz"


def _step(model, solver, config, it, images, labels, running):
    """One SGD step of iteration ``it`` (the rate warms up linearly); returns the running mean of the loss."""
    solver.base_lr = config.base_lr * min(1.0, (it + 1) / config.warmup)
    loss = model.loss(model.forward(images, slices=config.slices), labels)
    if not np.isfinite(loss):
        raise FloatingPointError(f"pretraining loss became {loss} at iteration {it}")
    model.backward()
    solver.step()
    return loss if running is None else 0.95 * running + 0.05 * loss


def pretrain(config=PretrainConfig(), out=None, progress=True):
    """Train the tiny classifier on the stand-in and save it to ``out`` (an .npz); returns the path.

    The file holds every parameter (``conv1.weight`` ... ``fc8.bias``), ``classifier_config`` (JSON, a string
    array), ``preprocessing`` (JSON) and ``kinds`` (the class names), plus the held-out accuracy.
    """
    out = Path(out) if out is not None else cache_path(config)
    model = build_classifier("tiny", len(KINDS), seed=config.seed, input_size=config.input_size,
                             pool_kernel=config.pool_kernel)
    solver = SGD(model.parameters(), base_lr=config.base_lr, stepsize=config.stepsize)
    bar = tqdm(range(config.iters), desc="pretraining the tiny backbone", disable=not progress)
    running = None
    # batch b is a pure function of (seed, b): a second thread draws the next one while this one computes
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        upcoming = prefetch.submit(make_batch, config, 0)
        for it in bar:
            images, labels = upcoming.result()
            if it + 1 < config.iters:
                upcoming = prefetch.submit(make_batch, config, it + 1)
            running = _step(model, solver, config, it, images, labels, running)
            bar.set_postfix(loss=f"{running:.3f}")
    held_out = [make_batch(config, 10 ** 6 + i) for i in range(4)]            # batches never trained on
    correct = sum(int((model.predict(x).argmax(1) == y).sum()) for x, y in held_out)
    accuracy = correct / sum(len(y) for _, y in held_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(out, **model.state_dict(), classifier_config=np.array(json.dumps(model.config, sort_keys=True)),
                    preprocessing=np.array(json.dumps(PLAIN.to_dict(), sort_keys=True)), kinds=np.array(KINDS),
                    accuracy=np.array(accuracy))
    if progress:
        print(f"pretrained classifier: held-out accuracy {accuracy:.3f} on {len(KINDS)} classes -> {out}")
    return out


def ensure_pretrained(path=None, config=PretrainConfig(), progress=True) -> Path:
    """The cached pretrained weights, trained first if the file is missing."""
    path = Path(path) if path is not None else cache_path(config)
    if not path.is_file():
        pretrain(config, path, progress)
    return path


def _pretrain_quietly_elsewhere(progress):
    set_blas_threads(1)
    ensure_pretrained(progress=progress)


def start_in_background(progress=True):
    """Start making the cached weights in a separate process when they are missing (a first run); returns the
    process, or None when the file is there.

    ``train`` computes the selective-search proposals meanwhile: neither needs the other, and pretraining keeps
    about one core busy, so the two together take about a minute less than one after the other. The process is
    spawned, not forked, so that the proposals' worker pool is forked from a process without training threads.
    Join it, then call :func:`ensure_pretrained`, which finds the file (or, should the process have failed,
    pretrains again in the caller and raises the error there). The weights do not depend on where they are made.
    """
    if cache_path(PretrainConfig()).is_file():
        return None
    process = multiprocessing.get_context("spawn").Process(target=_pretrain_quietly_elsewhere, args=(progress,),
                                                           name="minircnn-pretraining", daemon=True)
    process.start()
    return process


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minircnn.pretrain", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d = PretrainConfig()
    parser.add_argument("--iters", type=int, default=d.iters, help=f"SGD iterations (default {d.iters})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"crops per step ({d.batch_size})")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the crops and the initial weights")
    parser.add_argument("--out", default=None, help="output .npz (default: data/pretrained/tiny_<hash>.npz, "
                                                    "the file train looks for)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: one per core; default 1, see "
                                                               "minircnn.config.set_blas_threads)")
    args = parser.parse_args(argv)
    set_blas_threads(args.threads)
    config = PretrainConfig(iters=args.iters, batch_size=args.batch_size, seed=args.seed)
    start = time.perf_counter()
    path = pretrain(config, args.out)
    print(f"done in {time.perf_counter() - start:.0f} s: {path}")


if __name__ == "__main__":
    main()
