"""R-CNN's post-hoc SVMs (minircnn/lab/svm.py): the L2-loss SVM on hand-checkable points, its gradient, hard negative
mining, the post-hoc softmax, the fc7 features and the classifiers installed in ``cls_score``."""
import numpy as np
import pytest

from minircnn.data import PLAIN, VOCDataset, generate_shapes_dataset
from minircnn.gradcheck import check_loss_gradient
from minircnn.models import build_model
from minircnn.lab.svm import (RawScores, collect_features, fc7_features, feature_scale, install_svms,
                              mine_hard_negatives, set_cls_score, softmax_objective, svm_objective, train_softmax,
                              train_svm)


def test_two_symmetric_points_by_hand():
    """x+ = (1, 1), x- = (-1, -1), C = 1, no positive weighting. By symmetry b = 0 and w = (a, a); then
    J = a^2 + 2 (1 - 2a)^2, whose minimum is at a = 4/9 (dJ/da = 2a - 8(1 - 2a) = 0)."""
    X, y = np.array([[1.0, 1.0], [-1.0, -1.0]]), np.array([1, -1])
    w, b = train_svm(X, y, C=1.0, pos_weight=1.0)
    np.testing.assert_allclose(w, [4 / 9, 4 / 9], atol=1e-7)
    assert abs(b) < 1e-7


def test_separable_points_give_the_max_margin_line():
    """Positives (2, 0), (3, 1), (3, -1); negatives (0, 0), (-1, 1), (-1, -1). The widest gap is the line x = 1
    between (0, 0) and (2, 0): w = (1, 0), b = -1, and those two points sit on the margins f = +1 and f = -1. A
    large C (1e6: margin violations cost much more than |w|^2) and a weakly penalised bias (B = 1000) approach it."""
    X = np.array([[2.0, 0], [3, 1], [3, -1], [0, 0], [-1, 1], [-1, -1]])
    y = np.array([1, 1, 1, -1, -1, -1])
    w, b = train_svm(X, y, C=1e6, pos_weight=1.0, bias_scale=1e3)
    np.testing.assert_allclose(w, [1.0, 0.0], atol=1e-3)
    assert b == pytest.approx(-1.0, abs=1e-3)
    np.testing.assert_allclose((X @ w + b)[[0, 3]], [1.0, -1.0], atol=1e-3)


def test_objective_gradient_matches_numerical():
    """dJ/d(w, b) against central differences, float64 (no example exactly on its margin, where the squared
    hinge's second derivative jumps)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 5)), np.where(rng.random(30) < 0.3, 1, -1)
    params = rng.normal(scale=0.5, size=6)
    check_loss_gradient(svm_objective, (params, X, y, 0.1, 2.0, 10.0))


def test_positive_weight_counts_a_positive_twice():
    """pos_weight = 2 gives the objective of the same data with every positive written twice and pos_weight = 1."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 3)), np.array([1, 1, 1] + [-1] * 9)
    params = rng.normal(size=4)
    twice = np.concatenate([X, X[:3]]), np.concatenate([y, y[:3]])
    a, ga = svm_objective(params, X, y, C=0.3, pos_weight=2.0)
    b, gb = svm_objective(params, *twice, C=0.3, pos_weight=1.0)
    assert a == pytest.approx(b) and np.allclose(ga, gb)


def test_hard_negative_mining_reaches_the_full_pool_solution():
    """Started from 50 random negatives of a pool of 5000, mining ends when no negative outside the cache lies
    inside the margin; the SVM is then the one trained on the whole pool, though no round saw all of it."""
    rng = np.random.default_rng(2)
    pos = rng.normal(loc=1.0, size=(40, 8))
    neg = rng.normal(loc=-1.0, size=(5000, 8)).astype(np.float32)
    w, b, history = mine_hard_negatives(pos, neg, C=0.01, init_negatives=50, seed=0)
    assert history[-1].new == 0 and len(history) > 1
    assert max(r.cache for r in history) < len(neg)
    full_w, full_b = train_svm(np.concatenate([pos, neg]), np.r_[np.ones(40), -np.ones(5000)], C=0.01)
    np.testing.assert_allclose(w, full_w, atol=1e-5)
    assert b == pytest.approx(full_b, abs=1e-5)
    assert history[-1].objective <= history[0].objective


@pytest.fixture(scope="module")
def small():
    """A narrow tiny detector for 2 classes + background and an image blob with some RoIs."""
    rng = np.random.default_rng(3)
    model = build_model("tiny", 3, seed=0, channels=(2, 2, 3, 3, 4), fc_width=8)
    blob = rng.normal(size=(1, 3, 64, 80)).astype(np.float32)
    rois = np.array([[0, 0, 0, 40, 40], [0, 10, 5, 79, 63], [0, 30, 20, 50, 50]], np.float32)
    return model, blob, rois


