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
# # Lesson 19 — What VGG16 costs: parameters, work, time and memory
#
# **The claim (paper Sec. 4.1, Fig. 2 and Table 4).** Fine-tuning VGG16 (model L) for Fast R-CNN takes 40,000 SGD
# iterations of two images each: 9.5 hours on one Nvidia K40. Testing takes 0.32 s per image of network time with
# about 2,000 proposals, of which fc6 and fc7 take nearly half (Fig. 2), and the original needed about 11 GB of GPU
# memory for VGG16 (docs/reference.md §13). The paper trains on a GPU; what would the same run cost on this CPU, and
# which part of the network would the time go to?
#
# Lesson 16 sets up the real run (the preset, VOC 2007, the proposals, the weights) and runs it at a toy scale. This
# lesson estimates the real one from measurements. First VGG16's parameters and forward work, layer by layer,
# counted by hand from the architecture and checked against the package's layers; then the conv stack timed on a few
# small images and fitted as `fixed + per_pixel × pixels`; then the rest of a training step (RoI pooling, fc6 and
# fc7 forward and backward, the solver's update) measured at full size; and finally the estimate for a training step,
# the 40,000 iterations, a test image and the memory, against the paper's K40.
#
# Code: `minircnn/models/backbones.py`, `minircnn/models/fast_rcnn.py`, `minircnn/nn/` (the layers),
# `minircnn/training/optim.py` (`SGD`), `minircnn/training/config.py` (the `vgg16_voc07` preset). Tests:
# `tests/models/test_backbones.py`, `tests/nn/test_modules.py`, `tests/training/test_optim.py`. Benchmark:
# `benchmarks/bench_conv_stack.py`.

# %%
import os
import re
import tracemalloc
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minircnn
from minircnn.data import VOC_CLASS_NAMES
from minircnn.lab.experiments import FAST
from minircnn.lab.timing import best_time
from minircnn.models import VGG16, build_backbone, build_model
from minircnn.nn import Linear, Network, ReLU, RoIPool, Sequential, plan_backward
from minircnn.threads import set_blas_threads
from minircnn.training.config import get_preset
from minircnn.training.optim import SGD

REPO = Path(minircnn.__file__).resolve().parents[1]
rng = np.random.default_rng(0)
vgg = get_preset("vgg16_voc07")                                      # the paper's settings (lesson 16)
model = build_model("vgg16", len(VOC_CLASS_NAMES) + 1, init=False)   # all-zero weights: nothing drawn, no memory
TEST_ROIS, VOC07_TEST = 2000, 4952           # proposals per test image (Fig. 2); images in VOC 2007 test
print(f"preset vgg16_voc07: {vgg.iters} iterations of {vgg.ims_per_batch} images and {vgg.batch_size} RoIs, "
      f"shorter side {vgg.scales[0]}, {vgg.blas_threads} BLAS thread(s)")

# %% [markdown]
# ## 1. The model, layer by layer
#
# A 3 × 3 convolution with padding 1 from c_in to c_out channels keeps the map's size H × W and has
# c_out · c_in · 9 weights and c_out biases. Each of its c_out · H · W outputs is a dot product of length c_in · 9,
# so its forward pass costs
#
# $$ 2 \cdot c_\text{in} \cdot 9 \cdot c_\text{out} \cdot H \cdot W \ \text{FLOP} $$
#
# (one multiply-add = 2 FLOP). The four 2 × 2 max pools halve H and W, rounding up (Caffe's ceil rule), so a
# 600 × 800 image gives a 38 × 50 conv5_3 map. An fc layer with u outputs and v inputs has u · v + u parameters and
# costs 2 · R · u · v FLOP on R RoIs. A loop version, from the architecture alone (VGG16 is configuration D of
# Simonyan and Zisserman: thirteen 3 × 3 convs in five blocks), for one test image at 600 × 800 with 2,000 proposals,
# the paper's Fig. 2 setting:

# %%
ARCHITECTURE = (("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
                ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
                ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), "pool",
                ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), "pool",
                ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512))
HEADS = (("fc6", 4096, 512 * 7 * 7), ("fc7", 4096, 4096), ("cls_score", 21, 4096), ("bbox_pred", 84, 4096))


