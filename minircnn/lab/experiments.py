"""Small training runs for the lessons' experiments, cached so that re-running a notebook does not retrain.

A lesson that compares training choices (which layers to fine-tune, lambda, how much data, ...) calls
:func:`train_detector` once per variant::

    from minircnn.lab.experiments import FAST, lesson_dataset, train_detector
    root = lesson_dataset()
    full = train_detector("lambda1", root)                        # the tiny preset, as `python -m minircnn.train`
    cls_only = train_detector("lambda0", root, bbox_loss_weight=0)
    print(full.metrics["map"], cls_only.metrics["map"])

Each run goes through :func:`minircnn.training.loop.train` (the same code as the command line) into
``runs/lessons/<tag>/`` of the repository; when that folder already holds the metrics of the same resolved config,
the run is read back instead of repeated. With ``MINIRCNN_FAST=1`` (CI) the dataset is a handful of generated images in
a temporary folder and every run is a few iterations from scratch at a small scale: every line executes, no number
means anything.

Every verdict a lesson prints comes from one yardstick and one rule::

    full, cls_only = train_seeds("default", root), train_seeds("lambda0", root, bbox_loss_weight=0)
    print(compare_runs(full, cls_only, ("lambda 1", "lambda 0"))["verdict"])

:func:`train_seeds` trains the recipe once per seed in :data:`SEEDS`; :func:`compare_runs` scores both sides on the
same resamples of the test images (:func:`paired_map_difference`) and :func:`difference_verdict` writes the sentence:
the sides differ only if the 95% interval of the difference excludes zero *and* the difference exceeds twice the
seed-to-seed standard deviation (of a run's mAP; of the per-seed difference when both sides are the same networks
tested two ways, ``same_networks``).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from . import DEVICE
from .yardstick import difference_sign, difference_verdict, paired_map_difference  # noqa: F401 (re-exported)

FAST = os.environ.get("MINIRCNN_FAST", "0") not in ("", "0")   # CI sets MINIRCNN_FAST=1


def _runs_root() -> Path:
    """``runs/lessons`` in the repository (a source checkout, whatever the working directory: the lessons run in
    lessons/), else in the working directory."""
    repo = Path(__file__).resolve().parents[2]           # minircnn/lab/experiments.py -> the checkout
    return (repo if (repo / "setup.py").is_file() else Path.cwd()) / "runs" / "lessons"


RUNS = _runs_root()

# What MINIRCNN_FAST changes in every run: a few steps from scratch on small images (no pretraining to wait for).
FAST_CHANGES = dict(iters=6, weights="none", scales=(96,), max_size=160, test_scale=96, test_max_size=160,
                    checkpoint_every=1000, max_proposals=300)

# The training seeds every verdict of a lesson rests on (:func:`train_seeds`): one run is one draw of the initial
# weights of the new layers, the mini-batches and the flips, and its mAP moves by about 0.01 from seed to seed.
SEEDS = (3, 4, 5)

_scratch = None      # the temporary folder of FAST runs, removed when the interpreter exits


class Run(NamedTuple):
    """A finished training run: its folder (checkpoint.npz, log.csv, metrics.json, ...), config and test metrics."""
    out: Path
    config: object
    metrics: dict

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.npz"


def scratch_dir() -> Path:
    """A temporary folder that lives as long as this Python process (FAST datasets and runs go there)."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.TemporaryDirectory(prefix="minircnn_lessons_")
    return Path(_scratch.name)


def lesson_dataset(trainval: int = 6, test: int = 3) -> Path:
    """Root of the dataset the experiments use: the built-in shapes dataset (``data/shapes``, generated on first
    use), or with ``MINIRCNN_FAST`` a small one of ``trainval`` + ``test`` images in a temporary folder."""
    from ..data import ensure_shapes_dataset, generate_shapes_dataset
    if not FAST:
        return ensure_shapes_dataset()
    root = scratch_dir() / f"shapes_{trainval}_{test}"
    if not root.is_dir():
        generate_shapes_dataset(root, seed=0, trainval=trainval, test=test, progress=False)
    return root


