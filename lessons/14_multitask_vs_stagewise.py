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
# # Lesson 14 — Multi-task vs stage-wise training
#
# **The claim (paper Sec. 5.1, Table 6).** Fast R-CNN trains the classifier and the box regressor together, with
# one loss (Eq. 1): $L = L_{cls} + \lambda\,[u \ge 1]\,L_{loc}$, $\lambda = 1$. R-CNN and SPPnet trained them in
# stages: first the network and the classifier, then a box regressor on top of the finished features. Is the joint
# training worth anything beyond convenience? The paper answers with four detectors per network:
#
# | | (a) | (b) | (c) | (d) |
# |---|---|---|---|---|
# | training | classification only ($\lambda = 0$) | multi-task | (a), then bbox_pred alone | multi-task |
# | box regression at test | no | no | yes | yes |
# | VGG16 (L), VOC07 mAP | 62.6 | 63.4 | 64.0 | 66.9 |
#
# (S: 52.2, 53.3, 54.6, 57.1; M: 54.7, 55.5, 56.6, 59.2.) Two readings. (b) vs (a): a detector trained with the box
# loss classifies better *even when its boxes are thrown away* — the regression task improves the shared
# features. (d) vs (c): regression learned together with the features beats regression fitted afterwards on
# features that were trained for classification alone.
#
# **Our version.** The tiny detector on the built-in dataset, the same four detectors: (a) `bbox_loss_weight=0`;
# (b) and (d) the tiny preset's own run (tag `"default"`), tested without and with box regression
# (`bbox_reg=False` in `minircnn.inference.detect_split`: every class's box is the proposal itself); (c) (a)'s
# checkpoint as the starting weights (`weights=<checkpoint.npz>`), every layer frozen except `bbox_pred`.
#
# docs/reference.md §2 ("Variants used for ablations": the original's `no_bbox_reg` and `piecewise` models), §8, §13.
# Modules: `minircnn/models/fast_rcnn.py` (`multitask_loss`, `FastRCNN.backward`), `minircnn/evaluate.py`,
# `minircnn/train.py`. Tests: `tests/models/`, `tests/test_train.py`, `tests/test_train_options.py`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minircnn.boxes import iou
from minircnn.training.checkpoint import load_checkpoint
from minircnn.data import VOCDataset
from minircnn.data.proposals import proposals_for_split
from minircnn.inference import im_detect
from minircnn.evaluation import score_detections
from minircnn.lab.experiments import (FAST, SEEDS, compare_runs, detect_test_split, lesson_dataset, seed_tag,
                                      train_detector, train_seeds,
                                      training_minibatch)
from minircnn.models import multitask_loss
from minircnn.training.log import read_log

root = lesson_dataset()            # data/shapes (generated on first use); with MINIRCNN_FAST a few images
EVERY_LAYER_BUT_BBOX_PRED = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "cls_score")

# %% [markdown]
# ## 1. Where the two losses meet
#
# The two output layers read the same fc7 features $h$: $s = W_{cls} h$ and $t = W_{bbox} h$. The backward adds
# their contributions at $h$,
#
# $$\frac{\partial L}{\partial h} = W_{cls}^\top \frac{\partial L_{cls}}{\partial s}
# \;+\; \lambda\, W_{bbox}^\top \frac{\partial L_{loc}}{\partial t},$$
#
# and everything below fc7 — fc6, the convs — learns from that sum. With $\lambda = 0$ the features are shaped by
# classification alone, and stage-wise training then fits `bbox_pred` to features it can no longer change: a
# linear regressor on fixed features, like R-CNN's regressor on pool5 features.
#
# How different are the two pulls? We take the trained multi-task detector (the default run), one training
# mini-batch, and backpropagate each term on its own: `FastRCNN.backward(dscores, ddeltas)` takes the two output
# gradients, so we pass one of them and zeros for the other (`multitask_loss` returns both). Same forward, same
# dropout masks.

# %%
default = train_detector("default", root)          # the tiny preset's run (read back if finished)
ckpt = load_checkpoint(default.checkpoint)
model = ckpt.model
batch = training_minibatch(default.config, ckpt.preprocessing)