def count_by_hand(h, w, rois):
    """{layer: (parameters, forward FLOP)} for every layer with parameters, from the architecture alone."""
    counts = {}
    for layer in ARCHITECTURE:
        if layer == "pool":
            h, w = -(-h // 2), -(-w // 2)                 # 2 x 2, stride 2, rounding up
            continue
        name, c_in, c_out = layer
        counts[name] = (c_out * c_in * 9 + c_out, 2 * c_in * 9 * c_out * h * w)
    for name, u, v in HEADS:                              # roi_pool5 gives 512 x 7 x 7 values per RoI
        counts[name] = (u * v + u, 2 * rois * u * v)
    return counts


by_hand = count_by_hand(600, 800, TEST_ROIS)
print(f"by hand: {sum(p for p, _ in by_hand.values()):,d} parameters, "
      f"{sum(f for _, f in by_hand.values()) / 1e9:.0f} GFLOP per test image")

# %% [markdown]
# `build_model("vgg16", 21, init=False)` builds the detector with all-zero weights (NumPy's zeros are not backed by
# memory until written, so this costs nothing). From its layers — each knows its weights and the shape of its output
# — the same table: for each layer with parameters, its weight shape, its share of the parameters, whether it
# trains, and the work of its forward pass, in GFLOP. The two counts must agree:

# %%
total = model.num_parameters()
table, shape = [], (1, 3, 600, 800)
for layer in model.backbone.layers:
    out = layer.output_shape(shape)
    if layer.params:      # each output value of a conv is a dot product of length in * k * k
        table.append((layer.name, layer.params["weight"].shape, layer.frozen, f"{out[1]}x{out[2]}x{out[3]}",
                      2 * layer.params["weight"][0].size * np.prod(out[1:])))
    shape = out
for layer in (model.fc6, model.fc7, model.cls_score, model.bbox_pred):
    table.append((layer.name, layer.params["weight"].shape, layer.frozen, f"{TEST_ROIS}x{layer.params['bias'].size}",
                  2 * TEST_ROIS * layer.params["weight"].size))
print(f"{'layer':10s} {'weight':>20s} {'parameters':>12s} {'share':>6s}  trains  {'output':>12s} {'GFLOP':>7s}")
for name, wshape, frozen, out, flops in table:
    n = sum(v.size for v in model[name].params.values())
    print(f"{name:10s} {str(wshape):>20s} {n:12,d} {n / total:6.1%}  {'no' if frozen else 'yes':>6s}  {out:>12s} "
          f"{flops / 1e9:7.1f}")
trainable = model.num_parameters(trainable_only=True)
conv_flops = sum(row[4] for row in table if row[0].startswith("conv"))
fc_flops = sum(row[4] for row in table if not row[0].startswith("conv"))
print(f"\n{total:,d} parameters ({total * 4 / 2**20:,.0f} MiB in float32), {trainable:,d} trainable; "
      f"fc6 alone holds {model.fc6.params['weight'].size / total:.0%}")
print(f"forward work per test image: convs {conv_flops / 1e9:.0f} GFLOP, fc layers on {TEST_ROIS} RoIs "
      f"{fc_flops / 1e9:.0f} GFLOP")
for name, wshape, frozen, out, flops in table:
    assert (sum(v.size for v in model[name].params.values()), flops) == by_hand[name], name
assert total == sum(p for p, _ in by_hand.values())
print("the loop version and the package's layers agree, layer by layer")

# %%
names = [row[0] for row in table]
fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
colours = ["grey" if row[2] else "tab:blue" for row in table]
axes[0].barh(names, [sum(v.size for v in model[n].params.values()) / 1e6 for n in names], color=colours)
axes[0].set_xlabel("parameters (millions)")
axes[0].set_title("where the parameters are (grey: frozen)")
axes[1].barh(names, [row[4] / 1e9 for row in table], color=colours)
axes[1].set_xlabel(f"GFLOP, forward, one 600x800 image with {TEST_ROIS} RoIs")
axes[1].set_title("where the work is")
axes[0].invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# The two pictures are nearly mirror images: the convs hold few parameters but do the work that grows with the
# image; fc6 holds most of the parameters and does work that grows with the number of RoIs. That is why the paper
# compresses fc6 and fc7 with a truncated SVD at test time (Sec. 3.1, `minircnn/inference/svd.py`, lessons 10 and
# 18): with 2,000 RoIs per image they take a large part of the test time (paper Fig. 2: 38.7% for fc6 alone before
# SVD).
#
# ## 2. The conv stack: time and memory against the image size
#
# One training step at the paper's scale does three kinds of work: the conv stack forward and backward on a blob of
# two images of about 600 × 800 (the backward stops at conv3_1, the first trainable layer, and computes no input
# gradient for it); RoI pooling and the fc layers on 128 RoIs; and the solver's update of the trainable parameters.
# The last two do not depend on the image size: section 3 measures them at full size. The first grows with the number
# of pixels, so we time the VGG16 conv stack on a few small images and extrapolate. A layer call also has costs that
# do not grow with the image (and the weight gradients take the same memory whatever the image), so we fit
# `cost = fixed + per_pixel × pixels` through the measurements rather than scaling one of them. We use the BLAS thread
# count the preset trains with.

# %%
set_blas_threads(vgg.blas_threads)
backbone = build_backbone(VGG16, rng=rng)           # the 13 convs with random weights (59 MB)
plan_backward(backbone.layers)                      # conv1_x, conv2_x frozen: the backward stops at conv3_1
sizes = [(64, 64), (96, 128)] if FAST else [(96, 96), (192, 256), (288, 384)]


def conv_forward_backward(image, dy):
    backbone.forward(image, train=True)
    backbone.backward(dy)


conv = {}      # (h, w) -> (forward seconds, forward + backward seconds, peak bytes of forward + backward)
for h, w in sizes:
    image = rng.normal(0, 50, (1, 3, h, w)).astype(np.float32)          # roughly the spread of BGR - mean
    dy = rng.standard_normal(backbone.output_shape(image.shape)).astype(np.float32)
    forward = best_time(lambda: backbone.forward(image, train=False), repeat=1 if FAST else 2)
    both = best_time(lambda: conv_forward_backward(image, dy), repeat=1 if FAST else 2)
    tracemalloc.start()                              # NumPy reports its allocations to tracemalloc
    conv_forward_backward(image, dy)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    conv[(h, w)] = (forward, both, peak)
    print(f"{h:3d} x {w:3d}: forward {forward:6.3f} s, forward + backward {both:6.3f} s, "
          f"peak memory {peak / 2**20:5.0f} MiB")

pixels = np.array([h * w for h, w in sizes], dtype=float)
fit = {name: np.polyfit(pixels, [conv[s][k] for s in sizes], 1)           # (per pixel, fixed)
       for k, name in enumerate(("forward", "forward + backward", "memory"))}
for name, (per_pixel, fixed) in fit.items():
    unit, scale = ("bytes", 1) if name == "memory" else ("us", 1e6)
    print(f"{name:18s}: {per_pixel * scale:8.2f} {unit} per pixel + {fixed * scale:12,.0f} {unit} fixed")


def extrapolate(name, n_pixels):
    per_pixel, fixed = fit[name]
    return fixed + per_pixel * n_pixels


# %% [markdown]
# The benchmark script `benchmarks/bench_conv_stack.py` times the same conv stack at 600 × 800 directly; here are the
# rows of the results file that matter (its header says how they were measured: two BLAS threads, so somewhat faster
# than our one thread on the same machine):

# %%
results = (REPO / "benchmarks" / "RESULTS.md").read_text()
bench = {}
for line in results.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) > 3 and cells[0].startswith(("conv stack", "fc6", "fc7", "roi_pool")):
        bench.setdefault((cells[0], cells[1]), float(cells[2]) / 1e3)       # first (newest) table: median, s
