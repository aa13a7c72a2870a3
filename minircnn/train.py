"""Train a Fast R-CNN detector: ``python -m minircnn.train`` (tiny preset on the built-in dataset, then evaluate).

The run, stage by stage::

    dataset (VOC folder, or the built-in shapes set generated on first use)
      -> proposals per split (selective search, cached beside the dataset)
      -> roidb + flipped copies + normalised regression targets (spec §5)
      -> detector initialised from the pretrained classifier by the paper's three transformations (Sec. 2.2)
      -> SGD iterations: 2 images, 128 RoIs, multi-task loss, hand-written backward, Caffe SGD (spec §3, §6)
      -> checkpoint.npz, log.csv, loss.png; then evaluation on the test split (metrics.json, detections.png)

Reproducibility: every random draw of iteration ``i`` comes from ``numpy.random.default_rng((seed, stream, i))``
-- stream 1 shuffles the roidb once per epoch (the epoch's permutation, so the images of step ``i`` are a function
of ``i``), stream 2 draws the scales and RoIs of the step, stream 3 the dropout masks. So ``(seed, iteration)`` is
the whole random state, and ``--resume`` after a crash ends with a ``checkpoint.npz`` identical, array for array, to
that of an uninterrupted run.
"""
from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .config import PRESETS, TrainConfig, get_preset, set_blas_threads
from .initialization import apply_frozen, initial_model

# argparse flag -> config key, for the flags that override the preset
OVERRIDES = {"data": "data", "train_split": "train_split", "test_split": "test_split", "iters": "iters",
             "seed": "seed", "checkpoint_every": "checkpoint_every", "weights": "weights", "scale": None,
             "lr": "base_lr", "stepsize": "stepsize", "proposals": "proposals", "threads": "blas_threads",
             "frozen": "frozen", "bbox_loss_weight": "bbox_loss_weight", "train_images": "train_images",
             "scales": "scales", "test_scales": "test_scales", "max_size": None, "protocol": "protocol",
             "dropout": "dropout", "roi_size": "roi_size"}


