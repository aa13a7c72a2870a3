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
# # Lesson 11 — Scale invariance: one scale or an image pyramid?
#
# **The claim (paper Sec. 5.2, Table 7).** Objects come in every size, and a detector must find them all. There are
# two ways to get there (after SPPnet, He et al. 2014):
#
# * **brute force** — train and test at one image scale (shorter side 600 in the paper) and let the network learn
#   from the data that a small car and a large car are both cars;
# * **image pyramids** — at test time, resize the image to several scales (SPPnet's five: shorter sides 480, 576,
#   688, 864 and 1200) and pool each proposal from the scale at which it is closest to 224 × 224 pixels, the size the
#   ImageNet-pretrained network was trained on; at training time, give each sampled image a random one of those
#   scales, as data augmentation.
#
# The paper trains and tests models S and M both ways: five scales give +1.3 and +1.5 mAP points (57.1 → 58.4,
# 59.2 → 60.7 on VOC07) for about four times the test time (0.10 → 0.39 and 0.15 → 0.64 s per image). VGG16 does
# not fit a five-scale pyramid in GPU memory, and reaches 66.9 at a single scale anyway. Its conclusion: deep
# ConvNets are good at learning scale invariance directly, and a single scale is the better trade of speed for
# accuracy — which is why all the paper's other experiments use one scale.
#
# This lesson runs both ways with the default tiny detector: first at test time (several single scales against a
# pyramid, with a close look at the 224² rule), then with one extra training run that samples a random scale for
# each image.
#
# docs/reference.md §4 (scales), §8 (test time: the pyramid and the level rule), §13. Code:
# `minircnn/data/transforms.py` (`scale_for`, `image_pyramid`, `pyramid_rois`), `minircnn/evaluate.py` (`im_detect`,
# `--test-scales`), training scales in `minircnn/data/sampler.py`. Tests: `tests/data/test_transforms.py`,
# `tests/test_evaluate.py`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.training.checkpoint import load_checkpoint
from minircnn.threads import set_blas_threads
from minircnn.data import pyramid_rois, scale_for
from minircnn.inference import im_detect
from minircnn.evaluation import score_detections
from minircnn.lab.experiments import (SEEDS, apply_protocol, compare_runs, lesson_dataset, test_split_of,
                                      train_detector, train_seeds)
from minircnn.visualize import draw_boxes

set_blas_threads(1)           # one BLAS thread: steadier timings on a busy machine (lesson 06)
rng = np.random.default_rng(0)
root = lesson_dataset()       # data/shapes (generated on first use); a few images with MINIRCNN_FAST
run = train_detector("default", root)    # the default detector of runs/lessons/default (trained once, reused)
default = load_checkpoint(run.checkpoint)
config = default.config
test_set, proposals = test_split_of(run)      # the test images and their proposals, as the run evaluated them
notes = [test_set.annotation(i) for i in range(len(test_set))]
SINGLE = f"trained at {config.scales[0]}"      # the default run's training scale (288; 96 with MINIRCNN_FAST)
print(f"default detector: trained at shorter side {config.scales} (longer side at most {config.max_size}), "
      f"tested at {config.test_scale}: mAP {run.metrics['map']:.3f}")

# %% [markdown]
# Our images are small (the paper's VOC images average 384 × 473 and are *upsampled* to 600); the default detector
# trains and tests at the one scale printed above. Our pyramid spans about the same ratio of scales as the paper's
# (480 → 1200), with the longer side capped so that no level is cut short.

# %%
PYRAMID = (192, 240, 288, 352, 416)
MAX_SIZE = 700
sides = np.array([(a.height, a.width) for a in notes])
print(f"test images: {len(notes)}, shorter side {sides.min(axis=1).min()}-{sides.min(axis=1).max()} px, longer "
      f"side {sides.max(axis=1).min()}-{sides.max(axis=1).max()} px; pyramid {PYRAMID}, longer side <= {MAX_SIZE}")
print(f"ratio of the largest to the smallest level: ours {PYRAMID[-1] / PYRAMID[0]:.2f}, the paper's "
      f"{1200 / 480:.2f}")

# %% [markdown]
# ## 1. The 224² rule
#
# With scale factors `f_1 … f_S` (level s multiplies the image by `f_s`), a proposal of `w × h` pixels has area
# `w h f_s²` at level s. Fast R-CNN, like SPPnet, pools each proposal from the level where that area is closest to
# 224², the square the ImageNet network saw in pretraining (docs/reference.md §8, `_project_im_rois`):
#
# $$s^*(\text{box}) = \arg\min_s \left| w\,h\,f_s^2 - 224^2 \right| .$$
#
# A loop version, written for reading, against the package's `pyramid_rois` (which returns the level and the box
# in that level's pixels) on the first test image:

# %%
def level_by_hand(box, factors, canonical_size=224):
    """The pyramid level of one box (x1, y1, x2, y2): the first level whose scaled area is closest to canonical²."""
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    best, best_gap = 0, np.inf
    for s, f in enumerate(factors):
        gap = abs(area * f * f - canonical_size ** 2)
        if gap < best_gap:
            best, best_gap = s, gap
    return best


def level_factors(note):
    """The scale factor of each pyramid level for an image of note.height x note.width (as image_pyramid uses)."""
    return np.array([scale_for(note.height, note.width, s, MAX_SIZE) for s in PYRAMID])


factors = level_factors(notes[0])
by_hand = np.array([level_by_hand(box, factors) for box in proposals[0]])
package = pyramid_rois(proposals[0], factors)[:, 0].astype(int)
print(f"image {test_set.ids[0]}: level factors {np.round(factors, 3)}; {len(by_hand)} proposals, "
      f"loop and package agree on all: {np.array_equal(by_hand, package)}")
assert np.array_equal(by_hand, package)

# %% [markdown]
# Now every proposal of the test split, and every ground-truth object: which level does the rule send it to? The
# second row uses a smaller canonical size, 64 — the side of the square crops our tiny backbone was pretrained on
# (`minircnn/pretrain.py`): "the size the pretrained network saw" means 64², not 224², for this network.

# %%
def level_histogram(boxes_per_image, canonical_size):
    counts = np.zeros(len(PYRAMID), int)
    for note, boxes in zip(notes, boxes_per_image):
        if len(boxes):
            levels = pyramid_rois(boxes, level_factors(note), canonical_size)[:, 0].astype(int)
            counts += np.bincount(levels, minlength=len(PYRAMID))
    return counts


gt_boxes = [a.boxes for a in notes]
histograms = {}
print(f"{'canonical':>9s} {'boxes':>12s}  " + "  ".join(f"{s:>6d}" for s in PYRAMID) + "   (shorter side of level)")
for canonical in (224, 64):
    for what, boxes in (("proposals", proposals), ("ground truth", gt_boxes)):
        counts = level_histogram(boxes, canonical)
        histograms[canonical, what] = counts
        print(f"{canonical:9d} {what:>12s}  " + "  ".join(f"{c / counts.sum():6.1%}" for c in counts))
sqrt_area = np.concatenate([np.sqrt((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)) for b in gt_boxes])
print(f"ground-truth objects: sqrt(area) {np.percentile(sqrt_area, 5):.0f} / {np.median(sqrt_area):.0f} / "
      f"{np.percentile(sqrt_area, 95):.0f} px (5th percentile / median / 95th) in the original images; the largest "
      f"level multiplies them by about {PYRAMID[-1] / np.median(sides.min(axis=1)):.2f}")

# %%
shown = 0
image = test_set.load_image(shown)
sample = rng.choice(len(proposals[shown]), min(50, len(proposals[shown])), replace=False)
fig, axes = plt.subplots(1, 3, figsize=(18, 5), gridspec_kw={"width_ratios": [1, 1, 1.2]})
for ax, canonical in zip(axes, (224, 64)):
    levels = pyramid_rois(proposals[shown][sample], level_factors(notes[shown]), canonical)[:, 0].astype(int)
    ax.imshow(image.mean(axis=2), cmap="gray", alpha=0.5)      # faded grey: the boxes' colours stand out
    for level in range(len(PYRAMID)):
        draw_boxes(None, proposals[shown][sample][levels == level], ax=ax, linewidth=1,
                   color=plt.cm.viridis(level / (len(PYRAMID) - 1)))
    draw_boxes(None, notes[shown].boxes, ax=ax, linewidth=2, color="red", linestyle="--")
    ax.set_title(f"canonical {canonical}: {len(sample)} proposals coloured by level\n(purple: {PYRAMID[0]} ... "
                 f"yellow: {PYRAMID[-1]}; red dashed: objects)", fontsize=9)
width = 0.2
for k, (canonical, what) in enumerate(histograms):
    counts = histograms[canonical, what]
    axes[2].bar(np.arange(len(PYRAMID)) + (k - 1.5) * width, counts / counts.sum(), width,
                label=f"{what}, canonical {canonical}", hatch="//" if what == "ground truth" else None,
                color=f"C{0 if canonical == 224 else 1}", alpha=1 if what == "proposals" else 0.5)
