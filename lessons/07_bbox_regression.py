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
# # Lesson 07 — Bounding-box regression
#
# **The claim (paper Sec. 2.3 and 5.1, Table 6).** A proposal rarely sits exactly on its object. Besides the class
# probabilities, Fast R-CNN's second sibling layer outputs, for every class `k`, four numbers
# `t^k = (t_x, t_y, t_w, t_h)` that move the proposal onto the object: a shift of the centre measured in units of the
# proposal's own width and height, and a change of width and height in log space — the parameterisation of R-CNN,
# "scale-invariant translation and log-space height/width shift". The regressors are trained together with the
# classifier through the multi-task loss (lesson 05). Sec. 5.1 measures what they are worth: with VGG16 on VOC 2007,
# the same multi-task network scores 63.4% mAP when its proposals are used as they are and 66.9% when the boxes are
# regressed at test time (Table 6; 53.3 → 57.1 for the small model S, 55.5 → 59.2 for M).
#
# This lesson: the parameterisation, worked by hand for one proposal; the normalisation of the targets; what the
# trained regressors do to proposals on test images; and the mAP with and without them.
#
# docs/reference.md §5 (targets), §7 (encoding, decoding), §8 (test time), §14.6 and §14.7. Code: `minircnn/boxes.py`
# (`encode`, `decode`, `iou`, `clip_boxes`), `minircnn/data/roidb.py` (`compute_targets`, `unnormalize_deltas`),
# `minircnn/evaluate.py` (`im_detect`, `detect_split`). Tests: `tests/test_boxes.py`, `tests/data/test_roidb.py`,
# `tests/test_evaluate.py`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from minircnn.boxes import clip_boxes, decode, encode, iou
from minircnn.training.checkpoint import load_checkpoint
from minircnn.data import (VOCDataset, append_flipped, compute_targets, prepare_image, roidb_from_dataset,
                           unnormalize_deltas)
from minircnn.data.proposals import proposals_for_split
from minircnn.inference import detect_split, im_detect
from minircnn.evaluation import score_detections
from minircnn.functional import naive
from minircnn.lab.experiments import FAST, compare_runs, lesson_dataset, test_split_of, train_seeds
from minircnn.visualize import draw_boxes

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The parameterisation
#
# A box `(x1, y1, x2, y2)` has inclusive pixel corners, so its width is `w = x2 − x1 + 1` and its centre
# `cx = x1 + w / 2` (likewise `h`, `cy`). For a proposal `P` and the ground-truth box `G` it should become, the
# regression target is (`minircnn.boxes.encode`)
#
# $$ t_x = \frac{G_{cx} - P_{cx}}{P_w}, \quad t_y = \frac{G_{cy} - P_{cy}}{P_h}, \quad
#    t_w = \log\frac{G_w}{P_w}, \quad t_h = \log\frac{G_h}{P_h}, $$
#
# and decoding (`minircnn.boxes.decode`) runs it backwards: `cx = t_x P_w + P_cx`, `w = exp(t_w) P_w`, and the box
# is `(cx − w/2, cy − h/2, cx + w/2 − 1, cy + h/2 − 1)`. The `− 1` undoes the `+ 1` of the width, so that decoding
# the target gives `G` back exactly. Neither original codebase has it (docs/reference.md §7, §14.6): the paper's code
# used `w = x2 − x1` (plus 1e-14) where no `− 1` is needed, and py-faster-rcnn's `+ 1` widths without it decode every
# box one pixel too wide and too tall.
#
# Why these four numbers? Dividing the shift by the proposal's size and taking the log of the size ratio makes the
# targets the same for a small object and for the same object seen larger: the regressor does not need to know the
# scale. And in log space any network output decodes to a positive width, `exp(t_w) P_w`.
#
# ## 2. One proposal, by hand
#
# We take the default detector of lesson 00 (trained on the first call, read back afterwards) and a proposal from the
# first test image that overlaps a true box with an IoU between 0.5 and 0.7 — a hit, but not a good one.

# %%
root = lesson_dataset()
runs = train_seeds("default", root)     # the default detector, once per seed in SEEDS; sections 2-7 use the first
run = runs[0]
ckpt = load_checkpoint(run.checkpoint)
model, config, class_names = ckpt.model, ckpt.config, ckpt.class_names
test_set, proposals = test_split_of(run)      # the test images and their proposals, as the run evaluated them

