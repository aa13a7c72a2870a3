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
# # Lesson 17 — More proposals, or dense ones? Recall, average recall and mAP
#
# **The claim (paper Sec. 5.5, Fig. 3).** Fast R-CNN classifies the region proposals it is given (lesson 08 builds
# them with selective search). Section 5.5 asks whether more proposals help. There are two kinds of proposals:
# *sparse* ones such as selective search, which try to put a few boxes where objects are, and *dense* ones, sliding
# windows at every position, scale and aspect ratio, which cover everything and know nothing. The paper reports
# (Fig. 3, model M on VOC07, training and testing with the same proposals):
#
# * raising the number of selective-search boxes from 1k to 10k makes mAP rise a little and then **fall slightly**,
#   while the proposals' *average recall* (AR) keeps rising — AR does not predict mAP here (model M scores 59.2 %
#   with the usual ~2k boxes, Table 4);
# * **dense boxes do worse**: 45k dense boxes alone give 52.9 %, and adding random dense boxes to 2k selective-search
#   boxes lowers mAP more steeply than adding selective-search boxes does, down to 53.0 %. Replacing each
#   selective-search box by its nearest dense box costs little (57.7 %): where the boxes are matters more than their
#   exact shape.
#
# The paper's reading: sparse proposals help the detector by leaving out most of the background it would otherwise
# have to reject.
#
# This lesson measures the recall of selective search and of dense boxes (`minircnn/data/proposals.py`) against the
# number of boxes — with a loop version of the recall against the package's `proposal_recall` — then feeds the
# default trained detector more or fewer proposals at test time, and finally trains one detector on dense boxes.
#
# Tests: `tests/data/test_proposals.py`, `tests/lab/test_experiments.py`.

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.data import VOCDataset, dense_boxes, proposal_recall, proposals_for_split
from minircnn.data.proposals import DENSE_ASPECT_RATIOS, DENSE_SCALES
from minircnn.evaluation import score_detections
from minircnn.inference import detect_split
from minircnn.lab.experiments import (FAST, SEEDS, apply_protocol, compare_runs, detector_outputs, lesson_dataset,
                                      train_seeds)
from minircnn.training.checkpoint import load_checkpoint

root = lesson_dataset()                  # data/shapes (generated on first use); a few images with MINIRCNN_FAST
test = VOCDataset(root, "test")
notes = [test.annotation(i) for i in range(len(test))]
print(test, "| classes:", ", ".join(test.class_names))

# The default detector: its config says which proposals it was trained with, and those are the ones we measure.
runs = train_seeds("default", root)          # the default detector, once per seed in SEEDS (trained once, reused)
run = runs[0]                                # the preset's own seed: the sweeps below use it, the verdicts all
ckpt = load_checkpoint(run.checkpoint)
config = ckpt.config                         # its test settings, and the proposals it was trained with
ss = proposals_for_split(test, config.proposals, max_boxes=config.max_proposals)   # cached beside the dataset
print(f"the default detector was trained with proposals {config.proposals!r}, at most {config.max_proposals} per "
      f"image")
dense = [dense_boxes((a.height, a.width)) for a in notes]
ignore = [a.difficult for a in notes]
gt_boxes = [a.boxes for a in notes]

# %% [markdown]
# ## 1. The math: recall and average recall
#
# A proposal method is judged first by **recall**: the fraction of ground-truth objects that some proposal covers
# with IoU at least τ, over the G non-difficult objects of the test split,
#
# $$ \text{recall}(\tau) = \frac{1}{G} \sum_{g=1}^{G} \mathbb{1}\Big[\max_{p} \text{IoU}(g, p) \ge \tau\Big], $$
#
# usually at τ = 0.5. Recall at 0.5 does not see whether the covering box is loose or tight; the **average recall**
# (AR, Hosang et al. 2015, which the paper's Fig. 3 plots beside mAP) averages the recall over IoU thresholds from
# 0.5 to 1 — here over 0.50, 0.55, …, 0.95, as COCO does:
#
# $$ \text{AR} = \frac{1}{10} \sum_{\tau \in \{0.50, 0.55, \dots, 0.95\}} \text{recall}(\tau). $$
#
# Only each object's *best* box counts: a thousand boxes near one object cover it no better than one. A loop version
# for reading, with the IoU of inclusive pixel corners (widths `x2 - x1 + 1`) written out, against the package's
# `proposal_recall`, which takes each image's IoU matrix at once (`minircnn.boxes.iou`):

