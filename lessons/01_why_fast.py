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
# # Lesson 01 — Why "fast"
#
# **The claim (paper Sec. 1, 1.1 and Table 4).** R-CNN (Girshick et al., 2014) detects objects by cutting every
# region proposal out of the image — about 2000 per image — stretching ("warping") each one to the square input of an
# ImageNet classifier, and running the *whole* network on each crop. The conv layers, the expensive part, run about
# 2000 times per image, mostly on overlapping pixels. Fast R-CNN runs the conv layers **once per image**, and for
# each proposal only crops the shared conv feature map (RoI pooling, lessons 02 and 03) and runs the fc layers.
# With VGG16 on a K40 GPU the paper measures 47 s per image for R-CNN against 0.32 s for Fast R-CNN: 146 times
# faster (213 times with the truncated SVD of the fc layers, Sec. 3.1). Proposal time is not counted in either.
#
# This lesson runs both on the **same network weights and the same proposals**, and measures the time per image as
# the number of proposals grows.
#
# Code: `minircnn/models/classifier.py` (the per-crop network), `minircnn/models/fast_rcnn.py`,
# `minircnn/data/transforms.py` (`warp_region`, `prepare_image`). Tests: `tests/models/`,
# `tests/data/test_transforms.py`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.boxes import iou
from minircnn.training.checkpoint import load_checkpoint
from minircnn.data import prepare_image, warp_region
from minircnn.lab.experiments import FAST, lesson_dataset, test_split_of, train_detector
from minircnn.models import Classifier, softmax
from minircnn.visualize import draw_boxes

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. One network, two ways to run it
#
# We take the detector of the quick start (lesson 00): the tiny backbone, fine-tuned on the built-in dataset. The
# first call trains it (a few minutes); later calls, in any lesson, read it back from `runs/lessons/default`.

# %%
root = lesson_dataset()
run = train_detector("default", root)
ckpt = load_checkpoint(run.checkpoint)
detector, preprocessing, config = ckpt.model, ckpt.preprocessing, ckpt.config
test_set, proposals = test_split_of(run)      # the test images and their proposals, as the run evaluated them
print(f"detector: {detector.spec.name} backbone, total stride {detector.backbone.stride}, RoI pool "
      f"{detector.spec.roi_size}x{detector.spec.roi_size}, {detector.num_classes} classes (background included)")

# %% [markdown]
# **R-CNN's way.** Our detector was made from an image classifier by the paper's three transformations (Sec. 2.2;
# `minircnn.models.from_classifier`): that classifier took fixed-size square crops, ran the conv layers on them, and
# its conv map, exactly `roi_size × roi_size` cells for a crop of `stride × roi_size` pixels, went straight into fc6.
# R-CNN is that classifier, fine-tuned with a (K + 1)-way last layer, run on one warped crop per proposal. So we
# undo the transformations: a `Classifier` with the detector's convs, fc6 and fc7, and `cls_score` as its last
# layer. (R-CNN also padded every box with 16 pixels of context before warping, scored the classes with SVMs and
# regressed boxes from separate features; none of that changes the cost of the conv layers, which is the point here.)

# %%
CROP = detector.backbone.stride * detector.spec.roi_size           # the crop whose conv map is roi_size x roi_size
rcnn_net = Classifier(detector.spec, detector.num_classes, input_size=CROP, pool_kernel=1, init=False)
shared = {name.replace("cls_score.", "fc8."): value for name, value in detector.state_dict().items()
          if not name.startswith("bbox_pred.")}
rcnn_net.load_state_dict(shared, source="the detector")              # strict: every parameter has its counterpart
assert rcnn_net.grid == detector.spec.roi_size
print(f"R-CNN-style network: input {CROP}x{CROP} px crops, conv map {rcnn_net.grid}x{rcnn_net.grid}, then the same "
      f"fc6 ({rcnn_net.fc6.params['weight'].shape[1]} inputs) as the detector")

# %% [markdown]
# What R-CNN's network sees: each proposal cut out and stretched to the crop size, whatever its shape
# (`minircnn.data.warp_region`).

