"""Tests for minircnn.data.sampler: hierarchical sampling, data order, mini-batch blobs (docs/reference.md §5, §6,
§14.10).

Exercise: ``python -m pytest tests/data/test_sampler.py --impl my_sampler.py`` runs the ``sample_rois`` tests (those
taking the ``exercise`` fixture) on a learner's version (the skeleton is ``exercises/sampler.py``).
"""
import numpy as np
import pytest

from minircnn.data.roidb import append_flipped, build_roidb, compute_targets
from minircnn.data.sampler import (MiniBatch, SamplerConfig, get_minibatch, images_of_step, iterate_minibatches,
                                   minibatch_at, sample_rois)
from minircnn.data.transforms import PLAIN, prepare_image

NUM_CLASSES = 4


def scene(rng, h=120, w=160, n_gt=3, n_jitter=40, n_random=200):
    """GT boxes, labels and proposals of one image: jittered copies of each GT (many with IoU >= 0.5) and random
    boxes (mostly background or below 0.1)."""
    xy = rng.uniform(0, 0.6, (n_gt, 2)) * [w, h]
    gt = np.floor(np.concatenate([xy, xy + rng.uniform(15, 45, (n_gt, 2))], axis=1))
    jitter = np.repeat(gt, n_jitter, axis=0) + rng.normal(0, 5, (n_jitter * n_gt, 4))
    xy = rng.uniform(0, 0.8, (n_random, 2)) * [w, h]
    props = np.concatenate([jitter, np.concatenate([xy, xy + rng.uniform(4, 50, (n_random, 2))], axis=1)])
    props[:, 2:] = np.maximum(props[:, 2:], props[:, :2])
    props = np.round(np.clip(props, 0, [w - 1, h - 1, w - 1, h - 1]))
    return gt.astype(np.float32), rng.integers(1, NUM_CLASSES, n_gt), props.astype(np.float32), (h, w)


def make_roidb(seed, n_images=4, **kwargs):
    """A flipped-included roidb with targets, and a load_image for it (deterministic random images)."""
    rng = np.random.default_rng(seed)
    scenes = [scene(rng, **kwargs) for _ in range(n_images)]
    roidb = build_roidb(*(list(x) for x in zip(*scenes)), NUM_CLASSES)
    roidb, _, _ = compute_targets(append_flipped(roidb), NUM_CLASSES)
    images = [rng.integers(0, 256, (*s[3], 3), dtype=np.uint8) for s in scenes]
    return roidb, images.__getitem__


# ------------------------------------------------------------------------------------------------------ sampling
def test_sample_rois_fractions_and_thresholds_over_many_draws(exercise):
    """Over many draws: at most 16 of the 64 RoIs are foreground (exactly 16 + 48 when candidates abound); every fg
    RoI has max IoU >= 0.5 and its class as label; every bg RoI has max IoU in [0.1, 0.5) and label 0; no RoI twice;
    RoIs below 0.1 never; and every candidate gets drawn sometime (uniform without replacement)."""
    roidb, _ = make_roidb(0)
    cfg = SamplerConfig()
    rng = np.random.default_rng(0)
    for entry in roidb[:2]:
        ov = entry.max_overlaps
        n_fg_cand = int((ov >= 0.5).sum())
        n_bg_cand = int(((ov >= 0.1) & (ov < 0.5)).sum())
        assert n_fg_cand > 16 and n_bg_cand > 48 and (ov < 0.1).any()
        seen = np.zeros(len(ov), dtype=bool)
        for _ in range(300):
            keep, labels = exercise.sample_rois(entry, cfg, rng)
            assert keep.dtype == np.int64 and labels.dtype == np.int64
            assert len(keep) == 64 and len(np.unique(keep)) == 64
            fg, bg = keep[:16], keep[16:]
            assert (ov[fg] >= 0.5).all() and ((ov[bg] >= 0.1) & (ov[bg] < 0.5)).all()
            np.testing.assert_array_equal(labels[:16], entry.max_classes[fg])
            assert (labels[:16] > 0).all() and (labels[16:] == 0).all()
            seen[keep] = True
        np.testing.assert_array_equal(seen, ov >= 0.1)


def test_gt_boxes_are_foreground_candidates(exercise):
    """With no proposal reaching IoU 0.5, the GT boxes themselves are the foreground RoIs (docs/reference.md §14.10)."""
    gt = np.array([[0, 0, 19, 19], [40, 40, 59, 59]], dtype=np.float32)
    props = np.array([[0, 0, 19, 7], [70, 70, 79, 79]], dtype=np.float32)          # IoU 0.4 and 0
    roidb, _, _ = compute_targets(build_roidb([gt], [np.array([2, 3])], [props], [(80, 80)], NUM_CLASSES),
                                  NUM_CLASSES)
    keep, labels = exercise.sample_rois(roidb[0], SamplerConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(keep[:2]), [0, 1])
    np.testing.assert_array_equal(keep[2:], [2])
    np.testing.assert_array_equal(labels, [roidb[0].max_classes[keep[0]], roidb[0].max_classes[keep[1]], 0])


