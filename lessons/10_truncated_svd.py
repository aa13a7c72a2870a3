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
# # Lesson 10 — Truncated SVD: cheaper fully connected layers, and what they cost in mAP
#
# **The claim (paper Sec. 3.1, Fig. 2 and Table 4).** In image classification the conv layers take most of the
# forward time; the fc layers run once per image. In detection they run once per *RoI* — about 2000 per image — and
# for VGG16 fc6 and fc7 take nearly half of the forward pass (Fig. 2: 142 of 320 ms on a K40, conv layers 146 ms).
# Fast R-CNN compresses them after training with a truncated singular value decomposition: fc6's 25088 × 4096
# weight matrix is replaced by its best rank-1024 approximation, fc7's 4096 × 4096 one by rank 256, each as two
# smaller layers. Detection time drops by more than 30% (320 → 223 ms per image, Fig. 2), and mAP by 0.3 points
# (66.9 → 66.6 on VOC07), with no fine-tuning after the compression.
#
# This lesson does the math, checks it against `minircnn/inference/svd.py`, looks at the singular values of our
# tiny detector's fc layers — of the weights and of what the layers compute on real RoI features — and measures what
# the compression costs in mAP, rank by rank. Lesson 18 measures the other half of the claim: where the test-time
# forward spends its time before and after the compression, for the tiny detector and at VGG16's sizes.
#
# docs/reference.md §11 (`FR:tools/compress_net.py`) and §13. Code: `minircnn/inference/svd.py` (`truncated_svd`,
# `compress`), the `--svd fc6=R6,fc7=R7` flag of `python -m minircnn.evaluate`. Tests: `tests/inference/test_svd.py`.
# Benchmark: `benchmarks/bench_svd.py`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn.data import image_pyramid, pyramid_rois
from minircnn.evaluation import score_detections
from minircnn.inference import detect_split
from minircnn.inference.svd import compress, truncated_svd
from minircnn.lab.experiments import FAST, SEEDS, compare_runs, lesson_dataset, test_split_of, train_seeds
from minircnn.threads import set_blas_threads
from minircnn.training.checkpoint import load_checkpoint

set_blas_threads(1)            # one BLAS thread: steadier timings on a busy machine (lesson 06)
rng = np.random.default_rng(0)
root = lesson_dataset()        # data/shapes (generated on first use); a few images with MINIRCNN_FAST
runs = train_seeds("default", root)      # the default detector, once per seed in SEEDS (trained once, reused)
run = runs[0]                            # the preset's own seed: runs/lessons/default
ckpt = load_checkpoint(run.checkpoint)
config = ckpt.config
W6, W7 = (ckpt.model[name].params["weight"] for name in ("fc6", "fc7"))
test_set, proposals = test_split_of(run)      # the test images and their proposals, as the run evaluated them
print(f"default detector: mAP {run.metrics['map']:.3f}; fc6 weight {W6.shape} (outputs x inputs), "
      f"fc7 weight {W7.shape}")


# %% [markdown]
# ## 1. The math
#
# An fc layer computes `y = W x + b` with `W` of shape u × v (u outputs, v inputs). Its singular value
# decomposition is `W = U Σ Vᵀ`: `U` (u × r) and `V` (v × r) have orthonormal columns, `Σ` is the diagonal of the
# singular values `σ₁ ≥ σ₂ ≥ … ≥ σ_r ≥ 0`, r = min(u, v). Keeping the t largest gives
#
# $$W \approx W_t = U_t \Sigma_t V_t^\top = \sum_{i=1}^{t} \sigma_i\, u_i v_i^\top ,$$
#
# and the layer becomes two layers **with no nonlinearity between them** (paper Eq. 5):
#
# * `fcX_L`: `z = (Σ_t V_tᵀ) x` — a t × v weight, no bias;
# * `fcX_U`: `y = U_t z + b` — a u × t weight, with the original bias.
#
# Their product is `W_t`, so together they are the linear layer `W_t x + b`. Per RoI the layer now costs t(u + v)
# multiply-adds instead of uv, and stores as many weights: a saving whenever t < uv / (u + v). The error is known in
# advance (Eckart–Young): of all matrices of rank t, `W_t` is the closest to `W` in the Frobenius norm, and
#
# $$\lVert W - W_t \rVert_F^2 = \sum_{i > t} \sigma_i^2 .$$
#
# A loop version for reading — the sum of t rank-one terms — against the package's `truncated_svd`, which returns the
# two factors `L = Σ_t V_tᵀ` and `U = U_t` (the layout of the original `compress_net.py`):

