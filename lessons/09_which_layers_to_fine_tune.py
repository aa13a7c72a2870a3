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
# # Lesson 09 — Which layers to fine-tune
#
# **The claim (paper Sec. 4.5, Table 5).** SPPnet fine-tuned only the fully connected layers above its spatial
# pyramid pooling; its conv layers stayed as ImageNet left them. That works for a shallow network, the paper argues,
# but not for a very deep one. With VGG16 on VOC 2007, fine-tuning only fc6 and up gives **61.4** mAP; fine-tuning
# from conv3_1 up gives **66.9**. Going further down buys little: from conv2_1 up gives **67.2**, but training then
# takes 12.5 instead of 9.5 hours, and from conv1_1 up did not fit in GPU memory. The paper's reading: the first
# layers are generic (edges, colours) and need no adapting; the layers above must learn the detection task, and RoI
# pooling lets the gradient reach them (that is what lessons 02–03 built). Test time is the same in every case
# (0.32 s/image): freezing changes training only.
#
# **Our version.** Section 0 first turns a classifier into a detector: the paper's three transformations. The tiny
# backbone has five convs (`conv1` … `conv5`, one per stage), then fc6, fc7 and the two output layers. It starts
# from the classifier that `minircnn.pretrain` trained on the generated ImageNet stand-in. We train three detectors
# that differ only in `TrainConfig.frozen`:
#
# | variant | frozen | paper's counterpart |
# |---|---|---|
# | fc6 and up | `conv1` … `conv5` | "≥ fc6" (SPPnet's choice) |
# | conv3 and up | `conv1`, `conv2` | "≥ conv3_1" (the paper's VGG16 setting) |
# | everything | nothing (the tiny preset) | "≥ conv1_1" (what did not fit in memory) |
#
# and measure their mAP on the test split of the built-in dataset, and their time per training step.
#
# docs/reference.md §2 ("Variants used for ablations"), §13 (Table 5). Modules: `minircnn/nn/network.py`
# (`plan_backward`), `minircnn/train.py` (`apply_frozen`), `minircnn/lab/experiments.py`. Tests: `tests/nn/`,
# `tests/test_train_options.py`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import minircnn.functional as F
from minircnn.training.config import get_preset
from minircnn.data import VOCDataset
from minircnn.lab.experiments import (FAST, FAST_CHANGES, SEEDS, compare_runs, lesson_dataset, train_seeds,
                                      training_minibatch)
from minircnn.models.classifier import build_classifier, from_classifier
from minircnn.training.initialization import apply_frozen, initial_model

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
VARIANTS = {                       # name -> (run tag, frozen layers); "default" is the tiny preset's own run
    "fc6 and up": ("frozen_conv1-5", CONVS),
    "conv3 and up": ("frozen_conv1-2", ("conv1", "conv2")),
    "everything": ("default", ()),
}
root = lesson_dataset()            # data/shapes (generated on first use); with MINIRCNN_FAST a few images

# %% [markdown]
# ## 0. From a classifier to a detector: the three transformations
#
# Before any fine-tuning, the pretrained classifier must become a detector. The paper does it in three steps
# (Sec. 2.2), written out in `minircnn/models/classifier.py` (`from_classifier`). Here they are on a tiny classifier
# with random weights for 10 classes (the transformations do not depend on the weights), made into a detector for
# K = 5 classes.
#
# **1. The last max pool becomes a RoI pool** with the grid fc6 was trained on (7 × 7 here, as in VGG16). On a
# 224-pixel input, the classifier's pool5 halves the 14 × 14 conv map. A RoI pool over the RoI that covers exactly
# those 14 × 14 cells (pixels 0 … 215: 215/16 rounds to cell 13) cuts each bin to two cells, the same windows as
# pool5. The RoI over the whole image (pixels 0 … 223) rounds to 15 cells instead (lesson 02), and its bins differ.

# %%
classifier = build_classifier("tiny", 10, seed=0)
crop = np.random.default_rng(0).standard_normal((1, 3, classifier.input_size, classifier.input_size))
conv5 = classifier.backbone.forward(crop.astype(np.float32), train=False)
pool5, _ = F.max_pool2d_forward(conv5, kernel_size=2, stride=2)
print(f"{classifier.input_size}-px input -> conv map {conv5.shape[2:]} -> pool5 {pool5.shape[1:]}")
for last_pixel in (215, 223):
    roi = np.array([[0, 0, 0, last_pixel, last_pixel]], np.float32)
    pooled, _ = F.roi_pool_forward(conv5, roi, output_size=(7, 7), spatial_scale=1 / 16)
    print(f"RoI pool of pixels 0..{last_pixel}: shape {pooled.shape[1:]}, largest difference from pool5 "
          f"{np.abs(pooled - pool5).max():.4f}")

