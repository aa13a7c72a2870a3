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
# # Lesson 02 — RoI pooling, forward
#
# **The claim (paper Sec. 2.1).** Fast R-CNN runs the convolutional layers once over the whole image. To classify a
# proposal it then needs a fixed-size feature vector for that box, whatever the box's size. The *RoI pooling layer*
# provides it: it takes the part of the last conv feature map that lies under the box, cuts it into an H × W grid of
# roughly equal cells ("bins"), and keeps the largest value of each bin, channel by channel. It is SPPnet's spatial
# pyramid pooling with a single pyramid level.
#
# In this lesson: how a box in image pixels lands on the feature map, how the grid of bins is laid out (to the last
# rounding detail of the original layer), a loop version written for reading (`minircnn/functional/naive.py`), the
# package's vectorised version, and how SPPnet's pyramid is several RoI-pooling layers side by side.
#
# The exact rules: the docstring of `minircnn/functional/roi_pool.py` (the code) and the README's "The layers, and
# where they follow the original exactly".
# Tests: `tests/functional/test_roi_pool.py`.

# %%
import inspect
import os
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import minircnn.functional as F
from minircnn.lab.timing import best_time
from minircnn.backend import gpu_available
from minircnn.data.shapes import render_shapes_image
from minircnn.functional import naive, roi_bins, round_half_away

FAST = os.environ.get("MINIRCNN_FAST", "0") not in ("", "0")   # CI sets MINIRCNN_FAST=1: smaller sizes
rng = np.random.default_rng(0)


# %% [markdown]
# ## 1. From image pixels to feature-map cells
#
# A RoI is `(batch_index, x1, y1, x2, y2)` in pixels of the (scaled) input image, with inclusive corners. VGG16's
# conv5_3 has a total stride of 16, so one feature-map cell covers about 16 × 16 pixels: the layer multiplies the
# corners by `spatial_scale = 1/16` and rounds them to whole cells,
#
# $$ \text{start}_w = \operatorname{round}(x_1 s), \quad \text{end}_w = \operatorname{round}(x_2 s), \qquad
#    \text{roi}_w = \max(\text{end}_w - \text{start}_w + 1,\ 1). $$
#
# The original layer is C code, and C's `round` sends halves *away from zero*. NumPy's `np.round` (and Python 3's
# `round`) send halves to the nearest *even* number. At `s = 1/16` a pixel coordinate that is an odd multiple of 8
# lands exactly on a half:

# %%
pixels = np.array([8, 24, 40, 56, 72, 88], dtype=np.float32)
cells = pixels * np.float32(1 / 16)
print("x (pixels)            ", pixels.astype(int))
print("x * s                 ", cells)
print("np.round (half even)  ", np.round(cells).astype(int))
print("C round (half away)   ", round_half_away(cells).astype(int))
print("disagree at x =", pixels[np.round(cells) != round_half_away(cells)].astype(int))

# %% [markdown]
# Half of those land one cell off. That moves the whole RoI window and changes the pooled features. Here is a box
# whose left edge is at x = 40 px, pooled the package's way (C rounding) and with the left edge forced to NumPy's
# answer (cell 2 instead of 3):

# %%
x_demo = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
box = np.array([[0, 40, 16, 120, 112]], dtype=np.float32)             # x1 = 40 px -> 2.5 cells
y_c, _ = F.roi_pool_forward(x_demo, box, output_size=(2, 2), spatial_scale=1 / 16)
box_even = box.copy()
box_even[0, 1] = 32                                                   # 32 px -> exactly 2 cells, np.round's answer
y_even, _ = F.roi_pool_forward(x_demo, box_even, output_size=(2, 2), spatial_scale=1 / 16)
for name, b_ in (("C rounding:   ", box), ("even rounding:", box_even)):
    bins_ = roi_bins(b_, (10, 10), (2, 2), 1 / 16, dtype=np.float32)
    print(name, "window columns", int(bins_.start_w[0]), "..", int(bins_.end_w[0]))
print("pooled values that differ:", int((y_c != y_even).sum()), "of", y_c.size)

# %% [markdown]
# One more trap: the textbook way to round half away from zero, `floor(v + 0.5)`, is wrong in float32. The sum
# `0.49999997 + 0.5` is not representable and rounds up to exactly 1.0. The package compares the fractional part
# instead, which is computed exactly:

# %%
v = np.float32(0.49999997)
print("floor(v + 0.5) =", np.floor(v + np.float32(0.5)), "  round_half_away(v) =", round_half_away(v))