def train_detector(tag: str, root, evaluate: bool = True, progress: bool = True, **changes) -> Run:
    """Train the tiny preset with ``changes`` on the dataset at ``root`` (and evaluate it on its test split).

    Args:
        tag: the run's name; its folder is ``runs/lessons/<tag>`` (a temporary folder with ``MINIRCNN_FAST``).
        root: dataset folder (:func:`lesson_dataset`).
        evaluate: also compute the test split's metrics (``Run.metrics`` is ``{}`` without).
        progress: show progress bars.
        **changes: :class:`~minircnn.training.config.TrainConfig` fields, e.g. ``iters=600``, ``frozen=("conv1",)``,
            ``bbox_loss_weight=0``, ``train_images=100``, ``flip=False``.

    Returns:
        :class:`Run`. A folder that already holds a finished run of the same config is read back, not retrained.
    """
    from ..training.config import configure
    from ..training.loop import train
    config = configure("tiny", data=str(root), **changes)
    if FAST:     # the lesson's own changes win, except the length of the run and pretraining (minutes in CI)
        forced = ("iters", "weights") if config.weights == "pretrained" else ("iters",)
        config = config.replace(**{k: v for k, v in FAST_CHANGES.items() if k not in changes or k in forced})
    out = (scratch_dir() / "runs" if FAST else RUNS) / tag
    if _finished(out, config, evaluate):
        print(f"{tag}: reusing the finished run in {out}")
        return Run(out, config, json.loads((out / "metrics.json").read_text()) if evaluate else {})
    metrics = train(config, out, device=DEVICE, evaluate=evaluate, progress=progress)
    return Run(out, config, metrics or {})


def training_minibatch(config, preprocessing, i: int = 0):
    """The mini-batch that iteration ``i`` of a training run of ``config`` sees (its images, scales, flips, RoIs).

    For lessons that look inside one SGD step (gradients, timings) without training: the same code path as
    :func:`minircnn.training.loop.train` (proposals, roidb with flipped copies and normalised targets, sampling).

    Args:
        config: a :class:`~minircnn.training.config.TrainConfig` (e.g. ``Run.config``).
        preprocessing: the model's pixel convention (:func:`minircnn.training.initialization.initial_model` returns it;
            a checkpoint holds it).
        i: the iteration.

    Returns:
        :class:`~minircnn.data.sampler.MiniBatch` (``blob``, ``rois``, ``labels``, ``bbox_targets``,
        ``bbox_weights``).
    """
    from ..data import VOCDataset
    from ..data.proposals import proposals_for_split
    from ..training.minibatches import ImageCache, build_training_roidb
    from ..training.loop import dataset_root
    from ..training.minibatches import training_minibatch
    train_set = VOCDataset(dataset_root(config), config.train_split)
    proposals = proposals_for_split(train_set, method=config.proposals, max_boxes=config.max_proposals,
                                    progress=False)
    roidb, _, _ = build_training_roidb(train_set, proposals, config)
    return training_minibatch(i, roidb, ImageCache(train_set), train_set.num_classes, preprocessing, config)


def test_split_of(run: Run, progress: bool = False):
    """A run's test split and its proposals, as the run's own evaluation reads them (same method and cap).

    Returns:
        (dataset, proposals): the test :class:`~minircnn.data.VOCDataset` and a list of (n_i, 4) float32 boxes per
        image (``None`` per image for a run trained with ``proposals="rpn"``: its RPN proposes at test time).
    """
    from ..data import VOCDataset
    from ..inference import proposals_for_test
    from ..training.loop import dataset_root
    config = run.config
    dataset = VOCDataset(dataset_root(config), config.test_split)
    return dataset, proposals_for_test(dataset, config, progress)


def detect_test_split(run: Run, bbox_reg: bool = True, progress: bool = False):
    """A finished run's detections on its test split, as its own evaluation makes them, optionally without box
    regression (every class's box is the proposal itself: paper Table 6).

    Returns:
        (dataset, (boxes, labels, scores)): the test :class:`~minircnn.data.VOCDataset` and the lists of
        :func:`minircnn.inference.detect_split` (score them with :func:`minircnn.evaluation.score_detections`).
    """
    from ..training.checkpoint import load_checkpoint
    from ..inference.im_detect import detect_split
    ckpt = load_checkpoint(run.checkpoint)
    dataset, proposals = test_split_of(run._replace(config=ckpt.config), progress)
    return dataset, detect_split(ckpt.model, dataset, proposals, ckpt.bbox_means, ckpt.bbox_stds,
                                 ckpt.preprocessing, ckpt.config, progress=progress, bbox_reg=bbox_reg)


