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
# # Lesson 18 — Where the test time goes, before and after truncated SVD
#
# **The claim (paper Sec. 3.1, Fig. 2).** In image classification the conv layers take most of the forward time;
# the fc layers run once per image. In detection they run once per *RoI*, about 2000 per image, and for VGG16 fc6
# and fc7 take nearly half of the forward pass: Fig. 2 splits one test image's 320 ms on a K40 into 146 ms of conv
# layers, 17 ms of RoI pooling, 122 ms for fc6, 20 ms for fc7 and 11 ms for the rest. After a truncated SVD of fc6
# (rank 1024) and fc7 (rank 256), fc6 + fc7 take 41 ms instead of 142 ms (3.5x less), and the whole forward 223 ms:
# more than 30% saved.
#
# Lesson 10 builds the compression (`minircnn/inference/svd.py`) and measures what it costs in mAP; this lesson
# measures what it saves in time. First the count of multiply-adds per RoI, then an fc layer applied RoI by RoI in a
# loop against the package's layer on all RoIs at once, then one test-time forward split into the stages of Fig. 2 —
# for the tiny detector, and at VGG16's sizes — before and after the compression.
#
# Code: `minircnn/inference/svd.py` (`compress`, `factor_layers`), `minircnn/models/fast_rcnn.py`. Tests:
# `tests/inference/test_svd.py`. Benchmark: `benchmarks/bench_svd.py` (fc6 + fc7 of VGG16's size with more repetitions).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.data import image_pyramid, pyramid_rois
from minircnn.inference.svd import compress, factor_layers
from minircnn.lab.experiments import FAST, lesson_dataset, test_split_of, train_detector
from minircnn.lab.timing import best_time
from minircnn.models import build_model, softmax
from minircnn.threads import set_blas_threads
from minircnn.training.checkpoint import load_checkpoint