image, note = test_set.load_image(0), test_set.annotation(0)
overlap = iou(proposals[0], note.boxes)
fair = np.flatnonzero((overlap.max(axis=1) >= 0.5) & (overlap.max(axis=1) < 0.7))
pick = fair[0] if len(fair) else int(overlap.max(axis=1).argmax())     # the best one if none is in [0.5, 0.7)
P = proposals[0][pick].astype(np.float64)
G = note.boxes[overlap[pick].argmax()].astype(np.float64)
print(f"proposal P = {P.tolist()}, ground truth G = {G.tolist()} "
      f"({class_names[note.labels[overlap[pick].argmax()] - 1]}), IoU {overlap[pick].max():.3f}")

# %% [markdown]
# The encoding as a loop over plain numbers, **teaching code** — the package's `encode` does the same on arrays, and
# its reference loops `encode_naive` and `decode_naive` (`minircnn/functional/naive.py`) the same one box at a time;
# the last line checks that the hand version agrees with them:

# %%
def centre_size(box):
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1 + 1, y2 - y1 + 1
    return x1 + 0.5 * w, y1 + 0.5 * h, w, h


def encode_by_hand(p, g):
    pcx, pcy, pw, ph = centre_size(p)
    gcx, gcy, gw, gh = centre_size(g)
    print(f"  P: centre ({pcx}, {pcy}), size {pw} x {ph};  G: centre ({gcx}, {gcy}), size {gw} x {gh}")
    return [(gcx - pcx) / pw, (gcy - pcy) / ph, math.log(gw / pw), math.log(gh / ph)]


def decode_by_hand(p, t, minus_one=True):
    pcx, pcy, pw, ph = centre_size(p)
    cx, cy = t[0] * pw + pcx, t[1] * ph + pcy
    w, h = math.exp(t[2]) * pw, math.exp(t[3]) * ph
    end = 1 if minus_one else 0
    return [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w - end, cy + 0.5 * h - end]


t_hand = encode_by_hand(P, G)
t_package = encode(P[None], G[None])[0]
print("  t by hand:   ", np.round(t_hand, 6).tolist())
print("  t by encode: ", np.round(t_package, 6).tolist(),
      f"  largest difference {np.abs(t_hand - t_package).max():.1e}")
back = decode_by_hand(P, t_hand)
print(f"decoded by hand {np.round(back, 6).tolist()}, "
      f"by decode {np.round(decode(P[None], t_package[None])[0], 6).tolist()}; G again: {np.allclose(back, G)}")
wide = decode_by_hand(P, t_hand, minus_one=False)
print(f"without the -1: {np.round(wide, 6).tolist()}, IoU with G {iou(np.array([wide]), G[None])[0, 0]:.4f}")
print("by hand == naive.encode_naive, naive.decode_naive:",
      np.allclose(t_hand, naive.encode_naive(P[None], G[None])[0]),
      np.allclose(back, naive.decode_naive(P[None], np.array([t_hand]))[0]))

# %% [markdown]
# Scale invariance, checked: the same two boxes in the image at twice the resolution (pixel `x` covers pixels `2x`
# and `2x + 1` there, so `x1 → 2 x1` and `x2 → 2 x2 + 1`) have the same targets.

# %%
double = np.array([2, 2, 2, 2], dtype=np.float64), np.array([0, 0, 1, 1], dtype=np.float64)
t_double = encode((P * double[0] + double[1])[None], (G * double[0] + double[1])[None])[0]
print("targets at twice the resolution:", np.round(t_double, 6).tolist(),
      f"  largest difference {np.abs(t_double - t_package).max():.1e}")

# %% [markdown]
# ## 3. Normalised targets
#
# The raw targets of proposals that already overlap their object are small numbers. The paper normalises them per
# class to zero mean and unit variance over the whole training set (Sec. 2.3; lesson 05 shows what that does to the
# size of the loss); the network learns to output the *normalised* values, and the statistics are kept with the
# weights, because test time must undo them (`unnormalize_deltas`: `t = output × std + mean`). Computing them again
# from the training split gives the checkpoint's:

# %%
train_set = VOCDataset(root, config.train_split)
train_proposals = proposals_for_split(train_set, method=config.proposals, max_boxes=config.max_proposals)
roidb = roidb_from_dataset(train_set, train_proposals)
if config.flip:
    roidb = append_flipped(roidb)                        # flipped copies count, as in training
roidb, means, stds = compute_targets(roidb, train_set.num_classes)
rows = np.concatenate([e.target_classes for e in roidb])
print(f"{(rows > 0).sum()} training RoIs with a target (IoU >= 0.5, ground-truth boxes included); "
      f"same statistics as the checkpoint: {np.allclose(means, ckpt.bbox_means) and np.allclose(stds, ckpt.bbox_stds)}")
print(f"{'class':10s} {'RoIs':>6s}   mean of (dx, dy, dw, dh)            std of (dx, dy, dw, dh)")
for k, name in enumerate(class_names, start=1):
    print(f"{name:10s} {(rows == k).sum():6d}   " + " ".join(f"{v:+.3f}" for v in means[k]) + "    "
          + " ".join(f"{v:.3f}" for v in stds[k]))

# %% [markdown]
# With the flipped copies in the set (`config.flip`), the mean of `dx` is zero: a mirrored box has exactly the
# opposite `dx`. The means of `dw` and `dh` need not be, and the stds say how far a typical proposal with IoU ≥ 0.5
# is from its object, in units of its own size.
#
# ## 4. The trained regressors at work
#
# At test time (`minircnn.inference.im_detect`, docs/reference.md §8): one forward pass gives the class probabilities
# and the normalised deltas of every class for every proposal; un-normalise, decode onto the proposals (in the original
# image's pixels), clip to the image. Written out for the first test image, and checked against the package:

# %%
def forward(image, boxes):
    """Class probabilities (R, K+1) and normalised deltas (R, 4(K+1)) of boxes given in the image's pixels."""
    blob, factor = prepare_image(image, config.test_scale, config.test_max_size, ckpt.preprocessing)
    rois = np.zeros((len(boxes), 5), np.float32)
    rois[:, 1:] = boxes * np.float32(factor)                   # into the coordinates of the scaled image
    return model.predict(blob[None], rois)


props = proposals[0]
probs, deltas = forward(image, props)
boxes = clip_boxes(decode(props, unnormalize_deltas(deltas, ckpt.bbox_means, ckpt.bbox_stds)), image.shape)
boxes = boxes.reshape(len(props), model.num_classes, 4)              # boxes[:, k]: the box of class k
ref_probs, ref_boxes = im_detect(model, image, props, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing,
                                 config.test_scale, config.test_max_size)
print(f"{len(props)} proposals x {model.num_classes} classes; same as im_detect: "
      f"{np.allclose(probs, ref_probs) and np.allclose(boxes, ref_boxes, atol=1e-3)}")

# %% [markdown]
# Which class's box do we look at? At test time every class gets its own box and the class score decides. To see
# how well the *regressors* work, we use the box of the true class of the object a proposal overlaps most (the
# regressor that training taught for it). Below, on the first test images: for each object, the loosest proposal
# that still overlaps it with IoU ≥ 0.5 (dashed yellow), its regressed box (red), and the true boxes (white).

# %%
def regressed_toward_truth(boxes_per_class, props, note):
    """For every proposal: its best IoU with a true box, that box's index, and the IoU after regression with the
    regressor of that box's class."""
    overlap = iou(props, note.boxes)
    nearest = overlap.argmax(axis=1)
    after = boxes_per_class[np.arange(len(props)), note.labels[nearest]]
    return overlap.max(axis=1), nearest, iou(after, note.boxes)[np.arange(len(props)), nearest], after


