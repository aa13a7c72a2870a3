# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 16 — Training VGG16 for real
#
# **The claim (paper Sec. 4.1, Table 1 and Table 4).** Fast R-CNN fine-tunes VGG16 (the paper's model L), initialised
# from an ImageNet classifier, on the 5,011 images of PASCAL VOC 2007 trainval for 40,000 SGD iterations: 9.5 hours
# on one Nvidia K40. Tested at one scale (shorter side 600) it reaches **66.9% mAP** on VOC 2007 test, at 0.32 s per
# image of network time (0.22 s after truncated SVD of the fc layers), and 70.0% when VOC 2012 trainval is added to
# the training data.
#
# Every other lesson uses the tiny backbone on the built-in shapes dataset, so that it runs in minutes on a laptop.
# This one is about the real thing: what `python -m minircnn.train --preset vgg16_voc07` does, step by step (with the
# learning-rate schedule written out by hand against the solver's); how to get VOC 2007, the original
# selective-search proposals (their file format converted by hand, read back through the package) and ImageNet
# weights; and what mAP to expect. Then it runs the preset for a few iterations at a toy scale, so that every line of
# the real pipeline executes once. Lesson 19 is the other half: how large VGG16 is, layer by layer, and what the
# paper's run would cost on this CPU.
#
# Code: `minircnn/training/config.py` (the preset), `minircnn/train.py`, `minircnn/training/loop.py`,
# `minircnn/models/backbones.py`, `minircnn/models/imagenet_weights.py`, `minircnn/weights.py`,
# `minircnn/data/proposal_files.py`. Tests: `tests/training/test_config.py`, `tests/test_train.py`,
# `tests/models/test_backbones.py`, `tests/test_weights.py`, `tests/data/test_proposal_files.py`. docs/reference.md
# §2–§6, §12, §13.

# %%
import csv
import os
import resource
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.io

import minircnn
from minircnn import weights
from minircnn.data import PREPROCESSING_PRESETS, VOC_CLASS_NAMES, SamplerConfig, VOCDataset
from minircnn.data.proposal_files import proposals_from_file
from minircnn.data.proposals import proposals_for_split
from minircnn.data.transforms import scale_for, scaled_size
from minircnn.lab.experiments import FAST, lesson_dataset, scratch_dir
from minircnn.models import VGG16, build_model, get_spec, imagenet_weights
from minircnn.train import parse_args, resolve_config
from minircnn.training.checkpoint import save_checkpoint
from minircnn.training.config import get_preset
from minircnn.training.loop import train
from minircnn.training.optim import SGD

REPO = Path(minircnn.__file__).resolve().parents[1]

# %% [markdown]
# ## 1. The preset, setting by setting
#
# A training run is one `TrainConfig` (`minircnn/training/config.py`). The default preset, `tiny`, is ours;
# `vgg16_voc07` holds the paper's settings. Here are the settings in which the two differ, and where each of the paper's
# values comes from:

# %%
tiny, vgg = get_preset("tiny"), get_preset("vgg16_voc07")
SOURCE = {   # where the paper's value comes from (paper section; docs/reference.md section of the original code)
    "backbone": "model L, Sec. 4.1; docs/reference.md §2",
    "weights": "ImageNet VGG16 in the paper (Sec. 2.2): pass --weights FILE.npz (section 3)",
    "preprocessing": "Caffe: BGR, 0-255, minus the BGR pixel means (docs/reference.md §4)",
    "iters": "40k (tools/train_net.py --iters, docs/reference.md §3)",
    "base_lr": "0.001 (Sec. 2.3; solver.prototxt)",
    "stepsize": "lr x 0.1 after 30k (docs/reference.md §3)",
    "scales": "shorter side s = 600 (Sec. 4.1, docs/reference.md §4)",
    "max_size": "longer side capped at 1000 (docs/reference.md §4)",
    "test_scale": "single-scale testing (Sec. 4.1)",
    "test_max_size": "",
    "checkpoint_every": "SNAPSHOT_ITERS (docs/reference.md §4)",
}
print(f"{'setting':16s} {'tiny':>12s} {'vgg16_voc07':>14s}   paper / original code")
for key in vgg.to_dict():
    if getattr(tiny, key) != getattr(vgg, key):
        print(f"{key:16s} {str(getattr(tiny, key)):>12s} {str(getattr(vgg, key)):>14s}   {SOURCE.get(key, '')}")
