"""Pretraining the tiny backbone as an image classifier: our stand-in for the paper's ImageNet models (Sec. 2.2).

Fast R-CNN never starts from random weights: it fine-tunes an ImageNet classifier. We have no ImageNet, so we
train the tiny classifier on generated crops (:mod:`minircnn.data.imagenet_standin`).

Measured on the 2-core development machine: 1200 steps of 32 crops in 160 s alone (about 3 minutes in a first run,
where it shares the cores with the proposals), held-out accuracy 0.54 over the 12 classes (chance 0.08). What it
took (each tried for 150-300 steps): with 19 kinds, or with loud full-contrast backgrounds, the loss stayed at
chance; a learning rate of 0.01 from the first step diverged, hence the warm-up; 64-pixel crops (a 4x4 pool5 grid;
the detector resamples fc6 to its 7x7 RoI grid, :func:`minircnn.models.resize_fc6`) learn 3x more crops per second
than 112-pixel ones (7x7).

The crops come from a seeded generator, batch ``b`` from seed ``(seed, b)``: the weights are a pure function of
:class:`PretrainConfig`. They are cached as ``data/pretrained/tiny_<hash>.npz`` (parameters, the classifier's config
and the preprocessing); training calls :func:`ensure_pretrained` and so runs this on first use. The command is
``python -m minircnn.pretrain``.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.imagenet_standin import KINDS, make_batch
from ..data.transforms import PLAIN
from ..io import atomic_save_npz
from ..models import build_classifier
from ..threads import set_blas_threads
from .optim import SGD

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

    def __post_init__(self):
        for name in ("input_size", "pool_kernel", "iters", "batch_size", "warmup", "stepsize"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.base_lr > 0:
            raise ValueError(f"base_lr must be > 0, got {self.base_lr}")


# ------------------------------------------------------------------------------------------------- training
def cache_path(config, root=None) -> Path:
    """``<root>/pretrained/tiny_<hash of config>.npz``; root defaults to the built-in data folder."""
    if root is None:
        from ..data import default_shapes_root
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