def train_seeds(tag: str, root, seeds=None, **changes) -> list:
    """The same recipe trained once per seed (:func:`train_detector`): the runs a verdict rests on.

    Args:
        tag: the recipe's name. The run with the preset's own seed (3) is ``tag`` itself, shared with the lessons
            that train one run; the others are ``<tag>_seed<s>``.
        root: dataset folder (:func:`lesson_dataset`).
        seeds: the training seeds (default :data:`SEEDS`).
        **changes: as for :func:`train_detector`.

    Returns:
        One :class:`Run` per seed, in the order of ``seeds``.
    """
    return [train_detector(seed_tag(tag, s), root, **changes, seed=s) for s in (SEEDS if seeds is None else seeds)]


def seed_tag(tag: str, seed: int) -> str:
    """The run name of recipe ``tag`` at ``seed`` (:func:`train_seeds`): ``tag`` at the preset's seed, else
    ``<tag>_seed<seed>``."""
    from ..training.config import get_preset
    return tag if seed == get_preset("tiny").seed else f"{tag}_seed{seed}"


_DETECTIONS = {}     # (run folder, checkpoint's mtime, bbox_reg) -> detect_test_split's result, for compare_runs


def _cached_detections(run: Run, bbox_reg: bool):
    """:func:`detect_test_split` of a run, computed once per checkpoint file (a lesson compares a run many times)."""
    key = (str(run.out), run.checkpoint.stat().st_mtime_ns, bool(bbox_reg))
    if key not in _DETECTIONS:
        _DETECTIONS[key] = detect_test_split(run, bbox_reg=bbox_reg)
    return _DETECTIONS[key]


def compare_runs(first, second, names=("first", "second"), bbox_reg=(True, True), samples: int = 200,
                 dataset=None, iou_thresh: float = 0.5, same_networks=None) -> dict:
    """:func:`paired_map_difference` of two recipes' runs on their shared test split, with the verdict.

    Args:
        first, second: lists of :class:`Run` (one per seed, e.g. from :func:`train_seeds`), or of detections
            ``(boxes, labels, scores)`` already made on the same test split (:func:`detect_test_split`).
        names: how the verdict sentence calls the two sides.
        bbox_reg: whether each side's runs are tested with box regression.
        samples: bootstrap resamples.
        dataset: the test split; default: the first :class:`Run`'s.
        iou_thresh: the IoU a detection needs to count (VOC07: 0.5).
        same_networks: whether the sides are the same trained networks tested two ways (see
            :func:`paired_map_difference`); default: whether both are the same list of runs.

    A run's detections are made once per checkpoint and reused by later calls.

    Returns:
        :func:`paired_map_difference`'s dict, plus ``sign`` (:func:`difference_sign`: +1, 0 or -1) and ``verdict``
        (:func:`difference_verdict`'s sentence).
    """
    def detections(items, reg):
        nonlocal dataset
        found = []
        for item in items:
            if isinstance(item, Run):
                test, item = _cached_detections(item, reg)
                dataset = test if dataset is None else dataset
            found.append(item)
        return found

    a, b = detections(first, bbox_reg[0]), detections(second, bbox_reg[1])
    if dataset is None:
        raise ValueError("compare_runs needs the test split: give dataset= or at least one Run")
    if same_networks is None:
        same_networks = all(isinstance(r, Run) for r in list(first) + list(second)) and \
            [r.out for r in first] == [r.out for r in second]
    result = paired_map_difference(dataset, a, b, samples=samples, iou_thresh=iou_thresh,
                                   same_networks=same_networks)
    result["sign"] = difference_sign(result)
    result["verdict"] = difference_verdict(result, *names)
    return result


def split_rpn_proposals(ckpt, dataset, settings=None, progress: bool = True):
    """The RPN proposals of a checkpoint trained with ``--proposals rpn`` on every image of a split, at its test
    scale, with the seconds each image's proposal stage took (the head, decoding, NMS; not the shared convs).

    Args:
        ckpt: a :class:`~minircnn.training.checkpoint.Checkpoint` whose model has an RPN.
        dataset: a :class:`~minircnn.data.VOCDataset`.
        settings: :class:`~minircnn.rpn.ProposalSettings` (default: the test-time ones, 300 after NMS).
        progress: show a progress bar.

    Returns:
        (boxes, scores, seconds): lists with one (P_i, 4) float32 array in image pixels (best first), one (P_i,)
        objectness array and one float per image.
    """
    import time

    from tqdm import tqdm

    from ..data import image_pyramid
    from ..inference import rpn_proposals
    config, found = ckpt.config, ([], [], [])
    for i in tqdm(range(len(dataset)), desc="RPN proposals", unit="img", disable=not progress):
        image = dataset.load_image(i)
        blob, factors = image_pyramid(image, (config.test_scale,), config.test_max_size, ckpt.preprocessing)
        features = ckpt.model.features(blob, train=False)
        tic = time.perf_counter()
        boxes, scores = rpn_proposals(ckpt.model, features, image.shape, factors[0], settings)
        for column, value in zip(found, (boxes, scores, time.perf_counter() - tic)):
            column.append(value)
    return found