# %%
image, note = test_set.load_image(0), test_set.annotation(0)
best_iou = iou(proposals[0], note.boxes).max(axis=1)
on_objects, elsewhere = np.flatnonzero(best_iou >= 0.5), np.flatnonzero(best_iou < 0.5)
picked = rng.choice(on_objects, min(3, len(on_objects)), replace=False)          # a few on objects, the rest not
shown = proposals[0][np.concatenate([picked, rng.choice(elsewhere, 6 - len(picked), replace=False)])]
fig, axes = plt.subplots(1, 7, figsize=(16, 3), gridspec_kw={"width_ratios": [2.5] + [1] * 6})
draw_boxes(image, shown, labels=np.arange(1, 7), ax=axes[0], linewidth=1.5)
axes[0].set_title(f"test image {test_set.ids[0]}: 6 of its {len(proposals[0])} proposals", fontsize=9)
raw = image.transpose(2, 0, 1).astype(np.float32) / 255                # warp the pixels themselves, to look at
for k, (ax, box) in enumerate(zip(axes[1:], shown)):
    ax.imshow(np.clip(warp_region(raw, box, CROP).transpose(1, 2, 0), 0, 1))
    ax.set_title(f"{k + 1}: {int(box[2] - box[0] + 1)}x{int(box[3] - box[1] + 1)} px -> {CROP}x{CROP}", fontsize=8)
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# The two forward passes, stage by stage. Both start from the uint8 image and the same proposals, and both end with
# the class probabilities of every proposal. **R-CNN:** preprocess the image, warp every proposal, run conv + fc on
# the stack of crops (in chunks of 128, to bound memory). **Fast R-CNN:** preprocess and resize the image to the
# test scale, run the convs once, RoI-pool every proposal from the shared map, run the fc layers. From here on we
# work on the test image with the most proposals.

# %%
def rcnn_forward(image, boxes, chunk=128):
    """R-CNN at test time: one conv + fc pass per warped proposal. Returns probs and seconds per stage."""
    t0 = time.perf_counter()
    pixels = preprocessing.apply(image)
    crops = np.stack([warp_region(pixels, box, CROP) for box in boxes])
    t1 = time.perf_counter()
    maps = [rcnn_net.backbone.forward(crops[i:i + chunk], train=False) for i in range(0, len(crops), chunk)]
    t2 = time.perf_counter()
    x = np.concatenate(maps)
    for layer in rcnn_net.top:                                       # pool5 (1x1: a no-op), fc6, fc7, cls_score
        x = layer.forward(x, train=False)
    probs = softmax(x)
    return probs, {"prepare": t1 - t0, "conv": t2 - t1, "rest": time.perf_counter() - t2}


def fast_rcnn_forward(image, boxes):
    """Fast R-CNN at test time: the convs once, then RoI pooling and the fc layers per proposal."""
    t0 = time.perf_counter()
    blob, factor = prepare_image(image, config.test_scale, config.test_max_size, preprocessing)
    rois = np.zeros((len(boxes), 5), np.float32)
    rois[:, 1:] = boxes * np.float32(factor)
    t1 = time.perf_counter()
    features = detector.backbone.forward(blob[None], train=False)
    t2 = time.perf_counter()
    scores, _ = detector.head_forward(features, rois, train=False)
    probs = softmax(scores)
    return probs, {"prepare": t1 - t0, "conv": t2 - t1, "rest": time.perf_counter() - t2}


image_index = int(np.argmax([len(p) for p in proposals]))           # the test image with the most proposals
image, boxes_all = test_set.load_image(image_index), proposals[image_index]
probs_rcnn, _ = rcnn_forward(image, boxes_all[:8])
probs_fast, _ = fast_rcnn_forward(image, boxes_all[:8])
print(f"test image {test_set.ids[image_index]}: {len(boxes_all)} proposals; probabilities of 8 of them, both ways:",
      probs_rcnn.shape, probs_fast.shape)

# %% [markdown]
# ## 2. Time per image against the number of proposals
#
# The same image, its first R proposals, each pass timed a few times (the fastest run counts: the one least
# disturbed by other programs). Both sides use one CPU thread if you started Jupyter with `OPENBLAS_NUM_THREADS=1`;
# either way they use the same BLAS.

# %%
counts = [r for r in ((8, 32) if FAST else (16, 64, 256, 1000, 2000)) if r <= len(boxes_all)]


def fastest(forward, boxes, repeat):
    runs = [forward(image, boxes)[1] for _ in range(repeat)]
    return min(runs, key=lambda stages: sum(stages.values()))


