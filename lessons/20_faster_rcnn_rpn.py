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
# # Lesson 20 — From Fast to Faster R-CNN: a Region Proposal Network, by hand
#
# **Where Fast R-CNN leaves detection.** Once the convolutions are shared (lessons 01–03), the network costs a
# fraction of a second per image, and what remains slow is the part that is not a network: the region proposals
# (lesson 08). Ren, He, Girshick and Sun (Faster R-CNN, 2015; our summary is `docs/reference.md` §16) replace
# selective search by a **Region Proposal Network** (RPN): a 3x3 conv and two 1x1 convs on the *same* feature map
# the detector already computes, which score k reference boxes, *anchors*, at every feature cell as object or
# background and regress each onto the object it covers. Their numbers (VGG16, VOC 2007 test): 300 RPN proposals
# give a better detector than 2000 selective-search boxes (69.9 against 66.9 % mAP), and a whole image takes 198 ms
# instead of 1830 ms.
#
# This lesson follows the RPN through our code (`minircnn/rpn/`): we measure the bottleneck, lay out anchors on an
# image, assign them their labels (with a loop version against the package), check the loss's gradient, look at what
# a trained RPN has learned (its objectness map, its proposals before and after NMS), compare its recall with
# selective search's, and finally compare the two detectors: mAP (with the paired yardstick the lessons share) and
# time per image. The exercise at the end: write the anchor assignment yourself.
#
# Tests: `tests/rpn/` (anchors, targets, head, proposals, joint training), `tests/models/test_fast_rcnn.py`.

# %%
import inspect
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minircnn.boxes import iou
from minircnn.data import VOCDataset, image_pyramid, proposal_recall, proposals_for_split, scaled_size
from minircnn.data.proposals import propose
from minircnn.gradcheck import check_loss_gradient
from minircnn.inference import detect_proposals, detect_split
from minircnn.lab.exercises import run_exercise_tests, tests_available
from minircnn.lab.experiments import (SEEDS, difference_verdict, lesson_dataset, paired_map_difference,
                                      split_rpn_proposals, train_detector, train_seeds)
from minircnn.rpn import (TEST_PROPOSALS, AnchorTargetSettings, RPNHead, anchor_shapes, anchor_targets,
                          grid_anchors, inside_image, proposals_from_outputs, rpn_loss)
from minircnn.training.checkpoint import load_checkpoint
from minircnn.visualize import draw_boxes


root = lesson_dataset()                  # data/shapes (generated on first use); a few images with MINIRCNN_FAST
train_set, test = VOCDataset(root, "trainval"), VOCDataset(root, "test")
notes = [test.annotation(i) for i in range(len(test))]
print(test, "| classes:", ", ".join(test.class_names))

# two detectors of the tiny preset: the default one, trained on selective-search boxes, and one trained with an RPN
# on its shared feature map (`python -m minircnn.train --proposals rpn`); both cached in runs/lessons/
ss_run = train_detector("default", root)
rpn_run = train_detector("rpn", root, proposals="rpn")
ss_ckpt, rpn_ckpt = load_checkpoint(ss_run.checkpoint), load_checkpoint(rpn_run.checkpoint)
config = rpn_ckpt.config
print(f"RPN detector: {config.iters} iterations, test scale {config.test_scale}, anchors "
      f"{rpn_ckpt.model.rpn_settings['scales']} px x ratios {rpn_ckpt.model.rpn_settings['ratios']}")

# %% [markdown]
# ## 1. The bottleneck, measured
#
# Time one test image through the default detector: selective search (fast mode, as the detector was trained),
# then the network on its proposals (conv stack, RoI pooling, fc layers, box decoding).

# %%
TIMED = min(5, len(test))
ss_seconds, net_seconds = [], []
for i in range(TIMED):
    image = test.load_image(i)
    tic = time.perf_counter()
    boxes = propose(image, "ss-fast", ss_ckpt.config.max_proposals, seed=(0, i))
    ss_seconds.append(time.perf_counter() - tic)
    tic = time.perf_counter()
    detect_proposals(ss_ckpt.model, image, boxes, ss_ckpt.bbox_means, ss_ckpt.bbox_stds, ss_ckpt.preprocessing,
                     ss_ckpt.config.test_scale, ss_ckpt.config.test_max_size)
    net_seconds.append(time.perf_counter() - tic)