def _finished(out: Path, config, evaluate: bool) -> bool:
    """Whether ``out`` holds a run of exactly ``config`` that reached its last iteration (and was evaluated)."""
    import numpy as np
    try:
        # a key the saved config lacks is a field added since; the run used that field's default behaviour
        defaults = json.loads(type(config)().to_json())
        saved = defaults | json.loads((out / "config.json").read_text())
        if saved != json.loads(config.to_json()):
            return False
        with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
            if int(f["iteration"]) != config.iters:
                return False
    except (OSError, ValueError, KeyError):
        return False
    return not evaluate or (out / "metrics.json").is_file()


# ------------------------------------------------------------------------------- test-time variations
def detector_outputs(ckpt, dataset, proposals, config=None, bbox_reg=True, progress=True):
    """The network's scored boxes on every image of a split, before any test protocol.

    The network is the expensive part of test time; the protocol that turns its outputs into detections (score
    threshold, per-class NMS, caps) is cheap. Keeping the outputs lets a lesson try many protocols, NMS thresholds or
    proposal counts (:func:`apply_protocol`) with one pass of the network.

    Args:
        ckpt: a :class:`~minircnn.training.checkpoint.Checkpoint`
            (:func:`~minircnn.training.checkpoint.load_checkpoint`).
        dataset: a :class:`~minircnn.data.VOCDataset` (needs ``load_image``).
        proposals: list of (P_i, 4) float boxes, one per image of ``dataset``.
        config: the test settings (``test_scales`` or ``test_scale``, ``test_max_size``); ``ckpt.config`` if None.
        bbox_reg: False: every class's box is the proposal (see :func:`~minircnn.inference.im_detect`).
        progress: show a progress bar.

    Returns:
        list with one ``(probs, boxes)`` per image: (P_i, K+1) float32 class probabilities and (P_i, K+1, 4)
        float32 class-specific boxes in image pixels, rows in the order of the proposals.
    """
    from tqdm import tqdm

    from ..inference.im_detect import im_detect
    config = config or ckpt.config
    return [im_detect(ckpt.model, dataset.load_image(i), proposals[i], ckpt.bbox_means, ckpt.bbox_stds,
                      ckpt.preprocessing, config.test_scales or config.test_scale, config.test_max_size, bbox_reg)
            for i in tqdm(range(len(proposals)), desc="network on each image", unit="img", disable=not progress)]


def apply_protocol(outputs, config, top=None, **changes):
    """Detections from :func:`detector_outputs` under a test protocol (:mod:`minircnn.inference.protocols`).

    Args:
        outputs: list of ``(probs, boxes)`` per image, from :func:`detector_outputs`.
        config: a :class:`~minircnn.training.config.TrainConfig` holding the test protocol: ``protocol``,
            ``score_thresh``, ``nms_thresh``, ``max_per_image`` (usually the checkpoint's).
        top: keep only each image's first ``top`` proposals (None: all). The network scores every RoI on its own,
            so this gives what running it on the ``top`` best-ranked proposals alone would.
        **changes: config fields to change first, e.g. ``nms_thresh=0.5`` or ``protocol="paper"``.

    Returns:
        lists (boxes, labels, scores), one entry per image, as :func:`~minircnn.inference.detect_split`.
    """
    from ..inference.protocols import make_protocol
    config = config.replace(**changes)
    num_classes = outputs[0][0].shape[1] if outputs else 1
    chosen = make_protocol(config.protocol, num_classes, len(outputs), config.score_thresh, config.nms_thresh,
                           config.max_per_image)
    for probs, boxes in outputs:
        chosen.add(probs[:top], boxes[:top])
    return chosen.results()
