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
# # Lesson 12 — Test time and evaluation: NMS, precision–recall, AP and its variants
#
# **The claim (paper Sec. 3, 4 and 5.6).** At test time the network gives, for every proposal, a probability for
# each class and a refined box per class. "For each class, we then perform non-maximum suppression independently,
# using the algorithm and settings from R-CNN" (Sec. 3): of several boxes on the same object only the best-scored
# survives. The detections are then scored with the PASCAL VOC 2007 protocol: a detection is correct when its box
# overlaps an unmatched ground-truth box of its class with IoU ≥ 0.5, detections are ranked by score, and the area
# under each class's precision–recall curve, sampled at 11 recall points, is the class's average precision (AP);
# mAP is the mean over classes (every VOC table of the paper, e.g. 66.9 % for VGG16 on VOC07 in Table 1).
#
# The same detector measured with a stricter rule scores much lower: on MS COCO (Sec. 5.6) the paper reports
# **35.9 %** "PASCAL-style" mAP (IoU ≥ 0.5) and **19.7 %** COCO-style AP, averaged over IoU thresholds from 0.5 to
# 0.95 — which rewards boxes that fit tightly.
#
# This lesson takes the default trained detector and walks through every step after the network: the test
# protocol (`minircnn/inference/protocols.py`, `minircnn/evaluate.py`), NMS (`minircnn/boxes.py`), and the metric
# (`minircnn/evaluation/voc.py`): precision–recall curves, 11-point vs area AP, the "difficult" flag, and AP at stricter
# IoU thresholds.
#
# docs/reference.md §8 (test time), §9 (NMS), §10 (VOC evaluation), §13 (the COCO numbers). Tests:
# `tests/evaluation/test_voc_ap.py`, `tests/test_boxes.py`, `tests/inference/test_protocols.py`.

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.boxes import nms
from minircnn.training.checkpoint import load_checkpoint
from minircnn.data import VOCDataset, proposals_for_split
from minircnn.data.shapes import DIFFICULT_BELOW
from minircnn.evaluation import score_detections
from minircnn.evaluation import eval_detection_coco_style, eval_detection_voc, precision_recall, voc_ap
from minircnn.functional import naive
from minircnn.lab.experiments import (FAST, apply_protocol, compare_runs, detector_outputs, lesson_dataset,
                                      train_seeds)
from minircnn.inference.protocols import candidates
from minircnn.visualize import draw_boxes, plot_precision_recall, plot_precision_recall_curves

root = lesson_dataset()                  # data/shapes (generated on first use); a few images with MINIRCNN_FAST
runs = train_seeds("default", root)      # the default detector, once per seed in SEEDS (trained once, reused)
run = runs[0]                            # the preset's own seed: every section looks at it; section 7 at all
ckpt = load_checkpoint(run.checkpoint)
config = ckpt.config
test = VOCDataset(root, config.test_split)
notes = [test.annotation(i) for i in range(len(test))]
gt = ([a.boxes for a in notes], [a.labels for a in notes], [a.difficult for a in notes])
names = test.class_names
K1 = len(names) + 1                      # classes including background
print(f"{test} | the training run's mAP: {run.metrics['map']:.3f}")

# %% [markdown]
# ## 1. The network once, the protocol many times
#
# The expensive part of test time is the network; everything after it is cheap bookkeeping. `detector_outputs`
# runs the network once per test image and keeps, for every proposal, the class probabilities `probs` (P, K+1) and
# the class-specific boxes `boxes` (P, K+1, 4) (regressed and clipped, `evaluate.im_detect`). Every experiment below
# reuses them.

# %%
proposals = proposals_for_split(test, config.proposals, max_boxes=config.max_proposals)
start = time.perf_counter()
outputs = detector_outputs(ckpt, test, proposals, progress=False)
print(f"network on {len(test)} images: {time.perf_counter() - start:.1f} s; image 0: probs "
      f"{outputs[0][0].shape}, boxes {outputs[0][1].shape}")
print(f"test protocol of this run: {config.protocol!r}, score > {config.score_thresh}, NMS at IoU "
      f"{config.nms_thresh}, at most {config.max_per_image} detections per image")

found = apply_protocol(outputs, config)
metrics, curves = score_detections(test, *found, names)
print(f"mAP {metrics['map']:.3f} (the training run measured {run.metrics['map']:.3f})")