def parse_args(argv=None):
    from .evaluate import parse_sizes
    from .protocols import PROTOCOLS
    tiny, vgg = get_preset("tiny"), get_preset("vgg16_voc07")

    def preset_default(key):
        return f" (tiny: {getattr(tiny, key)}; vgg16_voc07: {getattr(vgg, key)})"

    p = argparse.ArgumentParser(
        prog="python -m minircnn.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes into --out: checkpoint.npz, config.json, log.csv (iteration, lr, loss_cls, loss_bbox, "
               "seconds),\nloss.png, and after evaluation metrics.json, pr_curves.png and detections.png.")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="starting configuration: 'tiny' (CPU minutes, built-in dataset) or 'vgg16_voc07' (the "
                        "paper's settings: s=600/max 1000, N=2, R=128, lr 0.001 -> 0.0001 at 30k, 40k iterations)")
    p.add_argument("--data", help="a VOC-format folder (JPEGImages, Annotations, ImageSets/Main, classes.txt); "
                                  "default: the built-in shapes dataset, generated on first use")
    p.add_argument("--train-split", help="image set to train on (preset: trainval)")
    p.add_argument("--test-split", help="image set to evaluate on (preset: test)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<preset>)")
    p.add_argument("--iters", type=int, help="SGD iterations in total (with --resume: continue up to this many)"
                   + preset_default("iters"))
    p.add_argument("--seed", type=int, help="seed of every random draw (initial heads, image order, RoIs, dropout)"
                   + preset_default("seed"))
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where the network runs")
    p.add_argument("--checkpoint-every", type=int, help="write checkpoint.npz every K iterations (and at the end)"
                   + preset_default("checkpoint_every"))
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation on the test split after training")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (its config; --iters may raise the total)")
    p.add_argument("--weights", help="initial weights: 'pretrained' (tiny backbone pretrained by minircnn.pretrain, "
                                     "run on first use), 'none' (from scratch), or an .npz of parameters"
                        + preset_default("weights"))
    p.add_argument("--scale", type=int, help="shorter image side for training and testing (longer side capped at "
                                             "5/3 of it); e.g. 64 to try vgg16_voc07 quickly")
    p.add_argument("--scales", type=parse_sizes, metavar="S1,S2,...",
                   help="multi-scale training: each image of a step gets one of these shorter sides at random, e.g. "
                        "480,576,688,864,1200 with --max-size 2000 (the paper's; spec §4)" + preset_default("scales"))
    p.add_argument("--test-scales", type=parse_sizes, metavar="S1,S2,...",
                   help="multi-scale test: an image pyramid of these shorter sides, each proposal pooled from the "
                        "level where its area is closest to 224x224 (default: single scale, test_scale)")
    p.add_argument("--max-size", type=int, help="cap on the longer image side, training and test"
                   + preset_default("max_size"))
    p.add_argument("--protocol", choices=PROTOCOLS, help="test protocol of the evaluation: 'simple' (per image: "
                   "score > 0.05, NMS, 100 best) or 'paper' (FR:test.py: ~40 per class per image over the set, then "
                   "NMS; see minircnn.evaluate)" + preset_default("protocol"))
    p.add_argument("--lr", type=float, help="base learning rate" + preset_default("base_lr"))
    p.add_argument("--stepsize", type=int, help="multiply the learning rate by 0.1 every this many iterations"
                   + preset_default("stepsize"))
    p.add_argument("--proposals", metavar="METHOD|FILES",
                   help="region proposals: ss-fast, ss-quality (selective search), dense (sliding windows), or "
                        "precomputed files: a path with {split} (e.g. selective_search_data/voc_2007_{split}.mat, the "
                        "original release's), or a folder of <prefix>_<split>.mat/.npz files"
                        + preset_default("proposals"))
    p.add_argument("--threads", type=int, help="BLAS threads (0: one per core; presets: 1, fastest on a shared "
                                               "2-core machine)")
    p.add_argument("--frozen", type=_names, help="comma-separated layers to keep fixed instead of the backbone's own "
                                                 "(e.g. conv1,conv2,conv3,conv4,conv5; '' for none)")
    p.add_argument("--bbox-loss-weight", type=float, help="lambda of the multi-task loss (0: classification only)"
                   + preset_default("bbox_loss_weight"))
    p.add_argument("--dropout", type=float, help="drop probability after relu6 and relu7 (the paper's models: 0.5)"
                   + preset_default("dropout"))
    p.add_argument("--roi-size", type=int, help="RoI pool grid; for a detector made from a classifier, fc6 is "
                   "resized from the classifier's grid (default: the classifier's)" + preset_default("roi_size"))
    p.add_argument("--train-images", type=int, help="train on a random subset of this many images (0: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _names(text):
    """``"conv1,conv2"`` -> ``("conv1", "conv2")``; ``""`` -> ``()``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def resolve_config(args) -> TrainConfig:
    """The preset with the command line's overrides (only flags that were given)."""
    changes = {key: getattr(args, flag) for flag, key in OVERRIDES.items()
               if key is not None and getattr(args, flag) is not None}
    if args.scale is not None:
        if args.scales is not None:
            raise SystemExit("give --scale (one training and test scale) or --scales (training scales), not both")
        changes.update(scales=(args.scale,), test_scale=args.scale, max_size=args.scale * 5 // 3,
                       test_max_size=args.scale * 5 // 3)
    if args.max_size is not None:
        changes.update(max_size=args.max_size, test_max_size=args.max_size)
    return get_preset(args.preset).replace(**changes)


# ------------------------------------------------------------------------------------------------- the pieces
def dataset_root(config):
    from .data import ensure_shapes_dataset
    return Path(config.data) if config.data else ensure_shapes_dataset()


def build_training_roidb(dataset, proposals, config):
    """roidb of the training split, flipped copies appended, targets normalised; with the (K+1, 4) means/stds."""
    from .data import append_flipped, compute_targets, roidb_from_dataset
    roidb = roidb_from_dataset(dataset, proposals)
    if config.train_images:
        if config.train_images > len(roidb):
            raise SystemExit(f"train_images={config.train_images}, but {dataset.split} has only {len(roidb)} images")
        # the first n of one fixed permutation: a smaller subset lies inside a larger one (same seed)
        chosen = np.sort(step_rng(config, 4, 0).permutation(len(roidb))[:config.train_images])
        roidb = [roidb[j] for j in chosen]
    if config.flip:
        roidb = append_flipped(roidb)
    return compute_targets(roidb, dataset.num_classes)


def step_rng(config, stream, i):
    """The generator of one random stream at iteration (or epoch) i: a pure function of (seed, stream, i)."""
    return np.random.default_rng([config.seed, stream, i])


def minibatch_at(i, roidb, load_image, num_classes, preprocessing, config):
    """The mini-batch of iteration i: images from epoch i // E's permutation (E steps per epoch), then RoIs."""
    from .data import SamplerConfig, get_minibatch
    sampler = SamplerConfig(ims_per_batch=config.ims_per_batch, batch_size=config.batch_size,
                            fg_fraction=config.fg_fraction, scales=config.scales, max_size=config.max_size)
    per_epoch = len(roidb) // config.ims_per_batch
    if per_epoch < 1:
        raise SystemExit(f"the training split has {len(roidb)} roidb entries, fewer than {config.ims_per_batch} "
                         "images per batch")
    epoch, pos = divmod(i, per_epoch)
    order = step_rng(config, 1, epoch).permutation(len(roidb))
    entries = [roidb[j] for j in order[pos * config.ims_per_batch:(pos + 1) * config.ims_per_batch]]
    return get_minibatch(entries, load_image, num_classes, preprocessing, sampler, step_rng(config, 2, i))


class ImageCache:
    """Decoded training images kept in memory (each is read from disk once)."""

    def __init__(self, dataset):
        self.dataset, self.images = dataset, {}

    def __call__(self, i):
        if i not in self.images:
            self.images[i] = self.dataset.load_image(i)
        return self.images[i]


# ------------------------------------------------------------------------------------------------- logs
LOG_FIELDS = ("iteration", "lr", "loss_cls", "loss_bbox", "seconds")   # seconds: since this process began training


def read_log(path, upto):
    """Rows of an existing log.csv with iteration <= upto (a resumed run drops the steps it will redo)."""
    if not Path(path).is_file():
        return []
    kept = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):                 # a killed run may have left a half-written last line
            if any(not row.get(k) for k in LOG_FIELDS) or row["iteration"] != str(len(kept) + 1) \
                    or len(kept) == upto:
                break
            kept.append(row)
    return kept


# ------------------------------------------------------------------------------------------------- the run
def train(config, out, device="cpu", resume=False, evaluate=True, progress=True, resume_iters=None):
    """Train (and evaluate) as the module docstring says; returns the metrics dict (None without evaluation).

    With ``resume``, ``config`` is ignored: the run continues with the checkpoint's, up to ``resume_iters``
    iterations (default: the checkpoint's own total).
    """
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import VOCDataset
    from .data.proposals import proposals_for_split
    from .optim import SGD
    from .pretrain import start_in_background
    out = Path(out)
    ckpt_path = out / "checkpoint.npz"
    if resume:
        if not ckpt_path.is_file():
            raise SystemExit(f"--resume: there is no checkpoint at {ckpt_path}")
        ckpt = load_checkpoint(ckpt_path)
        config = ckpt.config.replace(iters=resume_iters or ckpt.config.iters)
    set_blas_threads(config.blas_threads)
    out.mkdir(parents=True, exist_ok=True)
    print("config:", config.to_json())
    (out / "config.json").write_text(config.to_json() + "\n")

    root = dataset_root(config)
    train_set = VOCDataset(root, config.train_split)
    num_classes = train_set.num_classes
    # a first run pretrains the classifier in another process while the proposals are computed here
    pretraining = start_in_background(progress) if not resume and config.weights == "pretrained" else None
    proposals = proposals_for_split(train_set, method=config.proposals, max_boxes=config.max_proposals,
                                    progress=progress)
    if pretraining is not None and evaluate:      # the test split's too (cached for the evaluation)
        proposals_for_split(VOCDataset(root, config.test_split), method=config.proposals,
                            max_boxes=config.max_proposals, progress=progress)
    roidb, means, stds = build_training_roidb(train_set, proposals, config)
    if pretraining is not None:
        pretraining.join()

    if resume:
        model, preprocessing, start = ckpt.model, ckpt.preprocessing, ckpt.iteration
        if ckpt.class_names != tuple(train_set.class_names):
            raise SystemExit(f"{ckpt_path}: classes {ckpt.class_names} differ from {root}'s")
    else:
        model, preprocessing = initial_model(config, num_classes, progress)
        if config.frozen is not None:
            apply_frozen(model, config.frozen)
        start = 0
    if device == "gpu":
        model.to("gpu")
    solver = SGD(model.parameters(), base_lr=config.base_lr, momentum=config.momentum,
                 weight_decay=config.weight_decay, gamma=config.gamma, stepsize=config.stepsize)
    if resume:
        solver.load_state_dict(ckpt.solver_state, source=str(ckpt_path))

    def checkpoint():
        save_checkpoint(ckpt_path, model, solver, config, train_set.class_names, means, stds, preprocessing)

    rows = read_log(out / "log.csv", start) if resume else []
    load_image = ImageCache(train_set)

    def batch_of(i):
        return minibatch_at(i, roidb, load_image, num_classes, preprocessing, config)

    # The next step's mini-batch is built in a second thread while this step computes (BLAS uses one core; the
    # mini-batch of step i is a pure function of i, so this changes no number).
    with ThreadPoolExecutor(max_workers=1) as prefetch, open(out / "log.csv", "w", newline="") as log:
        upcoming = prefetch.submit(batch_of, start) if start < config.iters else None
        bar = tqdm(range(start, config.iters), desc="training", initial=start, total=config.iters,
                   disable=not progress)
        writer = csv.DictWriter(log, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        tic = time.perf_counter()
        for i in bar:
            batch = upcoming.result()
            upcoming = prefetch.submit(batch_of, i + 1) if i + 1 < config.iters else None
            model.set_dropout_rng(step_rng(config, 3, i))
            try:
                scores, deltas = model.forward(batch.blob, batch.rois)
                terms = model.loss(scores, deltas, batch.labels, batch.bbox_targets, batch.bbox_weights,
                                   bbox_loss_weight=config.bbox_loss_weight)
                problem = None if np.isfinite(terms.total) else f"{terms}"
            except ValueError as e:       # the layers refuse non-finite inputs: the weights have overflowed
                if "NaN or infinite" not in str(e):
                    raise
                problem = str(e)
            if problem is not None:
                bar.close()
                raise SystemExit(f"training stopped: the loss became nan at iteration {i + 1} ({problem}); the last "
                                 f"good checkpoint, {ckpt_path}, was kept")
            model.backward()
            lr = solver.step()
            row = {"iteration": i + 1, "lr": f"{lr:.6g}", "loss_cls": f"{terms.cls:.6f}",
                   "loss_bbox": f"{terms.bbox:.6f}", "seconds": f"{time.perf_counter() - tic:.3f}"}
            writer.writerow(row)
            rows.append(row)
            bar.set_postfix(cls=f"{np.mean([float(r['loss_cls']) for r in rows[-20:]]):.3f}",
                            bbox=f"{np.mean([float(r['loss_bbox']) for r in rows[-20:]]):.3f}")
            if (i + 1) % config.checkpoint_every == 0 or i + 1 == config.iters:
                log.flush()
                if not all(np.isfinite(v).all() for v in model.state_dict().values()):
                    bar.close()
                    raise SystemExit(f"training stopped: the update of iteration {i + 1} made weights nan or inf "
                                     f"(the loss became nan at iteration {i + 2}); the last good checkpoint, "
                                     f"{ckpt_path}, was kept")
                checkpoint()
        bar.close()
    if start >= config.iters:
        checkpoint()
    if rows:
        from .visualize import save_loss_curves
        save_loss_curves([int(r["iteration"]) for r in rows],
                         {key: [float(r[key]) for r in rows] for key in ("loss_cls", "loss_bbox")}, out / "loss.png")
    seconds = float(rows[-1]["seconds"]) if rows else 0.0
    print(f"trained {config.iters} iterations ({config.iters - start} in this run, {seconds:.0f} s) -> {ckpt_path}")
    if not evaluate:
        return None
    return evaluate_run(model, config, root, means, stds, preprocessing, train_set.class_names, out, progress)


def evaluate_run(model, config, root, means, stds, preprocessing, class_names, out, progress=True):
    from .data import VOCDataset
    from .data.proposals import proposals_for_split
    from .evaluate import detect_images_both, format_table, score_both, write_results
    from .visualize import save_ground_truth_and_detections
    test_set = VOCDataset(root, config.test_split)
    proposals = proposals_for_split(test_set, method=config.proposals, max_boxes=config.max_proposals,
                                    progress=progress)
    tic = time.perf_counter()
    found = detect_images_both(model, test_set.load_image, proposals, means, stds, preprocessing, config,
                               progress=progress, desc=f"detecting on {test_set.split}")
    seconds = time.perf_counter() - tic
    metrics, curves = score_both(test_set, found, class_names)
    metrics.update(split=config.test_split, iteration=config.iters, seconds_per_image=seconds / max(len(test_set), 1))
    write_results(out, metrics, curves, class_names)
    save_ground_truth_and_detections(test_set, found[True], class_names, out / "detections.png")
    print(format_table(metrics))
    print(f"mAP {metrics['map']:.3f} on {config.test_split} ({len(test_set)} images) -> {out / 'metrics.json'}")
    return metrics


def main(argv=None):
    args = parse_args(argv)
    given = [flag for flag in OVERRIDES if flag != "iters" and getattr(args, flag) is not None]
    if args.resume and given:
        raise SystemExit("--resume continues with the checkpoint's config; only --iters may change it, not "
                         + ", ".join("--" + flag.replace("_", "-") for flag in given))
    config = resolve_config(args)
    out = args.out or f"runs/{config.preset}"
    from .data import VOCFormatError
    try:
        return train(config, out, device=args.device, resume=args.resume, evaluate=not args.no_eval,
                     progress=not args.quiet, resume_iters=args.iters)
    except (VOCFormatError, FileNotFoundError) as e:       # a --data folder that is not VOC-shaped
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
