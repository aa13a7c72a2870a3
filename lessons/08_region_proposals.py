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
# # Lesson 08 — Region proposals: selective search, step by step
#
# **The claim (paper Sec. 2).** Fast R-CNN does not look for objects itself: it classifies and refines a set of
# candidate boxes, the *region proposals*, that some other method supplies — in the paper, about 2000 per image from
# *selective search* (Uijlings et al., IJCV 2013). Selective search has no classifier and learns nothing: it groups
# pixels bottom-up into regions that look alike, and every region it ever forms gives one box. It is *sparse*: it
# tries to put a few boxes where objects are, instead of sliding windows over every position, scale and aspect
# ratio. Lesson 17 asks the paper's Sec. 5.5 question, whether more proposals (or dense ones) help the detector;
# this lesson takes the method apart, step by step, with the package (`minircnn/data/segmentation.py`,
# `minircnn/data/selective_search.py`): a colour space, an over-segmentation, region features, the similarity of
# two neighbours (with a loop version of the formula against the package's), the merge hierarchy (a loop version
# that rescores every pair after every merge, against the package's heap), and the ranked, pooled boxes of several
# strategies.
#
# Tests: `tests/data/test_selective_search.py`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.boxes import iou
from minircnn.data import VOCDataset, selective_search
from minircnn.data.segmentation import (adjacent_pairs, colour_codes, colour_space, region_features, segment,
                                        texture_codes)
from minircnn.data.selective_search import MODES, measure_weights, merge_hierarchy, pair_similarity
from minircnn.lab.experiments import lesson_dataset
from minircnn.visualize import draw_boxes

root = lesson_dataset()                  # data/shapes (generated on first use); a few images with MINIRCNN_FAST
test = VOCDataset(root, "test")
notes = [test.annotation(i) for i in range(len(test))]
print(test, "| classes:", ", ".join(test.class_names))

# %% [markdown]
# ## 1. Selective search, one step at a time
#
# Selective search builds a hierarchy of regions bottom-up, the way one would group pixels into objects by hand:
# start from many small regions of uniform colour, then repeatedly merge the two *neighbouring* regions that look
# most alike. Every region that ever exists — leaf or merged — contributes its bounding box. Objects at every scale
# show up somewhere in the hierarchy, and no classifier is involved.
#
# ### Step 1: a colour space
#
# One strategy works in one colour space. Different spaces make different edges strong (hue ignores shading,
# intensity ignores hue), which is why selective search tries several (step 6). `colour_space` returns every channel
# scaled to [0, 1]:

# %%
image_index = min(2, len(test) - 1)
image = test.load_image(image_index)
H, W = image.shape[:2]
spaces = {name: colour_space(image, name) for name in ("rgb", "hsv", "lab", "i")}
for name, converted in spaces.items():
    print(f"{name:>3}: shape {converted.shape}, dtype {converted.dtype}, range [{converted.min():.2f}, "
          f"{converted.max():.2f}]")

fig, axes = plt.subplots(1, 4, figsize=(15, 3.5))
axes[0].imshow(image)
axes[0].set_title("the image (RGB)")
axes[1].imshow(spaces["hsv"][..., 0], cmap="hsv")
axes[1].set_title("HSV: hue")
axes[2].imshow(spaces["lab"][..., 0], cmap="gray")
axes[2].set_title("Lab: lightness L")
axes[3].imshow(spaces["i"][..., 0], cmap="gray")
axes[3].set_title("intensity")
for ax in axes:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ### Step 2: over-segmentation (the leaves)
#
# Felzenszwalb and Huttenlocher's graph method joins neighbouring pixels into a region while the colour difference
# across the join is small compared with the differences inside the regions; the scale `k` says how much larger
# than the inside differences a boundary must be (larger `k`, larger regions). Selective search wants an
# *over*-segmentation: regions small enough that no region straddles two objects.

# %%
hsv = spaces["hsv"]
leaves = {k: segment(hsv, k) for k in (50, 100, 300)}
for k, labels in leaves.items():
    print(f"k = {k:3d}: {labels.max() + 1:4d} regions, median size {np.median(np.bincount(labels.ravel())):.0f} px")

