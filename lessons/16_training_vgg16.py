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
# This one is about the real thing: what `python -m minircnn.train --preset vgg16_voc07` does, step by step; how
# large VGG16 is, layer by layer; what a run would cost on this CPU (an estimate from measurements); how to get
# VOC 2007, the original selective-search proposals and ImageNet weights; and what mAP to expect. Then it runs the
# preset for a few iterations at a toy scale, so that every line of the real pipeline executes once.
#
# Code: `minircnn/config.py` (the preset), `minircnn/train.py`, `minircnn/models/backbones.py`,
# `minircnn/weights.py`, `minircnn/data/proposal_files.py`. Tests: `tests/test_config.py`, `tests/test_train.py`,
# `tests/models/test_backbones.py`, `tests/test_weights.py`, `tests/data/test_proposal_files.py`. Spec §2–§6, §12,
# §13.

# %%
import contextlib
import csv
import io
import os
import re
import resource
import time
import tracemalloc
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.io

import minircnn
import minircnn.functional as F
from minircnn import weights
from minircnn.checkpoint import save_checkpoint
from minircnn.config import get_preset, set_blas_threads
from minircnn.data import PREPROCESSING_PRESETS, VOC_CLASS_NAMES, SamplerConfig, VOCDataset
from minircnn.data.proposal_files import proposals_from_file
from minircnn.data.proposals import proposals_for_split
from minircnn.data.transforms import scale_for, scaled_size
from minircnn.experiments import FAST, lesson_dataset, scratch_dir
from minircnn.models import VGG16, build_backbone, build_model, get_spec
from minircnn.nn.network import plan_backward
from minircnn.optim import SGD
from minircnn.timing import best_time
from minircnn.train import parse_args, resolve_config, train

REPO = Path(minircnn.__file__).resolve().parents[1]
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The preset, setting by setting
#
# A training run is one `TrainConfig` (`minircnn/config.py`). The default preset, `tiny`, is ours; `vgg16_voc07`
# holds the paper's settings. Here are the settings in which the two differ, and where each of the paper's values
# comes from:

# %%
tiny, vgg = get_preset("tiny"), get_preset("vgg16_voc07")
SOURCE = {   # where the paper's value comes from (paper section; spec section of the original code)
    "backbone": "model L, Sec. 4.1; spec §2",
    "weights": "ImageNet VGG16 in the paper (Sec. 2.2): pass --weights FILE.npz (section 4)",
    "preprocessing": "Caffe: BGR, 0-255, minus the BGR pixel means (spec §4)",
    "iters": "40k (tools/train_net.py --iters, spec §3)",
    "base_lr": "0.001 (Sec. 2.3; solver.prototxt)",
    "stepsize": "lr x 0.1 after 30k (spec §3)",
    "scales": "shorter side s = 600 (Sec. 4.1, spec §4)",
    "max_size": "longer side capped at 1000 (spec §4)",
    "test_scale": "single-scale testing (Sec. 4.1)",
    "test_max_size": "",
    "checkpoint_every": "SNAPSHOT_ITERS (spec §4)",
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
# What those values mean for one SGD step (spec §4–§6). **Hierarchical sampling** (lesson 06): N = 2 images per
# step, R = 128 RoIs, so 64 per image, of which at most a quarter are foreground (IoU ≥ 0.5 with a ground-truth box);
# the rest are background with IoU in [0.1, 0.5). **Scaling**: each image is resized so that its shorter side is 600
# pixels unless the longer side would then exceed 1000. PASCAL images average 384 × 473 pixels (spec §13), so a
# typical image is upsampled about 1.6×; the conv5_3 map it gives, at a total stride of 16, is what RoI pooling reads
# with `spatial_scale = 1/16` into a 7 × 7 grid. **Pixels**: Caffe's VGG16 expects BGR values in 0–255 minus the
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
# on the weights; biases learn at twice the rate and are not decayed (spec §3, §14.9). With flipped copies appended,
# VOC 2007 trainval gives 10,022 training entries; 2 per step, so one pass over them (an epoch) is 5,011 steps:

# %%
VOC07_TRAINVAL, VOC07_TEST = 5011, 4952          # images in the two VOC 2007 splits (the devkit's image sets)
solver = SGD([], base_lr=vgg.base_lr, momentum=vgg.momentum, weight_decay=vgg.weight_decay, gamma=vgg.gamma,
             stepsize=vgg.stepsize)              # no parameters: only its schedule is used here
steps_per_epoch = 2 * VOC07_TRAINVAL // vgg.ims_per_batch if vgg.flip else VOC07_TRAINVAL // vgg.ims_per_batch
print(f"{vgg.iters} iterations = {vgg.iters / steps_per_epoch:.2f} epochs of {steps_per_epoch} steps; "
      f"lr at 0: {solver.lr_at(0):g}, at {vgg.stepsize - 1}: {solver.lr_at(vgg.stepsize - 1):g}, "
      f"at {vgg.stepsize}: {solver.lr_at(vgg.stepsize):g}")
print("fc6 multipliers: lr", model["fc6"].lr_mult, " decay", model["fc6"].decay_mult)

# %% [markdown]
# The command that trains the paper's row of Table 1 is the preset plus three inputs this repository cannot ship:
# the dataset, the original proposals and the ImageNet weights (sections 3–4 say where they come from); add
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
# ## 2. The model, layer by layer
#
# `build_model("vgg16", 21, init=False)` builds the detector with all-zero weights (NumPy's zeros are not backed by
# memory until written, so this costs nothing). For each layer with parameters: its weight shape, its share of the
# parameters, whether it trains, and the work of its forward pass for one test image at 600 × 800 with 2,000
# proposals (the paper's Fig. 2 setting), in GFLOP (one multiply-add = 2 FLOP):

# %%
TEST_ROIS = 2000
total = model.num_parameters()
table, shape = [], (1, 3, 600, 800)
for layer in model.backbone.layers:
    out = layer.output_shape(shape)
    if layer.params:      # each output value of a conv is a dot product of length in * k * k
        table.append((layer.name, layer.params["weight"].shape, layer.frozen, f"{out[1]}x{out[2]}x{out[3]}",
                      2 * layer.params["weight"][0].size * np.prod(out[1:])))
    shape = out
for layer in (model.fc6, model.fc7, model.cls_score, model.bbox_pred):
    table.append((layer.name, layer.params["weight"].shape, layer.frozen, f"{TEST_ROIS}x{layer.params['bias'].size}",
                  2 * TEST_ROIS * layer.params["weight"].size))
print(f"{'layer':10s} {'weight':>20s} {'parameters':>12s} {'share':>6s}  trains  {'output':>12s} {'GFLOP':>7s}")
for name, wshape, frozen, out, flops in table:
    n = sum(v.size for v in model[name].params.values())
    print(f"{name:10s} {str(wshape):>20s} {n:12,d} {n / total:6.1%}  {'no' if frozen else 'yes':>6s}  {out:>12s} "
          f"{flops / 1e9:7.1f}")
trainable = model.num_parameters(trainable_only=True)
conv_flops = sum(row[4] for row in table if row[0].startswith("conv"))
fc_flops = sum(row[4] for row in table if not row[0].startswith("conv"))
print(f"\n{total:,d} parameters ({total * 4 / 2**20:,.0f} MiB in float32), {trainable:,d} trainable; "
      f"fc6 alone holds {model.fc6.params['weight'].size / total:.0%}")
print(f"forward work per test image: convs {conv_flops / 1e9:.0f} GFLOP, fc layers on {TEST_ROIS} RoIs "
      f"{fc_flops / 1e9:.0f} GFLOP")

# %%
names = [row[0] for row in table]
fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
colours = ["grey" if row[2] else "tab:blue" for row in table]
axes[0].barh(names, [sum(v.size for v in model[n].params.values()) / 1e6 for n in names], color=colours)
axes[0].set_xlabel("parameters (millions)")
axes[0].set_title("where the parameters are (grey: frozen)")
axes[1].barh(names, [row[4] / 1e9 for row in table], color=colours)
axes[1].set_xlabel(f"GFLOP, forward, one 600x800 image with {TEST_ROIS} RoIs")
axes[1].set_title("where the work is")
axes[0].invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# The two pictures are nearly mirror images: the convs hold few parameters but do the work that grows with the
# image; fc6 holds most of the parameters and does work that grows with the number of RoIs. That is why the paper
# compresses fc6 and fc7 with a truncated SVD at test time (Sec. 3.1, `minircnn/svd.py`): with 2,000 RoIs per image
# they take a large part of the test time (paper Fig. 2: 38.7% for fc6 alone before SVD).
#
# ## 3. Getting PASCAL VOC 2007
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
# 21 outputs with background. Objects marked `difficult` are kept for training and ignored by the evaluation (spec §5).
# Our lesson dataset, for comparison:

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
# ## 4. The original proposals and ImageNet weights
#
# **Proposals.** The paper's numbers use the selective-search boxes ("quality" mode) that the original release
# distributes: `data/scripts/fetch_selective_search_data.sh` in the Fast R-CNN repository downloads
# `selective_search_data.tgz` (~0.5 GB), which unpacks to `selective_search_data/voc_2007_trainval.mat`,
# `voc_2007_test.mat`, and the VOC 2012 files. Each holds a cell array `boxes`, one matrix per image in the order of
# `ImageSets/Main/<split>.txt`, with rows **[y1 x1 y2 x2], 1-based** (spec §12, gotcha 17).
# `--proposals 'selective_search_data/voc_2007_{split}.mat'` makes training read the training split's file and
# evaluation the test split's (`{split}` is filled in); `minircnn/data/proposal_files.py` swaps the columns and
# subtracts 1. (Without it the preset runs our own selective search, `ss-fast`, on every image once and caches the
# boxes: a long job for the 9,963 VOC images on a CPU; `benchmarks/RESULTS.md` gives its time per image.)
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
weights.convert(FIXTURE, converted, spec=get_spec("vgg16", **NARROW))
print(weights.info(converted))

# %% [markdown]
# The command line checks against the real VGG16, so it refuses the narrow file and writes nothing — the check that
# keeps a file for another network from being half-loaded:

# %%
message = io.StringIO()
with contextlib.redirect_stderr(message):
    status = weights.main(["convert", str(FIXTURE), str(scratch_dir() / "refused.npz"), "--arch", "vgg16"])
print(f"exit status {status}; written: {(scratch_dir() / 'refused.npz').exists()}")
print(message.getvalue()[:400])

# %% [markdown]
# ## 5. Running the preset, small
#
# `train_detector` (used by the other lessons) is for the tiny preset, so we call `minircnn.train.train` — the
# function behind `python -m minircnn.train` — with the `vgg16_voc07` preset, changing only what makes it small:
# two iterations, images scaled to a shorter side of 96 (64 with `MINIRCNN_FAST`) instead of 600, our lesson
# dataset instead of VOC, and the proposal files of section 4. The weights are the preset's `none` (random
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
del model                                   # the zero-weight model of sections 1-2
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
# If the loss grew, you have just seen why the paper never trains from scratch. Its learning rate, 0.001, was
# chosen for a network that starts from ImageNet weights, whose activations are well scaled for 0–255 BGR pixels.
# Random He-initialised weights keep the spread of their input from layer to layer, and that input here spreads
# over tens of units (pixels minus the mean pixel), so the first class scores are large, the first loss is far above
# ln(21), the gradients are large, and an SGD step at 0.001 overshoots. A few more steps and the loss reaches
# infinity; `train` then stops with a message and keeps the last good checkpoint. (The tiny preset's pixels are
# scaled to about unit spread, its `plain` preprocessing.) Converted ImageNet weights (`--weights`) are the
# paper's starting point and the one the learning rate was tuned for.
#
# ## 6. What the real run would cost
#
# One training step at the paper's scale does three kinds of work: the conv stack forward and backward on a blob of
# two images of about 600 × 800 (the backward stops at conv3_1, the first trainable layer, and computes no input
# gradient for it); RoI pooling and the fc layers on 128 RoIs; and the solver's update of 134M parameters. The last
# two do not depend on the image size, and the small run above measured them (together with a small conv pass) as
# its step time. The first grows with the number of pixels, so we time the VGG16 conv stack on a few small images and
# extrapolate. A layer call also has costs that do not grow with the image (and the weight gradients take the same
# memory whatever the image), so we fit `cost = fixed + per_pixel × pixels` through the measurements rather than
# scaling one of them. We use the BLAS thread count the preset trains with.

# %%
set_blas_threads(vgg.blas_threads)
backbone = build_backbone(VGG16, rng=rng)           # the 13 convs with random weights (59 MB)
plan_backward(backbone.layers)                      # conv1_x, conv2_x frozen: the backward stops at conv3_1
sizes = [(64, 64), (96, 128)] if FAST else [(96, 96), (192, 256), (288, 384)]


def conv_forward_backward(image, dy):
    backbone.forward(image, train=True)
    backbone.backward(dy)


conv = {}      # (h, w) -> (forward seconds, forward + backward seconds, peak bytes of forward + backward)
for h, w in sizes:
    image = rng.normal(0, 50, (1, 3, h, w)).astype(np.float32)          # roughly the spread of BGR - mean
    dy = rng.standard_normal(backbone.output_shape(image.shape)).astype(np.float32)
    forward = best_time(lambda: backbone.forward(image, train=False), repeat=1 if FAST else 2)
    both = best_time(lambda: conv_forward_backward(image, dy), repeat=1 if FAST else 2)
    tracemalloc.start()                              # NumPy reports its allocations to tracemalloc
    conv_forward_backward(image, dy)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    conv[(h, w)] = (forward, both, peak)
    print(f"{h:3d} x {w:3d}: forward {forward:6.3f} s, forward + backward {both:6.3f} s, "
          f"peak memory {peak / 2**20:5.0f} MiB")

pixels = np.array([h * w for h, w in sizes], dtype=float)
fit = {name: np.polyfit(pixels, [conv[s][k] for s in sizes], 1)           # (per pixel, fixed)
       for k, name in enumerate(("forward", "forward + backward", "memory"))}
for name, (per_pixel, fixed) in fit.items():
    unit, scale = ("bytes", 1) if name == "memory" else ("us", 1e6)
    print(f"{name:18s}: {per_pixel * scale:8.2f} {unit} per pixel + {fixed * scale:12,.0f} {unit} fixed")


def extrapolate(name, n_pixels):
    per_pixel, fixed = fit[name]
    return fixed + per_pixel * n_pixels


# %% [markdown]
# The benchmark script `benchmarks/bench_layers.py` times the same conv stack at 600 × 800 directly; here are the rows
# of its results file that matter (its header says how they were measured: two BLAS threads, so somewhat faster than
# our one thread on the same machine):

# %%
results = (REPO / "benchmarks" / "RESULTS.md").read_text()
bench = {}
for line in results.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) > 3 and cells[0].startswith(("conv stack", "fc6", "fc7", "roi_pool")):
        bench.setdefault((cells[0], cells[1]), float(cells[2]) / 1e3)       # first (newest) table: median, s
