"""The RPN head and loss: gradient checks in float64, the per-anchor layout, values by hand."""
import numpy as np
import pytest

from minircnn.gradcheck import check_loss_gradient, numerical_gradient, rel_error, GRAD_RTOL
from minircnn.rpn import RPNHead, rpn_loss
from minircnn.rpn.head import _to_maps, _to_rows


def _batch(rng, m=12):
    scores = rng.standard_normal((m, 2))
    deltas = rng.standard_normal((m, 4)) * 0.3
    labels = rng.choice([-1, 0, 1], size=m)
    labels[:3] = [1, 0, -1]
    targets = rng.standard_normal((m, 4)) * 0.3
    return scores, deltas, labels, targets


def test_loss_by_hand():
    """Two sampled anchors of 4 anchor locations, scores 0: log loss ln 2 each, over N_cls = 2. The foreground one is
    0.5 off in dx only: with the RPN's sigma = 3 the quadratic zone ends at 1/9, so its smooth L1 is 0.5 - 0.5/9 =
    4/9 with gradient sign(0.5) = 1; over N_reg = 4 that is 1/9, weighed by lambda = 10 in the total and the gradient
    (10/4 = 2.5). With sigma = 1, lambda = 1 and N_reg = 2 (the released code's normalisation for this batch): 0.5 *
    0.5**2 / 2 = 0.0625, gradient 0.5 / 2. The unsampled row adds nothing."""
    scores = np.zeros((3, 2))
    deltas = np.array([[0.5, 0, 0, 0], [3.0, 3, 3, 3], [9.0, 9, 9, 9]])
    labels, targets = np.array([1, 0, -1]), np.zeros((3, 4))
    terms, dscores, ddeltas = rpn_loss(scores, deltas, labels, targets, num_locations=4)
    assert terms.cls == pytest.approx(np.log(2)) and terms.bbox == pytest.approx(1 / 9)
    assert terms.total == pytest.approx(np.log(2) + 10 / 9)
    np.testing.assert_allclose(dscores, [[0.25, -0.25], [-0.25, 0.25], [0, 0]])
    np.testing.assert_allclose(ddeltas, [[2.5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    terms, _, ddeltas = rpn_loss(scores, deltas, labels, targets, num_locations=2, bbox_loss_weight=1, sigma=1)
    assert terms.bbox == pytest.approx(0.0625) and terms.total == pytest.approx(np.log(2) + 0.0625)
    np.testing.assert_allclose(ddeltas, [[0.25, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("wrt", [0, 1])
def test_loss_gradients(wrt):
    rng = np.random.default_rng(wrt)
    scores, deltas, labels, targets = _batch(rng)

    def loss(scores, deltas, labels, targets):
        terms, dscores, ddeltas = rpn_loss(scores, deltas, labels, targets, num_locations=5)
        return terms.total, (dscores, ddeltas)[wrt]
    check_loss_gradient(loss, [scores, deltas, labels, targets], wrt=wrt)


def test_nothing_sampled_gives_zero_loss_and_gradient():
    terms, dscores, ddeltas = rpn_loss(np.ones((4, 2)), np.ones((4, 4)), np.full(4, -1), np.zeros((4, 4)), 2)
    assert terms == (0.0, 0.0, 0.0) and not dscores.any() and not ddeltas.any()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        rpn_loss(np.ones((4, 3)), np.ones((4, 4)), np.zeros(4, int), np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="num_locations"):
        rpn_loss(np.ones((4, 2)), np.ones((4, 4)), np.zeros(4, int), np.zeros((4, 4)), 0)


def test_rows_follow_grid_anchor_order_and_invert():
    """Channel 2a + c at cell (y, x) is row (y * w + x) * A + a, column c."""
    n, a, h, w = 2, 3, 4, 5
    maps = np.arange(n * 2 * a * h * w, dtype=float).reshape(n, 2 * a, h, w)
    rows = _to_rows(maps, 2)
    assert rows.shape == (n, h * w * a, 2)
    assert rows[1, (2 * w + 3) * a + 1, 1] == maps[1, 2 * 1 + 1, 2, 3]
    np.testing.assert_array_equal(_to_maps(rows, maps.shape), maps)


def test_head_backward_matches_numerical_gradients():
    """L = sum(scores * ds) + sum(deltas * dd) through the 3x3 conv, ReLU and both 1x1 convs: the gradient of the
    features and of every parameter (float64)."""
    rng = np.random.default_rng(3)
    head = RPNHead(in_channels=3, num_anchors=2, width=4, dtype=np.float64, rng=rng)
    for layer in (head.rpn_conv, head.rpn_cls_score, head.rpn_bbox_pred):
        layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape) * 0.1
    head.plan_backward(True)
    features = rng.standard_normal((2, 3, 3, 4))
    ds, dd = rng.standard_normal((2, 24, 2)), rng.standard_normal((2, 24, 4))

    def loss():
        scores, deltas = head.forward(features, train=False)
        return float((scores * ds).sum() + (deltas * dd).sum())
    head.forward(features)
    dfeatures = head.backward(ds, dd)
    assert rel_error(dfeatures, numerical_gradient(loss, features)) < GRAD_RTOL
    for layer in (head.rpn_conv, head.rpn_cls_score, head.rpn_bbox_pred):
        for key in ("weight", "bias"):
            err = rel_error(layer.grads[key], numerical_gradient(loss, layer.params[key]))
            assert err < GRAD_RTOL, (layer.name, key, err)


def test_objectness_is_the_softmax_of_the_object_column():
    scores = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, -1.0]])
    e = np.exp(scores)
    np.testing.assert_allclose(RPNHead.objectness(scores), e[:, 1] / e.sum(axis=1))