ss_s, net_s = np.median(ss_seconds), np.median(net_seconds)
print(f"median over {TIMED} test images ({image.shape[1]}x{image.shape[0]} px and alike): selective search "
      f"{ss_s:.3f} s, the network {net_s:.3f} s")
print(f"the proposals take {ss_s / (ss_s + net_s):.0%} of a test image; even an infinitely fast network would "
      f"make the image only {(ss_s + net_s) / ss_s:.2f}x faster")

# %% [markdown]
# ## 2. Anchors: k reference boxes at every feature cell
#
# The RPN looks at the feature map through a 3x3 window and, at each cell, answers for k *anchors* centred on the cell:
# is there an object, and how does its box differ from the anchor? An anchor of scale S and aspect ratio r = h / w is
# `S / sqrt(r)` wide and `S * sqrt(r)` tall, so all ratios of one scale cover the same area S². The paper uses 3 scales
# (128, 256, 512 px) x 3 ratios on 600-pixel images; our images are smaller (a shorter side of 288) and so are many
# objects (sides of 12 to 100 px in the built-in set, before scaling), so our default is 5 scales in powers of two, from
# one feature stride (16 px) to nearly the whole image (256 px), x the paper's 3 ratios (`minircnn/rpn/anchors.py`). The
# cell centres are 16 px apart (the backbone's stride): the same k shapes repeat over the whole map, which is what makes
# the RPN translation invariant.

# %%
settings = rpn_ckpt.model.rpn_settings
shapes = anchor_shapes(settings["scales"], settings["ratios"])
print(f"{len(shapes)} anchor shapes per cell:")
for (x1, y1, x2, y2), (s, r) in zip(shapes, [(s, r) for s in settings["scales"] for r in settings["ratios"]]):
    width, height = x2 - x1 + 1, y2 - y1 + 1
    print(f"  scale {s:>5} ratio h/w {r:<4}  {width:6.1f} x {height:6.1f} px   area {width * height:8.0f}")

image = train_set.load_image(0)
note = train_set.annotation(0)
blob, factors = image_pyramid(image, config.scales, config.max_size, rpn_ckpt.preprocessing)
features = rpn_ckpt.model.features(blob, train=False)
size = scaled_size(image.shape[0], image.shape[1], factors[0])
anchors = grid_anchors(features.shape[2:], rpn_ckpt.model.backbone.stride, settings["scales"], settings["ratios"])
inside = inside_image(anchors, size)
print(f"\ntraining image 0 scaled to {size[1]}x{size[0]} px (factor {factors[0]:.3f}); feature map "
      f"{features.shape[3]}x{features.shape[2]} cells x {len(shapes)} shapes = {len(anchors)} anchors, "
      f"{inside.sum()} of them wholly inside the image")