axes[2].set_xticks(range(len(PYRAMID)), [str(s) for s in PYRAMID])
axes[2].set(xlabel="pyramid level (shorter side)", ylabel="share of boxes", title="level assigned, whole test split")
axes[2].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# 224² is larger than nearly every box of ours at nearly
# every level, so the closest level is the largest one for almost all of them: the table above counts it. With the
# 224² rule our "pyramid" is, for the detector, close to a single scale — its largest — plus the cost of four more
# levels. With 64² the boxes spread over the levels, large boxes going to the small images and small boxes to the
# large ones, which is what the rule is meant to do.
#
# ## 2. Test time: single scales against the pyramid
#
# The default detector (trained at one scale) on the whole test split: at three single scales, and with the pyramid
# under both canonical sizes. `im_detect` is the package's test-time forward (docs/reference.md §8); all levels of a
# pyramid go through the convs as one batch. Seconds per image count `im_detect` alone (resizing, the network, decoding
# the boxes): the images are loaded beforehand, and NMS and scoring come after, like the paper's test rate, which
# leaves out the proposals.

# %%
images = [test_set.load_image(i) for i in range(len(test_set))]


def test_at(ckpt, scales, canonical_size=224):
    """Test a detector on the test split at one scale (an int) or a pyramid (a tuple).

    Returns:
        (mAP, network seconds per image, detections (boxes, labels, scores) per image).
    """
    start = time.perf_counter()
    outputs = [im_detect(ckpt.model, image, boxes, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing, scales,
                         MAX_SIZE, canonical_size=canonical_size) for image, boxes in zip(images, proposals)]
    seconds = (time.perf_counter() - start) / len(images)
    found = apply_protocol(outputs, ckpt.config)
    return score_detections(test_set, *found, test_set.class_names)[0]["map"], seconds, found


TESTS = [(f"single {s}", s, 224) for s in (192, 288, 416)]
TESTS += [("pyramid, 224^2 rule", PYRAMID, 224), ("pyramid, 64^2 rule", PYRAMID, 64)]
table = {}
for name, scales, canonical in TESTS:
    table[SINGLE, name] = test_at(default, scales, canonical)
    print(f"{name:22s} mAP {table[SINGLE, name][0]:.3f}   {table[SINGLE, name][1]:.3f} s/image")
print(f"\n(the training run's own test, at {config.test_scale} with the longer side <= {config.test_max_size}: mAP "
      f"{run.metrics['map']:.3f}.)")

# %% [markdown]
# Read the rows against each other. Single scales: the detector was trained at one scale only, but our objects are
# small next to the 16 × 16-pixel cells of the conv map (section 1 printed their sizes), so testing on a larger
# image may help even though the network never saw that scale. The 224² pyramid: by section 1 it pools nearly every
# proposal from its largest level, so expect its mAP close to that of single 416 — at the time of all five levels.
# The 64² pyramid is the rule adapted to our backbone; whether spreading the proposals over the levels helps is the
# question it answers.
#
# ## 3. Train time: a random scale per image
#
# The paper's multi-scale *training* samples one of the pyramid's scales each time it uses an image (docs/reference.md
# §4, `TRAIN.SCALES`), so the network sees every object at several sizes. One extra training run does that with our
# pyramid's five scales (the longer side capped at 700, as at test); everything else is the default run's. The first
# call trains it (several minutes); later calls read it back from
# `runs/lessons/multiscale_train`.

# %%
multi_run = train_detector("multiscale_train", root, scales=PYRAMID, max_size=MAX_SIZE)
multi = load_checkpoint(multi_run.checkpoint)
print(f"trained at {multi.config.scales} (longer side <= {multi.config.max_size}), its own test at "
      f"{multi.config.test_scale}: mAP {multi_run.metrics['map']:.3f}")
for name, scales, canonical in TESTS:
    table["trained at 5 scales", name] = test_at(multi, scales, canonical)
    print(f"{name:22s} mAP {table['trained at 5 scales', name][0]:.3f}   "
          f"{table['trained at 5 scales', name][1]:.3f} s/image")

# %% [markdown]
# The table of the paper's Table 7 idea — training scales by test scales — with the two columns that matter most
# for our small objects:

# %%
columns = ("single 288", "single 416", "pyramid, 224^2 rule")
print(f"{'':22s}" + "".join(f"{c:>24s}" for c in columns))
for model in (SINGLE, "trained at 5 scales"):
    print(f"{model:22s}" + "".join(f"{table[model, c][0]:>15.3f} ({table[model, c][1]:.3f} s)" for c in columns))
print("paper, Table 7 (model M, mAP (s/image)): 1 scale 59.2 (0.15), 5 scales 60.7 (0.64); model S: 57.1 (0.10), "
      "58.4 (0.39)")

for model in (SINGLE, "trained at 5 scales"):
    best_single = max((k for m, k in table if m == model and k.startswith("single")), key=lambda k: table[model, k][0])
    pyr = table[model, "pyramid, 224^2 rule"]
    print(f"{model}: pyramid (224^2) vs best single scale ({best_single}): {pyr[0] - table[model, best_single][0]:+.3f}"
          f" mAP at {pyr[1] / table[model, best_single][1]:.1f}x the time; vs single 288: "
          f"{pyr[0] - table[model, 'single 288'][0]:+.3f} at {pyr[1] / table[model, 'single 288'][1]:.1f}x")