# %% [markdown]
# **How coarse is that?** Rounding snaps each corner to the nearest cell, whose position in the image is a multiple
# of 16 pixels: a corner at x pixels is read as if it were at 16 · round(x / 16). Measure how far that moves the
# corners of random boxes of five sizes, in pixels and as a share of the box's side:

# %%
s16, draw = np.float32(1 / 16), np.random.default_rng(1)           # its own generator: later cells keep theirs
print(f"{'box side (px)':>14} {'mean move (px)':>15} {'largest (px)':>13} {'mean move / side':>17}")
for side in (16, 32, 64, 128, 256):
    x1y1 = draw.integers(0, 400, (2000, 2)).astype(np.float32)
    corners = np.concatenate([x1y1, x1y1 + side - 1], axis=1)
    moved = np.abs(round_half_away(corners * s16) / s16 - corners)
    print(f"{side:>14} {moved.mean():>15.2f} {moved.max():>13.0f} {moved.mean() / side:>17.1%}")

# %% [markdown]
# A corner moves about 4 pixels on average and 8 at most, whatever the box's size: a rounding error of a quarter of
# the side for a 16-pixel box, under 2% for a 256-pixel one (the last column). This is one reason a stride-16
# detector struggles with small objects (lesson 20 meets it again in the RPN's anchors), and why later layers
# (RoIAlign, in Mask R-CNN) stop rounding.
#
# **The paper's convention.** Sec. 2.1 writes a RoI as a four-tuple $(r, c, h, w)$: its top-left corner at row $r$,
# column $c$, and its height $h$ and width $w$. The code (and this package) uses corners $(x_1, y_1, x_2, y_2)$,
# inclusive: $x_1 = c$, $y_1 = r$, $x_2 = c + w - 1$, $y_2 = r + h - 1$.

# %%
r, c, h, w = 16, 40, 80, 96                                         # the paper's tuple
x1, y1, x2, y2 = c, r, c + w - 1, r + h - 1
print(f"(r, c, h, w) = {(r, c, h, w)}  ->  (x1, y1, x2, y2) = {(x1, y1, x2, y2)}  ->  back: "
      f"{(y1, x1, y2 - y1 + 1, x2 - x1 + 1)}")

# %% [markdown]
# ## 2. The grid of bins
#
# With the window `roi_h × roi_w` cells and an output grid of `H × W` (7 × 7 for VGG16), each bin is
# `bin_h = roi_h / H` cells tall. Bin `p` covers rows
#
# $$ \big[\ \lfloor p \cdot \text{bin}_h \rfloor,\ \lceil (p+1)\cdot \text{bin}_h \rceil\ \big) $$
#
# counted from the window's top, then shifted by `start_h` and clipped to the map. Flooring the start and ceiling
# the end means neighbouring bins *overlap* whenever a bin boundary falls inside a cell, and a window smaller than
# the grid simply repeats cells. Let us print the row ranges for a 10-row and a 5-row window pooled into 7 bins:

# %%
for rows in (10, 5):
    b = roi_bins(np.array([[0, 0, 0, 0, rows - 1]], np.float32), (32, 32), (7, 7), spatial_scale=1.0,
                 dtype=np.float32)
    ranges = [f"[{int(s)},{int(e)})" for s, e in zip(b.hstart[0], b.hend[0])]
    print(f"{rows:2d} rows -> 7 bins:", " ".join(ranges))

# %% [markdown]
# **Float32 bin edges.** The original layer computes `bin_h` and the products `(p+1) * bin_h` in the feature map's
# precision, float32. Mathematically `ceil(H * (roi_h / H))` is `roi_h`, so the last bin should end exactly at the
# window's edge. In floating point the product can come out a hair above `roi_h` and the ceiling then adds one more
# row. Which sizes do that depends on the precision — so a float64 implementation is *not* a more accurate version of
# the original, it is a different one. Counting over window sizes 1..199:

# %%
def overshooting_sizes(pooled, dtype):
    """Window sizes whose last bin ends one cell past the window when computed in `dtype`."""
    t = np.dtype(dtype).type
    return [n for n in range(1, 200) if np.ceil(t(pooled) * (t(n) / t(pooled))) > n]


