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
# # Lesson 06 — Hierarchical sampling
#
# **The claim (paper Sec. 2.3, "Mini-batch sampling").** R-CNN and SPPnet trained on mini-batches of RoIs drawn from
# many different images, one RoI per image in the extreme. Each RoI then pays for a forward and backward pass of the
# conv layers over its own image, with a large receptive field. Fast R-CNN instead draws N images and R/N RoIs from
# each (N = 2, R = 128): RoIs from the same image share one conv pass, forward and backward. The paper estimates
# this at "roughly 64×" faster than drawing 128 RoIs from 128 images, and reports that the correlation between RoIs
# of the same image does not slow convergence in practice.
#
# Per image it takes at most 25% foreground RoIs (IoU ≥ 0.5 with a ground-truth box) and fills the rest with
# background RoIs whose IoU is in [0.1, 0.5) — proposals that overlap an object a little are the informative
# negatives (a heuristic for hard example mining); those below 0.1 are never used.
#
# This lesson measures one SGD step both ways on a small network built from `minircnn.functional`, then looks at
# what the sampler (`minircnn/data/sampler.py`) picks on the built-in dataset.
#
# docs/reference.md §6 and §14.10. Tests: `tests/data/test_sampler.py`.

# %%
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minircnn.functional as F
from minircnn.boxes import clip_boxes
from minircnn.data import (PLAIN, SamplerConfig, VOCDataset, append_flipped, build_roidb, compute_targets,
                           ensure_shapes_dataset, generate_shapes_dataset, images_of_step, iterate_minibatches,
                           sample_rois)
from minircnn.visualize import draw_boxes
from minircnn.lab import DEVICE  # noqa: F401  (MINIRCNN_DEVICE=gpu without a GPU stops the lesson here)

FAST = os.environ.get("MINIRCNN_FAST", "0") not in ("", "0")   # CI sets MINIRCNN_FAST=1: smaller sizes
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. One SGD step, two ways
#
# The network: four 3 × 3 conv layers (16, 32, 64, 64 channels), each followed by ReLU and 2 × 2 max pooling — a
# total stride of 16 like VGG16's conv5 — then RoI pooling to 4 × 4, one fc layer of 256 units and the two output
# layers, for the 5 classes of the built-in dataset plus background. One SGD step is: conv forward, RoI pooling and
# head forward, both losses, the whole backward, and the weight update.

# %%
NUM_CLASSES = 6
CHANNELS = (3, 16, 32, 64, 64)


def init_params(rng):
    """He-initialised convs and fc6; small Gaussians for the two output layers (paper Sec. 2.3: std 0.01, 0.001)."""
    p = {}
    for i in range(4):
        fan_in = CHANNELS[i] * 9
        p[f"conv{i + 1}.weight"] = rng.normal(0, np.sqrt(2 / fan_in), (CHANNELS[i + 1], CHANNELS[i], 3, 3))
        p[f"conv{i + 1}.bias"] = np.zeros(CHANNELS[i + 1])
    p["fc6.weight"], p["fc6.bias"] = rng.normal(0, np.sqrt(2 / (64 * 16)), (256, 64 * 16)), np.zeros(256)
    p["cls_score.weight"], p["cls_score.bias"] = rng.normal(0, 0.01, (NUM_CLASSES, 256)), np.zeros(NUM_CLASSES)
    p["bbox_pred.weight"] = rng.normal(0, 0.001, (4 * NUM_CLASSES, 256))
    p["bbox_pred.bias"] = np.zeros(4 * NUM_CLASSES)
    return {k: v.astype(np.float32) for k, v in p.items()}


