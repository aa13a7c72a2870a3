"""Training configuration: one dataclass, named presets, and the rule for overriding them.

* ``tiny`` (the default): the tiny backbone, pretrained on the generated ImageNet stand-in
  (:mod:`minircnn.training.pretrain`), fine-tuned on the built-in shapes dataset in a few CPU minutes: lr 0.01 for 2250
  iterations, then 0.001 up to 3000; no dropout; a 7x7 RoI grid (fc6 resampled from the classifier's 4x4 one);
  shorter side 288. Chosen by experiment (``benchmarks/recipe_grid.py``, tables in ``benchmarks/RESULTS.md``): the
  earlier recipe (lr 0.005, dropout 0.5, a 4x4 grid, 1200 iterations) stopped at VOC07 mAP 0.49 with a flat box
  loss; too few effective updates, not the model, held it back. This one reaches 0.81-0.83 on the shapes test split
  over three seeds (every class >= 0.65, box loss -42% to -45% from the first to the last 100 iterations) and 0.66
  on the photos set (:mod:`minircnn.data.photos`, 0.37 with the earlier recipe). Dropout mostly slows learning down
  at this length: with 400 training images the detector is far from over-fitting.
* ``vgg16_voc07``: the paper's settings for VGG16 on VOC 2007 trainval (docs/reference.md §3, §4): shorter side 600,
  longer side at most 1000, N = 2 images and R = 128 RoIs per step, 25% foreground, lr 0.001 -> 0.0001 at 30k of 40k
  iterations, momentum 0.9, weight decay 0.0005, horizontal flips, selective search proposals, Caffe BGR preprocessing.
* ``caffenet_voc07``, ``vgg_cnn_m_voc07``: the same settings for the paper's models S and M. The original trains all
  three with one solver and ``--iters 40000`` (docs/reference.md §3) and subtracts the same BGR pixel means
  (docs/reference.md §4 PIXEL_MEANS).

A config is resolved as ``preset -> command-line overrides``; an unknown key is an error (:meth:`TrainConfig.replace`).
The resolved config is printed by ``train`` and saved as ``config.json`` and inside ``checkpoint.npz``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

from ..data.sampler import SamplerConfig

#: the sampler's defaults are the paper's (docs/reference.md §4, §6); the training config takes them from there
_PAPER = SamplerConfig()

#: the keys of ``minircnn.models.BACKBONES`` (spelled out so that reading a config does not import the models)
BACKBONE_NAMES = ("tiny", "caffenet", "vgg_cnn_m_1024", "vgg16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes.

    Attributes:
        preset: name of the preset this config started from.
        backbone: one of :data:`BACKBONE_NAMES` (:mod:`minircnn.models.backbones`).
        data: a VOC-format folder; None for the built-in shapes dataset (generated on first use).
        train_split, test_split: image sets of ``data`` to train and evaluate on.
        weights: initial weights: ``"pretrained"`` (the tiny backbone pretrained by :mod:`minircnn.pretrain`),
            ``"none"`` (random initialisation, from scratch), or a path to an ``.npz`` of backbone/fc parameters.
        preprocessing: the weights' pixel convention, a key of ``minircnn.data.PREPROCESSING_PRESETS``.
        iters: SGD iterations.
        base_lr, momentum, weight_decay, gamma: Caffe SGD (docs/reference.md §3); biases get 2x lr and no decay.
        stepsize: the learning rate is multiplied by ``gamma`` every ``stepsize`` iterations (None: never).
        ims_per_batch, batch_size, fg_fraction: N images and R RoIs per step, largest foreground share
            (docs/reference.md §6).
        scales, max_size: training shorter side(s) and cap on the longer side (docs/reference.md §4).
        test_scale, test_max_size: the same at test time.
        test_scales: multi-scale test: the shorter sides of an image pyramid, e.g. ``(480, 576, 688, 864, 1200)``
            with ``test_max_size`` 2000 (docs/reference.md §4 ``multiscale.yml``); each RoI is pooled from the level
            where its area is closest to 224² (docs/reference.md §8). Empty (the default): one scale, ``test_scale``.
        flip: train on the dataset plus its mirrored copies (docs/reference.md §5).
        proposals: ``"ss-fast"``, ``"ss-quality"`` (selective search), ``"dense"`` (sliding windows), ``"rpn"`` (a
            Region Proposal Network trained with the detector, :mod:`minircnn.rpn`), or precomputed files: ``"selective_search_data/voc_2007_{split}.mat"`` (the original release's), a folder
            holding ``*_<split>.mat``/``.npz`` files, or one file (:mod:`minircnn.data.proposal_files`).
        max_proposals: at most this many selective-search boxes per image.
        score_thresh, nms_thresh, max_per_image: the test protocol (:mod:`minircnn.evaluate`).
        protocol: ``"simple"`` (score > score_thresh, NMS, max_per_image per image) or ``"paper"`` (the original
            ``FR:test.py``: max_per_image per class before NMS, an adaptive per-class threshold keeping about 40
            detections per class per image over the test set, NMS; :mod:`minircnn.inference.protocols`).
        frozen: None: the backbone's own frozen layers (VGG16: conv1_x, conv2_x); a tuple: exactly these layers stay
            fixed (e.g. every conv, for the paper's Table 5; everything but ``bbox_pred`` for stage-wise training).
        bbox_loss_weight: lambda of the multi-task loss (Eq. 1); 0 trains classification only (Table 6).
        train_images: train on this many images of the training split (a seeded random subset, nested: the first
            n of one fixed permutation, so a smaller subset lies inside a larger one); 0: all of them.
        seed: every random draw of the run derives from it (see :mod:`minircnn.training.minibatches`).
        checkpoint_every: write ``checkpoint.npz`` every this many iterations (and at the end).
        blas_threads: BLAS threads (0: one per core; 1 by default, see :mod:`minircnn.threads`).
        dropout: drop probability after relu6 and relu7; None: the backbone's own (0.5, the paper's).
        roi_size: the RoI pool grid of a detector made from a classifier; None: the classifier's pool5 grid (the
            paper's transformation 1). Another size resizes fc6's weights to it (:func:`minircnn.models.resize_fc6`).
    """
    preset: str = "tiny"
    backbone: str = "tiny"
    data: str | None = None
    train_split: str = "trainval"
    test_split: str = "test"
    weights: str = "pretrained"
    preprocessing: str = "plain"
    iters: int = 3000
    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    gamma: float = 0.1
    stepsize: int | None = 2250
    ims_per_batch: int = _PAPER.ims_per_batch
    batch_size: int = _PAPER.batch_size
    fg_fraction: float = _PAPER.fg_fraction
    scales: tuple = (288,)
    max_size: int = 480
    test_scale: int = 288
    test_max_size: int = 480
    test_scales: tuple = ()
    flip: bool = True
    proposals: str = "ss-fast"
    max_proposals: int = 2000
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_per_image: int = 100
    protocol: str = "simple"
    frozen: tuple | None = None
    bbox_loss_weight: float = 1.0
    train_images: int = 0
    seed: int = 3
    checkpoint_every: int = 200
    blas_threads: int = 1
    dropout: float | None = None
    roi_size: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        object.__setattr__(self, "test_scales", tuple(int(s) for s in self.test_scales))
        if min(self.scales + self.test_scales + (self.test_scale,)) < 1:
            raise ValueError("scales, test_scale and test_scales must be >= 1")
        if self.protocol not in ("simple", "paper"):
            raise ValueError(f"protocol must be 'simple' or 'paper', got {self.protocol!r}")
        if self.frozen is not None:
            object.__setattr__(self, "frozen", tuple(str(name) for name in self.frozen))
        if self.bbox_loss_weight < 0 or self.train_images < 0:
            raise ValueError("bbox_loss_weight and train_images must be >= 0")
        if self.backbone not in BACKBONE_NAMES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONE_NAMES)}, got {self.backbone!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.roi_size is not None and self.roi_size < 1:
            raise ValueError(f"roi_size must be >= 1, got {self.roi_size!r}")
        if self.iters < 1 or self.checkpoint_every < 1:
            raise ValueError("iters and checkpoint_every must be >= 1")
        if min(self.max_size, self.test_max_size) < 1:
            raise ValueError(f"max_size and test_max_size must be >= 1, got {self.max_size} and {self.test_max_size}")
        if not (self.base_lr > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0 and self.gamma > 0):
            raise ValueError(f"need base_lr > 0, 0 <= momentum < 1, weight_decay >= 0 and gamma > 0; got base_lr "
                             f"{self.base_lr}, momentum {self.momentum}, weight_decay {self.weight_decay}, gamma "
                             f"{self.gamma}")
        if self.stepsize is not None and self.stepsize < 1:
            raise ValueError(f"stepsize must be >= 1 or None (never), got {self.stepsize}")
        if self.blas_threads < 0:
            raise ValueError(f"blas_threads must be >= 0 (0: one per core), got {self.blas_threads}")
        self.sampler                       # checks ims_per_batch, batch_size and fg_fraction
        from ..data.proposal_files import is_proposal_file
        if self.proposals not in ("ss-fast", "ss-quality", "dense", "rpn") and not is_proposal_file(self.proposals):
            raise ValueError(f"proposals must be ss-fast, ss-quality, dense, rpn or proposal files (a path with "
                             f"{{split}}, a folder, or a .mat/.npz file), got {self.proposals!r}")
        if self.proposals == "rpn" and self.test_scales:
            raise ValueError("proposals='rpn' proposes at one test scale; test_scales (an image pyramid) needs "
                             "proposals of another method")
        if self.weights == "pretrained" and self.backbone != "tiny":
            raise ValueError("weights='pretrained' exists for the tiny backbone only; give an .npz path or 'none'")

    @property
    def sampler(self) -> SamplerConfig:
        """The mini-batch sampler's numbers (:class:`~minircnn.data.sampler.SamplerConfig`) of this config."""
        return SamplerConfig(ims_per_batch=self.ims_per_batch, batch_size=self.batch_size,
                             fg_fraction=self.fg_fraction, scales=self.scales, max_size=self.max_size)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed; unknown keys are rejected with the list of known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["scales"] = list(self.scales)
        d["test_scales"] = list(self.test_scales)
        if self.frozen is not None:
            d["frozen"] = list(self.frozen)
        return d

    def to_json(self) -> str:
        """Sorted, indented JSON: the same config always gives the same text (it goes into the checkpoint)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        return cls().replace(**d)


PRESETS = {
    "tiny": TrainConfig(dropout=0.0, roi_size=7),
    "vgg16_voc07": TrainConfig(
        preset="vgg16_voc07", backbone="vgg16", weights="none", preprocessing="caffe_vgg16",
        iters=40000, base_lr=0.001, stepsize=30000, scales=_PAPER.scales, max_size=_PAPER.max_size,
        test_scale=_PAPER.scales[0], test_max_size=_PAPER.max_size, checkpoint_every=10000, seed=3),
}
# models S and M: VGG16's preset with their backbone (same solver, iterations, scales and BGR means,
# docs/reference.md §3-4)
PRESETS["caffenet_voc07"] = PRESETS["vgg16_voc07"].replace(preset="caffenet_voc07", backbone="caffenet")
PRESETS["vgg_cnn_m_voc07"] = PRESETS["vgg16_voc07"].replace(preset="vgg_cnn_m_voc07", backbone="vgg_cnn_m_1024")


#: Joint RPN training (``proposals="rpn"``) runs this many times its preset's schedule, the released end-to-end
#: solver's proportion (70k iterations against Fast R-CNN's 40k). The RPN is one more network to learn on the same
#: mini-batches: on the built-in set its box loss was still falling at 3000 iterations, and the detector it trains
#: reached selective search's mAP only at this length (benchmarks/RESULTS.md, "Region proposals").
RPN_SCHEDULE = 1.75


def configure(preset: str = "tiny", **changes) -> TrainConfig:
    """The preset ``preset`` with ``changes`` (:meth:`TrainConfig.replace`), as ``train`` resolves its flags.

    One rule on top: asking for RPN proposals (``proposals="rpn"``) without ``iters`` or ``stepsize`` lengthens the
    preset's schedule by :data:`RPN_SCHEDULE` (both rounded to tens: the tiny preset's 3000/2250 become 5250/3940).
    """
    def longer(n):
        return None if n is None else int(round(n * RPN_SCHEDULE, -1))

    config = get_preset(preset)
    if (changes.get("proposals") == "rpn" and config.proposals != "rpn"
            and "iters" not in changes and "stepsize" not in changes):
        changes = dict(changes, iters=longer(config.iters), stepsize=longer(config.stepsize))
    return config.replace(**changes)


def get_preset(name: str) -> TrainConfig:
    """The preset ``name`` (a key of :data:`PRESETS`: ``"tiny"``, ``"vgg16_voc07"``, ``"caffenet_voc07"``,
    ``"vgg_cnn_m_voc07"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