# %% [markdown]
# These rows are one training run per model (seed 3). The verdicts rest on three seeds of each (`SEEDS`) and on the
# yardstick every lesson uses (`compare_runs`): both sides scored on many resamples of the test images, each
# resample scoring both on the same images, give a 95 % interval for the difference of their mean mAPs. The rule:
# they differ only if the interval excludes zero *and* the difference exceeds twice the seed-to-seed standard
# deviation. First Table 7's own pair, trained and tested at five scales (the pyramid with the rule that fits our
# objects, 64², so that the RoIs spread over the levels) against trained and tested at one; then each half of it.
# The sentences are written from the numbers by that rule.

# %%
singles = [load_checkpoint(r.checkpoint) for r in train_seeds("default", root)]
multis = [load_checkpoint(r.checkpoint) for r in train_seeds("multiscale_train", root, scales=PYRAMID,
                                                              max_size=MAX_SIZE)]
one = [test_at(c, (288,), 224)[2] for c in singles]
five = [test_at(c, PYRAMID, 64)[2] for c in multis]
for first, second, names, same in (
        (five, one, ("Trained and tested at five scales", "trained and tested at one (288)"), False),
        ([test_at(c, PYRAMID, 64)[2] for c in singles], one,
         ("Tested with the pyramid (trained at one scale)", "tested at 288"), True),      # the same detectors
        ([test_at(c, (288,), 224)[2] for c in multis], one, ("Trained at five scales (tested at 288)",
                                                             "trained at one"), False)):
    result = compare_runs(first, second, names, dataset=test_set, same_networks=same)
    print(f"{result['verdict']}\n  each seed: " + ", ".join(f"{a:.3f} vs {b:.3f}" for a, b in
                                                          zip(result["first"], result["second"])) + "\n")
print("paper, Table 7, model M: five scales 60.7 vs one 59.2 (+1.5 points) at 4.3x the time")

# %%
fig, ax = plt.subplots(figsize=(8, 5))
for k, model in enumerate((SINGLE, "trained at 5 scales")):
    keys = [name for m, name in table if m == model]
    ax.plot([table[model, n][1] for n in keys[:3]], [table[model, n][0] for n in keys[:3]], "o-", color=f"C{k}",
            label=f"{model}: single scales")
    for n in keys[3:]:
        ax.plot(table[model, n][1], table[model, n][0], "s" if "224" in n else "D", color=f"C{k}", ms=9,
                label=f"{model}: {n}")
    for n in keys:
        ax.annotate(n.replace("single ", "").replace(", ", "\n"), (table[model, n][1], table[model, n][0]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
ax.set(xscale="log", xlabel="network seconds per image (log)", ylabel="VOC07 mAP, test split",
       title="accuracy against test time")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The paper's finding points one way: the pyramid buys a little mAP (about a point and a half) for about four
# times the test time, and a deep network trained at one scale is nearly as good. Check our numbers against each
# part:
#
# * **Cost.** A five-level pyramid costs several single passes, since every level runs through the convs and its
#   largest level costs the most; the printed ratios say how many.
# * **Gain.** Any gain of the pyramid over the *best* single scale is what the pyramid itself adds; its gain over
#   the default scale may be mostly the gain of testing larger (section 1: under the 224² rule our pyramid is nearly
#   its largest level). A verdict of "do not differ" is not evidence either way.
# * **Training.** Multi-scale training is augmentation: it can help the single-scale test too, and it is what makes
#   the network used to the scales a pyramid feeds it.
#
# Where ours differ from the paper's, the reasons to suspect are the ones this lesson showed: objects much smaller
# than 224², so that the rule the paper inherited from ImageNet does not fit our network; a conv map with a 16-pixel
# stride on objects only a few cells across, which rewards enlarging the image whatever the method; and a small test
# split.
#
# ## Try this next
#
# * Test the multi-scale-trained detectors with the 224² rule instead of 64² in Table 7's pair: how much of the
#   pyramid's effect depends on the level rule?
# * Train at a single *larger* scale instead (`train_detector("scale416", root, scales=(416,), max_size=700)`): is
#   multi-scale training better than simply training at the scale that tests best?
# * Try a pyramid of two levels, `(288, 416)`: how much of the five-level result does it keep, at what cost?
# * The paper's multi-scale test on VOC uses `--test-scales 480,576,688,864,1200 --test-max-size 2000` on
#   `python -m minircnn.evaluate`; the same flags work on our detector with our scales.
