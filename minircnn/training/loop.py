"""The training run: set up, iterate, log, checkpoint, evaluate (what ``python -m minircnn.train`` calls).

The run, stage by stage::

    dataset (VOC folder, or the built-in shapes set generated on first use)
      -> proposals per split (selective search, cached beside the dataset)
      -> roidb + flipped copies + normalised regression targets              prepare_data
         (docs/reference.md §5)
      -> detector initialised from the pretrained classifier by the paper's
         three transformations (Sec. 2.2), or resumed from the checkpoint    prepare_model
      -> SGD iterations: 2 images, 128 RoIs, multi-task loss, hand-written
         backward, Caffe SGD (docs/reference.md §3, §6)                      iterate
      -> checkpoint.npz, log.csv, loss.png; then evaluation on the test split
         (metrics.json, pr_curves.png, detections.png)                       evaluate_run

With ``proposals="rpn"`` the detector learns its own proposals: a Region Proposal Network on the same feature map
is trained with it in one run (approximate joint training, :mod:`minircnn.rpn.joint`); the roidb then holds the
ground truth only, and evaluation uses the RPN's proposals.

Every random draw is a pure function of ``(seed, iteration)`` (:mod:`minircnn.training.minibatches`), so a resumed
run ends with the same checkpoint as an uninterrupted one.
"""
from __future__ import annotations

import csv
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ..backend import get_device
from ..data import VOCDataset, ensure_shapes_dataset
from ..data.proposals import proposals_for_split
from ..data.sampler import DROPOUT, step_rng
from ..functional import NonFiniteError
from ..threads import set_blas_threads
from .checkpoint import load_checkpoint, save_checkpoint
from .initialization import apply_frozen, initial_model
from .log import log_fields, log_row, read_log, running_means, save_loss_plot
from .minibatches import ImageCache, build_training_roidb, training_minibatch
from .optim import SGD
from .pretrain import start_in_background


class TrainingDiverged(FloatingPointError):
    """The loss or the weights became NaN or infinite; the message says which iteration and what was kept."""


class TrainingData(NamedTuple):
    """The training split, ready for the sampler."""
    root: Path
    dataset: VOCDataset
    roidb: list
    means: np.ndarray           # (K+1, 4) float64 target normalisation (docs/reference.md §5)
    stds: np.ndarray


def dataset_root(config, progress: bool = True) -> Path:
    """The config's VOC folder, or the built-in shapes dataset (generated on first use)."""
    return Path(config.data) if config.data else ensure_shapes_dataset(progress=progress)


def prepare_data(config, pretraining_too=False, test_split_too=False, progress=True) -> TrainingData:
    """Proposals and the training roidb. With ``pretraining_too`` (a first run), the pretrained classifier is made
    in another process meanwhile (:func:`~minircnn.training.pretrain.start_in_background`); with ``test_split_too``
    the test split's proposals are computed (and cached) too. With RPN proposals the roidb holds the ground truth
    only and the target statistics are fixed (:mod:`minircnn.rpn.joint`)."""
    root = dataset_root(config, progress)
    dataset = VOCDataset(root, config.train_split)
    pretraining = start_in_background(progress) if pretraining_too else None
    if config.proposals == "rpn":
        from ..rpn.joint import target_statistics
        roidb, _, _ = build_training_roidb(dataset, [np.zeros((0, 4), np.float32)] * len(dataset), config)
        if pretraining is not None:
            pretraining.join()
        return TrainingData(root, dataset, roidb, *target_statistics(dataset.num_classes))
    proposals = proposals_for_split(dataset, method=config.proposals, max_boxes=config.max_proposals,
                                    progress=progress)
    if pretraining is not None and test_split_too:
        proposals_for_split(VOCDataset(root, config.test_split), method=config.proposals,
                            max_boxes=config.max_proposals, progress=progress)
    roidb, means, stds = build_training_roidb(dataset, proposals, config)
    if pretraining is not None:
        pretraining.join()
    return TrainingData(root, dataset, roidb, means, stds)