for key in (("conv stack fwd", "1x3x600x800"), ("conv stack fwd+bwd (conv3_1+)", "1x3x600x800"),
            ("roi_pool fwd", "2000 RoIs"), ("fc6 fwd (25088->4096)", "2000 rows"),
            ("fc7 fwd (4096->4096)", "2000 rows")):
    print(f"  {key[0]:30s} {key[1]:12s} {bench[key]:6.2f} s" if key in bench else f"  {key}: not in RESULTS.md")
print(f"  our extrapolation, one 600x800 image: forward {extrapolate('forward', 600 * 800):.2f} s, forward + "
      f"backward {extrapolate('forward + backward', 600 * 800):.2f} s")
bench_key = ("conv stack fwd+bwd (conv3_1+)", "1x3x600x800")
if bench_key in bench:
    print(f"  ours / benchmark: {extrapolate('forward + backward', 600 * 800) / bench[bench_key]:.1f}x")
devices = sorted(set(re.findall(r"^- device: (\w+)", results, flags=re.M)))      # the header of each layer table
print("devices with layer timings in RESULTS.md:", ", ".join(devices) or "none",
      "" if "GPU" in devices else "-- no GPU timings yet")

# %% [markdown]
# The estimate for a training step: the conv stack on a two-image 600 × 800 blob, plus the rest of a step as the
# small run measured it. For testing one image: the conv forward at 600 × 800, and the fc layers on 2,000 RoIs, which
# we time on 128 rows of a full-size fc6 and fc7 and scale up (a matrix product's time grows in proportion to its
# rows; RoI pooling is left out). These are **estimates** from small measurements, not runs.