def sgd_step(p, blob, rois, labels, targets, weights, lr=1e-3):
    """Forward, backward and update; returns the seconds spent in the conv layers and in the rest (the head)."""
    t0 = time.perf_counter()
    h, conv_caches = blob, []
    for i in range(1, 5):
        h, c_conv = F.conv2d_forward(h, p[f"conv{i}.weight"], p[f"conv{i}.bias"], stride=1, pad=1)
        h, c_relu = F.relu_forward(h)
        h, c_pool = F.max_pool2d_forward(h, kernel_size=2, stride=2)
        conv_caches.append((c_conv, c_relu, c_pool))
    t1 = time.perf_counter()
    pooled, c_roi = F.roi_pool_forward(h, rois, output_size=(4, 4), spatial_scale=1 / 16)
    fc, c_fc = F.linear_forward(pooled, p["fc6.weight"], p["fc6.bias"])
    fc, c_fc_relu = F.relu_forward(fc)
    scores, c_cls = F.linear_forward(fc, p["cls_score.weight"], p["cls_score.bias"])
    deltas, c_box = F.linear_forward(fc, p["bbox_pred.weight"], p["bbox_pred.bias"])
    _, d_scores = F.softmax_cross_entropy(scores, labels)
    _, d_deltas = F.smooth_l1_loss(deltas, targets, weights)
    g = {}
    d_fc_a, g["cls_score.weight"], g["cls_score.bias"] = F.linear_backward(d_scores, c_cls)
    d_fc_b, g["bbox_pred.weight"], g["bbox_pred.bias"] = F.linear_backward(d_deltas, c_box)
    d_fc = F.relu_backward(d_fc_a + d_fc_b, c_fc_relu)                 # both heads feed fc6: gradients add
    d_pooled, g["fc6.weight"], g["fc6.bias"] = F.linear_backward(d_fc, c_fc)
    d_h = F.roi_pool_backward(d_pooled, c_roi)
    t2 = time.perf_counter()
    for i in range(4, 0, -1):
        c_conv, c_relu, c_pool = conv_caches[i - 1]
        d_h = F.relu_backward(F.max_pool2d_backward(d_h, c_pool), c_relu)
        # the image itself needs no gradient: skip conv1's dx, the largest product of the backward
        d_h, g[f"conv{i}.weight"], g[f"conv{i}.bias"] = F.conv2d_backward(d_h, c_conv, need_dx=i > 1)
    t3 = time.perf_counter()
    for name in p:
        p[name] -= np.float32(lr) * g[name]
    return (t1 - t0) + (t3 - t2), t2 - t1


# %% [markdown]
# Both ways feed the same 128 RoIs per step through the same network; only the number of images differs. We time on
# random images of a fixed size S × S: the arithmetic does not depend on the pixel values, and a fixed size keeps the
# comparison free of padding effects. (S is small so that the 128-image step fits a laptop's memory and patience;
# the paper's images are about 600 × 1000.)

# %%
S = 32 if FAST else 128
R = 128
params = init_params(rng)


def random_step_inputs(n_images, rois_per_image):
    blob = rng.standard_normal((n_images, 3, S, S)).astype(np.float32)
    n = n_images * rois_per_image
    x1, y1 = rng.uniform(0, S / 2, n), rng.uniform(0, S / 2, n)
    side = rng.uniform(S / 8, S / 2, n)
    rois = np.stack([np.repeat(np.arange(n_images), rois_per_image), x1, y1, x1 + side, y1 + side], axis=1)
    labels = rng.integers(0, NUM_CLASSES, n)
    targets = np.zeros((n, 4 * NUM_CLASSES), np.float32)
    weights = np.zeros_like(targets)
    fg = np.flatnonzero(labels > 0)
    for r in fg:
        targets[r, 4 * labels[r]:4 * labels[r] + 4] = rng.standard_normal(4)
        weights[r, 4 * labels[r]:4 * labels[r] + 4] = 1
    return blob, rois.astype(np.float32), labels, targets, weights