# %% [markdown]
# **2. The last fc layer and its softmax over the classifier's classes give way to two sibling layers**: `cls_score`
# (K + 1 scores, softmax) and `bbox_pred` (4 box deltas per class), both new and initialised from small Gaussians;
# every other weight is copied. **3. The network takes two inputs**: a batch of images and a list of RoIs, each
# `(image index, x1, y1, x2, y2)`; every RoI gets its own scores and boxes.

# %%
detector = from_classifier(classifier, num_classes=6)
before, after = classifier.state_dict(), detector.state_dict()
print("classifier's last layers:", [layer.name for layer in classifier.layers][-3:])
print("detector's last layers:  ", [layer.name for layer in detector.layers][-3:])
print("dropped:", {k: v.shape for k, v in before.items() if k not in after})
print("new:    ", {k: v.shape for k, v in after.items() if k not in before})
copied = [k for k in before if k in after and np.array_equal(before[k], after[k])]
print(f"copied unchanged: {len(copied)} arrays ({', '.join(sorted({k.split('.')[0] for k in copied}))})")
images = np.concatenate([crop, crop]).astype(np.float32)
rois = np.array([[0, 0, 0, 100, 80], [0, 30, 40, 200, 220], [1, 10, 10, 60, 60]], np.float32)
probs, deltas = detector.predict(images, rois)
print(f"two images and {len(rois)} RoIs in: class probabilities {probs.shape}, box deltas {deltas.shape}")

# %% [markdown]
# ## 1. What freezing saves: the backward pass
#
# A layer with weights $W$ maps its input $x$ to its output $y$. Its backward computes two products from the
# upstream gradient $\partial L/\partial y$: the weight gradient $\partial L/\partial W$ (to learn) and the input
# gradient $\partial L/\partial x$ (to pass further down). For a conv or fc layer each costs about as many
# multiply-adds as the forward, $F_\ell$. So one training step costs roughly
#
# $$\underbrace{\sum_\ell F_\ell}_{\text{forward}} \;+\; \sum_{\ell\ \text{trainable}} F_\ell \;+\;
# \sum_{\ell\ \text{needs}\ \partial L/\partial x} F_\ell ,$$
#
# and a layer needs $\partial L/\partial x$ only if some trainable layer lies below it. Frozen layers at the bottom
# of the network therefore run no backward at all, and the lowest trainable layer computes its weight gradient but
# not its input gradient (the image itself never needs one). `minircnn.nn.plan_backward` makes exactly this
# decision before every forward.
#
# To see it, we build the detector as training does (`initial_model`: the pretrained classifier turned into a
# detector) and one real mini-batch of the training split (two images, up to 128 RoIs), then freeze each variant's
# layers with `apply_frozen`, the function `TrainConfig.frozen` goes through.

# %%
config = get_preset("tiny").replace(data=str(root), **(FAST_CHANGES if FAST else {}))
model, preprocessing = initial_model(config, VOCDataset(root, config.train_split).num_classes)
batch = training_minibatch(config, preprocessing)                  # the first step of a training run
print(f"mini-batch: image blob {batch.blob.shape}, {len(batch.rois)} RoIs")


def forward_multiply_adds(model, blob_shape, num_rois):
    """{layer name: multiply-adds of its forward} for the layers with weights (convs per blob, fcs per RoI)."""
    macs, shape = {}, tuple(blob_shape)
    for layer in model.backbone.layers:
        out = layer.output_shape(shape)
        if layer.params:                  # (N, out, H, W) outputs, each a dot product of in * kh * kw terms
            macs[layer.name] = int(np.prod(out)) * int(np.prod(layer.params["weight"].shape[1:]))
        shape = out
    for layer in model.trunk + model.heads:
        if layer.params:
            macs[layer.name] = num_rois * int(layer.params["weight"].size)
    return macs


def backward_plan(model, frozen):
    """Freeze ``frozen``, let the model plan its backward; {layer: "W x" / "W" / "x" / "-"} for layers with weights."""
    apply_frozen(model, frozen)
    model.forward(batch.blob, batch.rois, train=False)          # every forward plans the backward first
    return {layer.name: (("W " if layer.trainable else "") + ("x" if layer.need_dx else "")).strip() or "-"
            for layer in model.layers if layer.params}