# %%
step_conv = extrapolate("forward + backward", 2 * 600 * 800)
train_step = step_conv + step_seconds
fc6_w, fc7_w = np.full((4096, 25088), 0.001, np.float32), np.full((4096, 4096), 0.001, np.float32)
fc_b = np.zeros(4096, np.float32)                                # the values do not change the time
pooled = rng.standard_normal((128, 25088)).astype(np.float32)
fc_128 = best_time(lambda: F.linear_forward(F.linear_forward(pooled, fc6_w, fc_b)[0], fc7_w, fc_b),
                   repeat=1 if FAST else 2)
del fc6_w, fc7_w
test_conv, test_fc = extrapolate("forward", 600 * 800), fc_128 * TEST_ROIS / 128
test_image = test_conv + test_fc
K40_TRAIN_HOURS, K40_TEST_S, K40_TEST_SVD_S = 9.5, 0.32, 0.22      # paper Table 4, model L
print(f"fc6 + fc7 forward, 128 RoIs: {fc_128:.2f} s")
print(f"{'':34s} {'this CPU (estimate)':>22s} {'paper, one K40':>16s}")
print(f"{'one training step (2 x 600x800)':34s} {train_step:20.1f} s {K40_TRAIN_HOURS * 3600 / vgg.iters:14.2f} s"
      f"   convs {step_conv / train_step:.0%} of it")
