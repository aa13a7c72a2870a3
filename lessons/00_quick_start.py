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
# # Lesson 00 — Quick start
#
# Welcome. These lessons rebuild **Fast R-CNN** (Girshick, 2015) from scratch in NumPy, one idea of the paper at a
# time. This first one shows the whole thing working before we take it apart: train a small detector, find objects
# with it, measure how good it is, and look at how it learned.
#
# **What Fast R-CNN does (paper Sec. 1 and 2, Fig. 1).** Its input is an image and a set of *region proposals*:
# boxes, around two thousand per image, that might hold an object (they come from a separate algorithm, selective
# search). The network runs its conv layers **once** over the whole image; then, for every proposal, a *RoI pooling*
# layer cuts the matching window out of the conv feature map into a fixed grid, and fully connected layers turn it
# into two outputs: the probability of each class (background included), and for each class a small correction that
# moves the box onto the object. Keep the boxes that score well, remove duplicates, and those are the detections.
#
# Everything here runs on a laptop CPU: a tiny backbone instead of VGG16, and a built-in dataset of coloured shapes
# instead of PASCAL VOC.
#
# **Before you start.** From the repository's root folder, `pip install -e ".[test]"` installs the package with what
# the lessons need (Jupyter's kernel, nbclient, jupytext); `pip install jupyterlab` and `jupyter lab lessons/` open
# them (a notebook committed with outputs shows those of a full run, `python lessons/build_notebooks.py`; running
# it replaces them with yours). Notebooks run with `lessons/` as their working folder, so the shell commands below
# (in "Try this next") start with `cd ..`. **What to expect:** the first run of this lesson trains the default
# detector, about 10 minutes on a quiet 2-core CPU (3 of them computing proposals and pretraining the backbone, once;
# `benchmarks/RESULTS.md`, "Pipeline"), longer while other programs share the CPU; section 3 prints how long yours
# took. Later runs read it back in seconds. Its mAP on the built-in test split was 0.809, 0.825 and 0.817 for three
# training seeds (measured in `benchmarks/RESULTS.md`); section 4 prints yours.
#
# Code: `minircnn/lab/experiments.py` (the cached training runs of the lessons), `minircnn/train.py`,
# `minircnn/evaluate.py`, `minircnn/visualize.py`. Tests: `tests/lab/test_experiments.py`, `tests/test_train.py`,
# `tests/test_evaluate.py`, `tests/test_visualize.py`.

# %%
import csv

import matplotlib.pyplot as plt
import numpy as np

from minircnn.training.checkpoint import load_checkpoint
from minircnn.data import VOCDataset
from minircnn.inference import detect_image
from minircnn.evaluation import format_table
from minircnn.lab.experiments import lesson_dataset, test_split_of, train_detector
from minircnn.visualize import draw_boxes

# %% [markdown]
# ## 1. The data
#
# The built-in dataset is written in PASCAL VOC's folder layout (images, one XML file of boxes per image, lists of
# the images of each split), so the same code reads VOC itself. It is generated into `data/shapes` the first time
# (a few seconds). Every object has a class and a box `(x1, y1, x2, y2)` in pixels.

# %%
root = lesson_dataset()
train_set, test_set = VOCDataset(root, "trainval"), VOCDataset(root, "test")
print(f"{root}: {len(train_set)} training images, {len(test_set)} test images, classes {train_set.class_names}")