def gradients(dscores_on, ddeltas_on):
    """{parameter: gradient} of one backward with only the chosen output gradients switched on."""
    model.set_dropout_rng(np.random.default_rng(0))         # the same masks every time
    scores, deltas = model.forward(batch.blob, batch.rois)
    _, dscores, ddeltas = multitask_loss(scores, deltas, batch.labels, batch.bbox_targets, batch.bbox_weights)
    model.backward(dscores * dscores_on, ddeltas * ddeltas_on)
    return {k: v.copy() for k, v in model.gradients().items()}


g_cls, g_loc, g_both = gradients(1, 0), gradients(0, 1), gradients(1, 1)
print(f"{'parameter':18s} {'|g_cls|':>10s} {'|g_loc|':>10s} {'|g_loc|/|g_cls|':>16s} {'cosine':>8s}")
for name in ("fc7.weight", "fc6.weight", "conv5.weight", "conv3.weight", "conv1.weight"):
    a, b = g_cls[name].ravel(), g_loc[name].ravel()
    print(f"{name:18s} {np.linalg.norm(a):10.2e} {np.linalg.norm(b):10.2e} "
          f"{np.linalg.norm(b) / np.linalg.norm(a):16.2f} {a @ b / (np.linalg.norm(a) * np.linalg.norm(b)):8.2f}")
worst = max(float(np.abs(g_both[k] - g_cls[k] - g_loc[k]).max() / (np.abs(g_both[k]).max() + 1e-30))
            for k in g_both)
print(f"\ncheck: the gradient of the sum is the sum of the gradients (largest relative difference {worst:.1e})")

# %% [markdown]
# A cosine near 0 means the box loss pushes the shared weights in a direction the classification loss does not
# ask for; the ratio of norms says how strongly. Both the direction and the strength change from mini-batch to
# mini-batch and over training (try another `i` in `training_minibatch`). What multi-task training does to the
# features is the sum of these pushes over all of training; with $\lambda = 0$ the second one is missing. Whether
# that helps classification is the question of Table 6, and only training the detectors answers it.
#
# ## 2. The four detectors
#
# Two training runs beside the default one: (a) with $\lambda = 0$, and (c) from (a)'s checkpoint with every layer
# frozen except `bbox_pred` (so only the box loss can change anything; training it costs a forward pass and one
# small backward per step). One run is one draw (the seed decides the new layers' initial weights, the mini-batches
# and the flips), so each recipe is trained once per seed in `SEEDS`, and each seed's (c) starts from the same
# seed's (a). A finished run is read back from `runs/lessons/<tag>/`; a missing one trains (a few minutes each on a
# laptop CPU). With `MINIRCNN_FAST=1` each run is a few steps from scratch on a few images: every line executes, no
# number means anything.

# %%
defaults = train_seeds("default", root)
cls_onlys = train_seeds("lambda0", root, bbox_loss_weight=0)
stagewises = [train_detector(seed_tag("stagewise", seed), root, seed=seed, weights=str(run.checkpoint),
                             frozen=EVERY_LAYER_BUT_BBOX_PRED) for seed, run in zip(SEEDS, cls_onlys)]
cls_only, stagewise = cls_onlys[0], stagewises[0]            # the default seed's runs, for the closer looks below

before, after = load_checkpoint(cls_only.checkpoint).model, load_checkpoint(stagewise.checkpoint).model
changed = [k for k, v in before.state_dict().items() if not np.array_equal(v, after.state_dict()[k])]
print("parameters that stage-wise training changed:", changed)


def detections(runs, bbox_reg):
    """Each run's detections on the test split, with or without test-time box regression."""
    return [detect_test_split(run, bbox_reg=bbox_reg)[1] for run in runs]


test_split = detect_test_split(default)[0]
FOUND = {"(a)": detections(cls_onlys, False), "(b)": detections(defaults, False),
         "(c)": detections(stagewises, True), "(d)": detections(defaults, True)}
COLUMNS = {   # column -> (mAP, mean over the seeds; training; box regression at test)
    col: (float(np.mean([score_detections(test_split, *f, test_split.class_names)[0]["map"] for f in FOUND[col]])),
          training, reg)
    for col, training, reg in (("(a)", "classification only (lambda = 0)", "no"), ("(b)", "multi-task", "no"),
                               ("(c)", "(a), then bbox_pred alone", "yes"), ("(d)", "multi-task", "yes"))}