print("\nthe same in both:")
for key in ("ims_per_batch", "batch_size", "fg_fraction", "momentum", "weight_decay", "gamma", "flip",
            "proposals", "max_proposals", "frozen", "seed"):
    print(f"  {key} = {getattr(vgg, key)}")

# %% [markdown]
# What those values mean for one SGD step (docs/reference.md §4–§6). **Hierarchical sampling** (lesson 06): N = 2 images
# per step, R = 128 RoIs, so 64 per image, of which at most a quarter are foreground (IoU ≥ 0.5 with a ground-truth
# box); the rest are background with IoU in [0.1, 0.5). **Scaling**: each image is resized so that its shorter side is
# 600 pixels unless the longer side would then exceed 1000. PASCAL images average 384 × 473 pixels (docs/reference.md
# §13), so a typical image is upsampled about 1.6×; the conv5_3 map it gives, at a total stride of 16, is what RoI
# pooling reads with `spatial_scale = 1/16` into a 7 × 7 grid. **Pixels**: Caffe's VGG16 expects BGR values in 0–255
# minus the
# mean pixel. **Frozen layers**: `frozen = None` means "the backbone's own", which for VGG16 are conv1_x and conv2_x
# (Sec. 4.5: fine-tuning from conv3_1 up).

# %%
sampler = SamplerConfig(ims_per_batch=vgg.ims_per_batch, batch_size=vgg.batch_size, fg_fraction=vgg.fg_fraction)
print(f"per image: {sampler.batch_size // sampler.ims_per_batch} RoIs, at most {sampler.fg_rois_per_image} "
      f"foreground")
model = build_model("vgg16", len(VOC_CLASS_NAMES) + 1, init=False)   # all-zero weights: nothing drawn, no memory
for h, w in ((384, 473), (375, 500), (500, 333), (250, 500)):
    s = scale_for(h, w, vgg.scales[0], vgg.max_size)
    hs, ws = scaled_size(h, w, s)
    print(f"image {h:3d} x {w:3d} -> scale {s:.3f} -> {hs} x {ws} -> conv5_3 map {model.feature_map_size(hs, ws)}")
print(f"roi_pool5: {model.roi_pool5.output_size} grid at spatial scale 1/{1 / model.roi_pool5.spatial_scale:g}")
print("preprocessing:", PREPROCESSING_PRESETS[vgg.preprocessing])
print("frozen layers of the vgg16 backbone:", ", ".join(VGG16.frozen))

# %% [markdown]
# **The schedule.** Caffe's "step" policy: `lr = 0.001 × 0.1^floor(i / 30000)`, momentum 0.9, weight decay 0.0005
# on the weights; biases learn at twice the rate and are not decayed (docs/reference.md §3, §14.9). With flipped copies
# appended, VOC 2007 trainval gives 10,022 training entries; 2 per step, so one pass over them (an epoch) is 5,011
# steps. The schedule written out by hand, against the solver's `lr_at`:

# %%
VOC07_TRAINVAL, VOC07_TEST = 5011, 4952          # images in the two VOC 2007 splits (the devkit's image sets)
solver = SGD([], base_lr=vgg.base_lr, momentum=vgg.momentum, weight_decay=vgg.weight_decay, gamma=vgg.gamma,
             stepsize=vgg.stepsize)              # no parameters: only its schedule is used here
steps_per_epoch = 2 * VOC07_TRAINVAL // vgg.ims_per_batch if vgg.flip else VOC07_TRAINVAL // vgg.ims_per_batch
print(f"{vgg.iters} iterations = {vgg.iters / steps_per_epoch:.2f} epochs of {steps_per_epoch} steps; "
      f"lr at 0: {solver.lr_at(0):g}, at {vgg.stepsize - 1}: {solver.lr_at(vgg.stepsize - 1):g}, "
      f"at {vgg.stepsize}: {solver.lr_at(vgg.stepsize):g}")