timings = {}
sgd_step(params, *random_step_inputs(2, R // 2))               # warm-up: first-call costs are not the point
for name, n_images in (("Fast R-CNN: 2 images x 64 RoIs", 2), ("R-CNN style: 128 images x 1 RoI", 128)):
    inputs = random_step_inputs(n_images, R // n_images)
    runs = [sgd_step(params, *inputs) for _ in range(3 if n_images == 2 else 1)]
    timings[name] = min(runs, key=sum)
    conv_s, head_s = timings[name]
    print(f"{name:33s} step {conv_s + head_s:7.3f} s   conv layers {conv_s:7.3f} s   head {head_s:6.3f} s")

(fast_conv, fast_head), (slow_conv, slow_head) = timings.values()
print(f"\nspeed-up of the whole step: {(slow_conv + slow_head) / (fast_conv + fast_head):.0f}x;  "
      f"of the conv layers alone: {slow_conv / fast_conv:.0f}x  (image ratio 128 / 2 = 64)")
print(f"conv time per image: {fast_conv / 2 * 1e3:.1f} ms in the 2-image step, {slow_conv / 128 * 1e3:.1f} ms in the "
      f"128-image step; conv1's output alone: {2 * 16 * S * S * 4 / 2**20:.1f} MiB vs "
      f"{128 * 16 * S * S * 4 / 2**20:.0f} MiB")

# %% [markdown]
# Sharing the conv pass between the RoIs of an image is the whole trick: the conv layers' work grows with the number
# of images, not of RoIs. Expect a measured factor of the order of 64, not exactly 64. The head has the same
# 128 RoIs to process both ways, so it gains far less than the conv layers (compare the printed head times), and a
# small batch pays fixed costs per layer call; both pull the factor down. On a CPU the 128-image activations do not
# fit in the processor's caches while the 2-image ones nearly do, so each image costs more in the big batch (the
# printed conv time per image), which pushes it up. With the paper's 600 × 1000 images the conv layers dominate
# everything else, which is the situation the paper's estimate describes.
#
# Timings scatter when another program is busy on the CPU: the BLAS library behind the matrix products splits each
# product over threads, and a thread waiting for a busy core stalls the whole product. If your numbers look odd,
# rerun the cell, or start Jupyter with `OPENBLAS_NUM_THREADS=1` for steadier timings.
#
# Note also what the 25% rule does at one RoI per image: it allows `round(0.25 × 1)` foreground RoIs per image —

# %%
print("foreground RoIs per image, 2 x 64:", SamplerConfig().fg_rois_per_image,
      "  128 x 1:", SamplerConfig(ims_per_batch=128, batch_size=128).fg_rois_per_image)

# %% [markdown]
# — none. R-CNN chose its foreground share over the whole batch (32 windows of 128), not per image; the per-image
# rule is a property of hierarchical sampling.
#
# ## 2. What the sampler picks
#
# Now real data: the built-in dataset with region proposals. We use selective search
# (`minircnn.data.proposals.selective_search`) when it is available; otherwise boxes scattered around the objects
# and at random stand in for it.

# %%
if FAST:
    scratch = tempfile.TemporaryDirectory(prefix="minircnn_lesson06_")   # removed when the kernel exits
    data_root = Path(scratch.name) / "shapes"
    generate_shapes_dataset(data_root, seed=0, trainval=4, test=1, progress=False)
else:
    data_root = ensure_shapes_dataset()                     # data/shapes, generated on first use
dataset = VOCDataset(data_root, "trainval")
n_images = min(len(dataset), 4 if FAST else 40)

try:
    from minircnn.data.proposals import selective_search
except ImportError:
    selective_search = None


def stand_in_proposals(boxes, height, width, rng, per_box=60, n_random=300):
    """Jittered copies of the ground truth (to cover every overlap from 0 to 1) plus random boxes."""
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    k = (len(boxes), per_box)
    cx = boxes[:, 0, None] + 0.5 * w[:, None] + rng.normal(0, 0.25, k) * w[:, None]
    cy = boxes[:, 1, None] + 0.5 * h[:, None] + rng.normal(0, 0.25, k) * h[:, None]
    bw, bh = w[:, None] * np.exp(rng.normal(0, 0.35, k)), h[:, None] * np.exp(rng.normal(0, 0.35, k))
    jittered = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1).reshape(-1, 4)
    corner = rng.uniform(0, 1, (n_random, 2)) * (width, height)
    size = rng.uniform(10, 0.6 * min(width, height), (n_random, 2))
    random = np.concatenate([corner, corner + size], axis=1)
    return clip_boxes(np.round(np.concatenate([jittered, random])).astype(np.float32), (height, width))


start = time.perf_counter()
notes = [dataset.annotation(i) for i in range(n_images)]
proposals = []
for i, a in enumerate(notes):
    if selective_search is not None:
        proposals.append(selective_search(dataset.load_image(i), mode="fast", seed=i))
    else:
        proposals.append(stand_in_proposals(a.boxes, a.height, a.width, rng))
source = "selective search" if selective_search is not None else "stand-in boxes (selective search not available)"
print(f"{source}: {np.mean([len(p) for p in proposals]):.0f} boxes per image on average, "
      f"{time.perf_counter() - start:.1f} s for {n_images} images")

roidb = build_roidb([a.boxes for a in notes], [a.labels for a in notes], proposals,
                    [(a.height, a.width) for a in notes], dataset.num_classes)
roidb = append_flipped(roidb)

# %% [markdown]
# Every proposal's largest IoU with a ground-truth box decides what it can be. Over all proposals (ground-truth rows
# excluded):

# %%
all_iou = np.concatenate([e.max_overlaps[e.num_gt:] for e in roidb])
print(f"proposals: {np.mean(all_iou >= 0.5):.1%} foreground candidates (IoU >= 0.5), "
      f"{np.mean((all_iou >= 0.1) & (all_iou < 0.5)):.1%} background candidates [0.1, 0.5), "
      f"{np.mean(all_iou < 0.1):.1%} never used (< 0.1)")

# %% [markdown]
# Now draw mini-batches the way training does — each epoch a fresh random permutation of the images, 2 at a time
# (`images_of_step(i, ...)`: step i's images, a function of the seed and i alone), 64 RoIs from each
# (`sample_rois`) — and record what comes out:

# %%
config = SamplerConfig()
steps = 20 if FAST else 200
fg_iou, bg_iou, fg_per_image, rois_per_image = [], [], [], []
for step in range(steps):
    for index in images_of_step(step, len(roidb), config.ims_per_batch, seed=0):
        entry = roidb[index]
        keep, labels = sample_rois(entry, config, rng)
        iou = entry.max_overlaps[keep]
        fg_iou.append(iou[labels > 0])
        bg_iou.append(iou[labels == 0])
        fg_per_image.append(int((labels > 0).sum()))
        rois_per_image.append(len(keep))
fg_iou, bg_iou = np.concatenate(fg_iou), np.concatenate(bg_iou)
fg_per_image, rois_per_image = np.array(fg_per_image), np.array(rois_per_image)
print(f"{steps} steps, {len(fg_per_image)} image draws:")
print(f"  RoIs per image: mean {rois_per_image.mean():.1f}, fewer than 64 in {np.mean(rois_per_image < 64):.0%} "
      f"of the draws (no padding: short images give what they have)")
print(f"  foreground per image: mean {fg_per_image.mean():.1f}, at the cap of {config.fg_rois_per_image} in "
      f"{np.mean(fg_per_image == config.fg_rois_per_image):.0%} of the draws; foreground share of all sampled "
      f"RoIs {fg_iou.size / (fg_iou.size + bg_iou.size):.1%}")
print(f"  foreground IoU in [{fg_iou.min():.2f}, {fg_iou.max():.2f}], "
      f"ground-truth boxes among them {np.mean(fg_iou == 1):.0%}; background IoU in [{bg_iou.min():.2f}, "
      f"{bg_iou.max():.2f}]")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
bins = np.linspace(0, 1, 41)
axes[0].hist(all_iou, bins=bins, color="grey")
axes[0].axvline(0.1, color="k", ls=":")
axes[0].axvline(0.5, color="k", ls="--")
axes[0].set_yscale("log")
axes[0].set_title("max IoU of every proposal")
axes[1].hist(bg_iou, bins=bins, color="tab:red", label="sampled background")
axes[1].hist(fg_iou, bins=bins, color="tab:green", label="sampled foreground")
axes[1].set_title(f"max IoU of the sampled RoIs ({steps} steps)")
axes[1].legend()
for ax in axes:
    ax.set_xlabel("IoU with the closest ground-truth box")
plt.tight_layout()
plt.show()

# %% [markdown]
# The proposals are mostly far from any object; the sampler throws those away, keeps every kind of near miss as
# background, and caps the foreground at a quarter of the image's share.
#
# ## 3. One real mini-batch
#
# `iterate_minibatches` wraps all of this — order, scales, flips, the RoI choice and the regression targets — into
# the blobs of one SGD step. (It needs the normalised targets of lesson 05, hence `compute_targets`; we scale the
# images to a shorter side of 300 instead of the paper's 600 to keep it quick.) Here is one step's first image with
# its sampled RoIs, in the coordinates of the scaled blob:

# %%
roidb_t, means, stds = compute_targets(roidb, dataset.num_classes)
batches = iterate_minibatches(roidb_t, dataset.load_image, dataset.num_classes, PLAIN,
                              SamplerConfig(scales=(300,), max_size=500), seed=0)
batch = next(batches)
print("blob", batch.blob.shape, " rois", batch.rois.shape, " foreground", int((batch.labels > 0).sum()),
      " background", int((batch.labels == 0).sum()), " targets", batch.bbox_targets.shape)

first = batch.rois[:, 0] == 0
picture = np.clip(batch.blob[0].transpose(1, 2, 0) * np.array(PLAIN.std) + np.array(PLAIN.mean), 0, 1)
_, ax = plt.subplots(figsize=(7, 6))
draw_boxes(picture, batch.rois[first & (batch.labels == 0), 1:], ax=ax, linewidth=0.6)
draw_boxes(picture, batch.rois[first & (batch.labels > 0), 1:], labels=batch.labels[first & (batch.labels > 0)],
           class_names=dataset.class_names, ax=ax, linewidth=1.5)
ax.set_title("sampled RoIs: foreground by class, background lime")
plt.show()

# %% [markdown]
# ## Try this next
#
# * Time the step with N = 4, 8, 16, 32 images (R = 128 each time) and plot seconds against N. Is the line straight?
# * Raise S to 224 (if memory allows). How does the speed-up of the whole step change, and why?
# * Set `bg_thresh_lo=0.0` in `SamplerConfig` and redo the histograms: what kind of background RoIs flood in?
# * Use `fg_fraction=0.5`. How often does an image now run out of foreground candidates?