for pooled in (6, 7):
    exact = [n for n in range(1, 200) if -(-Fraction(pooled) * Fraction(n, pooled) // 1) > n]
    print(f"pooled {pooled}: float32 {overshooting_sizes(pooled, np.float32)}, "
          f"float64 {overshooting_sizes(pooled, np.float64)}, exact {exact}")

# %% [markdown]
# ## 3. Max per bin: a loop version to read
#
# The package keeps loop versions of its algorithms beside the fast ones, for reading and as the tests' oracle:
# `minircnn/functional/naive.py`. Here is its RoI pooling forward, written with loops over RoIs and bins (the max
# over channels is one NumPy call, so it finishes in reasonable time). It is slow reference code; the package's
# `roi_pool_forward` is the real one. It also records the *argmax*: the flat index `h * W + w` of the winning cell
# in its channel plane, which the backward pass needs (lesson 03). On ties the first cell in row-major order wins,
# like the original's strict `>`. (`_c_round` is C's rounding of section 1, the same as `round_half_away`.)

# %%
print(inspect.getsource(naive.roi_pool_forward_naive))

# %% [markdown]
# Now the same on a VGG16-sized problem — a conv5 map of a 600 × 800 image (512 × 38 × 50) and random boxes, some
# of them reaching past the image — with the package, and a bit-for-bit comparison:

# %%
n_rois, channels = (32, 64) if FAST else (256, 512)
feat = rng.standard_normal((1, channels, 38, 50)).astype(np.float32)
x1, y1 = rng.uniform(-50, 780, n_rois), rng.uniform(-50, 580, n_rois)
rois = np.stack([np.zeros(n_rois), x1, y1, x1 + rng.uniform(10, 400, n_rois), y1 + rng.uniform(10, 300, n_rois)],
                axis=1).astype(np.float32)

y_loop, cache_loop = naive.roi_pool_forward_naive(feat, rois, (7, 7), 1 / 16)
y_pkg, cache = F.roi_pool_forward(feat, rois, output_size=(7, 7), spatial_scale=1 / 16)
print("outputs identical bit for bit:", np.array_equal(y_loop.view(np.int32), y_pkg.view(np.int32)))
print("argmax identical:             ", np.array_equal(cache_loop.argmax, cache.argmax))

repeat = 1 if FAST else 3
t_loop = best_time(lambda: naive.roi_pool_forward_naive(feat, rois, (7, 7), 1 / 16), repeat)
t_pkg = best_time(lambda: F.roi_pool_forward(feat, rois, output_size=(7, 7), spatial_scale=1 / 16), repeat)
print(f"{n_rois} RoIs x {channels} channels, 7x7: loops {t_loop * 1e3:.0f} ms, "
      f"package {t_pkg * 1e3:.0f} ms ({t_loop / t_pkg:.1f}x)")

# %% [markdown]
# The package never loops over RoIs, channels or pixels. Many bins of many RoIs have the same size, so it computes,
# once per distinct bin size, the maximum of *every* window of that size on the map (a table), and reads each bin's
# answer from its table at the bin's top-left corner (`minircnn/functional/_roi_pool_cpu.py` explains the details).
#
# On a GPU the package runs a CUDA kernel instead, one thread per output value:

# %%
if gpu_available():
    from minircnn.backend import asnumpy, get_xp
    cp = get_xp("gpu")
    feat_gpu, rois_gpu = cp.asarray(feat), cp.asarray(rois)

    def gpu_forward():
        F.roi_pool_forward(feat_gpu, rois_gpu, output_size=(7, 7), spatial_scale=1 / 16)
        cp.cuda.Device().synchronize()

    gpu_forward()                                                # the first call compiles the kernel
    y_gpu, cache_gpu = F.roi_pool_forward(feat_gpu, rois_gpu, output_size=(7, 7), spatial_scale=1 / 16)
    print("GPU output identical to the CPU's:", np.array_equal(asnumpy(y_gpu), y_pkg),
          "argmax identical:", np.array_equal(asnumpy(cache_gpu.argmax), cache.argmax))
    print(f"CUDA kernel: {best_time(gpu_forward, 5) * 1e3:.2f} ms")
else:
    print("No CUDA GPU here (minircnn.backend.gpu_available() is False): skipping the CuPy kernel timing.")

# %% [markdown]
# ## 4. A picture: bins over a feature map
#
# To see the grid, we need a map we can read. We draw an image of the built-in dataset and stand in for conv5 with
# the image's brightness averaged over 16 × 16 blocks (a "feature map" of stride 16). Left: the image and a box.
# Middle: the map, the box's rounded window (white) and its 7 × 7 bins, with each bin's winning cell marked. Right:
# the pooled 7 × 7 output. Then a small box, whose 7 × 7 bins must reuse cells.

# %%
scene = render_shapes_image(np.random.default_rng([0, 0, 3]))
grey = scene.image.mean(axis=2, dtype=np.float32)
hc, wc = grey.shape[0] // 16, grey.shape[1] // 16
fmap = grey[:hc * 16, :wc * 16].reshape(hc, 16, wc, 16).mean(axis=(1, 3))[None, None]   # (1, 1, hc, wc)
obj = scene.boxes[np.argmax((scene.boxes[:, 2] - scene.boxes[:, 0]) * (scene.boxes[:, 3] - scene.boxes[:, 1]))]
big = np.concatenate([[0], obj]).astype(np.float32)[None]
small = np.array([[0, 40, 40, 100, 90]], dtype=np.float32)


def draw_bins(ax, rois_one, pooled=7):
    """The RoI's rounded window and its bins on the map, with each bin's argmax marked."""
    b = roi_bins(rois_one, fmap.shape[2:], (pooled, pooled), 1 / 16, dtype=np.float32)
    _, c = F.roi_pool_forward(fmap, rois_one, output_size=(pooled, pooled), spatial_scale=1 / 16)
    ax.imshow(fmap[0, 0], cmap="viridis")
    ax.add_patch(Rectangle((b.start_w[0] - 0.5, b.start_h[0] - 0.5), b.end_w[0] - b.start_w[0] + 1,
                           b.end_h[0] - b.start_h[0] + 1, fill=False, edgecolor="white", linewidth=3))
    colours = plt.cm.tab10(np.arange(pooled * pooled) % 10)
    for i in range(pooled):
        for j in range(pooled):
            hs, he, ws, we = b.hstart[0, i], b.hend[0, i], b.wstart[0, j], b.wend[0, j]
            # shrink each bin's outline a little, so that overlapping bins stay visible side by side
            ax.add_patch(Rectangle((ws - 0.42, hs - 0.42), we - ws - 0.16, he - hs - 0.16, fill=False,
                                   edgecolor=colours[i * pooled + j], linewidth=1))
    h_at, w_at = np.divmod(c.argmax[0, 0].ravel(), fmap.shape[3])
    ax.plot(w_at, h_at, "r.", markersize=6)


fig, axes = plt.subplots(2, 3, figsize=(13, 8))
for row, r1 in zip(axes, (big, small)):
    row[0].imshow(scene.image)
    x1_, y1_, x2_, y2_ = r1[0, 1:]
    row[0].add_patch(Rectangle((x1_ - 0.5, y1_ - 0.5), x2_ - x1_ + 1, y2_ - y1_ + 1, fill=False, edgecolor="w",
                               linewidth=2))
    row[0].set_title(f"box {r1[0, 1:].astype(int).tolist()} px")
    draw_bins(row[1], r1)
    row[1].set_title("map (1/16), window and 7x7 bins; red: argmax")
    pooled_out, _ = F.roi_pool_forward(fmap, r1, output_size=(7, 7), spatial_scale=1 / 16)
    row[2].imshow(pooled_out[0, 0], cmap="viridis", vmin=fmap.min(), vmax=fmap.max())
    row[2].set_title("RoI-pooled 7x7")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. SPPnet's corner mapping, beside the original layer's rounding
#
# SPPnet (He et al., 2014, appendix) maps each corner of a window to the feature-map cell whose receptive field is
# centred nearest to it. For its networks that works out to `x' = floor(x / S) + 1` for the left and top edges and
# `x' = ceil(x / S) - 1` for the right and bottom edges, with `S = 16`: the left edge is pushed right and the right
# edge pulled left. Fast R-CNN's layer rounds `x / S` to the nearest cell instead. The SPPnet window is therefore
# usually smaller, and for small boxes it can come out empty (right edge left of the left edge):

# %%
def sppnet_corners(boxes, stride=16):
    """SPPnet's mapping of (x1, y1, x2, y2) pixel boxes to inclusive feature-map cells."""
    left_top = np.floor(boxes[:, :2] / stride) + 1
    right_bottom = np.ceil(boxes[:, 2:] / stride) - 1
    return np.concatenate([left_top, right_bottom], axis=1).astype(int)


def fast_rcnn_corners(boxes, stride=16):
    return round_half_away(boxes.astype(np.float32) * np.float32(1 / stride)).astype(int)


examples = np.array([[0, 0, 63, 63], [40, 8, 200, 120], [100, 100, 120, 116], [20, 20, 29, 29]], dtype=np.float32)
print("box (px)               Fast R-CNN cells     SPPnet cells")
for b_, fr, sp in zip(examples, fast_rcnn_corners(examples), sppnet_corners(examples)):
    print(f"{str(b_.astype(int).tolist()):22s} {str(fr.tolist()):20s} {sp.tolist()}")

many = rng.uniform(0, 500, (10000, 2))
many = np.concatenate([many, many + rng.uniform(8, 300, (10000, 2))], axis=1).astype(np.float32)
fr, sp = fast_rcnn_corners(many), sppnet_corners(many)
print(f"over {len(many)} random boxes: mean window width {np.mean(fr[:, 2] - fr[:, 0] + 1):.2f} cells "
      f"(Fast R-CNN) vs {np.mean(sp[:, 2] - sp[:, 0] + 1):.2f} (SPPnet); "
      f"empty SPPnet windows: {np.mean((sp[:, 2] < sp[:, 0]) | (sp[:, 3] < sp[:, 1])):.1%}")

# %% [markdown]
# To pool with SPPnet's windows we can reuse the package: give it the windows already in cell coordinates, with
# `spatial_scale = 1` (whole numbers round to themselves; an empty window becomes its one start cell, as for any
# malformed RoI). How much do the pooled features change?

# %%
boxes = many[:n_rois]
rois_fr = np.concatenate([np.zeros((n_rois, 1)), boxes], axis=1).astype(np.float32)
rois_sp = np.concatenate([np.zeros((n_rois, 1)), sppnet_corners(boxes)], axis=1).astype(np.float32)
y_fr, _ = F.roi_pool_forward(feat, rois_fr, output_size=(7, 7), spatial_scale=1 / 16)
y_sp, _ = F.roi_pool_forward(feat, rois_sp, output_size=(7, 7), spatial_scale=1.0)
differ = y_fr != y_sp
print(f"RoIs whose pooled features change: {np.mean(differ.any(axis=(1, 2, 3))):.0%}; "
      f"pooled values that change: {np.mean(differ):.1%}")

# %% [markdown]
# ## 6. SPP = several RoI-pooling levels, concatenated
#
# SPPnet pools each window at several grid sizes and concatenates the results; its detection network used levels
# 1 × 1, 2 × 2, 3 × 3 and 6 × 6, i.e. `1 + 4 + 9 + 36 = 50` bins per channel. Fast R-CNN keeps one level (7 × 7).
# With the package, a pyramid is a list comprehension:

# %%
levels = (1, 2, 3, 6)
parts = [F.roi_pool_forward(feat, rois, output_size=(k, k), spatial_scale=1 / 16)[0] for k in levels]
spp = np.concatenate([p.reshape(n_rois, channels, -1) for p in parts], axis=2)      # (R, C, 50)
print("bins per channel:", spp.shape[2], "-> feature length", spp.shape[1] * spp.shape[2])

# The 1x1 level is the max over the whole window (clipped to the map): check it for every RoI.
b = roi_bins(rois, feat.shape[2:], (1, 1), 1 / 16, dtype=np.float32)
whole = np.stack([feat[0, :, b.hstart[r, 0]:b.hend[r, 0], b.wstart[r, 0]:b.wend[r, 0]].max(axis=(1, 2))
                  if b.hend[r, 0] > b.hstart[r, 0] and b.wend[r, 0] > b.wstart[r, 0] else np.zeros(channels)
                  for r in range(n_rois)])
print("level 1 == max over the whole window:", np.array_equal(parts[0][:, :, 0, 0], whole))

# %% [markdown]
# Picture: the four levels' grids over the same box.

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
for ax, k in zip(axes, levels):
    draw_bins(ax, big, pooled=k)
    ax.set_title(f"level {k}x{k}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Try this next
#
# * Pool one RoI at `spatial_scale = 1/16` and at `1/8` of a map twice the size. Do the windows cover the same
#   pixels? Where does rounding make them differ?
# * Find a box whose window leaves the map (say `x2` beyond the image) and print its bins: which ones are empty, and
#   what does the output hold there? (docs/reference.md §14.4.)
# * Run `naive.roi_pool_forward_naive` on float64 features with a window of 29 rows: which bin changes compared
#   with float32?
# * Write the backward of the SPP pyramid: it is the sum of the four levels' `roi_pool_backward` results. Check it
#   with `minircnn.gradcheck.check_backward` (lesson 03 shows how).