palette = np.random.default_rng(1).uniform(0.15, 1, (max(int(lab.max()) for lab in leaves.values()) + 1, 3))
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, (k, labels) in zip(axes, leaves.items()):
    ax.imshow(palette[labels])
    ax.set_title(f"k = {k}: {labels.max() + 1} regions")
    ax.set_axis_off()
fig.suptitle("Felzenszwalb-Huttenlocher segmentation of the HSV image")
plt.show()

# %% [markdown]
# ### Steps 3 and 4: what the grouping needs to know about each region, and who touches whom
#
# For each region: its size in pixels, its bounding box, a **colour histogram** (25 bins per channel) and a
# **texture histogram** (Gaussian derivatives in 8 directions, 10 bins each, per channel), each normalised to sum 1.
# `colour_codes` / `texture_codes` give every pixel its bins once; `region_features` counts them per region with one
# `bincount`. `adjacent_pairs` lists the pairs of regions that share a pixel border: only neighbours may merge.

# %%
K_SEG = 100
labels = leaves[K_SEG]
regions = region_features(labels, colour_codes(hsv), texture_codes(hsv))
pairs = adjacent_pairs(labels)
n = len(regions.sizes)
print(f"{n} regions: sizes {regions.sizes.shape}, boxes {regions.boxes.shape}, histograms "
      f"{regions.histograms.shape} (first {regions.colour_dims} columns colour, the rest texture)")
print(f"colour histograms sum to {regions.histograms[:, :regions.colour_dims].sum(1).min():.3f}..."
      f"{regions.histograms[:, :regions.colour_dims].sum(1).max():.3f}, texture histograms to "
      f"{regions.histograms[:, regions.colour_dims:].sum(1).min():.3f}...")
print(f"{len(pairs)} adjacent pairs, e.g. {pairs[:4].tolist()}")

# %% [markdown]
# ### Step 5: how alike are two neighbours?
#
# Four similarities, each in [0, 1], summed (Uijlings et al. Sec. 3.2); a strategy picks which of them to use, by
# letter — C, T, S, F:
#
# $$ s_\text{colour}(r_i, r_j) = \sum_k \min(c_i^k, c_j^k), \qquad
#    s_\text{texture}(r_i, r_j) = \sum_k \min(t_i^k, t_j^k), $$
#
# $$ s_\text{size}(r_i, r_j) = 1 - \frac{\text{size}(r_i) + \text{size}(r_j)}{\text{size}(\text{image})}, \qquad
#    s_\text{fill}(r_i, r_j) = 1 - \frac{\text{size}(BB_{ij}) - \text{size}(r_i) - \text{size}(r_j)}
#    {\text{size}(\text{image})}. $$
#
# Histogram intersection is 1 for identical histograms and 0 for disjoint ones. The size term makes small regions
# merge first, everywhere in the image at once, so that one region does not swallow its neighbours one by one. The
# fill term ($BB_{ij}$ is the box around both) prefers pairs that fill each other's gaps — two halves of one shape.
#
# A loop version for one pair, written for reading, against the package's `pair_similarity` (which scores many
# pairs at once):

# %%
def similarity_by_hand(regions, i, j, image_area):
    """The four terms for regions i and j, with plain loops (what pair_similarity computes, term by term)."""
    cd = regions.colour_dims
    hi, hj = regions.histograms[i], regions.histograms[j]
    colour = sum(min(hi[k], hj[k]) for k in range(cd))
    texture = sum(min(hi[k], hj[k]) for k in range(cd, len(hi)))
    size = 1 - (regions.sizes[i] + regions.sizes[j]) / image_area
    bi, bj = regions.boxes[i], regions.boxes[j]
    box_w = max(bi[2], bj[2]) - min(bi[0], bj[0]) + 1
    box_h = max(bi[3], bj[3]) - min(bi[1], bj[1]) + 1
    fill = 1 - (box_w * box_h - regions.sizes[i] - regions.sizes[j]) / image_area
    return {"C": colour, "T": texture, "S": size, "F": fill}