macs = forward_multiply_adds(model, batch.blob.shape, len(batch.rois))
plans = {name: backward_plan(model, frozen) for name, (_, frozen) in VARIANTS.items()}
print(f"\n{'layer':10s} {'forward (M mult-adds)':>22s}   " + "".join(f"{name:>15s}" for name in VARIANTS))
for layer, f in macs.items():
    print(f"{layer:10s} {f / 1e6:22.1f}   " + "".join(f"{plans[name][layer]:>15s}" for name in VARIANTS))

predicted = {}
for name in VARIANTS:
    plan = plans[name]
    predicted[name] = sum(macs.values()) + sum(f * (("W" in plan[k]) + ("x" in plan[k])) for k, f in macs.items())
print(f"\n{'':10s} {'step (G mult-adds)':>22s}   " + "".join(f"{predicted[n] / 1e9:15.2f}" for n in VARIANTS))
print(f"{'':10s} {'relative to everything':>22s}   "
      + "".join(f"{predicted[n] / predicted['everything']:15.2f}" for n in VARIANTS))

# %% [markdown]
# Read the columns from the bottom up. With every conv frozen, the backward stops at fc6: the convs cost their
# forward and nothing more. Freezing conv1 and conv2 saves their backward and conv3's input gradient. The convs of
# the lower stages work on the largest maps, so they are expensive per weight; the fc layers hold most of the
# weights but run on 128 pooled RoIs.
#
# ## 2. Measured: one training step per variant
#
# The same mini-batch, forward, loss and backward (the solver's update is left out: it touches only trainable
# weights and is small), the fastest of a few repetitions.

# %%
def step_seconds(model, batch, repeat):
    """(forward + loss, backward) seconds of the fastest of ``repeat`` training steps on ``batch``."""
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        scores, deltas = model.forward(batch.blob, batch.rois)
        model.loss(scores, deltas, batch.labels, batch.bbox_targets, batch.bbox_weights)
        t1 = time.perf_counter()
        model.backward()
        t2 = time.perf_counter()
        if best is None or t2 - t0 < sum(best):
            best = (t1 - t0, t2 - t1)
    return best


repeat = 2 if FAST else 5
step_seconds(model, batch, 1)                                     # warm-up: first-call costs are not the point
timing = {}
for name, (_, frozen) in VARIANTS.items():
    apply_frozen(model, frozen)
    timing[name] = step_seconds(model, batch, repeat)
    fwd, bwd = timing[name]
    print(f"{name:13s} forward {fwd * 1e3:6.1f} ms   backward {bwd * 1e3:6.1f} ms   step {(fwd + bwd) * 1e3:6.1f} ms")
print(f"\n{'step relative to everything':28s}" + "".join(f"{n:>15s}" for n in VARIANTS))
print(f"{'  measured':28s}" + "".join(f"{sum(timing[n]) / sum(timing['everything']):15.2f}" for n in VARIANTS))
print(f"{'  predicted (mult-adds)':28s}" + "".join(f"{predicted[n] / predicted['everything']:15.2f}" for n in VARIANTS))

# %% [markdown]
# The forward is the same in every variant; all the difference is in the backward. The multiply-add count is a
# rough predictor of time: ReLUs, pooling, RoI pooling and memory traffic cost time without multiply-adds.
#
# ## 3. Train the three detectors
#
# Each run is the tiny preset (3000 SGD steps of two images and 128 RoIs) with only `frozen` changed. One run is one
# draw: the seed decides the initial weights of the new layers, the mini-batches and the flips, and mAP moves from
# seed to seed. So each variant is trained once per seed in `SEEDS` (`train_seeds`), and the table gives the mean
# and each seed's mAP. The full model's runs are the tag `"default"`, shared with the other lessons. A finished run is
# read back from `runs/lessons/<tag>/`; a missing one trains (a few minutes each on a laptop CPU). With
# `MINIRCNN_FAST=1` each run is a few steps from scratch on a few images: every line executes, no number means
# anything.

# %%
runs = {name: train_seeds(tag, root, frozen=frozen) if frozen else train_seeds(tag, root)
        for name, (tag, frozen) in VARIANTS.items()}


def mean_map(name):
    """The variant's mAP, averaged over its seeds."""
    return float(np.mean([run.metrics["map"] for run in runs[name]]))


def training_seconds(run):
    """Seconds of training recorded in the run's log.csv (its last row)."""
    last = (run.out / "log.csv").read_text().strip().splitlines()[-1]
    return float(last.split(",")[-1])


print(f"\n{'variant':13s} {'frozen':30s} {'trainable':>10s} {'mAP (mean of ' + str(len(SEEDS)) + ')':>16s} "
      f"{'each seed':>20s} {'step (ms)':>10s} {'run (s)':>8s} {'test (s/img)':>13s}")