fig, axes = plt.subplots(1, 4, figsize=(16, 4))
for i, ax in enumerate(axes):
    note = train_set.annotation(i)
    draw_boxes(train_set.load_image(i), note.boxes, note.labels, class_names=train_set.class_names, ax=ax)
    ax.set_title(f"{train_set.ids[i]}: {len(note.boxes)} objects", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Train
#
# One call trains the default detector: the tiny backbone, pretrained as an image classifier on generated pictures
# (our stand-in for ImageNet, Sec. 2.2), then fine-tuned on the training images — selective search proposals, two
# images and 128 RoIs per step, the paper's multi-task loss. It is the same run as `python -m minircnn.train` on the
# command line.
#
# **The first time, this takes a few minutes** (progress bars show how far it is; the pretraining and the proposals
# are computed once and cached too). The result goes to `runs/lessons/default`, and every later call — in this
# lesson or any other — reads it back instantly instead of training again. (With `MINIRCNN_FAST=1`, as in CI, it is a
# few steps from scratch on a handful of images instead: every line runs, no number means anything.)

# %%
run = train_detector("default", root)
with open(run.out / "log.csv", newline="") as f:
    log = list(csv.DictReader(f))
print(f"{run.out}: {run.config.iters} SGD steps, trained in {float(log[-1]['seconds']):.0f} s")
print("files:", sorted(p.name for p in run.out.iterdir()))

# %% [markdown]
# ## 3. Detect
#
# The checkpoint holds the trained weights and everything needed to use them: the class names, the pixel
# preprocessing, and the statistics that turn the network's box outputs back into pixels. For each test image we
# take its proposals and run the test-time procedure (`minircnn.inference.detect_image`): one forward pass, class
# scores and corrected boxes for every proposal, then per class non-maximum suppression, which drops a box that
# overlaps a better-scoring one of the same class too much.

# %%
ckpt = load_checkpoint(run.checkpoint)
config = ckpt.config
_, proposals = test_split_of(run)      # the test images' proposals, as the run evaluated them


def detect(i):
    return detect_image(ckpt.model, test_set.load_image(i), proposals[i], ckpt.bbox_means, ckpt.bbox_stds,
                        ckpt.preprocessing, config.test_scale, config.test_max_size)


boxes, labels, scores = detect(0)
print(f"test image {test_set.ids[0]}: {len(proposals[0])} proposals in, {len(boxes)} detections out "
      f"({np.sum(scores >= 0.5)} with a score of at least 0.5); the best five:")
print(" class       score   box (x1, y1, x2, y2)")
for b, l, s in zip(boxes[:5], labels[:5], scores[:5]):
    print(f" {ckpt.class_names[l - 1]:<10s} {s:6.3f}   {np.round(b).astype(int).tolist()}")

# %% [markdown]
# Detections with a score of at least 0.5 on the first test images (left), and the true boxes (right):

# %%
shown = min(4, len(test_set))
fig, axes = plt.subplots(2, shown, figsize=(4 * shown, 8), squeeze=False)
for i in range(shown):
    image, note = test_set.load_image(i), test_set.annotation(i)
    boxes, labels, scores = detect(i)
    draw_boxes(image, boxes, labels, scores, ckpt.class_names, ax=axes[0, i], score_thresh=0.5)
    draw_boxes(image, note.boxes, note.labels, class_names=ckpt.class_names, ax=axes[1, i])
    axes[0, i].set_title(f"{test_set.ids[i]}: detections", fontsize=9)
    axes[1, i].set_title("ground truth", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. How good is it?
#
# The training run already evaluated the detector on the whole test split, the way PASCAL VOC does (the metric of
# the paper's Sec. 4). A detection is correct if its box overlaps a true box of the same class with an intersection over
# union (IoU) of at least 0.5, and each true box can be found only once. Sorting a class's detections by score and
# counting gives a precision-recall curve; its area is the class's **average precision** (AP, VOC 2007's 11-point
# version), and the mean over the classes is the **mAP**. The paper's VGG16 reaches 66.9% mAP on VOC 2007 (Table
# 1); ours is another dataset and a far smaller network, so the two numbers are not comparable — but
# they are computed the same way.

# %%
print(format_table(run.metrics))
print(f"\n{run.metrics['detections']} detections on {run.metrics['images']} test images, "
      f"{run.metrics['seconds_per_image']:.3f} s per image")

# %% [markdown]
# ## 5. How it learned
#
# `log.csv` holds the two terms of the loss at every step: the classification loss (how wrong the class
# probabilities are) and the box regression loss (how far the box corrections are from their targets), and the
# dotted line marks the step where the learning rate is divided by 10.

# %%
steps = np.array([int(row["iteration"]) for row in log])
fig, ax = plt.subplots(figsize=(8, 4))
for key, colour in (("loss_cls", "tab:blue"), ("loss_bbox", "tab:orange")):
    values = np.array([float(row[key]) for row in log])
    window = min(20, len(values))
    ax.plot(steps, values, color=colour, alpha=0.25)
    ax.plot(steps[window - 1:], np.convolve(values, np.ones(window) / window, "valid"), color=colour,
            label=f"{key} (running mean of {window})")
if config.stepsize and config.stepsize < config.iters:
    ax.axvline(config.stepsize, color="grey", ls=":", label="learning rate / 10")
ax.set_xlabel("SGD step")
ax.set_ylabel("loss")
ax.legend()
plt.show()
n = max(1, min(20, len(log) // 2))
for name, rows in ((f"first {n} steps", log[:n]), (f"last {n} steps", log[-n:])):
    print(f"mean loss over the {name}: cls {np.mean([float(r['loss_cls']) for r in rows]):.3f}, "
          f"bbox {np.mean([float(r['loss_bbox']) for r in rows]):.3f}")

# %% [markdown]
# ## Where next
#
# The other lessons open up each piece of what just ran (`lessons/README.md` has the list and an order):
#
# * **01 Why "fast"** — R-CNN against Fast R-CNN on the same network: what sharing the conv pass saves.
# * **02, 03 RoI pooling** — the layer that makes the sharing possible, forward and backward.
# * **04 Layers by hand and gradient checking** — every layer is a forward/backward pair, and how we know the
#   backward is right.
# * **05 The multi-task loss** and **06 Hierarchical sampling** — how the detector is trained.
# * **07 Bounding-box regression** — how the box corrections work, and what they add to the mAP.
#
# ## Try this next
#
# * Lower `score_thresh` in the drawing cell to 0.1: what kind of boxes appear?
# * Train a variant: `train_detector("short", root, iters=300)` trains 300 steps into `runs/lessons/short`. How much
#   of the mAP does the short run get?
# * Run the detector on your own picture from the command line:
#   `cd .. && python -m minircnn.detect --checkpoint runs/lessons/default/checkpoint.npz my_photo.jpg`.