PAPER_L = {"(a)": 62.6, "(b)": 63.4, "(c)": 64.0, "(d)": 66.9}
print(f"\n{'':4s} {'training':34s} {'box reg.':>8s} {'ours (mean of ' + str(len(SEEDS)) + ')':>16s} "
      f"{'paper, VGG16':>13s}")
for col, (m, training, reg) in COLUMNS.items():
    print(f"{col:4s} {training:34s} {reg:>8s} {m:16.3f} {PAPER_L[col] / 100:13.3f}")

# %%
cols = list(COLUMNS)
x = np.arange(len(cols))
fig, ax = plt.subplots(figsize=(8, 4))
ours = ax.bar(x - 0.2, [COLUMNS[c][0] for c in cols], 0.4, label="ours: tiny, built-in dataset")
ax.bar(x + 0.2, [PAPER_L[c] / 100 for c in cols], 0.4, color="lightgrey", label="paper: VGG16, VOC 2007")
ax.bar_label(ours, fmt="%.3f")
ax.set_xticks(x, [f"{c} {COLUMNS[c][1]}\nbox reg.: {COLUMNS[c][2]}" for c in cols], fontsize=8)
ax.set_ylabel("VOC07 mAP")
ax.set_title("Table 6: multi-task vs stage-wise training")
ax.legend(loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. What the two regressors learned
#
# mAP at IoU 0.5 sees box regression only where it moves a detection across the 0.5 line (or moves a duplicate
# away from it). Two more direct measures: how far the losses fell during training, and how much the regressed
# boxes overlap the objects better than the proposals they started from. For the second we take every proposal of
# the first test images that overlaps a ground-truth box by IoU ≥ 0.5, and apply the regressor of that box's class.

# %%
test_set = VOCDataset(root, default.config.test_split)
proposals = proposals_for_split(test_set, method=default.config.proposals, max_boxes=default.config.max_proposals,
                                progress=False)         # every run here uses the same proposals


def first_and_last(run, key, steps):
    """Mean of the log column ``key`` over the run's first and over its last ``steps`` training steps."""
    rows = read_log(run.out / "log.csv", run.config.iters)
    return np.mean([float(r[key]) for r in rows[:steps]]), np.mean([float(r[key]) for r in rows[-steps:]])


def regression_effect(run, images):
    """IoU with its ground-truth box of every foreground proposal of the first test images, before and after the
    run's regressor for that box's class; two 1-d arrays."""
    c = load_checkpoint(run.checkpoint)
    before, after = [], []
    for i in range(images):
        note = test_set.annotation(i)
        _, boxes = im_detect(c.model, test_set.load_image(i), proposals[i], c.bbox_means, c.bbox_stds,
                             c.preprocessing, run.config.test_scale, run.config.test_max_size)
        overlaps = iou(proposals[i].astype(np.float32), note.boxes.astype(np.float32))
        nearest, best = overlaps.argmax(axis=1), overlaps.max(axis=1)
        fg = np.flatnonzero(best >= 0.5)
        moved = boxes[fg, note.labels[nearest[fg]]]                # the regressor of the object's own class
        before.append(best[fg])
        after.append(iou(moved, note.boxes.astype(np.float32))[np.arange(len(fg)), nearest[fg]])
    return np.concatenate(before), np.concatenate(after)


steps = 2 if FAST else 100
images = min(len(test_set), 3 if FAST else 50)
print(f"mean training losses over the first and the last {steps} steps; {images} test images for the IoU\n")
print(f"{'':4s} {'loss_cls':>26s} {'loss_bbox':>26s} {'fg proposals':>13s} {'mean IoU before -> after':>25s} "
      f"{'improved':>9s}")
effects = {}
for col, run in (("(a)", cls_only), ("(c)", stagewise), ("(d)", default)):
    losses = [first_and_last(run, key, steps) for key in ("loss_cls", "loss_bbox")]
    effects[col] = regression_effect(run, images)
    b, a = effects[col]
    print(f"{col:4s} " + " ".join(f"{s:10.3f} -> {e:.3f} ({e / s - 1:+4.0%})" for s, e in losses)
          + f" {len(b):13d} {b.mean():16.3f} -> {a.mean():.3f} {np.mean(a > b):9.0%}")

# %% [markdown]
# (a) never trained its box layer (λ = 0: its box loss is logged but sends no gradient), so its row is the
# baseline of an untrained regressor; (c) trained nothing else, so its classification loss is (a)'s features and
# classifier seen on (c)'s mini-batches. Compare how fast each loss falls: the classifier starts from pretrained
# features that already tell shapes apart, the box regressor from nothing. The plot shows each foreground
# proposal's IoU before and after regression: points above the diagonal were improved.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
for ax, col in zip(axes, ("(c)", "(d)")):
    b, a = effects[col]
    ax.scatter(b, a, s=4, alpha=0.4)
    ax.plot([0.5, 1], [0.5, 1], "k--", lw=1)
    ax.set_xlabel("IoU of the proposal")
    ax.set_title(f"{col} {COLUMNS[col][1]}")
axes[0].set_ylabel("IoU after box regression")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Does our result point the paper's way?
#
# The yardstick, the same in every lesson (`compare_runs`): both columns are scored on many resamples of the 150
# test images (drawn with replacement), each resample scoring *both* on the same images, which gives a 95 % interval
# for the difference of their mean mAPs; and the seed-to-seed standard deviation says how far one run moves by
# chance. The rule: two columns differ only if the interval excludes zero *and* the difference exceeds twice the
# seed-to-seed standard deviation. The sentences below are written from the numbers by that rule.

# %%
for text, a, b, paper in (("(b) - (a): the box loss during training, boxes unused at test", "(b)", "(a)", 0.8),
                          ("(c) - (a): a regressor fitted afterwards", "(c)", "(a)", 1.4),
                          ("(d) - (c): multi-task instead of stage-wise", "(d)", "(c)", 2.9),
                          ("(d) - (b): box regression, in the multi-task detector", "(d)", "(b)", 3.5)):
    result = compare_runs(FOUND[a], FOUND[b], (a, b), dataset=test_split,
                          same_networks=(a, b) == ("(d)", "(b)"))     # (d) and (b): the same networks
    agree = "the same sign as" if result["difference"] * paper > 0 else "not the sign of"
    print(f"{text}: {result['difference']:+.3f}, {agree} the paper's {paper / 100:+.3f}\n  {result['verdict']}\n")

# %% [markdown]
# How to read these numbers. "Do not differ" is not "equal": it says that these test images and these seeds cannot
# tell the two apart. The paper's (b) − (a) is under one point on 5000 test images, a small effect to look for on 150.
#
# Section 3 tells how much there was to find. Every column with box regression can beat its counterpart without
# only by as much as the regressors move the boxes: if the box loss fell little in training and the mean IoU of
# the regressed proposals barely rose, then (c) − (a) and (d) − (b) must be small, and (d) − (c) compares two
# regressors that both did little. Our runs are short (3000 steps, against the paper's 40 000), and a regressor
# learned from scratch on top of a tiny network's 1/16-resolution features has a harder task than the classifier,
# whose features were pretrained.
#
# Section 3 also compares the two regressors directly. (c)'s and (d)'s have the same form and see the same
# proposals; they differ only in the features under them. Where (c)'s box loss ends higher and its IoU gain is
# smaller, features trained for classification alone are the poorer input for a box regressor: one reading of
# (d) − (c). The table shows the default seed's runs; pass another seed's to `regression_effect` to check it.
#
# Why multi-task training *might* help the classifier: the fc and conv layers learn from the sum of both losses'
# gradients (section 1), so they are pushed to keep information about *where* the object's edges are, which a
# classifier alone is free to discard. That is a hypothesis, not a finding: the paper measures the effect (Table 6,
# 62.6 → 63.4 mAP with box regression off at test), not the mechanism, and so does this lesson.
#
# ## Try this next
#
# * Train $\lambda = 0.5$ and $\lambda = 2$ (`bbox_loss_weight`, new tags) and plot mAP with and without box
#   regression against $\lambda$.
# * Add seeds (`train_seeds(..., seeds=(3, 4, 5, 6, 7))`, and as many stage-wise runs): does (b) − (a)'s
#   interval narrow enough to decide?
# * Stage-wise with more freedom: unfreeze fc7 as well (remove it from `EVERY_LAYER_BUT_BBOX_PRED`). Does (c) close
#   the gap to (d)? What happens to mAP without box regression, now that fc7 learns from the box loss alone?
# * Give the regressors more time: train the default and the stage-wise run for twice the steps (`iters=6000,
#   stepsize=4500`, new tags). Does the box loss keep falling, and do (c) and (d) pull away from (a) and (b)?