for key in (("conv stack fwd", "1x3x600x800"), ("conv stack fwd+bwd (conv3_1+)", "1x3x600x800"),
            ("roi_pool fwd", "2000 RoIs"), ("fc6 fwd (25088->4096)", "2000 rows"),
            ("fc7 fwd (4096->4096)", "2000 rows")):
    print(f"  {key[0]:30s} {key[1]:12s} {bench[key]:6.2f} s" if key in bench else f"  {key}: not in RESULTS.md")
print(f"  our extrapolation, one 600x800 image: forward {extrapolate('forward', 600 * 800):.2f} s, forward + "
      f"backward {extrapolate('forward + backward', 600 * 800):.2f} s")
bench_key = ("conv stack fwd+bwd (conv3_1+)", "1x3x600x800")
if bench_key in bench:
    print(f"  ours / benchmark: {extrapolate('forward + backward', 600 * 800) / bench[bench_key]:.1f}x")
devices = sorted(set(re.findall(r"^- device: (\w+)", results, flags=re.M)))      # the header of each layer table
print("devices with layer timings in RESULTS.md:", ", ".join(devices) or "none",
      "" if "GPU" in devices else "-- no GPU timings yet")


# %% [markdown]
# ## 3. The rest of a training step
#
# What a step does besides the conv stack: RoI pooling of 128 RoIs (64 per image) from the conv5_3 maps of two
# 600 × 800 images, fc6 and fc7 with their ReLUs forward and backward, the backward of the RoI pooling into the conv5_3
# maps, and the solver's update. We run the package's own layers (`RoIPool`, `Linear`, `ReLU`) and solver (`SGD`) at
# VGG16's sizes; the values of the weights do not change the time. The update is timed on fc6 and fc7 and scaled to
# all the trainable parameters (it makes a few passes over each parameter array, so its time grows with their number).
# The two output layers and the loss are left out: they are small (the table of section 1). With `MINIRCNN_FAST` the
# fc layers are 512 wide instead of 4096, and the numbers say nothing about VGG16.