print("fc6 multipliers: lr", model["fc6"].lr_mult, " decay", model["fc6"].decay_mult)
for i in (0, vgg.stepsize - 1, vgg.stepsize, vgg.iters - 1):
    by_hand = vgg.base_lr * vgg.gamma ** (i // vgg.stepsize)      # 0.001 x 0.1^floor(i / 30000)
    assert np.isclose(by_hand, solver.lr_at(i)), (i, by_hand, solver.lr_at(i))

# %% [markdown]
# The command that trains the paper's row of Table 1 is the preset plus three inputs this repository cannot ship:
# the dataset, the original proposals and the ImageNet weights (sections 2–3 say where they come from); add
# `--device gpu` on a machine with CuPy. The command line resolves to this config (only the settings it changes are
# shown):

# %%
command = ["--preset", "vgg16_voc07", "--data", "VOCdevkit/VOC2007",
           "--proposals", "selective_search_data/voc_2007_{split}.mat", "--weights", "vgg16_imagenet.npz"]
resolved = resolve_config(parse_args(command))
print("python -m minircnn.train " + " ".join(f"'{a}'" if "{" in a else a for a in command))
for key, value in resolved.to_dict().items():
    if value != vgg.to_dict()[key]:
        print(f"  {key}: {vgg.to_dict()[key]!r} -> {value!r}")

# %% [markdown]
# ## 2. Getting PASCAL VOC 2007
#
# Download the two archives from the PASCAL VOC 2007 page (`http://host.robots.ox.ac.uk/pascal/VOC/voc2007/`):
# `VOCtrainval_06-Nov-2007.tar` (trainval) and `VOCtest_06-Nov-2007.tar` (test, with annotations), about 450 MB
# each, and unpack both in the same folder:
#
# ```bash
# tar xf VOCtrainval_06-Nov-2007.tar && tar xf VOCtest_06-Nov-2007.tar
# ```
#
# They merge into one tree, `VOCdevkit/VOC2007/` with `Annotations/`, `JPEGImages/`, `ImageSets/Main/`
# (`trainval.txt`, `test.txt`, …) and the segmentation folders, which we do not use. `--data VOCdevkit/VOC2007`
# points at that folder: the same layout as the built-in dataset, which is written that way on purpose. VOC has no
# `classes.txt`; `VOCDataset` then uses the 20 PASCAL class names in the devkit's order, so the detector has
# 21 outputs with background. Objects marked `difficult` are kept for training and ignored by the evaluation
# (docs/reference.md §5). Our lesson dataset, for comparison:

# %%
root = lesson_dataset()
print(root)
for path in sorted(root.iterdir()):
    inside = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    more = f" ({len(inside)} files: {', '.join(inside[:3])}, ...)" if len(inside) > 3 else f" {inside or ''}"
    print(f"  {path.name}{'/' if path.is_dir() else ''}{more}")
print(f"{len(VOC_CLASS_NAMES)} PASCAL classes: {', '.join(VOC_CLASS_NAMES)}")

# if you have unpacked VOC 2007, point VOC2007 at VOCdevkit/VOC2007 to see it through the same reader
voc_root = Path(os.environ.get("VOC2007", REPO / "data" / "VOCdevkit" / "VOC2007"))
if (voc_root / "ImageSets" / "Main" / "trainval.txt").is_file():
    for split in ("trainval", "test"):
        voc = VOCDataset(voc_root, split)
        print(f"{voc_root} {split}: {len(voc)} images, classes {len(voc.class_names)}")
else:
    print(f"(no VOC 2007 at {voc_root})")

# %% [markdown]
# ## 3. The original proposals and ImageNet weights
#
# **Proposals.** The paper's numbers use the selective-search boxes that the original release distributes (computed in
# selective search's fast mode, as R-CNN did; lesson 08): `data/scripts/fetch_selective_search_data.sh` in the
# Fast R-CNN repository downloads `selective_search_data.tgz` (~0.5 GB), which unpacks to
# `selective_search_data/voc_2007_trainval.mat`, `voc_2007_test.mat`, and the VOC 2012 files. Each holds a cell array
# `boxes`, one matrix per image in the order of `ImageSets/Main/<split>.txt`, with rows **[y1 x1 y2 x2], 1-based**
# (docs/reference.md §12, §14.17). `--proposals 'selective_search_data/voc_2007_{split}.mat'` makes training read the
# training split's file and evaluation the test split's (`{split}` is filled in); `minircnn/data/proposal_files.py`
# swaps the columns and subtracts 1. (Without it the preset runs our own selective search, `ss-fast`, on every image
# once and caches the boxes: a long job for the 9,963 VOC images on a CPU; `benchmarks/RESULTS.md` gives its time per
# image.)
#
# To see the format, we write our lesson dataset's proposals into two files laid out like the release's, and read
# them back through the same function training uses:

# %%
ss_folder = scratch_dir() / "selective_search_data"
ss_folder.mkdir(exist_ok=True)
ours = {}
for split in ("trainval", "test"):
    dataset = VOCDataset(root, split)
    ours[split] = proposals_for_split(dataset, method=vgg.proposals, max_boxes=vgg.max_proposals, progress=False)
    cell = np.empty(len(dataset), dtype=object)          # a MATLAB cell array: one (n_i, 4) matrix per image
    for i, boxes in enumerate(ours[split]):
        cell[i] = (boxes[:, [1, 0, 3, 2]] + 1).astype(np.uint16)      # the release's [y1 x1 y2 x2], 1-based
    scipy.io.savemat(ss_folder / f"shapes_{split}.mat", {"boxes": cell})
template = str(ss_folder / "shapes_{split}.mat")
train_set = VOCDataset(root, "trainval")
back = proposals_from_file(template, train_set)
raw = scipy.io.loadmat(ss_folder / "shapes_trainval.mat")["boxes"].ravel()
print(f"image {train_set.ids[0]}: file rows {raw[0][:2].tolist()} -> boxes {back[0][:2].astype(int).tolist()}")
print(f"{len(back)} images, {sum(map(len, back))} boxes read back; largest difference from the originals: "
      f"{max(np.abs(a - b).max() for a, b in zip(back, ours['trainval'])):g} px")

# %% [markdown]
# **ImageNet weights.** The paper starts from VGG16 trained on ImageNet (Sec. 2.2). Two public files hold it:
# torchvision's `vgg16-397923af.pth` (RGB inputs in 0–1, normalised by the ImageNet mean and std) and the original
# Caffe release, `VGG16.v2.caffemodel` (the file the original scripts expect in `data/imagenet_models/`; BGR
# inputs in 0–255 minus the mean pixel). `python -m minircnn.weights convert SRC OUT.npz --arch vgg16` reads either
# one without PyTorch or Caffe, checks every name and shape against the architecture, and writes a checked `.npz`;
# `info` shows what it holds; `train --weights OUT.npz` then loads the convs, fc6 and fc7, drops the 1000-way fc8
# (the two new heads replace it, Sec. 2.2) and takes the preprocessing from the file instead of the preset's.
#
# The real files are over 500 MB, too big for a lesson. The test suite has a VGG16 in torchvision's layout with every
# layer narrowed to a few channels (`tests/fixtures/vgg16_narrow.pth`); the Python API converts it against a
# narrowed spec, exactly as the command line does against the full one:

# %%
FIXTURE = REPO / "tests" / "fixtures" / "vgg16_narrow.pth"
NARROW = dict(channels=(2, 2, 3, 3, 2, 2, 2, 3, 3, 3, 2, 2, 2), fc_width=4, roi_size=2)   # make_weight_fixtures.py
converted = scratch_dir() / "vgg16_narrow.npz"
imagenet_weights.convert(FIXTURE, converted, spec=get_spec("vgg16", **NARROW))
print(weights.info(converted))

# %% [markdown]
# The command line checks against the real VGG16, so it refuses the narrow file and writes nothing — the check that
# keeps a file for another network from being half-loaded. A command reports such an error in one line, with exit
# status 1: it raises `SystemExit` with the message, which a shell prints on stderr.

# %%
try:
    weights.main(["convert", str(FIXTURE), str(scratch_dir() / "refused.npz"), "--arch", "vgg16"])
except SystemExit as exit_:
    print(f"exit status 1: {str(exit_)[:400]}")
print(f"written: {(scratch_dir() / 'refused.npz').exists()}")

# %% [markdown]
# ## 4. Running the preset, small
#
# `train_detector` (used by the other lessons) is for the tiny preset, so we call `minircnn.training.loop.train` — the
# function behind `python -m minircnn.train` — with the `vgg16_voc07` preset, changing only what makes it small:
# two iterations, images scaled to a shorter side of 96 (64 with `MINIRCNN_FAST`) instead of 600, our lesson
# dataset instead of VOC, and the proposal files of section 3. The weights are the preset's `none` (random
# initialisation: there are no ImageNet weights here). Everything else — VGG16, frozen conv1_x/conv2_x, BGR
# preprocessing, N = 2, R = 128, the solver — is the paper's. VGG16's fc6 alone is hundreds of MB of float32
# weights, and the solver adds a gradient and a momentum for every trainable parameter, so this takes gigabytes of
# memory (the run prints its peak); we keep one VGG16 alive at a time (the one `build_model(..., init=False)` made
# above holds no memory).

# %%
MINI = 64 if FAST else 96
config = vgg.replace(data=str(root), proposals=template, iters=2, scales=(MINI,), max_size=MINI * 5 // 3,
                     test_scale=MINI, test_max_size=MINI * 5 // 3, checkpoint_every=10**6)
if FAST:
    # CI only: the full VGG16 takes most of a minute here (building it, a step, a 1 GB checkpoint), so with
    # MINIRCNN_FAST we train a VGG16 narrowed to a few channels instead. train() takes the architecture of a
    # detector checkpoint given as --weights, so we save the narrow, randomly initialised detector as one.
    narrow = build_model("vgg16", train_set.num_classes, seed=config.seed, fc_width=64,
                         channels=(8, 8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32))
    start = scratch_dir() / "narrow_vgg16.npz"
    save_checkpoint(start, narrow, SGD(narrow.parameters()), config, train_set.class_names,
                    np.zeros((train_set.num_classes, 4)), np.ones((train_set.num_classes, 4)),
                    PREPROCESSING_PRESETS[config.preprocessing])
    config = config.replace(weights=str(start))
    del narrow
del model                                   # the zero-weight model of section 1
run_dir = scratch_dir() / "vgg16_small"
tic = time.perf_counter()
train(config, run_dir, evaluate=False)
train_seconds = time.perf_counter() - tic

# %% [markdown]
# The log holds one row per iteration. A uniform guess over the 21 classes would score a classification loss of
# ln(21) ≈ 3.04. Two steps teach the network nothing; the point is that every stage of the real pipeline ran, and
# what one step costs.

# %%
with open(run_dir / "log.csv", newline="") as f:
    log = list(csv.DictReader(f))
print(f"{'iteration':>9s} {'lr':>8s} {'loss_cls':>9s} {'loss_bbox':>9s} {'seconds':>8s}")
for row in log:
    print(f"{row['iteration']:>9s} {row['lr']:>8s} {float(row['loss_cls']):9.4f} {float(row['loss_bbox']):9.4f} "
          f"{float(row['seconds']):8.2f}")
step_seconds = float(log[-1]["seconds"]) - float(log[-2]["seconds"])
checkpoint_mib = (run_dir / "checkpoint.npz").stat().st_size / 2**20
print(f"ln(21) = {np.log(21):.4f}; last step {step_seconds:.2f} s; whole call {train_seconds:.0f} s "
      f"(proposals, model, steps, checkpoint); checkpoint.npz {checkpoint_mib:,.0f} MiB "
      f"(weights + momentum); peak memory of this process so far "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB")
first_loss, last_loss = (float(log[i]["loss_cls"]) + float(log[i]["loss_bbox"]) for i in (0, -1))
print(f"total loss {first_loss:.4g} -> {last_loss:.4g}: "
      + ("it grew; this run is diverging" if last_loss > first_loss else "it fell"))

# %% [markdown]
# (With `MINIRCNN_FAST=1` these are the narrow model's numbers, not VGG16's.)
#
# If the loss grew, the learning rate does not suit these weights. The paper never trains from scratch: it starts
# from ImageNet classifiers (Sec. 2.2), so its learning rate, 0.001, was only ever used on pretrained weights, whose
# activations are well scaled for 0–255 BGR pixels. Random He-initialised weights keep the spread of their input
# from layer to layer, and that input here spreads over tens of units (pixels minus the mean pixel), so the first
# class scores are large, the first loss is far above ln(21), the gradients are large, and an SGD step at 0.001
# overshoots. Two steps do not show where that ends ("Try this next" trains ten at a tenth of the rate); if the
# loss ever becomes infinite or NaN, `train` stops with a message and keeps the last good checkpoint. (The tiny
# preset's pixels are scaled to about unit spread, its `plain` preprocessing.) Converted ImageNet weights
# (`--weights`) are the paper's starting point and the one the learning rate was tuned for.
#
# Lesson 19 takes the step time apart: how it grows with the image size, and what 40,000 steps at the paper's scale
# would cost on this machine.
#
# ## 5. What mAP to expect
#
# The paper's VGG16 numbers on VOC 2007 test (11-point AP, difficult objects ignored), all single-scale:
#
# | training | mAP | where |
# |---|---|---|
# | VOC07 trainval, the full method | **66.9** | Table 1 |
# | VOC07 trainval without difficult objects | 68.1 | Table 1 |
# | VOC07 + VOC12 trainval (60k iterations) | **70.0** | Table 1, Sec. 5.3 |
# | fine-tune fc6 and up only (convs frozen) | 61.4 | Table 5 |
# | conv2_1 and up instead of conv3_1 | 67.2 | Table 5 |
# | classification loss only, no box regression | 62.6 | Table 6 |
# | after truncated SVD of fc6, fc7 | 66.6 | Table 4 |
# | models S (CaffeNet) and M (VGG_CNN_M_1024) | 57.1, 59.2 | Table 4 |
#
# What moves our number away from 66.9, and has not been measured here for VGG16: **the weights** — the paper never
# trains from scratch; without `--weights` the preset starts from random ones, and 40k iterations on 5k images should
# land far below (to try this at a small scale, train the tiny model with `python -m minircnn.train --weights none` and
# compare its mAP with the default's). **The proposals** — without `--proposals` the preset uses `ss-fast`, our fast
# selective search, not the release's boxes (the original MATLAB selective search). **The test protocol** — our default
# keeps per image the detections above 0.05 after NMS, capped at 100; the original keeps about 40 per class per image
# over the whole test set (docs/reference.md §8, §14.12). **Torchvision weights instead of Caffe's** come from a
# different ImageNet training run. Per class, the paper's AP (Table 1, VOC07 trainval):

# %%
PAPER_AP = (74.5, 78.3, 69.2, 53.2, 36.6, 77.3, 78.2, 82.0, 40.7, 72.7, 67.9, 79.6, 79.2, 73.0, 69.0, 30.1, 65.4,
            70.2, 75.8, 65.8)                         # Table 1, "FRCN 07", aeroplane .. tvmonitor
order = np.argsort(PAPER_AP)
fig, ax = plt.subplots(figsize=(10, 4))
ax.bar([VOC_CLASS_NAMES[i] for i in order], [PAPER_AP[i] for i in order], color="tab:green")
ax.axhline(np.mean(PAPER_AP), color="k", ls="--", label=f"mean {np.mean(PAPER_AP):.1f}")
ax.set_ylabel("AP (%)")
ax.set_title("Fast R-CNN VGG16 on VOC 2007 test, trained on VOC 2007 trainval (paper Table 1)")
ax.tick_params(axis="x", rotation=60)
ax.legend()
plt.tight_layout()
plt.show()
print(f"mean of the 20 APs: {np.mean(PAPER_AP):.2f} (the paper's 66.9); hardest: "
      f"{', '.join(VOC_CLASS_NAMES[i] for i in order[:3])}")

# %% [markdown]
# The paper's lowest APs are those of small, thin or cluttered objects (plants, bottles, chairs, then boats), where a
# 16-pixel stride and a 7 × 7 RoI grid lose the most detail; large, compact ones (cats, dogs, horses) score highest.
#
# ## Try this next
#
# * Run the preset yourself for a few steps at a small scale and watch the per-step time:
#   `python -m minircnn.train --preset vgg16_voc07 --scale 96 --iters 10 --no-eval --out runs/vgg16_try`. Then
#   `--scale 300`: does the step time grow as lesson 19's fit predicts?
# * In section 4, lower the learning rate tenfold (`config.replace(base_lr=0.0001)`) and train ten iterations
#   instead of two: does the loss of the randomly initialised VGG16 still grow?
# * VOC 07+12: `--data` reads one folder. Make one with the images, annotations and a `trainval.txt` listing both
#   years' ids (they do not collide), and write the two years' proposals into one `.npz` with
#   `minircnn.data.proposal_files.save_proposals`.