a, b = pairs[0]
by_hand = similarity_by_hand(regions, a, b, H * W)
dims = regions.histograms.shape[1]
for measure in ("C", "T", "S", "F", "CTSF"):
    package = pair_similarity(regions.histograms, regions.sizes, regions.boxes, a, np.array([b]), H * W,
                              measure_weights(measure, regions.colour_dims, dims))[0]
    loop = sum(by_hand[letter] for letter in measure)
    print(f"pair ({a}, {b}), {measure:>4}: loop {loop:.6f}   package {package:.6f}")
    assert np.isclose(loop, package)

# %% [markdown]
# ### Step 6: the hierarchy
#
# Algorithm 1 of Uijlings et al.: score all neighbouring pairs; merge the most similar pair into a new region (its
# histograms are the size-weighted mean of its parts, its box covers both, its neighbours are theirs); repeat until
# one region is left. Written as plainly as possible, rescoring every pair after every merge:

# %%
def group_by_hand(regions, pairs, image_area, measure="CTSF"):
    """Algorithm 1 as written: after every merge, score every neighbouring pair again and merge the most similar
    one (on equal scores, the pair (a, b) with the smallest a, then b). Returns the merges, one (i, j) per step."""
    n, dims = regions.histograms.shape
    hist = np.concatenate([regions.histograms, np.zeros((n - 1, dims))])      # region n + s is made at step s
    sizes = np.concatenate([regions.sizes, np.zeros(n - 1)])
    boxes = np.concatenate([regions.boxes, np.zeros((n - 1, 4), np.int64)])
    weights = measure_weights(measure, regions.colour_dims, dims)
    neighbours = {tuple(p) for p in pairs.tolist()}                          # pairs (a, b) with a < b
    merges = []
    while neighbours:
        ordered = np.array(sorted(neighbours))
        sims = pair_similarity(hist, sizes, boxes, ordered[:, 0], ordered[:, 1], image_area, weights)
        i, j = ordered[np.argmax(sims)].tolist()                  # argmax: the first of equal scores
        t = n + len(merges)
        merges.append((i, j))
        sizes[t] = sizes[i] + sizes[j]
        hist[t] = (sizes[i] * hist[i] + sizes[j] * hist[j]) / sizes[t]
        boxes[t, :2] = np.minimum(boxes[i, :2], boxes[j, :2])
        boxes[t, 2:] = np.maximum(boxes[i, 2:], boxes[j, 2:])
        renamed = set()                                           # t takes over the neighbours of i and j
        for p, q in neighbours:
            if (p, q) == (i, j):
                continue
            p, q = (t if p in (i, j) else p), (t if q in (i, j) else q)
            renamed.add((min(p, q), max(p, q)))
        neighbours = renamed
    return np.array(merges, dtype=np.int64).reshape(-1, 2)


start = time.perf_counter()
merges_loop = group_by_hand(regions, pairs, H * W)
loop_s = time.perf_counter() - start
start = time.perf_counter()
hierarchy = merge_hierarchy(regions, pairs, H * W, "CTSF")
package_s = time.perf_counter() - start
same = np.array_equal(merges_loop, hierarchy.merges)
print(f"{n} leaves -> {len(hierarchy.merges)} merges -> {len(hierarchy.boxes)} regions, each one a candidate box")
print(f"loop: {loop_s * 1e3:.0f} ms   package (heap, only the new pairs scored): {package_s * 1e3:.0f} ms   "
      f"same merges: {same}")
assert same

# %% [markdown]
# The loop rescores every pair after every merge. The package keeps all scores in a heap instead: a merge changes
# only the pairs that involve the new region, so only those are scored and pushed; pairs of regions that no longer
# exist are skipped when they come to the top ("lazy deletion"). Same merges, less work; the printed times are for
# this image's leaves, and "Try this next" asks how the gap changes with their number.
#
# Here is the hierarchy at a few levels: the leaves, then after more and more merges, each region with its box.

# %%
def regions_after(labels, merges, steps):
    """Each pixel's region after the first ``steps`` merges (region n + s is the one made at step s)."""
    n = int(labels.max()) + 1
    parent = np.arange(n + len(merges))
    for s, (i, j) in enumerate(merges[:steps]):
        parent[i] = parent[j] = n + s
    top = parent.copy()
    while not np.array_equal(parent[top], top):          # follow each region up to its newest ancestor
        top = parent[top]
    return top[labels]