set_blas_threads(1)            # one BLAS thread: steadier timings on a busy machine (lesson 06)
rng = np.random.default_rng(0)
root = lesson_dataset()        # data/shapes (generated on first use); a few images with MINIRCNN_FAST
run = train_detector("default", root)    # the default detector of runs/lessons/default (trained once, reused)
ckpt = load_checkpoint(run.checkpoint)
config = ckpt.config
W6, W7 = (ckpt.model[name].params["weight"] for name in ("fc6", "fc7"))
PAPER_LIKE = {"fc6": W6.shape[0] // 4, "fc7": W7.shape[0] // 16}     # the paper's fractions of the outputs (lesson 10)
test_set, proposals = test_split_of(run)      # the test images and their proposals, as the run evaluated them
shown = int(np.argmax([len(p) for p in proposals]))           # the test image with the most proposals
blob, factors = image_pyramid(test_set.load_image(shown), (config.test_scale,), config.test_max_size,
                              ckpt.preprocessing)
rois = pyramid_rois(proposals[shown], factors)                # one level: (0, x1, y1, x2, y2) in blob pixels
net = ckpt.model
pooled = net.roi_pool5.forward(net.backbone.forward(blob, train=False), rois, train=False).reshape(len(rois), -1)
print(f"default detector: fc6 weight {W6.shape} (outputs x inputs), fc7 weight {W7.shape}; paper-like ranks "
      f"{PAPER_LIKE}")
print(f"test image {test_set.ids[shown]}: {len(rois)} proposals, blob {blob.shape}; fc6 inputs {pooled.shape}")

# %% [markdown]
# ## 1. The math: what an fc layer costs per RoI
#
# An fc layer computes `y = W x + b` for every RoI, with `W` of shape u × v (u outputs, v inputs): u·v multiply-adds
# per RoI, and as many weights. Truncated SVD at rank t replaces it by two layers, `z = (Σ_t V_tᵀ) x` (t × v) and
# `y = U_t z + b` (u × t) — lesson 10 derives them — which cost t(u + v) multiply-adds per RoI. The compression saves
# work whenever t < uv / (u + v), the break-even rank, and the saving is the ratio
#
# $$ \frac{uv}{t\,(u + v)} . $$
#
# On R RoIs at once the layer is one matrix product, (R × v) times (v × u): 2Ruv floating-point operations, in
# proportion to the number of RoIs. Here are the counts for our fc layers at the paper-like ranks and for VGG16's
# with the paper's ranks:

# %%
def params(u, v, t=None):
    return u * v if t is None else t * (u + v)


shapes = {"tiny fc6": (W6.shape, PAPER_LIKE["fc6"]), "tiny fc7": (W7.shape, PAPER_LIKE["fc7"]),
          "VGG16 fc6": ((4096, 25088), 1024), "VGG16 fc7": ((4096, 4096), 256)}
print(f"{'layer':10s} {'u x v':>13s} {'rank t':>7s} {'uv':>12s} {'t(u+v)':>12s} {'ratio':>6s} {'break-even t':>13s}")
for name, ((u, v), rank) in shapes.items():
    print(f"{name:10s} {f'{u}x{v}':>13s} {rank:7d} {params(u, v):12,d} {params(u, v, rank):12,d} "
          f"{params(u, v) / params(u, v, rank):5.1f}x {u * v // (u + v):13d}")

# %% [markdown]
# ## 2. One RoI at a time, or all at once
#
# "Once per RoI" can be taken literally: a loop over the RoIs, one matrix-vector product each. That is the loop
# version below, for fc6 before the compression and for the pair `fc6_L`, `fc6_U` after it (`compress`). The
# package's layers take all RoIs at once, one matrix product per layer. Both give the same numbers; the times say
# what batching the RoIs is worth, and whether the ratio of multiply-adds shows up as a ratio of times either way.

# %%
def fc_by_hand(layers, x):
    """The layers applied RoI by RoI: one matrix-vector product W x_r + b per layer and RoI (no ReLU between)."""
    out = []
    for row in x:
        for layer in layers:
            bias = layer.params.get("bias")
            row = layer.params["weight"] @ row + (0 if bias is None else bias)
        out.append(row)
    return np.stack(out)


small = compress(load_checkpoint(run.checkpoint).model, {"fc6": PAPER_LIKE["fc6"]})
repeat = 2 if FAST else 5
print(f"fc6 on the {len(pooled)} RoIs of test image {test_set.ids[shown]}:")
for label, layers in (("before SVD", [net.fc6]),
                      (f"after SVD (rank {PAPER_LIKE['fc6']})", [small.fc6_L, small.fc6_U])):
    def batched(layers=layers):
        x = pooled
        for layer in layers:
            x = layer.forward(x, train=False)
        return x
    loop = fc_by_hand(layers, pooled)
    assert np.allclose(loop, batched(), rtol=1e-4, atol=1e-4)
    loop_s = best_time(lambda layers=layers: fc_by_hand(layers, pooled), repeat)
    batched_s = best_time(batched, repeat)
    print(f"  {label:24s}: loop over RoIs {loop_s * 1e3:7.1f} ms, all at once {batched_s * 1e3:6.1f} ms "
          f"({loop_s / batched_s:.0f}x); same outputs")
print(f"fc6 weights in float32: tiny {W6.nbytes / 2**20:.0f} MiB, VGG16 {4096 * 25088 * 4 / 2**20:.0f} MiB")

# %% [markdown]
# Read the two columns of times. All at once, one matrix product passes over the weights once for all RoIs, and BLAS can
# keep blocks of them in the processor's caches; the loop passes over the whole weight matrix once per RoI, plus a
# Python call each time. How much that is worth depends on the number of RoIs and on the size of the weights (printed
# above for fc6). And compare the rows: in each column, set the factor by which the SVD cuts the time beside the ratio
# of multiply-adds of section 1. The next two sections time the whole forward, stage by stage.
#
# ## 3. Where the time goes: the tiny detector, one image, all its proposals
#
# We split one test-time forward (what `minircnn.inference.im_detect` runs) into the stages of the paper's Fig. 2:
# the conv layers, `roi_pool5`, fc6 (with its ReLU and dropout, the identity at test time), fc7 (likewise) and the
# rest — the two output layers and the softmax. The image is the test image of the first cell; each stage is timed a
# few times and the fastest run of each counts (the one least disturbed by other programs).

# %%
def stage_of(name):
    """The Fig. 2 stage a trunk layer belongs to: fc6, fc6_L, fc6_U, relu6, drop6 -> 'fc6' (likewise fc7)."""
    return "fc" + name.split("_")[0][-1]


def stage_times(model, blob, rois, repeat=3):
    """Seconds of each stage of one test-time forward (fastest of ``repeat`` runs, stage by stage), and the
    class probabilities, checked against ``model.predict``."""
    best = {}
    for _ in range(repeat):
        seconds = {}
        t0 = time.perf_counter()
        x = model.backbone.forward(blob, train=False)
        t1 = time.perf_counter()
        seconds["convs"] = t1 - t0
        x = model.roi_pool5.forward(x, rois, train=False)
        seconds["roi_pool5"] = time.perf_counter() - t1
        for layer in model.trunk[1:]:
            t1 = time.perf_counter()
            x = layer.forward(x, train=False)
            seconds[stage_of(layer.name)] = seconds.get(stage_of(layer.name), 0) + time.perf_counter() - t1
        t1 = time.perf_counter()
        probs = softmax(model.cls_score.forward(x, train=False))
        model.bbox_pred.forward(x, train=False)
        seconds["other"] = time.perf_counter() - t1
        best = {k: min(v, best.get(k, np.inf)) for k, v in seconds.items()}
    return best, probs


repeat = 2 if FAST else 5
tiny = {}
for label, ranks in (("before SVD", {}), ("after SVD", PAPER_LIKE)):
    model = compress(load_checkpoint(run.checkpoint).model, ranks)
    tiny[label], probs = stage_times(model, blob, rois, repeat)
    reference, _ = model.predict(blob, rois)
    assert np.allclose(probs, reference, atol=1e-5)         # the staged pass is the model's own forward
print("ranks after SVD:", PAPER_LIKE)


def print_breakdown(times):
    before, after = times["before SVD"], times["after SVD"]
    print(f"{'stage':10s} {'before (ms)':>12s} {'share':>6s} {'after (ms)':>11s} {'share':>6s}")
    for stage in before:
        print(f"{stage:10s} {before[stage] * 1e3:12.1f} {before[stage] / sum(before.values()):6.1%} "
              f"{after[stage] * 1e3:11.1f} {after[stage] / sum(after.values()):6.1%}")
    fc = [sum(t[k] for k in ("fc6", "fc7")) for t in (before, after)]
    print(f"{'total':10s} {sum(before.values()) * 1e3:12.1f} {'':6s} {sum(after.values()) * 1e3:11.1f}")
    print(f"fc6 + fc7: {fc[0] / fc[1]:.1f}x faster; whole forward {sum(before.values()) / sum(after.values()):.2f}x "
          f"faster (time {sum(after.values()) / sum(before.values()) - 1:+.0%})")


print_breakdown(tiny)

# %% [markdown]
# ## 4. The same at VGG16's sizes
#
# Our tiny detector is not VGG16: its fc layers are far smaller (the table of section 1 has both shapes). To see the
# paper's situation we build VGG16 itself (random weights: the time of a forward pass does not depend on the values),
# feed it one image blob of 600 × 800 and 2000 random boxes, and time the same stages before and after factoring fc6 and
# fc7 at the paper's ranks, 1024 and 256. Computing the real SVD of a 4096 × 25088 matrix is slow on a CPU, so after SVD
# the two pairs of layers get random values of the right shapes (`factor_layers`, the structure `compress` builds):
# again only the shapes decide the time.
#
# VGG16's parameters alone take over half a gigabyte of memory (printed below). With `MINIRCNN_FAST` everything
# shrinks (a VGG16 with few channels and fc layers of 256, a 96 × 128 image, 200 RoIs, ranks 64 and 16): the numbers
# then say nothing about VGG16.

# %%
if FAST:
    vgg = build_model("vgg16", 21, fc_width=256, channels=(8, 8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32))
    height, width, n_rois, vgg_ranks = 96, 128, 200, {"fc6": 64, "fc7": 16}
else:
    vgg = build_model("vgg16", 21)                      # He-initialised
    height, width, n_rois, vgg_ranks = 600, 800, 2000, {"fc6": 1024, "fc7": 256}
image = rng.normal(0, 50, (1, 3, height, width)).astype(np.float32)
corner = rng.uniform(0, 1, (n_rois, 2)) * (width, height)
side = rng.uniform(32, 0.6 * min(width, height), (n_rois, 2))     # proposal-like sizes, clipped to the image
boxes = np.concatenate([corner, np.minimum(corner + side, (width - 1, height - 1))], axis=1)
vgg_rois = np.concatenate([np.zeros((n_rois, 1)), boxes], axis=1).astype(np.float32)

print(f"VGG16{' (narrow, FAST)' if FAST else ''}: {vgg.num_parameters():,} parameters, "
      f"{vgg.num_parameters() * 4 / 2**20:.0f} MiB as float32")
vgg_times = {"before SVD": stage_times(vgg, image, vgg_rois, repeat=1 if FAST else 2)[0]}
factor_layers(vgg, vgg_ranks)
for name in vgg_ranks:
    for layer in (vgg[f"{name}_L"], vgg[f"{name}_U"]):
        for key, value in layer.params.items():
            layer.params[key] = (rng.standard_normal(value.shape, dtype=np.float32) * 0.01)
vgg_times["after SVD"] = stage_times(vgg, image, vgg_rois, repeat=1 if FAST else 2)[0]
del vgg
print(f"VGG16{' (narrow, FAST)' if FAST else ''}, {height}x{width} image, {n_rois} RoIs, ranks {vgg_ranks}, "
      "one BLAS thread:")
print_breakdown(vgg_times)
PAPER_FIG2 = {"before SVD": {"convs": 146, "roi_pool5": 17, "fc6": 122, "fc7": 20, "other": 11},
              "after SVD": {"convs": 143, "roi_pool5": 17, "fc6": 37, "fc7": 4, "other": 11}}   # ms, K40
print("paper, Fig. 2 (one K40 GPU): 320 -> 223 ms; fc6 + fc7 142 -> 41 ms (3.5x)")

# %%
STAGES = ("convs", "roi_pool5", "fc6", "fc7", "other")
cases = [("tiny detector, ms", tiny, 1e3), (f"VGG16{' (narrow)' if FAST else ''}, ms", vgg_times, 1e3),
         ("paper, VGG16 on a K40, ms", PAPER_FIG2, 1)]
fig, axes = plt.subplots(1, 3, figsize=(16, 3.2))
for ax, (title, times, unit) in zip(axes, cases):
    for row, label in enumerate(("before SVD", "after SVD")):
        left = 0
        for k, stage in enumerate(STAGES):
            value = times[label][stage] * unit
            ax.barh(row, value, left=left, color=f"C{k}", label=stage if row == 0 else None)
            share = value / sum(times[label].values()) / unit
            if share > 0.08:
                ax.text(left + value / 2, row, f"{share:.0%}", ha="center", va="center", fontsize=8)
            left += value
    ax.set_yticks([0, 1], ["before SVD", "after SVD"])
    ax.invert_yaxis()
    ax.set_title(title)
axes[0].legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the bars as the paper's Fig. 2 turned on its side. How the shares split on a CPU is not how they split on a
# GPU (a K40 running Caffe does convs and matrix products at other relative speeds than NumPy on one CPU thread),
# but the mechanism is the same one: fc6 and fc7 cost a fixed amount *per RoI*, so with thousands of RoIs they can
# weigh as much as a whole image's conv layers, or more, and the SVD shrinks exactly that part. Counting alone
# predicts a gain in fc6 + fc7 of the ratio of multiply-adds, uv against t(u + v) (table in section 1); the printed
# gains fall short of it, as not all of a layer's time is multiply-adds (reading its inputs, writing its outputs,
# fixed costs per call). What the gain is worth for the whole forward depends on how big a share the fc layers had to
# begin with.
#
# ## Try this next
#
# * Set `set_blas_threads(0)` (all cores) and redo section 4: does the share of fc6 + fc7 change?
# * Time fc6 alone on 1, 10, 100 and 2000 rows (`net.fc6.forward`): from how many RoIs on is the time per RoI
#   constant, and what does that say about section 2's loop?
# * Choose ranks that give the same multiply-adds as the paper-like ones but split them differently between fc6 and
#   fc7: does the measured time follow the table of section 1?
# * `python benchmarks/bench_svd.py --factors random` times fc6 + fc7 of VGG16 size with more repetitions.