print(f"{'40k iterations':34s} {train_step * vgg.iters / 3600:20.0f} h {K40_TRAIN_HOURS:14.1f} h"
      f"   = {train_step * vgg.iters / 86400:.0f} days here")
print(f"{'test, one image, 2000 RoIs':34s} {test_image:20.1f} s {K40_TEST_S:14.2f} s   fc6 + fc7 "
      f"{test_fc / test_image:.0%} of it; paper with SVD {K40_TEST_SVD_S} s")
print(f"{'test, all of VOC07 test':34s} {test_image * VOC07_TEST / 3600:20.1f} h "
      f"{K40_TEST_S * VOC07_TEST / 3600:14.2f} h")
print(f"CPU estimate / K40: training {train_step * vgg.iters / 3600 / K40_TRAIN_HOURS:.0f}x, "
      f"test {test_image / K40_TEST_S:.0f}x")

# %% [markdown]
# Memory for training, from the parameter count and the measured memory per pixel of the conv stack's forward and
# backward (the largest blob is two images of 600 × 1000):

# %%
params_mib = total * 4 / 2**20
state_mib = trainable * 4 / 2**20                  # one float32 per trainable parameter: the gradient, the momentum
activations_mib = fit["memory"][0] * 2 * 600 * 1000 / 2**20
machine_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
print(f"weights {params_mib:,.0f} MiB + gradients {state_mib:,.0f} MiB + momentum {state_mib:,.0f} MiB "
      f"+ conv activations {activations_mib:,.0f} MiB = {params_mib + 2 * state_mib + activations_mib:,.0f} MiB "
      f"(estimate); this machine has {machine_mib:,.0f} MiB")