# %%
FC_WIDTH = 512 if FAST else 4096
conv5_3 = rng.standard_normal((2, 512, 38, 50)).astype(np.float32)     # conv5_3 of two 600x800 images
corner = rng.uniform(0, 1, (128, 2)) * (800 - 32, 600 - 32)
boxes = np.concatenate([corner, np.minimum(corner + rng.uniform(32, 400, (128, 2)), (799, 599))], axis=1)
rois = np.concatenate([np.repeat([0.0, 1.0], 64)[:, None], boxes], axis=1).astype(np.float32)   # 64 per image
roi_pool5 = RoIPool("roi_pool5")
fcs = Sequential([Linear("fc6", 512 * 7 * 7, FC_WIDTH), ReLU("relu6"), Linear("fc7", FC_WIDTH, FC_WIDTH),
                  ReLU("relu7")])
for layer in fcs.layers:
    for value in layer.params.values():
        value[...] = 0.001                    # any value will do; writing them makes NumPy allocate the memory
solver = SGD(Network(fcs.layers).parameters(), base_lr=vgg.base_lr, momentum=vgg.momentum,
             weight_decay=vgg.weight_decay, gamma=vgg.gamma, stepsize=vgg.stepsize)
dy = rng.standard_normal((128, FC_WIDTH)).astype(np.float32)       # stands in for the heads' gradient


def roi_and_fc_forward_backward():
    pooled = roi_pool5.forward(conv5_3, rois, train=True)
    fcs.forward(pooled, train=True)
    return roi_pool5.backward(fcs.backward(dy))     # the gradient that flows on into conv5_3


repeat = 1 if FAST else 2
roi_fc = best_time(roi_and_fc_forward_backward, repeat)
update_fc = best_time(solver.step, repeat)           # every parameter has its gradient from the backward above
fc_parameters = sum(p.value.size for p in solver.params)
update = update_fc * trainable / fc_parameters
rest_of_step = roi_fc + update
pooled = roi_pool5.forward(conv5_3, rois, train=False)
fc_128 = best_time(lambda: fcs.forward(pooled, train=False), repeat)   # for the test estimate of section 4
print(f"RoI pooling + fc6, fc7 forward and backward, 128 RoIs: {roi_fc:.2f} s")
print(f"solver update: {update_fc:.2f} s for fc6 + fc7 ({fc_parameters / 1e6:.0f}M parameters) -> {update:.2f} s "
      f"for all {trainable / 1e6:.0f}M trainable ones")
print(f"the rest of a step: {rest_of_step:.2f} s; fc6 + fc7 forward alone, 128 RoIs: {fc_128:.2f} s")
del fcs, solver, pooled

# %% [markdown]
# ## 4. What the real run would cost
#
# The estimate for a training step: the conv stack on a two-image 600 × 800 blob (section 2), plus the rest of a step
# (section 3). For testing one image: the conv forward at 600 × 800, and the fc layers on 2,000 RoIs, scaled up from
# the 128 rows of section 3 (a matrix product's time grows in proportion to its rows; RoI pooling is left out). These
# are **estimates** from small measurements, not runs.

# %%
step_conv = extrapolate("forward + backward", 2 * 600 * 800)
train_step = step_conv + rest_of_step
test_conv, test_fc = extrapolate("forward", 600 * 800), fc_128 * TEST_ROIS / 128
test_image = test_conv + test_fc
K40_TRAIN_HOURS, K40_TEST_S, K40_TEST_SVD_S = 9.5, 0.32, 0.22      # paper Table 4, model L
print(f"{'':34s} {'this CPU (estimate)':>22s} {'paper, one K40':>16s}")
print(f"{'one training step (2 x 600x800)':34s} {train_step:20.1f} s {K40_TRAIN_HOURS * 3600 / vgg.iters:14.2f} s"
      f"   convs {step_conv / train_step:.0%} of it")