# every shape at one cell near the middle and the centres of all cells, in the original image's pixels
h, w = features.shape[2:]
cell = (h // 2) * w + w // 2
centres = (anchors[::len(shapes), :2] + anchors[::len(shapes), 2:]) / 2 / factors[0]
fig, ax = plt.subplots(figsize=(7, 7))
ax.imshow(image)
ax.plot(centres[:, 0], centres[:, 1], ".", color="white", markersize=3)
draw_boxes(None, anchors[cell * len(shapes):(cell + 1) * len(shapes)] / factors[0], ax=ax, linewidth=1.2)
draw_boxes(None, note.boxes, ax=ax, color="blue", linestyle="--")
ax.set_xlim(-0.5, image.shape[1] - 0.5)
ax.set_ylim(image.shape[0] - 0.5, -0.5)
ax.set_title(f"the {len(shapes)} anchors of one cell (green), every cell centre (white), the objects (blue)")
plt.show()

# %% [markdown]
# ## 3. Which anchors are objects: the targets
#
# An anchor learns "object" if it overlaps a ground-truth box with IoU ≥ 0.7, *or* if it is the best anchor of some
# box (otherwise a small or oddly shaped object might have no positive anchor at all); "background" if its best IoU
# is below 0.3; the rest teach nothing. Anchors crossing the image border are left out of training (the paper: they
# bring large errors that are hard to correct). Each image then contributes a sample of 256 anchors, at most half of
# them objects. A loop version of the labelling rule (before the sampling), written for reading, against the
# package's `anchor_targets` with a sample large enough to keep every label:

# %%
def label_anchors_by_hand(anchors, gt_boxes, image_size, fg=0.7, bg=0.3):
    """1 object, 0 background, -1 ignored, for every anchor, one anchor at a time (no sampling)."""
    height, width = image_size
    labels = np.full(len(anchors), -1)
    inside = [i for i, a in enumerate(anchors) if a[0] >= 0 and a[1] >= 0 and a[2] <= width - 1 and a[3] <= height - 1]
    overlaps = {i: [iou(anchors[i:i + 1], g[None])[0, 0] for g in gt_boxes] for i in inside}
    for i in inside:
        best = max(overlaps[i], default=0.0)
        if best < bg:
            labels[i] = 0
        if best >= fg:
            labels[i] = 1
    for g in range(len(gt_boxes)):                      # each box's best anchor(s), however low their IoU
        top = max(overlaps[i][g] for i in inside) if inside else 0.0
        for i in inside:
            if top > 0 and overlaps[i][g] == top:
                labels[i] = 1
    return labels


gt = note.boxes * factors[0]
everything = AnchorTargetSettings(batch_size=len(anchors), fg_fraction=1.0)     # no sampling: every label stays
loop_labels = label_anchors_by_hand(anchors, gt, size)
package_labels, _ = anchor_targets(anchors, gt, size, np.random.default_rng(0), everything)
assert np.array_equal(loop_labels, package_labels)
print(f"loop and package agree on all {len(anchors)} anchors: {np.sum(package_labels == 1)} objects, "
      f"{np.sum(package_labels == 0)} background, {np.sum(package_labels == -1)} ignored "
      f"({np.sum(~inside)} of them for crossing the border)")
labels, targets = anchor_targets(anchors, gt, size, np.random.default_rng(0))
print(f"the training sample: {np.sum(labels == 1)} objects + {np.sum(labels == 0)} background = "
      f"{np.sum(labels >= 0)} anchors (at most {AnchorTargetSettings().batch_size}, half of them objects at most)")
best_iou = iou(anchors[labels == 1], gt).max(axis=1) if np.any(labels == 1) else np.zeros(0)
print(f"IoU of the positive anchors with their object: {best_iou.min() if best_iou.size else float('nan'):.2f} "
      f"to {best_iou.max() if best_iou.size else float('nan'):.2f} (below 0.7: a box's best anchor)")

fig, ax = plt.subplots(figsize=(7, 7))
ax.imshow(image)
draw_boxes(None, anchors[labels == 0][:40] / factors[0], ax=ax, color="red", linewidth=0.6)
draw_boxes(None, anchors[labels == 1] / factors[0], ax=ax, color="lime", linewidth=1.2)
draw_boxes(None, note.boxes, ax=ax, color="blue", linestyle="--")
ax.set_xlim(-0.5, image.shape[1] - 0.5)
ax.set_ylim(image.shape[0] - 0.5, -0.5)
ax.set_title("sampled positive anchors (green), 40 of the sampled background ones (red), objects (blue)")
plt.show()

# %% [markdown]
# ## 4. The head, the loss and its gradient
#
# The head is three layers the project already has (`minircnn/rpn/head.py`): `rpn_conv` (3x3, then ReLU), and the
# two siblings `rpn_cls_score` (1x1, 2k channels: background and object score of each anchor) and `rpn_bbox_pred`
# (1x1, 4k channels: the deltas). Its backward is the convs' backward; the only new piece is the bookkeeping from
# (N, 2k, h, w) maps to one row per anchor and back. The loss over the sampled anchors is a two-class softmax log
# loss plus smooth L1 on the positive anchors' deltas, both divided by the sample size (paper Eq. 1 with the released
# code's normalisation). Its gradient, checked against finite differences in float64:

# %%
rng = np.random.default_rng(0)
m = 32
check = dict(scores=rng.normal(size=(m, 2)), deltas=rng.normal(scale=0.3, size=(m, 4)),
             labels=np.array([1, 0, -1, 1] * (m // 4)), targets=rng.normal(scale=0.3, size=(m, 4)))


def loss_of_scores(scores):
    terms, dscores, _ = rpn_loss(scores, check["deltas"], check["labels"], check["targets"], m // 4)
    return terms.total, dscores


def loss_of_deltas(deltas):
    terms, _, ddeltas = rpn_loss(check["scores"], deltas, check["labels"], check["targets"], m // 4)
    return terms.total, ddeltas


print(f"relative error of dL/dscores {check_loss_gradient(loss_of_scores, [check['scores'].copy()]):.1e}, "
      f"of dL/ddeltas {check_loss_gradient(loss_of_deltas, [check['deltas'].copy()]):.1e}")

# %% [markdown]
# With the detector, training is *approximate joint training* (`minircnn/rpn/joint.py`): one SGD step adds the RPN's
# loss to Fast R-CNN's, the two gradients meet at the shared feature map, and the proposals the detector trains on
# are taken as constants. The paper's alternative, four-step alternating training, needs four runs; the paper
# reports close mAP for the joint scheme and 25–50 % less training time, which is what a laptop needs. One run still
# has two networks to teach from the same mini-batches, so it gets more of them: `--proposals rpn` trains 1.75 times
# the preset's iterations, as the released end-to-end solver does against Fast R-CNN's (`configure` in
# `minircnn/training/config.py`; the first cell printed the count).
#
# ## 5. What the trained RPN has learned: the objectness map
#
# For a test image, the probability of "object" of each anchor, the largest over the k anchors of each cell, laid
# over the image:

# %%
def rpn_outputs(ckpt, image):
    """(objectness (M,), deltas (M, 4), anchors (M, 4), factor, scaled size, feature map size) of one image."""
    cfg = ckpt.config
    blob, factors = image_pyramid(image, (cfg.test_scale,), cfg.test_max_size, ckpt.preprocessing)
    feats = ckpt.model.features(blob, train=False)
    scores, deltas = ckpt.model.rpn.forward(feats, train=False)
    return (RPNHead.objectness(scores[0]), deltas[0], ckpt.model.anchors(feats.shape[2:]), factors[0],
            scaled_size(image.shape[0], image.shape[1], factors[0]), feats.shape[2:])


shown = 0
image, note = test.load_image(shown), notes[shown]
objectness, deltas, anchors, factor, size, (h, w) = rpn_outputs(rpn_ckpt, image)
k = len(settings["scales"]) * len(settings["ratios"])
best = objectness.reshape(h, w, k).max(axis=2)
stride = rpn_ckpt.model.backbone.stride / factor                  # one cell, in the original image's pixels
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
axes[0].imshow(image)
draw_boxes(None, note.boxes, ax=axes[0], color="blue", linestyle="--")
axes[0].set_title("test image and its objects")
axes[1].imshow(image)
shade = axes[1].imshow(best, extent=(-0.5, w * stride - 0.5, h * stride - 0.5, -0.5), alpha=0.6, cmap="magma",
                       vmin=0, vmax=1)
axes[1].set_xlim(-0.5, image.shape[1] - 0.5)
axes[1].set_ylim(image.shape[0] - 0.5, -0.5)
fig.colorbar(shade, ax=axes[1], label="objectness (best anchor of the cell)")
axes[1].set_title("the RPN's objectness, one square per feature cell")
plt.show()
on_objects = np.zeros((h, w), bool)
for x1, y1, x2, y2 in note.boxes * factor / rpn_ckpt.model.backbone.stride:
    on_objects[int(y1):int(y2) + 1, int(x1):int(x2) + 1] = True
print(f"mean objectness of the best anchor: cells on an object {best[on_objects].mean():.2f}, elsewhere "
      f"{best[~on_objects].mean() if (~on_objects).any() else float('nan'):.2f}")

# %% [markdown]
# ## 6. From objectness to proposals: before and after NMS
#
# The proposal stage (`minircnn/rpn/proposals.py`) decodes every anchor's deltas into a box, clips it to the image,
# drops boxes smaller than a few pixels, keeps the 6000 of highest objectness and runs NMS at IoU 0.7, then keeps
# the best 300. Without NMS the best-ranked boxes tend to crowd on the most object-like spots, as neighbouring anchors
# that found the same object all score high. The pictures show where the best 30 lie either way, and the lines above
# them how many of the image's objects they reach (on an image with few objects, crowded boxes may still reach
# them all).

# %%
TOP = 30
without_nms = TEST_PROPOSALS.replace(nms_thresh=1.0)                       # IoU > 1 never happens: no suppression
found = {}
for name, chosen in (("without NMS", without_nms), ("NMS at 0.7", TEST_PROPOSALS)):
    boxes, _ = proposals_from_outputs(anchors, objectness, deltas, size, factor, chosen)
    found[name] = np.clip(boxes / factor, 0, None)[:TOP]
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for ax, (name, boxes) in zip(axes, found.items()):
    ax.imshow(image)
    draw_boxes(None, boxes, ax=ax, linewidth=1, color="lime")
    draw_boxes(None, note.boxes, ax=ax, color="blue", linestyle="--")
    covered = proposal_recall([boxes], [note.boxes], (0.5,), [note.difficult])["recall"][0.5]
    ax.set_title(f"best {TOP} proposals {name}: {covered:.0%} of the objects at IoU 0.5")
    print(f"{name}: the best {TOP} boxes cover {covered:.0%} of this image's {len(note.boxes)} objects at IoU 0.5")
plt.show()

# %% [markdown]
# ## 7. Recall against selective search
#
# Over the whole test split, the recall of each method's best N boxes per image (lesson 17 measures selective
# search the same way): at IoU 0.5, a box roughly on the object; at 0.7, a tight one.

# %%
COUNTS = (10, 20, 50, 100, 300, 1000, 2000)
ss_boxes = proposals_for_split(test, "ss-fast", max_boxes=ss_ckpt.config.max_proposals, progress=False)
rpn_boxes, _, rpn_seconds = split_rpn_proposals(rpn_ckpt, test, TEST_PROPOSALS.replace(post_nms_top_n=max(COUNTS)),
                                                progress=False)
gt_boxes, ignore = [a.boxes for a in notes], [a.difficult for a in notes]
curves = {}
print(f"{'boxes per image':>16} | {'RPN @0.5':>9} {'RPN @0.7':>9} | {'SS @0.5':>8} {'SS @0.7':>8}")
for n in COUNTS:
    row = []
    for name, boxes in (("RPN", rpn_boxes), ("selective search", ss_boxes)):
        found = proposal_recall([b[:n] for b in boxes], gt_boxes, (0.5, 0.7), ignore)["recall"]
        curves.setdefault(name, []).append((n, found[0.5], found[0.7]))
        row += [found[0.5], found[0.7]]
    print(f"{n:>16} | {row[0]:9.3f} {row[1]:9.3f} | {row[2]:8.3f} {row[3]:8.3f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, points in curves.items():
    n, r50, r70 = np.array(points).T
    axes[0].plot(n, r50, marker="o", label=name)
    axes[1].plot(n, r70, marker="o", label=name)
for ax, t in zip(axes, (0.5, 0.7)):
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image (the best N)")
    ax.set_ylabel(f"recall at IoU {t}")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
plt.show()
at = {name: dict((p[0], p[1:]) for p in points) for name, points in curves.items()}
print(f"at 300 boxes per image: RPN {at['RPN'][300][0]:.3f} / {at['RPN'][300][1]:.3f}, selective search "
      f"{at['selective search'][300][0]:.3f} / {at['selective search'][300][1]:.3f} (IoU 0.5 / 0.7)")

# %% [markdown]
# Where do the RPN's misses lie? Split the objects by size (the square root of their area in image pixels) and count
# how many have a box at IoU 0.7 among each method's best 300. The anchors sit on a 16-pixel grid (one per feature
# cell), so an object smaller than a cell has at best an anchor shifted by up to half a cell and larger than it: the
# regression must move and shrink it a long way, and its IoU with the anchor is low enough that it is often only
# its box's "best anchor", one positive example per object.

# %%
side = np.concatenate([np.sqrt((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)) for b in gt_boxes])
kept = ~np.concatenate([np.asarray(d, bool) for d in ignore])
best = {name: np.concatenate([iou(g, b[:300]).max(axis=1) if len(b) and len(g) else np.zeros(len(g))
                              for g, b in zip(gt_boxes, boxes)])
        for name, boxes in (("RPN", rpn_boxes), ("selective search", ss_boxes))}
stride = rpn_ckpt.model.backbone.stride
print(f"{'object size (px)':>17} {'objects':>8} | {'RPN @0.7':>9} {'SS @0.7':>8}")
for lo, hi in ((0, 1.5 * stride), (1.5 * stride, 3 * stride), (3 * stride, np.inf)):
    k = kept & (side >= lo) & (side < hi)
    if k.any():
        label = f"{lo:.0f}-{hi:.0f}" if np.isfinite(hi) else f">= {lo:.0f}"
        print(f"{label:>17} {k.sum():>8} | {np.mean(best['RPN'][k] >= 0.7):9.3f} "
              f"{np.mean(best['selective search'][k] >= 0.7):8.3f}")

# %% [markdown]
# ## 8. The two detectors: accuracy and time
#
# Now the comparison the paper makes: the RPN detector with its 300 proposals against the default detector with
# selective search's boxes (up to 2000), each tested with its own proposals. One training run is one draw: the seed
# decides the initial weights of the new layers, the mini-batches and the flips, so each detector is trained with
# the seeds in `SEEDS`. The yardstick (`paired_map_difference`, shared by the lessons) resamples the test images,
# scoring both sides on each resample, and states its rule: the detectors differ only if the 95 % interval of the
# difference excludes zero *and* the difference exceeds twice the seed-to-seed standard deviation.

# %%
ss_ckpts = [load_checkpoint(r.checkpoint) for r in train_seeds("default", root, progress=False)]
rpn_ckpts = [load_checkpoint(r.checkpoint) for r in train_seeds("rpn", root, progress=False, proposals="rpn")]
ss_found = [detect_split(c.model, test, ss_boxes, c.bbox_means, c.bbox_stds, c.preprocessing, c.config,
                         progress=False) for c in ss_ckpts]
rpn_found = [detect_split(c.model, test, [None] * len(test), c.bbox_means, c.bbox_stds, c.preprocessing, c.config,
                          progress=False) for c in rpn_ckpts]
result = paired_map_difference(test, rpn_found, ss_found)
for seed, a, b in zip(SEEDS, result["first"], result["second"]):
    print(f"seed {seed}: mAP with 300 RPN proposals {a:.3f}, with selective search {b:.3f}")
print(difference_verdict(result, "The RPN detector", "the selective-search detector"))

# %% [markdown]
# Where does a difference come from: the proposals, or the detector that joint training made? Give the RPN-trained
# detectors selective search's boxes instead of their own, and compare them with the selective-search detectors on
# the same boxes. If these two do not differ, the detectors are as good as each other and the difference above lies
# in the proposals.

# %%
swapped_found = [detect_split(c.model, test, ss_boxes, c.bbox_means, c.bbox_stds, c.preprocessing, c.config,
                              progress=False) for c in rpn_ckpts]
swapped = paired_map_difference(test, swapped_found, ss_found)
for seed, a, b in zip(SEEDS, swapped["first"], swapped["second"]):
    print(f"seed {seed}: selective search's boxes in the RPN-trained detector {a:.3f}, in the selective-search "
          f"detector {b:.3f}")
print(difference_verdict(swapped, "With the same boxes, the RPN-trained detector", "the selective-search detector"))

# %% [markdown]
# Keep in mind one more difference between the two sides: the RPN-trained detectors ran 1.75 times as many
# iterations (section 4). A better detector on the same boxes is what the longer schedule bought, not what the RPN
# did; `benchmarks/RESULTS.md` ("Region proposals") also compares selective search's detector trained as long.
#
# And the time of a whole test image, image in, scored boxes out, for the two detectors on the same images (the
# selective-search side reuses section 1's measurement of the same images):

# %%
rpn_whole, rpn_proposal = [], []
for i in range(TIMED):
    image = test.load_image(i)
    tic = time.perf_counter()
    _, _, _, spent = detect_proposals(rpn_ckpt.model, image, None, rpn_ckpt.bbox_means, rpn_ckpt.bbox_stds,
                                      rpn_ckpt.preprocessing, config.test_scale, config.test_max_size)
    rpn_whole.append(time.perf_counter() - tic)
    rpn_proposal.append(spent)
ss_whole = np.median(np.add(ss_seconds, net_seconds))
print(f"selective search + network: {ss_whole:.3f} s per image ({ss_s:.3f} s of it proposals)")
print(f"RPN + network:              {np.median(rpn_whole):.3f} s per image ({np.median(rpn_proposal):.4f} s of it "
      f"proposals: the head, decoding and NMS)")
print(f"a whole image is {ss_whole / np.median(rpn_whole):.1f}x faster with the RPN; the proposals alone "
      f"{ss_s / np.median(rpn_proposal):.0f}x")

# %% [markdown]
# ## 9. What changes in the paper's numbers
#
# The Faster R-CNN paper's Tables 3 and 5 (VGG16 on VOC 2007, `docs/reference.md` §16) against ours (the tiny
# detector on the built-in set, on this CPU):

# %%
paper = {"mAP, selective search (2000)": 66.9, "mAP, RPN (300)": 69.9, "ms per image, selective search": 1830,
         "ms per image, RPN": 198}
print(f"paper: mAP {paper['mAP, selective search (2000)']} -> {paper['mAP, RPN (300)']} "
      f"({paper['mAP, RPN (300)'] - paper['mAP, selective search (2000)']:+.1f} points); time per image "
      f"{paper['ms per image, selective search']} -> {paper['ms per image, RPN']} ms "
      f"({paper['ms per image, selective search'] / paper['ms per image, RPN']:.1f}x faster)")
print(f"ours:  mAP {np.mean(result['second']):.3f} -> {np.mean(result['first']):.3f} "
      f"({result['difference']:+.3f}); time per image {ss_whole * 1e3:.0f} -> {np.median(rpn_whole) * 1e3:.0f} ms "
      f"({ss_whole / np.median(rpn_whole):.1f}x faster)")

# %% [markdown]
# Two differences of setting to keep in mind when reading the two lines. The paper's selective search ran on a CPU
# and its network on a GPU, so its speed-up is bounded by the GPU network's time; here both run on the same CPU
# cores, and our network is tiny. And the paper trains on VOC's cluttered photographs, where learned proposals can
# be much better ranked than selective search's segments; the built-in shapes set has few objects on simple
# backgrounds, where selective search is already strong.
#
# ## 10. Exercise: the anchor targets
#
# `exercises/anchor_targets.py` is a skeleton of `anchor_targets` with its steps in the docstring. Copy it, fill it
# in, and run `python -m pytest tests/rpn/test_anchor_targets.py --impl my_rpn.py`: each test is a case worked out
# by hand (the two thresholds, a box's best anchor below 0.7, the border, the targets, the sample). Below, the tests
# judge a version that forgot the border rule, then the package's own.

# %%
package_source = Path(inspect.getsourcefile(anchor_targets)).read_text().replace("from ..boxes import",
                                                                                  "from minircnn.boxes import")
no_border = package_source.replace("inside = np.flatnonzero(inside_image(anchors, image_size))",
                                   "inside = np.arange(m)                # bug: forgot the border rule")
assert no_border != package_source

if tests_available("tests/rpn"):
    print("--- anchor_targets without the border rule ---")
    run_exercise_tests(no_border, "tests/rpn/test_anchor_targets.py", name="my_rpn.py")
    print("--- the package's ---")
    run_exercise_tests(package_source, "tests/rpn/test_anchor_targets.py", name="my_rpn.py")
else:
    print("The tests are not next to this installation of minircnn; run this from a source checkout.")

# %% [markdown]
# ## Try this next
#
# * Build the anchors with the paper's three scales shrunk only by the image size (600 -> 288 px: about 61, 123 and
#   246 px) instead of fitted to our objects (`grid_anchors(..., scales=(61, 123, 246))`), and rerun section 3 on a
#   few images: how many objects keep a positive anchor at IoU 0.7, and how many only through the best-anchor rule?
# * Lower the NMS threshold of the proposal stage to 0.5, or raise it to 0.9 (`ProposalSettings(nms_thresh=...)`),
#   and redraw the recall curves: where does the trade-off between coverage and duplicates sit?
# * Test the RPN detector with 50 or 1000 proposals instead of 300 (`TEST_PROPOSALS.replace(post_nms_top_n=...)`):
#   the paper's Table 3 finds 300 enough. Is it here?
# * Derive `RPNHead.backward` for the two sibling 1x1 convs: why are their input gradients *added*?