for name, seeds in runs.items():
    apply_frozen(model, VARIANTS[name][1])
    each = " ".join(f"{run.metrics['map']:.3f}" for run in seeds)
    print(f"{name:13s} {','.join(VARIANTS[name][1]) or '-':30s} {model.num_parameters(trainable_only=True):10,d} "
          f"{mean_map(name):16.3f} {each:>20s} {sum(timing[name]) * 1e3:10.1f} "
          f"{np.median([training_seconds(run) for run in seeds]):8.0f} "
          f"{np.median([run.metrics['seconds_per_image'] for run in seeds]):13.3f}")

# %% [markdown]
# `step` is the measurement of section 2; `run` is the whole training run as its log recorded it (median over the
# seeds), which also
# depends on whatever else the machine was doing at the time (the runs were not trained side by side); `test` is
# the time per test image (the convs run forward only at test time, frozen or not).

# %%
names = list(VARIANTS)
maps = [mean_map(n) for n in names]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
bars = axes[0].bar(names, maps, color=["tab:grey", "tab:blue", "tab:green"])
axes[0].bar_label(bars, fmt="%.3f")
axes[0].set_ylabel(f"VOC07 mAP (test split, mean of {len(SEEDS)} seeds)")
axes[0].set_title("accuracy: which layers are fine-tuned")
fwd = np.array([timing[n][0] for n in names]) * 1e3
bwd = np.array([timing[n][1] for n in names]) * 1e3
axes[1].bar(names, fwd, color="tab:grey", label="forward + loss")
axes[1].bar(names, bwd, bottom=fwd, color="tab:orange", label="backward")
axes[1].set_ylabel("ms per training step")
axes[1].set_title("cost: one training step")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Does our result point the paper's way?
#
# The paper's two findings, in order: fine-tuning the convs matters (fc6-only loses 5.5 points), and fine-tuning
# the lowest ones hardly does (+0.3 from conv2_1, for 32% more training time).
#
# The yardstick, the same in every lesson (`compare_runs`): both variants are scored on many resamples of the 150
# test images (drawn with replacement), each resample scoring *both* on the same images, which gives a 95 % interval
# for the difference of their mean mAPs; and the seed-to-seed standard deviation says how far one run moves by
# chance. The rule: two variants differ only if the interval excludes zero *and* the difference exceeds twice the
# seed-to-seed standard deviation. The sentences below are written from the numbers by that rule.

# %%
step = {name: sum(t) for name, t in timing.items()}
for text, a, b, paper in (("conv3..conv5 fine-tuned too", "conv3 and up", "fc6 and up", "+0.055"),
                          ("conv1, conv2 fine-tuned too", "everything", "conv3 and up",
                           "+0.003, +32% training time")):
    result = compare_runs(runs[a], runs[b], (f"'{a}'", f"'{b}'"))
    print(f"{text}: mAP {result['difference']:+.3f}, time per step {step[a] / step[b] - 1:+.0%}   (paper: {paper})")
    print(f"  {result['verdict']}\n")

# %% [markdown]
# How to read these numbers. "Do not differ" is not "equal": it says that this test set and these seeds cannot tell
# the variants apart, and a small effect such as the paper's 0.3 points would need far more test images. Three
# differences from the paper's setting can change the size of the effects, either way.
#
# * *How the convs were pretrained.* The paper's argument that the lowest layers are generic rests on ImageNet:
#   VGG16's first layers saw 1.2 million natural images and learned edge and colour detectors that suit any
#   task. Ours had a short run on synthetic crops (`minircnn.pretrain`). If freezing conv1 and conv2 costs far
#   more here than the paper's 0.3 points, this is the likely reason: our low layers still have something to learn
#   for this task. The same holds for the whole conv stack in "fc6 and up".
# * *Depth.* With one conv per stage, "conv3 and up" here trains 3 of 5 convs; the paper's "conv3_1 and up" trains
#   9 of 13, and its four frozen layers all lie below the second pooling.
# * *Length.* 3000 steps may be too few for the fc layers alone to make up for frozen features, or for the lowest
#   layers to change much when they are free.
#
# What carries over whatever the numbers: freezing changes only the backward, so it changes training time and never
# test time, and a frozen layer saves most where its maps are largest.
#
# ## Try this next
#
# * Freeze only `conv1`, or `conv1`..`conv4`: where does mAP start to drop? Add the variants to `VARIANTS`.
# * Add seeds (`train_seeds(..., seeds=(3, 4, 5, 6, 7))`): does the interval narrow, and does a verdict change?
# * Freeze fc6 and fc7 as well (only the two output layers learn): how much is left of the detector?
# * Time the step at `scales=(576,)` (the mini-batch of section 1): do the frozen convs save more on larger images?