def prepare_model(config, data, ckpt=None, progress=True):
    """The model, its preprocessing, the solver and the first iteration: from the checkpoint ``ckpt`` when
    resuming, else as ``config.weights`` says (:func:`~minircnn.training.initialization.initial_model`)."""
    if ckpt is not None:
        if ckpt.class_names != tuple(data.dataset.class_names):
            raise ValueError(f"the checkpoint's classes {list(ckpt.class_names)} differ from {data.root}'s "
                             f"{list(data.dataset.class_names)}")
        model, preprocessing, start = ckpt.model, ckpt.preprocessing, ckpt.iteration
    else:
        model, preprocessing = initial_model(config, data.dataset.num_classes, progress)
        if config.proposals == "rpn" and model.rpn is None:
            model.add_rpn(seed=config.seed)
        if config.frozen is not None:
            apply_frozen(model, config.frozen)
        start = 0
    solver = SGD(model.parameters(), base_lr=config.base_lr, momentum=config.momentum,
                 weight_decay=config.weight_decay, gamma=config.gamma, stepsize=config.stepsize)
    if ckpt is not None:
        solver.load_state_dict(ckpt.solver_state, source="the checkpoint")
    return model, preprocessing, solver, start


def train(config, out, device=None, resume=False, evaluate=True, progress=True, resume_iters=None):
    """Train (and evaluate) as the module docstring says; returns the metrics dict (None without evaluation).

    Args:
        config: a :class:`~minircnn.training.config.TrainConfig`; ignored with ``resume`` (the checkpoint's is used).
        out: the run folder.
        device: ``"cpu"`` or ``"gpu"``; None: ``$MINIRCNN_DEVICE``, else the CPU.
        resume: continue from ``out/checkpoint.npz``, up to ``resume_iters`` iterations (default: the checkpoint's
            own total).
        evaluate: evaluate on the test split afterwards.
        progress: progress bars.

    Raises:
        FileNotFoundError, ValueError: a missing or unfit input (dataset, weights, checkpoint); the message names it.
        DeviceUnavailableError: the GPU was asked for and is not there (before any work is done).
        TrainingDiverged: the loss or the weights became NaN or infinite.
    """
    out = Path(out)
    ckpt_path = out / "checkpoint.npz"
    ckpt = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: there is no checkpoint at {ckpt_path}")
        ckpt = load_checkpoint(ckpt_path)
        config = ckpt.config.replace(iters=resume_iters or ckpt.config.iters)
    device = get_device(device)
    set_blas_threads(config.blas_threads)
    out.mkdir(parents=True, exist_ok=True)
    print("config:", config.to_json())
    (out / "config.json").write_text(config.to_json() + "\n")

    data = prepare_data(config, pretraining_too=not resume and config.weights == "pretrained",
                        test_split_too=evaluate, progress=progress)
    model, preprocessing, solver, start = prepare_model(config, data, ckpt, progress)
    if device == "gpu":
        model.to("gpu")

    def checkpoint():
        save_checkpoint(ckpt_path, model, solver, config, data.dataset.class_names, data.means, data.stds,
                        preprocessing)

    rows = read_log(out / "log.csv", start) if resume else []
    rows = iterate(model, solver, config, data, preprocessing, start, rows, out / "log.csv", checkpoint, ckpt_path,
                   resume, progress)
    if start >= config.iters:
        checkpoint()
    if rows:
        save_loss_plot(rows, out / "loss.png")
    seconds = float(rows[-1]["seconds"]) if rows else 0.0
    print(f"trained {config.iters} iterations ({config.iters - start} in this run, {seconds:.0f} s) -> {ckpt_path}")
    if not evaluate:
        return None
    return evaluate_run(model, config, data.root, data.means, data.stds, preprocessing, data.dataset.class_names,
                        out, progress)