def test_no_padding_when_candidates_are_short(exercise):
    """An image with 3 foreground and 5 background candidates contributes exactly those 8 RoIs, not 64: no padding
    and no replacement. The thresholds are inclusive below: IoU 0.5 is foreground, 0.1 background, 0.09 unused."""
    gt = np.array([[0, 0, 9, 9]], dtype=np.float32)
    fg = [[0, 0, 9, 4], [1, 0, 9, 9]]                                      # IoU 0.5, 0.9 (and the GT box)
    bg = [[0, 0, 9, 0], [0, 0, 9, 1], [0, 0, 9, 2], [0, 0, 9, 3], [5, 0, 14, 9]]  # 0.1, 0.2, 0.3, 0.4, 1/3
    far = [[0, 0, 8, 0]] + [[30, 30, 39, 39]] * 3                          # IoU 0.09 and 0: never sampled
    props = np.array(fg + bg + far, dtype=np.float32)
    roidb, _, _ = compute_targets(build_roidb([gt], [np.array([1])], [props], [(40, 40)], NUM_CLASSES), NUM_CLASSES)
    keep, labels = exercise.sample_rois(roidb[0], SamplerConfig(), np.random.default_rng(1))
    assert len(keep) == 8
    np.testing.assert_array_equal(np.sort(keep[:3]), [0, 1, 2])
    np.testing.assert_array_equal(np.sort(keep[3:]), [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(labels, [1, 1, 1, 0, 0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------------- data order
@pytest.mark.parametrize("n, per_epoch", [(5, 2), (4, 2), (2, 1)])
def test_images_of_step_is_a_permutation_taken_n_at_a_time(n, per_epoch):
    """With N = 2, each epoch is a fresh permutation cut into floor(n / 2) disjoint batches; a tail shorter than N
    is dropped (5 entries: one left out per epoch), a full last batch is used (4 entries: both batches)."""
    seen, epochs = set(), []
    for e in range(20):
        epoch = [images_of_step(e * per_epoch + k, n, 2, seed=0) for k in range(per_epoch)]
        flat = np.concatenate(epoch)
        assert len(set(flat.tolist())) == len(flat) == 2 * per_epoch
        seen.update(flat.tolist())
        epochs.append(flat.tolist())
    assert seen == set(range(n))
    if n > 2:
        assert len({tuple(e) for e in epochs}) > 1, "every epoch drew the same order"
    with pytest.raises(ValueError, match="fewer than ims_per_batch"):
        images_of_step(0, 1, 2, seed=0)


def test_images_of_step_depends_only_on_seed_and_step():
    """The images of step i are a pure function of (seed, i): asked twice, or out of order, they are the same; another
    seed gives another order."""
    first = [images_of_step(i, 10, 2, seed=3).tolist() for i in range(12)]
    assert [images_of_step(i, 10, 2, seed=3).tolist() for i in reversed(range(12))][::-1] == first
    assert [images_of_step(i, 10, 2, seed=4).tolist() for i in range(12)] != first


# ---------------------------------------------------------------------------------------------------- mini-batch
def test_minibatch_blobs_match_the_sampled_rows():
    """get_minibatch: blob (2, 3, H, W) float32; rois (R, 5) float32 = (batch index, boxes x scale) of the sampled
    rows; labels int64; targets and weights (R, 4K) float32 with 1s only on the 4 columns of a foreground RoI's
    class, holding that row's normalised target; background rows all 0. Replaying the same generator reproduces
    the choice (scales first, then each image's RoIs)."""
    roidb, load_image = make_roidb(1)
    cfg = SamplerConfig(scales=(90, 100), max_size=200)
    entries = [roidb[0], roidb[5]]                                      # an original and a flipped copy
    batch = get_minibatch(entries, load_image, NUM_CLASSES, PLAIN, cfg, np.random.default_rng(5))
    assert isinstance(batch, MiniBatch)
    assert batch.blob.dtype == np.float32 and batch.blob.ndim == 4 and batch.blob.shape[:2] == (2, 3)
    assert batch.rois.dtype == np.float32 and batch.labels.dtype == np.int64
    assert batch.bbox_targets.dtype == batch.bbox_weights.dtype == np.float32
    assert batch.bbox_targets.shape == batch.bbox_weights.shape == (len(batch.rois), 4 * NUM_CLASSES)

    replay = np.random.default_rng(5)
    scale_inds = replay.integers(0, 2, size=2)
    start = 0
    for b, (entry, si) in enumerate(zip(entries, scale_inds)):
        image, scale = prepare_image(load_image(entry.image_index), cfg.scales[si], cfg.max_size, PLAIN,
                                     flip=entry.flipped)
        np.testing.assert_array_equal(batch.blob[b, :, :image.shape[1], :image.shape[2]], image)
        np.testing.assert_array_equal(batch.blob[b, :, image.shape[1]:], 0)
        keep, labels = sample_rois(entry, cfg, replay)
        sl = slice(start, start + len(keep))
        start += len(keep)
        np.testing.assert_array_equal(batch.rois[sl, 0], b)
        np.testing.assert_allclose(batch.rois[sl, 1:], entry.boxes[keep] * scale, rtol=1e-6)
        np.testing.assert_array_equal(batch.labels[sl], labels)
        w = batch.bbox_weights[sl].reshape(-1, NUM_CLASSES, 4)
        t = batch.bbox_targets[sl].reshape(-1, NUM_CLASSES, 4)
        for i, (row, label) in enumerate(zip(keep, labels)):
            expected_w = np.zeros((NUM_CLASSES, 4), dtype=np.float32)
            expected_t = np.zeros((NUM_CLASSES, 4), dtype=np.float32)
            if label > 0:
                expected_w[label] = 1
                expected_t[label] = entry.bbox_targets[row]
            np.testing.assert_array_equal(w[i], expected_w)
            np.testing.assert_array_equal(t[i], expected_t)
    assert start == len(batch.rois)


def test_same_seed_same_batches():
    """iterate_minibatches is deterministic in its seed: the same seed gives identical batches, another seed not."""
    roidb, load_image = make_roidb(2, n_images=3)
    cfg = SamplerConfig(scales=(60, 80), max_size=200)

    def first(seed, k=3):
        it = iterate_minibatches(roidb, load_image, NUM_CLASSES, PLAIN, cfg, seed=seed)
        return [next(it) for _ in range(k)]

    a, b, c = first(7), first(7), first(8)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert any(x.rois.shape != z.rois.shape or not np.array_equal(x.rois, z.rois) for x, z in zip(a, c))
    for i, x in enumerate(a):            # the stream is minibatch_at(0), minibatch_at(1), ...: what training uses
        for u, v in zip(x, minibatch_at(i, roidb, load_image, NUM_CLASSES, PLAIN, cfg, seed=7)):
            np.testing.assert_array_equal(u, v)


# -------------------------------------------------------------------------------------------------------- config
def test_config_defaults_and_validation():
    """The defaults are the paper's: 2 images, 128 RoIs, 64 per image, at most 16 fg; bad numbers are ValueErrors
    naming the field."""
    cfg = SamplerConfig()
    assert (cfg.ims_per_batch, cfg.batch_size, cfg.rois_per_image, cfg.fg_rois_per_image) == (2, 128, 64, 16)
    assert (cfg.fg_thresh, cfg.bg_thresh_hi, cfg.bg_thresh_lo, cfg.scales, cfg.max_size) == (0.5, 0.5, 0.1, (600,),
                                                                                              1000)
    for kwargs, name in [({"batch_size": 127}, "batch_size"), ({"fg_fraction": 1.5}, "fg_fraction"),
                         ({"bg_thresh_lo": 0.6}, "bg_thresh_lo"), ({"scales": ()}, "scales"),
                         ({"ims_per_batch": 0}, "ims_per_batch")]:
        with pytest.raises(ValueError, match=name):
            SamplerConfig(**kwargs)


def test_minibatch_rejects_entries_without_targets_or_wrong_images():
    """An entry without targets, or an image whose size disagrees with its entry, is a ValueError."""
    roidb, load_image = make_roidb(3, n_images=2)
    raw = build_roidb([roidb[0].boxes[:roidb[0].num_gt]], [roidb[0].gt_classes[:roidb[0].num_gt]],
                      [np.zeros((0, 4))], [(roidb[0].height, roidb[0].width)], NUM_CLASSES)
    with pytest.raises(ValueError, match="compute_targets"):
        get_minibatch(raw, load_image, NUM_CLASSES, PLAIN, SamplerConfig(scales=(60,)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="load_image"):
        get_minibatch(roidb[:1], lambda i: np.zeros((5, 5, 3), np.uint8), NUM_CLASSES, PLAIN,
                      SamplerConfig(scales=(60,)), np.random.default_rng(0))