# %%
IOUS = np.arange(10, 20) / 20                            # 0.50, 0.55, ..., 0.95


def recall_by_hand(boxes, threshold):
    """Recall at one IoU threshold with plain loops: for every counted object, does any box reach the threshold?"""
    found = counted = 0
    for props, gts, skip in zip(boxes, gt_boxes, ignore):
        for g, difficult in zip(gts, skip):
            if difficult:
                continue
            counted += 1
            for p in props:
                iw = min(g[2], p[2]) - max(g[0], p[0]) + 1
                ih = min(g[3], p[3]) - max(g[1], p[1]) + 1
                if iw <= 0 or ih <= 0:
                    continue
                union = (g[2] - g[0] + 1) * (g[3] - g[1] + 1) + (p[2] - p[0] + 1) * (p[3] - p[1] + 1) - iw * ih
                if iw * ih / union >= threshold:
                    found += 1
                    break
    return found / counted


def recall_and_ar(boxes):
    """Recall at IoU 0.5 and the average recall over IoU 0.5:0.05:0.95 (non-difficult objects)."""
    found = proposal_recall(boxes, gt_boxes, thresholds=tuple(IOUS), ignore=ignore)["recall"]
    return found[IOUS[0]], float(np.mean(list(found.values())))


first_100 = [b[:100] for b in ss]
start = time.perf_counter()
loop = {t: recall_by_hand(first_100, t) for t in (0.5, 0.7)}
loop_s = time.perf_counter() - start
start = time.perf_counter()
package = proposal_recall(first_100, gt_boxes, thresholds=(0.5, 0.7), ignore=ignore)
package_s = time.perf_counter() - start
for t in (0.5, 0.7):
    print(f"first 100 selective-search boxes, recall at IoU {t}: loop {loop[t]:.4f}   package "
          f"{package['recall'][t]:.4f}")
    assert np.isclose(loop[t], package["recall"][t])
print(f"{package['objects']} objects counted; loop {loop_s * 1e3:.0f} ms, package {package_s * 1e3:.0f} ms")
print("recall at 0.5 and AR of the same boxes: {:.3f}, {:.3f}".format(*recall_and_ar(first_100)))

# %% [markdown]
# ## 2. Recall against the number of boxes: selective search vs dense boxes
#
# The dense boxes (`dense_boxes`) are sliding windows at several sizes and aspect ratios, each window shifted by a
# fixed fraction of its own size (printed below). They come in no particular order, so "k dense boxes" means a
# random sample of k of them; selective-search boxes are used in their ranked order.

# %%
def random_subset(boxes, k, seed):
    """k boxes of each image chosen at random (all of them when there are fewer)."""
    pick = np.random.default_rng(seed)
    return [b[np.sort(pick.permutation(len(b))[:k])] for b in boxes]


print(f"dense boxes: window sizes sqrt(w * h) {DENSE_SCALES} px, aspect ratios h / w {DENSE_ASPECT_RATIOS}, "
      f"shifted by {inspect.signature(dense_boxes).parameters['stride'].default} of the window size")
print(f"selective search: {np.mean([len(b) for b in ss]):.0f} boxes per image on average (max "
      f"{max(len(b) for b in ss)}); dense: {np.mean([len(b) for b in dense]):.0f}")