def iterate(model, solver, config, data, preprocessing, start, rows, log_path, checkpoint, ckpt_path,
            resumed=False, progress=True):
    """SGD iterations ``start .. config.iters - 1``: forward, loss, backward, update; a log row each, a checkpoint
    every ``config.checkpoint_every``. Returns the log rows (those of ``rows`` first).

    The next step's mini-batch is built in a second thread while this step computes (the mini-batch of step i is a
    pure function of i, so this changes no number).

    Args:
        checkpoint: a function that writes the checkpoint to ``ckpt_path``.
        resumed: ``ckpt_path`` holds this run's checkpoint already (for the message if training diverges).
    """
    load_image = ImageCache(data.dataset)
    num_classes = data.dataset.num_classes
    if config.proposals == "rpn":
        from ..rpn.joint import joint_minibatch, joint_step

        def batch_of(i):
            return joint_minibatch(i, data.roidb, load_image, preprocessing, config.sampler, config.seed,
                                   lambda size: model.anchors(model.feature_map_size(*size)))

        def losses(batch, i):
            return joint_step(model, batch, i, config, num_classes)
    else:
        def batch_of(i):
            return training_minibatch(i, data.roidb, load_image, num_classes, preprocessing, config)

        def losses(batch, i):
            scores, deltas = model.forward(batch.blob, batch.rois)
            return model.loss(scores, deltas, batch.labels, batch.bbox_targets, batch.bbox_weights,
                              bbox_loss_weight=config.bbox_loss_weight)

    saved = resumed

    def diverged(i, what, detail):
        what = f"{what} at iteration {i} ({detail})"
        if not saved:
            return TrainingDiverged(f"training stopped: {what}, before the first checkpoint "
                                    f"(iteration {config.checkpoint_every}); nothing was saved. Try a lower --lr "
                                    f"(now {config.base_lr:g})")
        return TrainingDiverged(f"training stopped: {what}; the last good checkpoint, "
                                f"{ckpt_path}, was kept")

    with ThreadPoolExecutor(max_workers=1) as prefetch, open(log_path, "w", newline="") as log:
        upcoming = prefetch.submit(batch_of, start) if start < config.iters else None
        bar = tqdm(range(start, config.iters), desc="training", initial=start, total=config.iters,
                   disable=not progress)
        writer = csv.DictWriter(log, log_fields(config.proposals == "rpn"))
        writer.writeheader()
        writer.writerows(rows)
        tic = time.perf_counter()
        for i in bar:
            batch = upcoming.result()
            upcoming = prefetch.submit(batch_of, i + 1) if i + 1 < config.iters else None
            model.set_dropout_rng(step_rng(config.seed, DROPOUT, i))
            try:
                terms = losses(batch, i)
            except NonFiniteError as e:      # the layers refuse non-finite inputs: the weights have overflowed
                bar.close()
                raise diverged(i + 1, "the loss became nan", e) from None
            if not np.isfinite(terms.total):
                bar.close()
                raise diverged(i + 1, "the loss became nan", terms)
            model.backward()
            lr = solver.step()
            rows.append(log_row(i + 1, lr, terms, time.perf_counter() - tic))
            writer.writerow(rows[-1])
            bar.set_postfix(running_means(rows))
            if (i + 1) % config.checkpoint_every == 0 or i + 1 == config.iters:
                log.flush()
                if not all(np.isfinite(v).all() for v in model.state_dict().values()):
                    bar.close()
                    raise diverged(i + 1, "the update made weights nan or inf",
                                   f"the loss would be nan at iteration {i + 2}")
                checkpoint()
                saved = True
        bar.close()
    return rows


def evaluate_run(model, config, root, means, stds, preprocessing, class_names, out, progress=True):
    """Detect on the config's test split, score, write ``metrics.json``, ``pr_curves.png`` and
    ``detections.png`` into ``out``, print the table; returns the metrics."""
    from ..evaluation import format_table, score_both, write_results
    from ..inference import detect_images_both, proposal_seconds_per_image, proposals_for_test
    from ..visualize import save_ground_truth_and_detections
    test_set = VOCDataset(root, config.test_split)
    proposals = proposals_for_test(test_set, config, progress)
    tic = time.perf_counter()
    timing = {}
    found = detect_images_both(model, test_set.load_image, proposals, means, stds, preprocessing, config,
                               progress=progress, desc=f"detecting on {test_set.split}", timing=timing)
    seconds = time.perf_counter() - tic
    metrics, curves = score_both(test_set, found, class_names)
    metrics.update(split=config.test_split, iteration=config.iters, seconds_per_image=seconds / max(len(test_set), 1),
                   proposal_seconds_per_image=proposal_seconds_per_image(test_set, config, timing))
    write_results(out, metrics, curves, class_names)
    save_ground_truth_and_detections(test_set, found[True], class_names, out / "detections.png")
    print(format_table(metrics))
    print(f"mAP {metrics['map']:.3f} on {config.test_split} ({len(test_set)} images) -> {out / 'metrics.json'}")
    return metrics