shown = min(3, len(test_set))
fig, axes = plt.subplots(1, shown, figsize=(5.5 * shown, 5), squeeze=False)
for i, ax in enumerate(axes[0]):
    picture, truth = test_set.load_image(i), test_set.annotation(i)
    _, per_class = im_detect(model, picture, proposals[i], ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing,
                             config.test_scale, config.test_max_size)
    before, nearest, after_iou, after = regressed_toward_truth(per_class, proposals[i], truth)
    hits = np.flatnonzero(before >= 0.5)
    chosen = [min(hits[nearest[hits] == g], key=lambda r: before[r]) for g in np.unique(nearest[hits])]
    draw_boxes(picture, truth.boxes, ax=ax, color="white", linewidth=1.5)
    draw_boxes(None, proposals[i][chosen], ax=ax, color="yellow", linestyle="--", linewidth=1.5)
    draw_boxes(None, after[chosen], ax=ax, color="red", linewidth=1.5)
    ax.set_title(f"{test_set.ids[i]}: IoU " + ", ".join(f"{before[c]:.2f}→{after_iou[c]:.2f}" for c in chosen),
                 fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. IoU before and after, over the test split
#
# The same measurement for every proposal of every test image. Regressors are trained only on proposals with
# IoU ≥ 0.5, but at test time every proposal is regressed; we look at those and at the near misses in [0.3, 0.5),
# which the regression may push over the 0.5 that counts as a hit.

# %%
n_test = len(test_set)
before_all, after_all = [], []
for i in range(n_test):
    _, per_class = im_detect(model, test_set.load_image(i), proposals[i], ckpt.bbox_means, ckpt.bbox_stds,
                             ckpt.preprocessing, config.test_scale, config.test_max_size)
    before, _, after_iou, _ = regressed_toward_truth(per_class, proposals[i], test_set.annotation(i))
    keep = before >= 0.3
    before_all.append(before[keep])
    after_all.append(after_iou[keep])
before_all, after_all = np.concatenate(before_all), np.concatenate(after_all)

print(f"{n_test} test images; proposals by IoU with their nearest object, before -> after regression:")
print(f"{'IoU before':12s} {'proposals':>9s} {'mean IoU':>16s} {'improved':>9s} {'IoU >= 0.5':>15s} "
      f"{'IoU >= 0.7':>15s}")
for lo, hi in ((0.3, 0.5), (0.5, 0.7), (0.7, 1.01)):
    group = (before_all >= lo) & (before_all < hi)
    b, a = before_all[group], after_all[group]
    if not group.any():
        continue
    print(f"[{lo:.1f}, {min(hi, 1):.1f}) {group.sum():11d} {b.mean():8.3f} -> {a.mean():.3f} {np.mean(a > b):9.0%} "
          f"{np.mean(b >= 0.5):6.0%} -> {np.mean(a >= 0.5):4.0%} {np.mean(b >= 0.7):6.0%} -> {np.mean(a >= 0.7):4.0%}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
fg = before_all >= 0.5
bins = np.linspace(0.3, 1, 36)
axes[0].hist(before_all[fg], bins=bins, alpha=0.6, label="proposal (IoU >= 0.5)")
axes[0].hist(after_all[fg], bins=bins, alpha=0.6, label="after regression")
axes[0].set_xlabel("IoU with the nearest true box")
axes[0].set_ylabel("proposals")
axes[0].legend()
axes[0].set_title("proposals on an object, before and after")
edges = np.linspace(0.3, 1, 15)
centres = 0.5 * (edges[1:] + edges[:-1])
which = np.clip(np.digitize(before_all, edges) - 1, 0, len(centres) - 1)
change = [np.mean(after_all[which == b] - before_all[which == b]) if np.any(which == b) else np.nan
          for b in range(len(centres))]
axes[1].bar(centres, change, width=0.045, color=np.where(np.array(change) > 0, "tab:green", "tab:red"))
axes[1].axhline(0, color="k", lw=0.8)
axes[1].axvline(0.5, color="k", ls="--", lw=0.8)
axes[1].set_xlabel("IoU before regression")
axes[1].set_ylabel("mean change of IoU")
axes[1].set_title("who gains")
plt.tight_layout()
plt.show()

# %% [markdown]
# The right panel shows where regression gains and where it loses. A proposal that already fits its object well has
# little room to improve, so any error of the regressor costs it; a loose one has room, if the regressor has learned
# to use it. Whether the near misses in [0.3, 0.5) gain depends on how far the regressors generalise beyond the
# proposals they were trained on.
#
# ## 6. The mAP with and without box regression
#
# Now the test protocol as a whole (score > 0.05, class-wise NMS at 0.3, at most 100 detections per image): once
# with the regressed boxes, once with every detection's box left at its proposal (`bbox_reg=False`, the paper's
# "no test-time bbox regression", docs/reference.md §8 step 4). The classifier is the same network in both.

# %%
found = {reg: detect_split(model, test_set, proposals, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing, config,
                           bbox_reg=reg) for reg in (False, True)}
metrics = {reg: score_detections(test_set, *found[reg], class_names)[0] for reg in (False, True)}
print(f"{'class':10s} {'no bbox reg':>11s} {'bbox reg':>9s}")
for name in class_names:
    ap = [metrics[reg]["ap"][name] for reg in (False, True)]
    print(f"{name:10s} " + " ".join("       n/a" if v is None else f"{v:10.3f}" for v in ap))
print(f"{'mAP':10s} {metrics[False]['map']:10.3f} {metrics[True]['map']:10.3f}   "
      f"(the training run's own evaluation: {run.metrics['map']:.3f})")

# %%
print("Table 6, multi-task training, VOC07 test mAP:   without test-time bbox reg -> with")
for model_name, without, with_reg in (("S", 53.3, 57.1), ("M", 55.5, 59.2), ("L (VGG16)", 63.4, 66.9)):
    print(f"  paper, {model_name:10s} {without:5.1f} -> {with_reg:5.1f}   ({with_reg - without:+.1f})")
gain = 100 * (metrics[True]["map"] - metrics[False]["map"])
print(f"  ours, tiny          {100 * metrics[False]['map']:5.1f} -> {100 * metrics[True]['map']:5.1f}   ({gain:+.1f}): "
      + ("the paper's direction" if gain > 0 else "not the paper's direction"))

x = np.arange(len(class_names))
fig, ax = plt.subplots(figsize=(8, 3.5))
for offset, reg, label in ((-0.2, False, "proposal boxes"), (0.2, True, "regressed boxes")):
    ax.bar(x + offset, [metrics[reg]["ap"][n] or 0 for n in class_names], width=0.4, label=label)
ax.set_xticks(x, class_names)
ax.set_ylabel("AP (VOC07)")
ax.legend()
plt.show()

# %% [markdown]
# One detector is one draw: its seed decides the new layers' initial weights, the mini-batches and the flips. Is the
# gain more than the noise of one run and of 150 test images? The yardstick every lesson uses (`compare_runs`): the
# default detector of each seed in `SEEDS`, with and without regression, both scored on many resamples of the test
# images (each resample scoring both on the same images), gives a 95 % interval for the difference of the mean mAPs.
# The rule: they differ only if the interval excludes zero *and* the difference exceeds twice its seed-to-seed
# standard deviation (both sides are the same networks, so a network's own luck cancels in each seed's difference
# and only the difference's spread counts). Regression moves boxes, so a stricter overlap should show more of it:
# the same at IoU 0.7.
# The COCO-style average over IoU 0.5 to 0.95 (lesson 12) is in each run's `metrics.json`.

# %%
for thresh in (0.5, 0.7):
    result = compare_runs(runs, runs, ("With box regression", "without"), bbox_reg=(True, False),
                          iou_thresh=thresh)
    print(f"IoU {thresh}: {result['verdict']}\n  each seed: "
          + ", ".join(f"{a:.3f} vs {b:.3f}" for a, b in zip(result["first"], result["second"])))
coco = [(r.metrics["map_coco"], r.metrics["without_bbox_reg"]["map_coco"]) for r in runs]
print("COCO-style AP@[.5:.95], with vs without, each seed: " + ", ".join(f"{a:.3f} vs {b:.3f}" for a, b in coco))

# %% [markdown]
# Regression can only change localisation: a detection counts if its box overlaps a true box with IoU ≥ 0.5, so a
# well-scored proposal that misses by a little is a false positive *and* leaves its object unfound, unless the
# regressor moves it. How much that is worth depends on two things: how far the proposals are from their objects
# (the table of section 5 counts how many of ours already overlap theirs with IoU ≥ 0.7), and how well the regressors
# have learned. The next section looks at the second.
#
# ## 7. What did the regressors learn?
#
# Compare the deltas the network outputs with the normalised targets they were trained towards, for every RoI with a
# target on the first training images, and for the proposals with IoU ≥ 0.5 on the test images. A regressor that
# predicted its targets exactly would put every point on the diagonal; one that learned nothing, on the line 0.

# %%
def deltas_and_targets(image, boxes, gt, labels):
    """The normalised deltas of each box's class regressor, and the normalised targets toward its true box."""
    predicted = forward(image, boxes)[1].reshape(len(boxes), -1, 4)[np.arange(len(boxes)), labels]
    return predicted, (encode(boxes, gt) - ckpt.bbox_means[labels]) / ckpt.bbox_stds[labels]


pairs = {"training": [], "test": []}
for e in [e for e in roidb if not e.flipped][:3 if FAST else 100]:
    rows = np.flatnonzero(e.target_classes > 0)                # IoU >= 0.5, ground-truth rows included
    pairs["training"].append(deltas_and_targets(train_set.load_image(e.image_index), e.boxes[rows],
                                                e.boxes[e.gt_assignment[rows]], e.target_classes[rows]))
for i in range(n_test):
    truth = test_set.annotation(i)
    overlap = iou(proposals[i], truth.boxes)
    rows, nearest = np.flatnonzero(overlap.max(axis=1) >= 0.5), overlap.argmax(axis=1)
    pairs["test"].append(deltas_and_targets(test_set.load_image(i), proposals[i][rows],
                                            truth.boxes[nearest[rows]], truth.labels[nearest[rows]]))
pairs = {split: tuple(np.concatenate(a) for a in zip(*found)) for split, found in pairs.items()}

print(f"{'split':9s} {'RoIs':>6s}   correlation (dx, dy, dw, dh)   spread of the outputs   spread of the targets")
for split, (predicted, target) in pairs.items():
    corr = [np.corrcoef(predicted[:, j], target[:, j])[0, 1] for j in range(4)]
    print(f"{split:9s} {len(target):6d}   " + " ".join(f"{c:+.2f}" for c in corr) + "      "
          + " ".join(f"{v:.2f}" for v in predicted.std(axis=0)) + "     "
          + " ".join(f"{v:.2f}" for v in target.std(axis=0)))

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
predicted, target = pairs["training"]
for ax, j, name in ((axes[0], 0, "dx"), (axes[1], 2, "dw")):
    ax.scatter(target[:, j], predicted[:, j], s=3, alpha=0.3)
    ax.plot([-3, 3], [-3, 3], color="k", lw=0.8, label="perfect")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_xlabel(f"normalised target {name}")
    ax.set_ylabel(f"network output {name}")
    ax.set_title(f"training RoIs: {name}")
    ax.legend(loc="upper left")
plt.tight_layout()
plt.show()
print(f"our run: {config.iters} SGD steps; the paper's VGG16: 40000")

# %% [markdown]
# How to read this. A positive correlation means the regressors point the right way; the spread of their outputs,
# against the spread of the targets (1 after normalisation), says how far of the way they dare to move — outputs
# that point the right way at a quarter of the targets' size move a box a quarter of the way. Similar numbers on the
# training and the test split mean the regressors do not overfit; timid outputs on both mean they are short of
# training rather than of data, and then their modest effect on the IoUs of section 5 and on the mAP of section 6 is
# what to expect. The paper trains for far more steps (printed above).
#
# The other columns of Table 6 are training experiments: a network trained with the classification loss only
# (52.2 / 54.7 / 62.6 for S / M / L), and box regressors trained afterwards on its frozen features ("stage-wise",
# 54.6 / 56.6 / 64.0), both below multi-task training; lesson 14 runs them.
#
# ## Try this next
#
# * Train the regressors longer with everything else frozen, starting from the default detector:
#   `train_detector("bbox_pred_more", root, weights=str(run.checkpoint), frozen=("conv1", "conv2", "conv3",
#   "conv4", "conv5", "fc6", "fc7", "cls_score"))` (a few minutes), then rerun sections 6 and 7 with its checkpoint.
#   Do the outputs spread more? Does the mAP with regression move?
# * Decode with py-faster-rcnn's rule (`decode_by_hand(..., minus_one=False)` on every box) and measure the mAP: how
#   much does one pixel cost at IoU 0.5? And at 0.7 (`minircnn.evaluation.eval_detection_voc(..., iou_thresh=0.7)`)?
# * Apply the regression twice (decode the regressed box again with the deltas of a second forward pass on it). Does
#   the IoU keep improving?
# * Use the box of the *predicted* class instead of the true class in section 5: how often does the classifier pick
#   a class whose regressor moves the box the wrong way?