# %%
def rank_t_by_hand(w, t):
    """W_t as the sum of the t leading rank-one terms sigma_i u_i v_i^T (float64)."""
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    approx = np.zeros(w.shape)
    for i in range(t):
        approx += s[i] * np.outer(u[:, i], vt[i])
    return approx


t = 16 if FAST else 128
L, U = truncated_svd(W6, t)
by_hand = rank_t_by_hand(W6, t)
print(f"fc6, t = {t}: L {L.shape} (t x v), U {U.shape} (u x t); max |U L - loop| = {np.abs(U @ L - by_hand).max():.1e}")
assert np.allclose(U @ L, by_hand, atol=1e-4)

sigma = np.linalg.svd(W6.astype(np.float64), compute_uv=False)
error = np.linalg.norm(W6 - by_hand) ** 2
print(f"||W - W_t||_F^2 = {error:.4f};  sum of the discarded sigma_i^2 = {np.sum(sigma[t:] ** 2):.4f}")

# Any other rank-t matrix does worse, e.g. W projected onto t random directions of its input space:
q, _ = np.linalg.qr(rng.standard_normal((W6.shape[1], t)))
print(f"rank-t alternative W Q Q^T (Q: {t} random orthonormal columns): squared error "
      f"{np.linalg.norm(W6 - W6 @ q @ q.T) ** 2:.4f}")

# %% [markdown]
# Our fc layers have far fewer outputs than VGG16's 4096. The same *fractions* of the outputs as the paper's ranks,
# 1/4 for fc6 and 1/16 for fc7, are our "paper-like" ranks. (What a rank saves in multiply-adds and in time is
# lesson 18's subject.)