K_SS = (10, 20, 50, 100, 200, 300, 500, 1000, 2000)
K_DENSE = (10, 50, 100, 300, 1000, 3000, 10000, 30000)
curves = {"selective search (ranked)": [], "dense (random k)": []}
print(f"\n{'proposals':<27}{'k':>7}{'boxes/img':>11}{'recall@0.5':>12}{'AR':>7}")
for name, ks, pick in (("selective search (ranked)", K_SS, lambda k: [b[:k] for b in ss]),
                       ("dense (random k)", K_DENSE, lambda k: random_subset(dense, k, seed=k))):
    for k in ks:
        boxes = pick(k)
        r50, ar = recall_and_ar(boxes)
        per_image = np.mean([len(b) for b in boxes])
        curves[name].append((per_image, r50, ar))
        print(f"{name:<27}{k:>7}{per_image:>11.0f}{r50:>12.3f}{ar:>7.3f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, points in curves.items():
    per_image, r50, ar = np.array(points).T
    axes[0].plot(per_image, r50, marker="o", label=name)
    axes[1].plot(per_image, ar, marker="o", label=name)
for ax, what in zip(axes, ("recall at IoU 0.5", "average recall, IoU 0.5:0.95")):
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image")
    ax.set_ylabel(what)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
plt.show()

# %% [markdown]
# Two things to look for. How many boxes each method needs for a given recall: selective search's ranking puts the
# likely objects first, random dense boxes have no ranking. And the gap between recall at 0.5 and AR, which rewards
# tight boxes: a grid of windows of fixed sizes and ratios rarely matches an object's box to IoU 0.8 or 0.9, while a
# merged region's box, the box around the object's own pixels, often does.
#
# ## 3. Are more proposals better?
#
# Now the detector. The paper trained and tested model M with each proposal setting. We vary the proposals **at test
# time only**, with the default detector trained on selective-search boxes; that is the smallest honest version on a
# laptop budget, and it answers a narrower question — does *this* detector get better when given more boxes at test
# time? — than the paper's, where the training set changed too.
#
# The network scores every RoI on its own, so the detections for "the first k proposals" can be had from a single
# pass over all of them: `detector_outputs` keeps the network's scored boxes for every proposal, and
# `apply_protocol(..., top=k)` applies the usual test protocol (score > 0.05, per-class NMS at 0.3, 100 per image)
# to the first k rows only.

# %%
start = time.perf_counter()
outputs = detector_outputs(ckpt, test, ss, progress=False)
print(f"the network on all {len(test)} test images, all their proposals: {time.perf_counter() - start:.1f} s")

results = []                                  # (proposals, boxes per image, mAP, recall@0.5, AR)
longest = max(len(b) for b in ss)
for k in sorted({min(k, longest) for k in K_SS}):                 # k = longest: every image's proposals, all
    metrics, _ = score_detections(test, *apply_protocol(outputs, config, top=k), test.class_names)
    boxes = [b[:k] for b in ss]
    results.append(("selective search, first k", np.mean([len(b) for b in boxes]), metrics["map"],
                    *recall_and_ar(boxes)))
print(f"check: all proposals give mAP {results[-1][2]:.3f}; the training run measured {run.metrics['map']:.3f}")

# %% [markdown]
# And the paper's two dense experiments: dense boxes alone (a random sample of k of them per image), and selective
# search's boxes *plus* k random dense boxes. Every extra box costs network time (the RoI-wise layers run once per
# box), so these take longer; we stop at a few thousand boxes per image.

# %%
K_EXTRA = (300, 1000) if FAST else (1000, 3000)
variants = [(f"dense, random {k}", random_subset(dense, k, seed=k)) for k in K_EXTRA]
variants += [(f"selective search + {k} dense", [np.concatenate([s, d]) for s, d in
                                                zip(ss, random_subset(dense, k, seed=k))]) for k in K_EXTRA]
for name, boxes in variants:
    start = time.perf_counter()
    found = detect_split(ckpt.model, test, boxes, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing, config,
                         progress=False)
    metrics, _ = score_detections(test, *found, test.class_names)
    results.append((name, np.mean([len(b) for b in boxes]), metrics["map"], *recall_and_ar(boxes)))
    print(f"{name}: {time.perf_counter() - start:.1f} s")

print(f"\n{'test-time proposals':<30}{'boxes/img':>10}{'mAP':>8}{'recall@0.5':>12}{'AR':>7}")
for name, per_image, m, r50, ar in results:
    shown = name.replace("first k", f"first {per_image:.0f}") if "first" in name else name
    print(f"{shown:<30}{per_image:>10.0f}{m:>8.3f}{r50:>12.3f}{ar:>7.3f}")

# %%
ss_rows = [r for r in results if r[0].startswith("selective search, first")]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
per_image, maps, r50s, ars = (np.array([r[i] for r in ss_rows]) for i in (1, 2, 3, 4))
axes[0].plot(per_image, maps, marker="o", color="tab:blue", label="mAP, selective search (first k)")
axes[0].plot(per_image, ars, marker="s", ls="--", color="tab:blue", alpha=0.5, label="AR, selective search")
for (name, n_boxes, m, _, ar), marker in zip(results[len(ss_rows):], "DdPX"):
    colour = "tab:red" if name.startswith("dense") else "tab:green"
    axes[0].plot(n_boxes, m, marker=marker, ls="none", color=colour, markersize=9, label=f"mAP, {name}")
    axes[0].plot(n_boxes, ar, marker=marker, ls="none", color=colour, alpha=0.4, markersize=7)
axes[0].set_xscale("log")
axes[0].set_xlabel("test-time proposals per image")
axes[0].set_ylabel("VOC07 mAP (solid) / average recall (faded)")
axes[0].set_ylim(0, 1)
axes[0].legend(fontsize="small")
axes[0].grid(True, alpha=0.3)
for name, n_boxes, m, _, ar in results:
    axes[1].scatter(ar, m, color="tab:blue" if "first" in name else "tab:red" if name.startswith("dense")
                    else "tab:green")
    axes[1].annotate(f"{n_boxes:.0f}", (ar, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
axes[1].set_xlabel("average recall (IoU 0.5:0.95)")
axes[1].set_ylabel("VOC07 mAP")
axes[1].set_title("does AR predict mAP? (labels: boxes per image)")
axes[1].grid(True, alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# What our numbers say, against the paper's three findings. The sweep above is one detector, one draw of its seed.
# Each verdict below rests on the default detector of every seed in `SEEDS`, and on the yardstick every lesson uses
# (`compare_runs`): both sides scored on many resamples of the test images, each resample scoring both on the same
# images, give a 95 % interval for the difference of their mean mAPs. The rule: they differ only if the interval
# excludes zero *and* the difference exceeds twice the seed-to-seed standard deviation (of the per-seed
# differences where both sides are the same detectors tested two ways). The sentences are written from the numbers
# by that rule.

# %%
best, everything = max(ss_rows, key=lambda r: r[2]), ss_rows[-1]
best_k = sorted({min(k, longest) for k in K_SS})[ss_rows.index(best)]    # the k of section 3's best row
dense_name = f"dense, random {K_EXTRA[-1]}"
dense_test = random_subset(dense, K_EXTRA[-1], seed=K_EXTRA[-1])      # the same boxes as in the table
ckpts = [load_checkpoint(r.checkpoint) for r in runs]
ss_outputs = [outputs] + [detector_outputs(c, test, ss, progress=False) for c in ckpts[1:]]
ss_all = [apply_protocol(o, config) for o in ss_outputs]
ss_best = [apply_protocol(o, config, top=best_k) for o in ss_outputs]
on_dense = [detect_split(c.model, test, dense_test, c.bbox_means, c.bbox_stds, c.preprocessing, c.config,
                         progress=False) for c in ckpts]


def judge(first, second, names, same_networks):
    """The verdict on two lists of detections, one per seed (same_networks: the same detectors, tested two ways)."""
    result = compare_runs(first, second, names, dataset=test, same_networks=same_networks)
    print(f"   {result['verdict']}\n   each seed: "
          + ", ".join(f"{a:.3f} vs {b:.3f}" for a, b in zip(result["first"], result["second"])))
    return result


print(f"1. Selective search: with seed {SEEDS[0]}'s detector, mAP is highest with the first {best[1]:.0f} boxes per "
      f"image ({best[2]:.3f}); with all of them ({everything[1]:.0f} per image) it is {everything[2]:.3f}.")
fall = judge(ss_all, ss_best, ("All of selective search's boxes", f"the first {best_k}"), True)
print("   " + ("Past some point more proposals cost mAP, as in the paper's Fig. 3." if fall["sign"] < 0
               else "No fall at the high end beyond noise on this dataset."))
print(f"   Average recall over the same range: {best[4]:.3f} -> {everything[4]:.3f}"
      + (" (still rising while mAP was not: AR does not predict mAP here, as the paper found)."
         if everything[4] > best[4] and fall["sign"] <= 0 else "."))
print(f"2. Dense boxes alone ({dense_name}, at test time only) against all of selective search's:")
worse = judge(on_dense, ss_all, ("Dense boxes", "selective search"), True)
print("   " + ("Worse, as in the paper." if worse["sign"] < 0 else "Not worse beyond noise, unlike the paper."))
for name, n_boxes, m, _, ar in results:
    if name.startswith("selective search +"):
        print(f"3. {name} (seed {SEEDS[0]}): mAP {m:.3f} ({m - everything[2]:+.3f} against selective search alone) "
              f"at AR {ar:.3f} ({ar - everything[4]:+.3f})")

# %% [markdown]
# Where our version differs from the paper's, and why the size of the effects may differ:
#
# * **Test time only.** Our detector was trained on selective-search boxes: its background class learned what
#   selective search's near misses look like (the sampler's background RoIs have IoU 0.1–0.5 with an object,
#   lesson 06). Random dense windows at test time are partly *unlike anything it was trained on*, and each one is
#   another chance for a confident false positive. The paper retrained with every setting, so its drops are what
#   remains when the detector *has* learned those boxes; ours likely exaggerate them. The experiment that isolates
#   this is below.
# * **Fewer dense boxes.** The paper's dense-only point used all 45k boxes per image; we test on a random sample of
#   a few thousand of ours (network time grows with every box), so our dense recall is lower than with all of them
#   (compare the recall table of section 2).
# * **Smaller range.** Selective search "fast" gives far fewer boxes on our small, simple images than the paper's
#   2k–10k (section 2 prints how many); our sweep covers the range our proposal method produces. Adding random dense
#   boxes is how the paper pushed beyond it too.
# * **One small test set**: 150 images, so small differences in mAP are often within noise; the verdicts say
#   which.
#
# ## 4. Training with dense boxes
#
# The paper's dense-only number comes from a detector *trained* on dense boxes. One more recipe — the default one
# with `proposals="dense"`, trained once per seed — tells how much of the gap above came from testing on boxes the
# detector never trained on. (Each run takes as long as a default run the first time; afterwards it is read back
# from `runs/lessons/dense` and its `_seed4`, `_seed5`. We evaluate them ourselves below, on the random sample of
# dense boxes of section 3 rather than on all of them.)

# %%
dense_runs = train_seeds("dense", root, proposals="dense", evaluate=False)
dense_ckpts = [load_checkpoint(r.checkpoint) for r in dense_runs]
measured = {name: m for name, _, m, _, _ in results}                  # the default detector, section 3
table = [("selective search", dense_name, measured[dense_name]),
         ("selective search", "selective search, all", everything[2])]
trained_dense = {}
for tested, boxes in ((dense_name, dense_test), ("selective search, all", ss)):
    trained_dense[tested] = [detect_split(c.model, test, boxes, c.bbox_means, c.bbox_stds, c.preprocessing,
                                          c.config, progress=False) for c in dense_ckpts]
    table.append(("dense boxes", tested, score_detections(test, *trained_dense[tested][0], test.class_names)[0]["map"]))

print(f"seed {SEEDS[0]}'s detectors:\n{'trained on':<20}{'tested on':<27}{'mAP':>7}")
for trained, tested, m in table:
    print(f"{trained:<20}{tested:<27}{m:>7.3f}")
print("\nTraining on dense boxes, tested on them:")
judge(trained_dense[dense_name], on_dense, ("Trained on dense boxes", "trained on selective search's"), False)
print("Each detector trained and tested on its own boxes:")
own = judge(trained_dense[dense_name], ss_all, ("Dense boxes", "selective search"), False)
print("   " + ("Sparse proposals win, as in the paper." if own["sign"] < 0
               else "Dense boxes are not worse beyond noise here, unlike the paper."))

# %% [markdown]
# ## Try this next
#
# * Selective search "quality" (`proposals_for_split(test, "ss-quality")`: 80 strategies, ten times as many as
#   "fast", so expect a long wait). Redo the recall curves and the top-k sweep with it: how many boxes per image does
#   it give, do you reach the paper's range of 1k–10k, and does mAP fall at the high end?
# * Replace each selective-search box by its nearest dense box (largest IoU) and test the default detector on those
#   (the paper's 57.7 % experiment): how much of the gap is about *where* the boxes are, and how much about their
#   exact shape?
# * Train with `max_proposals=100` (`train_detector("ss100", root, max_proposals=100)`) and sweep k at test time
#   again. Does the best k move?
# * Time `recall_by_hand` on all the proposals instead of the first 100, and on the dense boxes: how does its time
#   grow with the number of boxes, and the package's?