# %% [markdown]
# ## 2. Non-maximum suppression
#
# A well-trained detector scores *many* proposals around each object highly: every box that overlaps the object
# well looks like it. NMS keeps one per object. Per class: visit the candidates by descending score; keep a box
# unless it overlaps an already kept box with IoU above the threshold (0.3 in the paper, after R-CNN). Greedy and
# order-dependent: the best-scored box of a cluster wins, not the best-placed one.
#
# A loop version, written for reading, is the package's reference `nms_naive` (`minircnn/functional/naive.py`, with
# the intersection and union of two boxes with `+1` widths, docs/reference.md §7):

# %%
print(inspect.getsource(naive._inter_union))
print(inspect.getsource(naive.nms_naive))

# %% [markdown]
# Against the package's `nms` (which decides blocks of boxes at a time, with vectorised IoUs) on one image's
# candidates of one class:

# %%
counts = [len(candidates(probs, boxes, config.score_thresh)[0]) for probs, boxes in outputs]
shown = int(np.argmax(counts))                       # the image with the most candidates (score > 0.05)
cand_boxes, cand_labels, cand_scores = candidates(*outputs[shown], config.score_thresh)
cls = int(np.bincount(cand_labels).argmax())         # its most frequent class
mine = cand_labels == cls
b, s = cand_boxes[mine].astype(np.float64), cand_scores[mine].astype(np.float64)
for thresh in (0.1, 0.3, 0.5, 0.7):
    loop, package = naive.nms_naive(b, s, thresh).tolist(), nms(b, s, thresh).tolist()
    print(f"image {shown}, class {names[cls - 1]!r}, {len(s)} candidates, NMS {thresh}: loop keeps {len(loop)}, "
          f"package keeps {len(package)}, same: {loop == package}")
    assert loop == package

# %% [markdown]
# A picture: one image, all classes, the candidates and what NMS leaves of them at four thresholds. (Many
# candidates score above 0.05; to keep the picture readable only those scoring at least 0.5 are drawn, but NMS runs
# on all of them.) A low threshold removes more — also a second object of the same class close to the first; a high
# one leaves duplicates, and each duplicate is a false positive for the metric.