timings = {"R-CNN": [], "Fast R-CNN": []}
for r in counts:
    boxes = boxes_all[:r]
    timings["R-CNN"].append(fastest(rcnn_forward, boxes, 1 if r >= 1000 or FAST else 2))
    timings["Fast R-CNN"].append(fastest(fast_rcnn_forward, boxes, 2 if FAST else 5))

print(f"{'proposals':>9s} {'R-CNN s/image':>14s} {'Fast R-CNN s/image':>19s} {'speed-up':>9s}")
total = {name: np.array([sum(s.values()) for s in runs]) for name, runs in timings.items()}
for r, slow, fast in zip(counts, total["R-CNN"], total["Fast R-CNN"]):
    print(f"{r:9d} {slow:14.3f} {fast:19.4f} {slow / fast:8.1f}x")
print(f"\nR = {counts[-1]}, seconds per stage:")
for name, runs in timings.items():
    print(f"  {name:10s} " + "   ".join(f"{stage} {seconds:.4f}" for stage, seconds in runs[-1].items()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, marker in (("R-CNN", "o"), ("Fast R-CNN", "s")):
    axes[0].loglog(counts, total[name], marker=marker, label=name)
axes[0].set_xlabel("proposals per image (R)")
axes[0].set_ylabel("seconds per image")
axes[0].set_title("test time, same weights, same proposals")
axes[0].legend()
stage_names = {"prepare": "preprocess +\nwarp / resize", "conv": "conv layers", "rest": "RoI pool +\nfc layers"}
for k, (name, offset) in enumerate((("R-CNN", -0.2), ("Fast R-CNN", 0.2))):
    axes[1].bar(np.arange(3) + offset, [timings[name][-1][stage] for stage in stage_names], width=0.4, label=name,
                color=f"C{k}")
axes[1].set_xticks(np.arange(3), list(stage_names.values()))
axes[1].set_yscale("log")
axes[1].set_ylabel("seconds per image (log)")
axes[1].set_title(f"where the time goes, R = {counts[-1]}")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# R-CNN's time grows with the number of proposals, one conv pass per crop; Fast R-CNN pays for its one conv pass
# whatever R is, and only its RoI pooling and fc part grows. With many proposals R-CNN's time is mostly conv layers,
# and the conv layers' part of the gap comes from how many pixels each way pushes through them:

# %%
blob, _ = prepare_image(image, config.test_scale, config.test_max_size, preprocessing)
r = counts[-1]
conv_ratio = r * CROP ** 2 / (blob.shape[1] * blob.shape[2])
print(f"R = {r}: R-CNN convolves {r} x {CROP}^2 = {r * CROP ** 2:,} pixels, Fast R-CNN one "
      f"{blob.shape[1]}x{blob.shape[2]} image = {blob.shape[1] * blob.shape[2]:,}: {conv_ratio:.0f}x more")
print(f"measured: conv layers {timings['R-CNN'][-1]['conv'] / timings['Fast R-CNN'][-1]['conv']:.0f}x slower, "
      f"whole pass {total['R-CNN'][-1] / total['Fast R-CNN'][-1]:.0f}x slower; share of the conv layers in the time: "
      f"R-CNN {timings['R-CNN'][-1]['conv'] / total['R-CNN'][-1]:.0%}, "
      f"Fast R-CNN {timings['Fast R-CNN'][-1]['conv'] / total['Fast R-CNN'][-1]:.0%}")
paper = 2000 * 224 ** 2 / (600 * 739)       # VOC's average image, 384 x 473, scaled to a shorter side of 600
print(f"the paper's setting: 2000 crops of 224^2 vs a 600x739 image: {paper:.0f}x the conv pixels; Table 4 measures "
      f"R-CNN 146x slower with VGG16 (47 s vs 0.32 s per image)")

# %% [markdown]
# Our speed-up is smaller than the paper's, but not for lack of conv work to save: our crops add up to a larger multiple
# of Fast R-CNN's conv pixels than the paper's do (the paper's 224-pixel crops are each about a ninth of a 600 × 739
# image, VOC's average; both multiples are printed above). What holds it back is that our convs are cheap: with
# thousands of proposals, the part of Fast R-CNN's time that grows with R — RoI pooling and the fc layers — weighs more
# against its one conv pass (the conv share is printed above) than in VGG16, whose conv pass is about half of its 0.32 s
# (Fig. 2: conv 46%, fc6 39%, fc7 6%, RoI pooling 5%).
#
# The direction is the paper's: sharing one conv pass between all the proposals of an image is what makes Fast R-CNN
# fast at test time. Outside that one pass, what remains is mostly the fc layers; Sec. 3.1 compresses them with a
# truncated SVD, which takes Table 4's 146× to 213×.
#
# ## 3. Do the two compute the same thing?
#
# No: a warped crop and a RoI-pooled window of the shared map are different inputs to fc6. The crop is stretched to a
# square, and its convs see only the crop's pixels, with zero padding at its edges, where the shared map's cells see
# the neighbouring image too. Our weights were fine-tuned on the second kind of input; the first kind they only saw
# during pretraining, as whole crops of generated pictures. We label every proposal of the image with the class of the
# true box it overlaps with IoU ≥ 0.5 (background if none) and count how often each way gets it right, on the first
# test images: every proposal that lies on an object, and up to 100 of the others per image.

# %%
predicted = {"R-CNN": [], "Fast R-CNN": []}
truth = []
n_images, n_others = (2, 10) if FAST else (20, 100)
for i in range(min(len(test_set), n_images)):
    note, picture = test_set.annotation(i), test_set.load_image(i)
    overlap = iou(proposals[i], note.boxes)
    labels = np.where(overlap.max(axis=1) >= 0.5, note.labels[overlap.argmax(axis=1)], 0)
    others = np.flatnonzero(labels == 0)
    keep = np.concatenate([np.flatnonzero(labels > 0), rng.choice(others, min(len(others), n_others), replace=False)])
    truth.append(labels[keep])
    predicted["R-CNN"].append(rcnn_forward(picture, proposals[i][keep])[0].argmax(axis=1))
    predicted["Fast R-CNN"].append(fast_rcnn_forward(picture, proposals[i][keep])[0].argmax(axis=1))
truth = np.concatenate(truth)
on_object = truth > 0


def share(hits):
    return f"{np.mean(hits):.0%}" if hits.size else "n/a"


for name, top in predicted.items():
    top = np.concatenate(top)
    print(f"{name:10s}: right class for {share(top[on_object] == truth[on_object])} of the {on_object.sum()} "
          f"proposals on an object, background for {share(top[~on_object] == 0)} of {(~on_object).sum()} others")

# %% [markdown]
# The paper finds no price in accuracy for the speed either: with VGG16, Fast R-CNN reaches 66.9% mAP on VOC 2007 and
# R-CNN 66.0% (Table 4). Here the comparison is lopsided by construction — only the Fast R-CNN way was fine-tuned
# for its input, where R-CNN fine-tuned its network on warped crops — so read the numbers above as "the per-crop way
# still works with these weights", not as a contest.
#
# ## 4. Training: one stage instead of three
#
# Test time is half of the paper's argument (Sec. 1.1). R-CNN's training is a pipeline of three stages: fine-tune the
# ConvNet on warped proposals with a log loss; run it over every proposal of every training image and **write the
# features to disk** (hundreds of gigabytes for VOC07 trainval with VGG16); train one linear SVM per class on those
# features, then the box regressors. Table 4: 84 hours for VGG16, against 9.5 for Fast R-CNN.
#
# SPPnet (He et al., 2014) already shared the conv pass at test time — it pools each proposal from the image's conv
# map with a spatial pyramid — and was 10–100× faster than R-CNN there. But it kept the multi-stage training and the
# feature cache, and its fine-tuning could not update the conv layers below the pooling layer, which limits very deep
# networks (the paper's Table 5 measures what training the convs is worth).
#
# Fast R-CNN trains in one stage with the multi-task loss (lesson 05), back-propagates through RoI pooling into the
# convs (lesson 03), samples its mini-batches so that RoIs share conv passes in training too (lesson 06), and caches
# nothing on disk.
#
# ## Try this next
#
# * Time the two ways on the image with the fewest proposals: where does the speed-up start?
# * Give R-CNN its 16 pixels of context: enlarge each box by `16 × extent / (CROP − 32)` on every side before
#   `warp_region`. Does the agreement in section 3 change?
# * Set `OPENBLAS_NUM_THREADS` to the number of your cores and rerun section 2: which way gains more from threads?
# * Lesson 02 shows how RoI pooling cuts a window of the shared map into `roi_size × roi_size` bins.