def test_fc7_features_are_what_cls_score_reads(small):
    """cls_score applied to the fc7 features gives the network's test-time scores; features are >= 0 (relu7)."""
    model, blob, rois = small
    f = fc7_features(model, blob, rois)
    scores, _ = model.forward(blob, rois, train=False)
    w, b = model.cls_score.params["weight"], model.cls_score.params["bias"]
    assert f.shape == (3, 8) and np.all(f >= 0)
    np.testing.assert_allclose(f @ w.T + b, scores, rtol=1e-5, atol=1e-6)


def test_installed_svms_score_raw_features(small):
    """After install_svms, RawScores.predict gives scale * w_k . fc7 + b_k in column k, 0 for background, and the
    network's own box deltas."""
    model, blob, rois = small
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(2, 8)), rng.normal(size=2)
    f = fc7_features(model, blob, rois)
    deltas = model.forward(blob, rois, train=False)[1]
    install_svms(model, W, b, scale=3.0)
    scores, deltas_after = RawScores(model).predict(blob, rois)
    np.testing.assert_allclose(scores[:, 1:], 3.0 * f @ W.T + b, rtol=1e-5, atol=1e-5)
    assert np.all(scores[:, 0] == 0)
    np.testing.assert_array_equal(deltas_after, deltas)


def test_feature_scale_makes_the_mean_norm_20():
    f = np.random.default_rng(5).random((50, 16))
    assert np.linalg.norm(f * feature_scale(f), axis=1).mean() == pytest.approx(20.0)


def test_collected_features_follow_rcnn_and_fast_rcnn_rules(tmp_path):
    """Every gt box is an SVM positive of its class; per image per_image proposals are kept; a class's SVM negatives
    are the proposals below IoU 0.3 with all its gt boxes. The softmax examples are the gt boxes plus the proposals
    with a highest IoU of at least 0.1, labelled with their class from IoU 0.5 and background below."""
    root = generate_shapes_dataset(tmp_path / "voc", seed=6, trainval=2, test=1, progress=False)
    ds = VOCDataset(root, "trainval")
    model = build_model("tiny", ds.num_classes, seed=0, channels=(2, 2, 3, 3, 4), fc_width=8)
    props = [np.array([[0, 0, 30, 30], [5, 5, 60, 50], [20, 10, 90, 70], [0, 0, 2, 2], [40, 40, 100, 100]],
                      np.float32)] * len(ds)
    data = collect_features(model, ds, props, PLAIN, 96, 160, per_image=4, progress=False)
    n_gt = sum(len(ds.annotation(i).boxes) for i in range(len(ds)))
    assert data.gt_features.shape == (n_gt, 8) and len(data.gt_labels) == n_gt
    assert data.features.shape == (4 * len(ds), 8) and data.overlaps.shape == (4 * len(ds), ds.num_classes)
    assert np.all(data.overlaps[:, 0] == 0) and np.all((data.overlaps >= 0) & (data.overlaps <= 1))
    for k in range(1, ds.num_classes):
        pos, neg = data.class_examples(k)
        assert len(pos) == np.sum(data.gt_labels == k)
        assert len(neg) == np.sum(data.overlaps[:, k] < 0.3)
    X, y = data.softmax_examples()
    best = data.overlaps.max(axis=1)
    assert len(X) == len(y) == n_gt + np.sum(best >= 0.1)
    np.testing.assert_array_equal(y[n_gt:], np.where(best >= 0.5, data.overlaps.argmax(axis=1), 0)[best >= 0.1])


def test_softmax_two_points_by_hand():
    """Two classes, x = +1 of class 1 and x = -1 of class 0. By symmetry W = (-a, a) and b = (0, 0) (from a zero
    start: the bias gradient sums to 0 over classes). Then J = log(1 + e^(-2a)) + wd a^2, stationary where
    wd a (1 + e^(2a)) = 1; wd = 1 / (1 + e^2) puts the optimum at a = 1."""
    X, y = np.array([[1.0], [-1.0]]), np.array([1, 0])
    W, b = train_softmax(X, y, 2, weight_decay=1 / (1 + np.e ** 2), tol=1e-10)
    np.testing.assert_allclose(W, [[-1.0], [1.0]], atol=1e-6)
    np.testing.assert_allclose(b, [0.0, 0.0], atol=1e-6)


def test_softmax_gradient_matches_numerical():
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    check_loss_gradient(softmax_objective, (rng.normal(size=3 * 5), X, y, 3, 0.01))


def test_set_cls_score_makes_the_network_score_with_it(small):
    """After set_cls_score(W, b) the network's test-time scores are fc7 W^T + b."""
    model, blob, rois = small
    rng = np.random.default_rng(8)
    W, b = rng.normal(size=(3, 8)), rng.normal(size=3)
    set_cls_score(model, W, b)
    scores, _ = model.forward(blob, rois, train=False)
    np.testing.assert_allclose(scores, fc7_features(model, blob, rois) @ W.T + b, rtol=1e-5, atol=1e-5)