# %%
DRAW = 0.5
strong = [int((candidates(probs, boxes, DRAW)[2] >= DRAW).sum()) for probs, boxes in outputs]
pictured = int(np.argsort(strong)[len(strong) // 2]) if FAST else int(np.argmax(strong))
image = test.load_image(pictured)
panels = [("candidates", None)] + [(f"NMS {t}", t) for t in (0.1, 0.3, 0.5, 0.7)]
fig, axes = plt.subplots(1, len(panels), figsize=(20, 4.5))
for ax, (title, thresh) in zip(axes, panels):
    if thresh is None:
        bx, lb, sc = candidates(*outputs[pictured], config.score_thresh)
    else:
        bx, lb, sc = (column[0] for column in apply_protocol([outputs[pictured]], config, nms_thresh=thresh,
                                                              max_per_image=10**6))
    draw_boxes(image, bx, labels=lb, scores=sc, class_names=names, ax=ax, score_thresh=DRAW, linewidth=1,
               fontsize=6)
    ax.set_title(f"{title}: {len(bx)} {'in all' if thresh is None else 'kept'}, {int((sc >= DRAW).sum())} drawn",
                 fontsize=10)
plt.show()

# %% [markdown]
# How the threshold changes mAP over the whole test split. (IoU above 1 never happens, so threshold 1 means no NMS
# at all; the cap of 100 detections per image still applies, and without NMS it fills up with duplicates.) Besides
# the VOC07 mAP at IoU 0.5 we print the COCO-style AP of section 6, which asks for tighter boxes:

# %%
NMS_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
by_nms = []
print(f"{'NMS IoU':>8}{'detections/img':>16}{'VOC07 mAP':>11}{'COCO-style AP':>15}")
for thresh in NMS_THRESHOLDS:
    dets = apply_protocol(outputs, config, nms_thresh=thresh)
    voc = eval_detection_voc(*dets, *gt, num_classes=K1)["map"]
    coco_map = eval_detection_coco_style(*dets, *gt, num_classes=K1)["map"]
    by_nms.append((thresh, np.mean([len(d) for d in dets[0]]), voc, coco_map))
    print(f"{thresh:>8.1f}{by_nms[-1][1]:>16.1f}{voc:>11.3f}{coco_map:>15.3f}")

thresh_, per_img_, voc_, coco_ = np.array(by_nms).T
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(thresh_, voc_, marker="o", label="VOC07 mAP (IoU 0.5)")
ax.plot(thresh_, coco_, marker="s", label="COCO-style AP (IoU 0.5:0.95)")
ax.axvline(config.nms_thresh, color="k", ls=":", label=f"the protocol's {config.nms_thresh}")
ax.set_xlabel("NMS IoU threshold (1 = no NMS)")
ax.set_ylabel("AP")
ax.grid(True, alpha=0.3)
ax.legend()
plt.show()
best_nms = max(by_nms, key=lambda r: r[2])
print(f"best VOC07 mAP at NMS {best_nms[0]} ({best_nms[2]:.3f}); at the protocol's {config.nms_thresh}: "
      f"{[r[2] for r in by_nms if r[0] == config.nms_thresh][0]:.3f}; without NMS: {by_nms[-1][2]:.3f}")

# %% [markdown]
# ## 3. Precision and recall
#
# For one class, over the whole test set: sort the detections by score, and walk down the list. Each detection is a
# true positive (TP) if it hits a ground-truth box of its class with IoU ≥ 0.5 that no higher-scored detection took,
# otherwise a false positive (FP). After the first n detections,
#
# $$ \text{precision}_n = \frac{TP_n}{n}, \qquad \text{recall}_n = \frac{TP_n}{\#\text{objects of the class}}. $$
#
# Lowering the score threshold moves down the list: recall can only grow, precision wanders. The curves of the
# default detector, per class (`precision_recall`; `score_detections` returns them):

# %%
fig, ax = plt.subplots(figsize=(7, 5.5))
ap_by_id = np.array([np.nan] + [np.nan if v is None else v for v in metrics["ap"].values()])
plot_precision_recall_curves(*curves, class_names=names, ap=ap_by_id, ax=ax)
ax.set_title(f"default detector, VOC07 mAP {metrics['map']:.3f}")
plt.show()
for k, name in enumerate(names, start=1):
    if curves[1][k] is not None and len(curves[1][k]):
        print(f"{name:>10}: {len(curves[1][k]):5d} detections, final recall {curves[1][k][-1]:.3f}, precision "
              f"there {curves[0][k][-1]:.3f}")

# %% [markdown]
# ## 4. From a curve to one number: 11-point AP and area AP
#
# VOC 2007 (and so the paper) summarises a curve by **11-point interpolated AP**: at each recall level
# t ∈ {0, 0.1, …, 1} take the best precision reached at any recall ≥ t, and average the 11 values. From VOC 2010 on,
# the devkit uses the **area** under the same "best precision at recall ≥ r" envelope, without sampling. A loop
# version of both rules is the package's reference `voc_ap_naive` (`minircnn/functional/naive.py`):

# %%
print(inspect.getsource(naive.voc_ap_naive))

# %% [markdown]
# Both rules against `voc_ap`, for every class of the default detector:

# %%
print(f"{'class':>10}{'11-point (loop)':>17}{'11-point (voc_ap)':>19}{'area (loop)':>13}{'area (voc_ap)':>15}")
for k, name in enumerate(names, start=1):
    r, p = curves[1][k], curves[0][k]
    if r is None:
        continue
    loop, package = naive.voc_ap_naive(r, p, use_07_metric=True), voc_ap(r, p, use_07_metric=True)
    area_loop, area = naive.voc_ap_naive(r, p, use_07_metric=False), voc_ap(r, p, use_07_metric=False)
    print(f"{name:>10}{loop:>17.4f}{package:>19.4f}{area_loop:>13.4f}{area:>15.4f}")
    assert np.isclose(loop, package) and np.isclose(area_loop, area)
area_map = eval_detection_voc(*found, *gt, use_07_metric=False, num_classes=K1)["map"]
print(f"\nmAP: 11-point {metrics['map']:.4f}, area {area_map:.4f}")

# %% [markdown]
# The two rules differ by a little, in either direction: the 11-point rule looks at 11 recall levels only, each
# standing for a tenth of the recall axis (and t = 0 always takes the best precision anywhere on the curve), while
# the area follows every step of the envelope. Numbers from different papers are comparable only under the same
# rule — the paper's are 11-point. The picture shows both on the class where they differ most:

# %%
gaps = [abs(voc_ap(curves[1][k], curves[0][k], True) - voc_ap(curves[1][k], curves[0][k], False))
        if curves[1][k] is not None else -1.0 for k in range(1, len(names) + 1)]
k_show = int(np.argmax(gaps)) + 1
r, p = curves[1][k_show], curves[0][k_show]
fig, ax = plt.subplots(figsize=(6, 4.5))
if r is not None and len(r):
    plot_precision_recall(r, p, ax=ax, label=names[k_show - 1])
    samples = [p[r >= step / 10].max(initial=0.0) for step in range(11)]   # best precision at recall >= t
    ax.plot(np.arange(11) / 10, samples, "o", color="k", label="the 11 sampled precisions")
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    ax.fill_between(r, envelope, step="post", alpha=0.15, label="area under the envelope")
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(f"{names[k_show - 1]}: 11-point {voc_ap(r, p, True):.3f}, area {voc_ap(r, p, False):.3f}")
plt.show()

# %% [markdown]
# ## 5. The "difficult" flag
#
# VOC marks some objects *difficult* (hard to recognise without context; in our built-in dataset, the smallest boxes,
# printed below). They are in the ground truth but the evaluation neither requires them nor punishes finding them:
# they do not count among the objects to recall, and a detection whose best match is a difficult box is dropped
# from the ranked list — **neither a TP nor an FP**. A hand-made example, one image with a normal box A and a
# difficult box D, and a detector that scores D first (0.9), then a box on empty ground (0.8), then A (0.6):

# %%
A, D, EMPTY = [0, 0, 19, 19], [40, 40, 49, 49], [70, 0, 89, 19]
cases = {"D marked difficult": True, "D an ordinary box": False}
detections = {"D found": ([D, EMPTY, A], [0.9, 0.8, 0.6]), "D missed": ([EMPTY, A], [0.8, 0.6])}
print(f"{'':<21}{'':<10}{'precision':>18}{'recall':>16}{'AP (area)':>11}")
for case, flag in cases.items():
    for found_name, (boxes_, scores_) in detections.items():
        args = ([np.array(boxes_, float)], [np.ones(len(boxes_), int)], [np.array(scores_)],
                [np.array([A, D], float)], [np.array([1, 1])], [np.array([False, flag])])
        (_, prec), (_, rec) = precision_recall(*args, num_classes=2)
        ap = eval_detection_voc(*args, use_07_metric=False, num_classes=2)["ap"][1]
        print(f"{case:<21}{found_name:<10}{str(np.round(prec, 2)):>18}{str(np.round(rec, 2)):>16}{ap:>11.3f}")

# %% [markdown]
# With D difficult, the detection on D vanishes from the list (two entries, not three) and missing D costs nothing:
# both rows score the same. With D an ordinary object there are two objects to find, finding D earns a TP, and
# missing it halves the recall. On the test split, scoring with and without the flag:

# %%
n_difficult = sum(int(a.difficult.sum()) for a in notes)
print(f"built-in dataset: a box is difficult when sqrt(w * h) < {DIFFICULT_BELOW} px")
print(f"{n_difficult} of {sum(len(a.boxes) for a in notes)} test objects are difficult; mAP with the flag "
      f"(VOC) {metrics['map']:.3f}, counting them as ordinary objects {metrics['map_all_objects']:.3f}")

# %% [markdown]
# ## 6. Stricter IoU: COCO-style AP
#
# IoU ≥ 0.5 accepts boxes that are quite loose. COCO's main metric averages AP over the IoU thresholds 0.50, 0.55,
# …, 0.95, so a detector must place its boxes tightly to score well. The package's `eval_detection_coco_style` does
# this with the VOC machinery: at each threshold it matches with the devkit rules and takes the area AP, then
# averages. That is the COCO *idea*, not the COCO toolkit (which interpolates precision at 101 recall points, handles
# "crowd" boxes instead of "difficult" ones and matches slightly differently); the numbers are close, not equal.
#
# For the paper's VGG16 on COCO test-dev the stricter metric cuts the score to 55% of the IoU-0.5 one: 19.7 against
# 35.9. Ours:

# %%
coco = eval_detection_coco_style(*found, *gt, num_classes=K1)
print(f"{'IoU':>6}{'mAP (area)':>12}")
for t, m in zip(coco["iou_threshs"], coco["map_per_iou"]):
    print(f"{t:>6.2f}{m:>12.3f}")
print(f"\nCOCO-style AP (mean over IoU 0.50:0.95): {coco['map']:.3f}; at IoU 0.5: {coco['map_per_iou'][0]:.3f}; "
      f"ratio {coco['map'] / max(coco['map_per_iou'][0], 1e-9):.2f} (paper, COCO test-dev: 19.7 / 35.9 = "
      f"{19.7 / 35.9:.2f})")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(coco["iou_threshs"], coco["map_per_iou"], marker="o", label="mean over classes")
for k, name in enumerate(names, start=1):
    ax.plot(coco["iou_threshs"], coco["ap"][:, k], alpha=0.4, label=name)
ax.set_xlabel("IoU threshold of a match")
ax.set_ylabel("AP (area)")
ax.set_ylim(0, 1)
ax.grid(True, alpha=0.3)
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# AP falls as the threshold rises: many detections that count at 0.5 are a few pixels off, and at 0.95 a box must
# be nearly exact. The paper's two COCO numbers are a data point about the same shape; the ratio depends on the
# data set (COCO has many small objects, which are hard to box tightly) and on the detector, so ours need not match
# it.
#
# ## 7. Our test protocol and the paper's
#
# `minircnn` follows py-faster-rcnn's simple rule by default: per image, score > 0.05, NMS 0.3, the 100 best. The
# code behind the paper's numbers (`FR:test.py`, docs/reference.md §8) did it differently: the 100 best candidates per
# class per image *before* NMS, then a per-class score threshold chosen over the whole test set so that about 40
# detections per class per image remain on average, then NMS, with no cap per image (`protocol="paper"`,
# `minircnn/inference/protocols.py`). Same network outputs, both protocols:

# %%
for protocol in ("simple", "paper"):
    dets = apply_protocol(outputs, config, protocol=protocol)
    voc = eval_detection_voc(*dets, *gt, num_classes=K1)["map"]
    coco_map = eval_detection_coco_style(*dets, *gt, num_classes=K1)["map"]
    print(f"protocol {protocol!r:9}: {np.mean([len(d) for d in dets[0]]):6.1f} detections per image, VOC07 mAP "
          f"{voc:.3f}, COCO-style AP {coco_map:.3f}")

# %% [markdown]
# Is the difference more than noise? The verdict rests on the default detector of every seed and on the yardstick
# every lesson uses (`compare_runs`): both protocols scored on many resamples of the test images, each resample
# scoring both on the same images, give a 95 % interval for the difference of their mean mAPs; they differ only if
# the interval excludes zero *and* the difference exceeds twice its seed-to-seed standard deviation (the same
# networks on both sides: the spread of the per-seed differences).

# %%
every_output = [outputs] + [detector_outputs(load_checkpoint(r.checkpoint), test, proposals, progress=False)
                            for r in runs[1:]]
result = compare_runs([apply_protocol(o, config, protocol="paper") for o in every_output],
                      [apply_protocol(o, config, protocol="simple") for o in every_output],
                      ("The paper's protocol", "the simple one"), dataset=test, same_networks=True)
print(result["verdict"])

# %% [markdown]
# The two protocols differ mostly in which *low-scoring* detections they keep. Those sit near the end of each class's
# ranked list, where they add a little recall at low precision, so the choice should move AP much less than the NMS
# threshold does (compare the two protocol lines above with the NMS table of section 2). It matters when comparing with
# published numbers to the last decimal, not for the ideas.
#
# ## Try this next
#
# * Raise `score_thresh` to 0.3 (`apply_protocol(outputs, config, score_thresh=0.3)`). Which part of the PR curves
#   disappears, and how much AP does it cost?
# * Replace greedy NMS by *soft*-NMS in a copy of `naive.nms_naive` (lower the scores of overlapping boxes instead
#   of removing them) and rescore. Does the COCO-style AP gain more than the VOC07 mAP?
# * Compute the COCO toolkit's 101-point AP from the curves (precision envelope sampled at recall 0, 0.01, …, 1) and
#   compare it with the area AP at each IoU threshold.
# * Mark every object under 20 px difficult (edit the annotations' `difficult` arrays) and see how mAP moves.