levels = [n, max(n // 4, 2), 6, 2]
fig, axes = plt.subplots(1, len(levels), figsize=(16, 4))
for ax, remaining in zip(axes, levels):
    owner = regions_after(labels, hierarchy.merges, n - remaining)
    alive = np.unique(owner)
    draw_boxes(palette[owner % len(palette)], hierarchy.boxes[alive], ax=ax, linewidth=1)
    ax.set_title(f"{len(alive)} regions ({n - remaining} merges)")
plt.show()

# %% [markdown]
# ### Step 7: diversify, then rank
#
# One hierarchy misses objects whose parts differ in colour, or that the leaves already cut wrongly. Selective
# search therefore runs several *strategies* — colour space × segmentation scale `k` × similarity measure — and pools
# their boxes (Sec. 3.2 of Uijlings et al.). The paper's "fast" mode, the one the package uses by default and the
# one Fast R-CNN used, is 2 × 2 × 2 = 8 strategies; "quality" is 80.
#
# Pooling needs an order, because a detector is given the *first* k boxes. Within one hierarchy the last merges are
# the large regions; each box gets its position counted from the top (1 for the whole image), multiplied by a random
# number in [0, 1) so that no strategy's large boxes crowd out the rest, and the boxes are sorted by that value
# (`rank_boxes`); a box found by several strategies keeps its best place.

# %%
for mode, (spaces_m, ks_m, measures_m) in MODES.items():
    print(f"{mode:>7}: colour spaces {spaces_m}, k {ks_m}, measures {measures_m} -> "
          f"{len(spaces_m) * len(ks_m) * len(measures_m)} strategies")
start = time.perf_counter()
ss_boxes = selective_search(image, mode="fast", seed=0)
print(f"\nselective search 'fast' on one {H} x {W} image: {len(ss_boxes)} boxes in {time.perf_counter() - start:.2f} s")

gt = notes[image_index]
overlap = iou(gt.boxes, ss_boxes)
for g, name in enumerate(test.class_names[k - 1] for k in gt.labels):
    hits = np.flatnonzero(overlap[g] >= 0.5)
    print(f"  {name:>9}: best IoU {overlap[g].max():.2f}; first box with IoU >= 0.5 at rank "
          f"{hits[0] + 1 if hits.size else '-'}")

fig, axes = plt.subplots(1, 2, figsize=(12, 5))
draw_boxes(image, ss_boxes[:30], ax=axes[0], linewidth=1)
axes[0].set_title("the 30 best-ranked selective-search boxes")
best = ss_boxes[overlap.argmax(axis=1)]
draw_boxes(image, np.concatenate([gt.boxes, best]), labels=np.concatenate([gt.labels, gt.labels]), ax=axes[1],
           class_names=test.class_names, linewidth=1.5)
axes[1].set_title("ground truth and each object's closest box")
plt.show()

# %% [markdown]
# How good are these boxes? For each object of the image above, the printed rank says how far down the ranked list
# the first box with IoU ≥ 0.5 comes; a detector given only the first k boxes can find the object only if that rank
# is at most k. Lesson 17 measures this over the whole test split — recall and average recall against the number of
# boxes, against dense sliding windows — and what the detector's mAP makes of it.
#
# ## Try this next
#
# * In the hierarchy pictures, use the measure `"S"` (size only) or `"F"` (fill only) in `merge_hierarchy`. Which
#   objects come out as a single region, and which never do?
# * Time the loop version of step 6 against `merge_hierarchy` for the leaves of `k = 50` and `k = 300`: how does the
#   gap grow with the number of leaves, and why (count the pairs the loop scores per merge)?
# * Run `selective_search(image, mode="quality")` (80 strategies, ten times as many as "fast") on the image above. How
#   many boxes does it give, and at which rank does each object now get its first box with IoU ≥ 0.5?
# * Segment in another colour space (`colour_space(image, "lab")`) before step 3: which object boundaries become
#   weaker, and does the hierarchy still find each object as one region?