# %%
TYPICAL = 600 * 800
grid = np.linspace(0, 2 * 600 * 1000, 50)
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for ax, (name, k, scale, unit) in zip(axes, (("forward + backward", 1, 1, "seconds"),
                                             ("memory", 2, 2**-20, "MiB, peak"))):
    ax.plot(pixels / 1e6, [conv[s][k] * scale for s in sizes], "o", color="tab:blue", label="measured here")
    ax.plot(grid / 1e6, extrapolate(name, grid) * scale, "--", color="tab:blue", label="fixed + per pixel (fit)")
    ax.axvline(2 * TYPICAL / 1e6, color="grey", ls=":", label="one training step: 2 x 600x800")
    ax.set_xlabel("pixels in the blob (millions)")
    ax.set_ylabel(unit)
    ax.set_title(f"VGG16 conv stack, forward + backward: {'time' if k == 1 else 'memory'}")
if bench_key in bench:
    axes[0].plot([TYPICAL / 1e6], [bench[bench_key]], "s", color="tab:orange",
                 label="benchmarks/RESULTS.md (2 threads)")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The tables above give the verdict for this machine: how many days the paper's 9.5 GPU hours become on one CPU
# thread, and which part of the work dominates training and testing. Points to keep in mind when reading them: the
# fit is a straight line through small sizes, and large arrays fall out of the processor's caches, so the true cost at
# 600 × 800 may differ (the benchmark's row at that size, measured directly, is the check); another program busy on
# the same cores slows everything down; and more BLAS threads (`--threads 0`) help on an idle machine. On a GPU
# (`--device gpu`, CuPy) the same code runs the CUDA kernels in `minircnn/kernels/`; whether those have been timed yet
# is the `RESULTS.md` line above. The original needed about 11 GB of GPU memory for VGG16 (spec §13), which you can
# compare with the memory estimate.
#
# ## 7. What mAP to expect
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
# What moves our number away from 66.9, and has not been measured here for VGG16: **the weights** — the paper
# never trains from scratch; without `--weights` the preset starts from random ones, and 40k iterations on 5k images
# should land far below (the tiny model shows the same effect at a small scale: `python -m minircnn.train
# --weights none`). **The proposals** — without `--proposals` the preset uses `ss-fast`, our fast selective search,
# not the release's quality-mode boxes. **The test protocol** — our default keeps per image the detections above
# 0.05 after NMS, capped at 100; the original keeps about 40 per class per image over the whole test set (spec §8,
# gotcha 12). **Torchvision weights instead of Caffe's** come from a different ImageNet training run. Per class, the
# paper's AP (Table 1, VOC07 trainval):

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
# Small, thin or cluttered objects (bottles, plants, chairs, boats) are where a 16-pixel stride and a 7 × 7 RoI grid
# hurt most; large, compact ones (cats, trains, dogs) are easy.
#
# ## Try this next
#
# * Run the preset yourself for a few steps at a small scale and watch the per-step time:
#   `python -m minircnn.train --preset vgg16_voc07 --scale 96 --iters 10 --no-eval --out runs/vgg16_try`. Then
#   `--scale 300`: does the step time grow as section 6 predicts?
# * Build the paper's other two models, `build_model("caffenet", 21, init=False)` and
#   `build_model("vgg_cnn_m_1024", 21, init=False)`, and redo the table of section 2. Do their GFLOP ratios to VGG16
#   match the ratios of their training times in Table 4 (1.2 h, 2.0 h, 9.5 h)?
# * Time fc6 on 2,000 rows before and after a truncated SVD to rank 1024 (the paper's choice, Sec. 3.1): how much
#   of the test estimate goes away?
# * VOC 07+12: `--data` reads one folder. Make one with the images, annotations and a `trainval.txt` listing both
#   years' ids (they do not collide), and write the two years' proposals into one `.npz` with
#   `minircnn.data.proposal_files.save_proposals`.