# %%
PAPER_LIKE = {"fc6": W6.shape[0] // 4, "fc7": W7.shape[0] // 16}
print("paper-like ranks:", PAPER_LIKE, "| VGG16 with the paper's ranks: fc6=1024 of 4096, fc7=256 of 4096")

# %% [markdown]
# `compress` does this to a detector in place: fc6 becomes the pair `fc6_L`, `fc6_U`, and the forward pass runs the
# pair where fc6 was. On a batch of pooled features the compressed trunk gives what `W_t x + b` gives:

# %%
small = compress(load_checkpoint(run.checkpoint).model, {"fc6": t})
print("layers after roi_pool5:", [layer.name for layer in small.trunk[1:]])
x = rng.standard_normal((5, W6.shape[1])).astype(np.float32)
two_layers = small.fc6_U.forward(small.fc6_L.forward(x, train=False), train=False)
one_layer = x @ by_hand.T + ckpt.model.fc6.params["bias"]
print(f"fc6_U(fc6_L(x)) vs W_t x + b: max difference {np.abs(two_layers - one_layer).max():.1e}")
assert np.allclose(two_layers, one_layer, atol=1e-3)

# %% [markdown]
# ## 2. The singular values of our fc layers
#
# How much a given rank keeps depends on how fast the singular values fall. Below, left: the spectra of the trained
# fc6 and fc7, and for comparison those of random Gaussian matrices of the same shapes — what the layers looked like
# before training, up to scale. Middle: the share of `‖W‖²_F` that the first t singular values hold (1 minus the
# squared relative error of `W_t`).
#
# The Frobenius norm weighs every direction of the layer's input space alike, but a layer only ever sees the
# features that RoIs produce. So, right: the relative error of the layer's *output*, `‖(W − W_t) X‖ / ‖W X‖`, where
# the columns of `X` are the actual inputs of the layer for the proposals of one test image (the one with the most
# proposals). With the SVD this is cheap for every t at once: `‖(W − W_t) X‖²_F = Σ_{i>t} σ_i² ‖v_iᵀ X‖²`, because
# the `u_i` are orthonormal.

# %%
shown = int(np.argmax([len(p) for p in proposals]))           # the test image with the most proposals
blob, factors = image_pyramid(test_set.load_image(shown), (config.test_scale,), config.test_max_size,
                              ckpt.preprocessing)
rois = pyramid_rois(proposals[shown], factors)                # one level: (0, x1, y1, x2, y2) in blob pixels
net = ckpt.model
pooled = net.roi_pool5.forward(net.backbone.forward(blob, train=False), rois, train=False).reshape(len(rois), -1)
inputs = {"fc6": pooled, "fc7": net.relu6.forward(net.fc6.forward(pooled, train=False), train=False)}
print(f"test image {test_set.ids[shown]}: {len(rois)} proposals, blob {blob.shape}; fc6 inputs {pooled.shape}")

spectra = {}
for name, w in (("fc6", W6), ("fc7", W7)):
    _, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    noise = np.linalg.svd(rng.standard_normal(w.shape), compute_uv=False)
    on_rois = s ** 2 * np.sum((vt @ inputs[name].T.astype(np.float64)) ** 2, axis=1)   # sigma_i^2 ||v_i^T X||^2
    spectra[name] = (s, noise, on_rois)
    rank = PAPER_LIKE[name]
    w_error, noise_error = (np.sqrt(np.sum(v[rank:] ** 2) / np.sum(v ** 2)) for v in (s, noise))
    print(f"{name} {w.shape}: sigma_1 / sigma_{len(s)} = {s[0] / s[-1]:.1f} (random matrix: "
          f"{noise[0] / noise[-1]:.1f}); at rank {rank}: relative error of W {w_error:.3f} (random matrix: "
          f"{noise_error:.3f}), of the outputs on the RoIs {np.sqrt(on_rois[rank:].sum() / on_rois.sum()):.3f}")


def tail_error(energy):
    """sqrt(sum_{i>t} e_i / sum e_i) for t = 1 .. r."""
    return np.sqrt(np.maximum(1 - np.cumsum(energy) / energy.sum(), 0))


fig, axes = plt.subplots(1, 3, figsize=(17, 4))
for k, (name, (s, noise, on_rois)) in enumerate(spectra.items()):
    i = np.arange(1, len(s) + 1)
    axes[0].semilogy(i, s / s[0], color=f"C{k}", label=f"{name}, trained")
    axes[0].semilogy(i, noise / noise[0], color=f"C{k}", ls=":", label=f"{name} shape, random")
    axes[1].plot(i, np.cumsum(s ** 2) / np.sum(s ** 2), color=f"C{k}", label=f"{name}, trained")
    axes[1].plot(i, np.cumsum(noise ** 2) / np.sum(noise ** 2), color=f"C{k}", ls=":", label=f"{name} shape, random")
    axes[2].plot(i, tail_error(s ** 2), color=f"C{k}", ls="--", label=f"{name}: ||W - W_t|| / ||W||")
    axes[2].plot(i, tail_error(on_rois), color=f"C{k}", label=f"{name}: ||(W - W_t) X|| / ||W X||")
    for ax in axes[1:]:
        ax.axvline(PAPER_LIKE[name], color=f"C{k}", lw=0.8, ls="-.")
axes[0].set(xlabel="index i", ylabel="sigma_i / sigma_1", title="singular values")
axes[1].set(xlabel="rank t", ylabel="share of ||W||_F^2 kept", title="energy kept (dash-dot: paper-like t)")
axes[2].set(xlabel="rank t", ylabel="relative error", title=f"weights vs outputs on {len(rois)} RoIs")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Compare the trained spectra with the random ones: the closer they are, the less the weights themselves are
# "low rank", and the more of `‖W‖²_F` any truncation throws away (the printed relative errors of `W`). Then compare
# the dashed and solid curves on the right: where the solid ones (the error on what the layer actually computes)
# lie below the dashed ones, the RoI features do not fill the input space evenly — they lean towards the leading
# right singular vectors — and a rank that discards much of `‖W‖_F` may still keep most of the layer's output.
# Section 3 measures what the detector makes of it.
#
# ## 3. What it costs in mAP
#
# Now the trained detector, compressed at several ranks and evaluated on the whole test split each time, exactly as
# `python -m minircnn.evaluate --svd fc6=R6,fc7=R7` would. Three series: fc6 alone, fc7 alone, and both with fc7's
# rank a quarter of fc6's (the paper's 1024 : 256; one point of it is the paper-like setting of section 1). No
# fine-tuning after the compression, as in the paper.

# %%
RANKS = (PAPER_LIKE["fc6"], 8) if FAST else (256, PAPER_LIKE["fc6"], 32, 8)
settings = [("none", {})]
settings += [("fc6", {"fc6": r}) for r in RANKS]
settings += [("fc7", {"fc7": r}) for r in RANKS]
settings += [("both", {"fc6": r, "fc7": max(r * PAPER_LIKE["fc7"] // PAPER_LIKE["fc6"], 1)}) for r in RANKS]
results = []
print(f"{'series':6s} {'ranks':18s} {'fc6+fc7 weights':>15s} {'mAP':>6s} {'s/image':>8s}")
for series, ranks in settings:
    model = compress(load_checkpoint(run.checkpoint).model, ranks)
    weights = sum(v.size for k, v in model.state_dict().items() if k.startswith(("fc6", "fc7")) and "weight" in k)
    start = time.perf_counter()
    found = detect_split(model, test_set, proposals, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing, config,
                         progress=False)
    seconds = (time.perf_counter() - start) / len(test_set)
    metrics, _ = score_detections(test_set, *found, test_set.class_names)
    results.append((series, ranks, weights, metrics["map"], seconds))
    label = ",".join(f"{k}={v}" for k, v in ranks.items()) or "-"
    print(f"{series:6s} {label:18s} {weights:15,d} {metrics['map']:6.3f} {seconds:8.3f}")

# %%
base_map, base_seconds = results[0][3], results[0][4]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for k, series in enumerate(("fc6", "fc7", "both")):
    rows = [r for r in results if r[0] == series]
    ranks_of = [r[1]["fc6" if series != "fc7" else "fc7"] for r in rows]
    axes[0].semilogx(ranks_of, [r[3] for r in rows], "o-", color=f"C{k}", base=2,
                     label=series if series != "both" else "both (x: fc6's rank; fc7's is x/4)")
    axes[1].plot([r[2] / 1e6 for r in rows], [r[3] for r in rows], "o-", color=f"C{k}", label=series)
for ax in axes:
    ax.axhline(base_map, color="k", lw=0.8, label="no SVD")
    ax.set_ylabel("VOC07 mAP, test split")
    ax.legend(fontsize=8)
like = next(r for r in results if r[0] == "both" and r[1]["fc6"] == PAPER_LIKE["fc6"])
axes[0].plot(PAPER_LIKE["fc6"], like[3], "*", color="C2", ms=14, label="paper-like ranks")
axes[1].plot(like[2] / 1e6, like[3], "*", color="C2", ms=14)
axes[0].legend(fontsize=8)
axes[0].set(xlabel="rank t", title="mAP vs rank")
axes[1].plot([results[0][2] / 1e6], [base_map], "ks", ms=7)
axes[1].set(xlabel="fc6 + fc7 weights (millions)", title="mAP vs size of fc6 + fc7")
plt.tight_layout()
plt.show()

# %% [markdown]
# Is the paper-like setting's change in mAP more than noise? The yardstick, the same in every lesson
# (`compare_runs`): the detector of every seed in `SEEDS` is compressed at those ranks, both versions are scored on
# many resamples of the test images (each resample scoring both on the same images), which gives a 95 % interval
# for the difference of their mean mAPs. The rule: they differ only if the interval excludes zero *and* the
# difference exceeds twice its seed-to-seed standard deviation (the same networks on both sides: the spread of the
# per-seed differences). The sentence is written from the numbers.

# %%
def detections(run, ranks):
    """The run's detections on the test split, its fc layers compressed at ``ranks`` ({} for none)."""
    c = load_checkpoint(run.checkpoint)
    model = compress(c.model, ranks) if ranks else c.model
    return detect_split(model, test_set, proposals, c.bbox_means, c.bbox_stds, c.preprocessing, c.config,
                        progress=False)


plain = [detections(r, {}) for r in runs]
compressed = [detections(r, PAPER_LIKE) for r in runs]
result = compare_runs(compressed, plain, (f"compressed at fc6={PAPER_LIKE['fc6']}, fc7={PAPER_LIKE['fc7']}",
                                          "uncompressed"), dataset=test_set, same_networks=True)
like = next(r for r in results if r[0] == "both" and r[1]["fc6"] == PAPER_LIKE["fc6"])
print(f"over {len(runs)} seeds: mAP {np.mean(result['second']):.3f} -> {np.mean(result['first']):.3f} "
      f"({result['difference']:+.3f}); seed {SEEDS[0]}'s test time {base_seconds:.3f} -> {like[4]:.3f} s/image "
      f"({like[4] / base_seconds - 1:+.0%}), fc6 + fc7 weights {results[0][2] / like[2]:.1f}x fewer")
print(f"-> {result['verdict']} (Lesson 18 times the forward alone, stage by stage.)")
print("paper, VGG16 at fc6=1024, fc7=256: mAP 66.9 -> 66.6 (-0.3 points), 0.32 -> 0.22 s/image (Table 4)")
losses = [base_map - r[3] for r in results[1:]]
print(f"largest mAP drop over all settings: {max(losses):.3f}, at "
      f"{','.join(f'{k}={v}' for k, v in results[1 + int(np.argmax(losses))][1].items())}")

# %% [markdown]
# The paper's finding has two parts; check each against the printed numbers.
#
# * **Speed.** The compression saves time in proportion to the share fc6 and fc7 had in the forward pass —
#   lesson 18 measures it for our detector and at VGG16's sizes — and the time per image of a whole evaluation saves
#   less than the forward alone, because it also loads images and runs NMS.
# * **Accuracy.** The paper loses 0.3 points at ranks of a quarter of fc6's outputs and a sixteenth of fc7's. The
#   verdict above judges our paper-like point (the star) over three seeds: "do not differ" is not evidence of any
#   loss on our small test split, nor proof of none smaller than the interval. Further down the curves the loss must
#   come sooner or later; where each series falls away from the black line says how much rank each layer needs.
#
# Section 2 is the key to reading the curves: a rank that keeps only a small part of `‖W‖²_F` can still keep
# much of what the layer does to real RoI features, when those features lean towards the leading singular
# directions. The right-hand plot of section 2 shows how far that holds for each layer, and the mAP curves
# show what the detector makes of it. If our paper-like point loses more than the paper's 0.3 points, section 2
# also suggests why: the paper's ranks are the same fractions of the *outputs*, but what counts is the share of
# the layer's action that a rank keeps, and a layer whose spectrum is nearly as flat as a random matrix's gives up
# more of it at a given fraction than one whose singular values fall fast (we cannot check VGG16's trained spectrum
# here: lesson 18 builds VGG16 with random weights, which only stand in for its shape).
#
# ## Try this next
#
# * The paper does not fine-tune after compressing ("further speed-ups are possible with smaller drops in mAP if one
#   fine-tunes again after compression", Sec. 3.1). Compress, save (`minircnn.training.checkpoint.save_checkpoint`),
#   and train a few hundred iterations from the compressed checkpoint: how much of the lost mAP comes back?
# * Pick the rank from the data instead of the weights: for RoI features `X` of the training images, the best
#   rank-t layer minimises `‖(W − W_t) X‖`, not `‖W − W_t‖` (a generalised SVD; Zhang et al. 2015 did this for
#   VGG16's convs). Does it keep more mAP at rank 16?
# * Compress fc6 and fc7 to the rank at which section 2's output error on the RoIs (solid curves) reaches 0.1, and
#   compare the mAP with the paper-like ranks: is the output error a better guide than the share of `‖W‖²_F`?