print(f"{'40k iterations':34s} {train_step * vgg.iters / 3600:20.0f} h {K40_TRAIN_HOURS:14.1f} h"
      f"   = {train_step * vgg.iters / 86400:.0f} days here")
print(f"{'test, one image, 2000 RoIs':34s} {test_image:20.1f} s {K40_TEST_S:14.2f} s   fc6 + fc7 "
      f"{test_fc / test_image:.0%} of it; paper with SVD {K40_TEST_SVD_S} s")
print(f"{'test, all of VOC07 test':34s} {test_image * VOC07_TEST / 3600:20.1f} h "
      f"{K40_TEST_S * VOC07_TEST / 3600:14.2f} h")
print(f"CPU estimate / K40: training {train_step * vgg.iters / 3600 / K40_TRAIN_HOURS:.0f}x, "
      f"test {test_image / K40_TEST_S:.0f}x")

# %% [markdown]
# Memory for training, from the parameter count and the measured memory per pixel of the conv stack's forward and
# backward (the largest blob is two images of 600 × 1000):

# %%
params_mib = total * 4 / 2**20
state_mib = trainable * 4 / 2**20                  # one float32 per trainable parameter: the gradient, the momentum
activations_mib = fit["memory"][0] * 2 * 600 * 1000 / 2**20
machine_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
print(f"weights {params_mib:,.0f} MiB + gradients {state_mib:,.0f} MiB + momentum {state_mib:,.0f} MiB "
      f"+ conv activations {activations_mib:,.0f} MiB = {params_mib + 2 * state_mib + activations_mib:,.0f} MiB "
      f"(estimate); this machine has {machine_mib:,.0f} MiB")

# %%
TYPICAL = 600 * 800
grid = np.linspace(0, 2 * 600 * 1000, 50)
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for ax, (name, k, scale, unit) in zip(axes, (("forward + backward", 1, 1, "seconds"),
                                             ("memory", 2, 2**-20, "MiB, peak"))):
    ax.plot(pixels / 1e6, [conv[s][k] * scale for s in sizes], "o", color="tab:blue", label="measured here")
    ax.plot(grid / 1e6, extrapolate(name, grid) * scale, "--", color="tab:blue", label="fixed + per pixel (fit)")
    ax.axvline(2 * TYPICAL / 1e6, color="grey", ls=":", label="one training step: 2 x 600x800")
    ax.set_xlabel("pixels in the blob (millions)")
    ax.set_ylabel(unit)
    ax.set_title(f"VGG16 conv stack, forward + backward: {'time' if k == 1 else 'memory'}")
if bench_key in bench:
    axes[0].plot([TYPICAL / 1e6], [bench[bench_key]], "s", color="tab:orange",
                 label="benchmarks/RESULTS.md (2 threads)")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The tables above give the verdict for this machine: how many days the paper's 9.5 GPU hours become on one CPU
# thread, and which part of the work dominates training and testing. Points to keep in mind when reading them: the
# fit is a straight line through small sizes, and large arrays fall out of the processor's caches, so the true cost at
# 600 × 800 may differ (the benchmark's row at that size, measured directly, is the check); another program busy on
# the same cores slows everything down; and more BLAS threads (`--threads 0`) help on an idle machine. On a GPU
# (`--device gpu`, CuPy) the same code runs the CUDA kernels in `minircnn/kernels/`; whether those have been timed yet
# is the `RESULTS.md` line above. The original needed about 11 GB of GPU memory for VGG16 (docs/reference.md §13), which
# you can compare with the memory estimate.
#
# ## Try this next
#
# * Build the paper's other two models, `build_model("caffenet", 21, init=False)` and
#   `build_model("vgg_cnn_m_1024", 21, init=False)`, and redo the table of section 1. Do their GFLOP ratios to VGG16
#   match the ratios of their training times in Table 4 (1.2 h, 2.0 h, 9.5 h)?
# * Run the preset for a few steps at two small scales and compare the per-step times with section 2's fit:
#   `python -m minircnn.train --preset vgg16_voc07 --scale 96 --iters 10 --no-eval --out runs/vgg16_try`, then
#   `--scale 300`.
# * Time fc6 on 2,000 rows before and after a truncated SVD to rank 1024 (the paper's choice, Sec. 3.1; lesson 18):
#   how much of the test estimate goes away?
# * Set `set_blas_threads(0)` (all cores) before section 2 and redo the estimate: which parts of a step gain most?
