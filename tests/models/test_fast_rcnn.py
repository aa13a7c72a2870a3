"""The Fast R-CNN model (minircnn/models/fast_rcnn.py): the multi-task loss, and gradient checks of the hand-written
backward of the whole head and of a whole (narrow) detector, in float64 (paper Eq. 1-4, docs/reference.md §3)."""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.gradcheck import EXACT_ATOL, GRAD_RTOL, numerical_gradient, rel_error, tie_free
from minircnn.models import FastRCNN, bbox_loss_weights, build_model, multitask_loss
from minircnn.training.optim import SGD

NUM_CLASSES = 3                                      # K + 1: two object classes and background
NARROW = dict(channels=(2, 2, 3, 3, 3), roi_size=2, fc_width=6)


def narrow_model(seed=0, dtype=np.float64, **overrides):
    """A tiny detector with a handful of channels, small enough to differentiate numerically in a second.

    Its biases are set to random values in +-[0.05, 0.15] instead of 0: a row of fc6 outputs that ReLU and dropout
    zero entirely would otherwise give fc7 pre-activations of exactly 0 -- on ReLU's kink, where the numerical
    derivative of the bias is 1/2 and the (sub)gradient 0.
    """
    model = build_model("tiny", NUM_CLASSES, seed=seed, dtype=dtype, **{**NARROW, **overrides})
    rng = np.random.default_rng(seed + 100)
    for layer in model.layers:
        if "bias" in layer.params:
            b = layer.params["bias"]
            b[...] = rng.choice([-1, 1], b.shape) * rng.uniform(0.05, 0.15, b.shape)
    return model


def batch(rng, n_rois=6, image_hw=(48, 64)):
    """RoIs in 2 images, labels (two foreground rows per class), regression targets and weights."""
    h, w = image_hw
    x1, y1 = rng.uniform(0, w / 2, n_rois), rng.uniform(0, h / 2, n_rois)
    x2, y2 = x1 + rng.uniform(8, w / 2, n_rois), y1 + rng.uniform(8, h / 2, n_rois)
    rois = np.stack([np.arange(n_rois) % 2, x1, y1, np.minimum(x2, w - 1), np.minimum(y2, h - 1)], axis=1)
    labels = np.arange(n_rois) % NUM_CLASSES
    targets = rng.uniform(-0.8, 0.8, (n_rois, 4 * NUM_CLASSES))
    return rois, labels, targets, bbox_loss_weights(labels, NUM_CLASSES, np.float64)


# ------------------------------------------------------------------------------------------------- the loss

def test_multitask_loss_known_values():
    """L = L_cls + [u >= 1] L_loc: the softmax log loss averaged over RoIs, smooth L1 over the label's 4 columns
    summed and divided by the number of RoIs (docs/reference.md §14.8).

    Two RoIs, K + 1 = 2, all scores 0: p = (1/2, 1/2), so L_cls = log 2 for each row.
    Row 0 is background (u = 0): its deltas are ignored whatever they are.
    Row 1 is class 1: columns 4..7 hold deltas (0.5, -2, 0, 0) against targets 0, so
        L_loc = (0.5 * 0.5^2 + (2 - 0.5) + 0 + 0) / 2 RoIs = (0.125 + 1.5) / 2 = 0.8125.
    Gradients: dscores = (p - onehot) / 2 = [[0, 0.5], [0.5, 0]] / 2 ... i.e. [[-0.25, 0.25], [0.25, -0.25]];
    ddeltas row 1 = (0.5, sign(-2), 0, 0) / 2 = (0.25, -0.5, 0, 0); everything else 0.
    """
    scores = np.zeros((2, 2))
    deltas = np.zeros((2, 8))
    deltas[0] = 7.0                                          # background row: no regression loss
    deltas[1, 4:8] = [0.5, -2.0, 0.0, 0.0]
    terms, dscores, ddeltas = multitask_loss(scores, deltas, np.array([0, 1]), np.zeros((2, 8)))
    assert abs(terms.cls - np.log(2)) < EXACT_ATOL
    assert abs(terms.bbox - 0.8125) < EXACT_ATOL
    assert abs(terms.total - (np.log(2) + 0.8125)) < EXACT_ATOL
    np.testing.assert_allclose(dscores, [[-0.25, 0.25], [0.25, -0.25]], atol=EXACT_ATOL)
    expected = np.zeros((2, 8))
    expected[1, 4:6] = [0.25, -0.5]
    np.testing.assert_allclose(ddeltas, expected, atol=EXACT_ATOL)


def test_bbox_loss_weights_select_the_label_columns():
    """Weights are 1 on columns 4u..4u+3 of every RoI with u >= 1 and 0 elsewhere (background rows: all 0)."""
    w = bbox_loss_weights(np.array([0, 2, 1]), 3)
    assert w.shape == (3, 12)
    assert w[0].sum() == 0
    np.testing.assert_array_equal(np.flatnonzero(w[1]), [8, 9, 10, 11])
    np.testing.assert_array_equal(np.flatnonzero(w[2]), [4, 5, 6, 7])


def test_lambda_scales_the_regression_term_and_its_gradient():
    """With lambda = 2: total = L_cls + 2 L_loc and the deltas' gradient doubles; the reported bbox term is L_loc."""
    rng = np.random.default_rng(0)
    scores, deltas = rng.standard_normal((4, 3)), rng.standard_normal((4, 12))
    labels, targets = np.array([0, 1, 2, 1]), rng.standard_normal((4, 12))
    one, _, d1 = multitask_loss(scores, deltas, labels, targets)
    two, _, d2 = multitask_loss(scores, deltas, labels, targets, bbox_loss_weight=2.0)
    assert two.bbox == one.bbox and abs(two.total - (one.cls + 2 * one.bbox)) < EXACT_ATOL
    np.testing.assert_allclose(d2, 2 * d1, atol=EXACT_ATOL)


def test_loss_rejects_mismatched_deltas():
    with pytest.raises(ValueError, match=r"deltas must have shape \(2, 12\)"):
        multitask_loss(np.zeros((2, 3)), np.zeros((2, 8)), np.array([0, 1]), np.zeros((2, 8)))


# --------------------------------------------------------------------------------------- gradient checks

def check_all_gradients(model, loss_fn, extra=()):
    """Compare every trainable parameter's gradient (and the arrays in ``extra``: (name, array, analytic grad))
    with centred differences of ``loss_fn()``; the analytic gradients come from one forward + backward."""
    analytic = dict(model.gradients())
    assert set(analytic) == {p.name for p in model.parameters() if not p.frozen}
    for name, array, grad in [(p.name, p.value, analytic[p.name]) for p in model.parameters() if not p.frozen] + \
            list(extra):
        assert np.count_nonzero(grad) > 0, f"{name}: the gradient is all zero, the check would prove nothing"
        err = rel_error(grad, numerical_gradient(loss_fn, array))
        assert err <= GRAD_RTOL, f"{name}: relative error {err:.2g}"


def test_head_gradient_check_roi_pool_fc6_fc7_both_losses():
    """The whole head -- RoI pool -> fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> cls_score and bbox_pred ->
    softmax log loss + smooth L1 -- differentiated by hand equals the numerical derivative, for every head
    parameter and for the conv feature map, in float64.

    The dropout masks are fixed by reseeding the model's dropout generator before every evaluation, so the
    numerical derivative differentiates one fixed function. The feature map is tie-free (RoI max pooling switches
    stay put under a 1e-6 step); regression targets lie in [-0.8, 0.8] with deltas near 0, away from the smooth-L1
    kink at |d| = 1. Six RoIs over two images share and overlap feature cells, so their gradients add up (Eq. 4).
    """
    rng = np.random.default_rng(1)
    model = narrow_model(seed=3)
    features = tie_free((2, 3, 3, 4), rng)                    # conv5 of two 48x64 images at 1/16
    rois, labels, targets, weights = batch(rng)

    def outputs():
        model.set_dropout_rng(np.random.default_rng(7))
        scores, deltas = model.head_forward(features, rois, train=True)
        return multitask_loss(scores, deltas, labels, targets, weights)

    def loss():
        return outputs()[0].total

    _, dscores, ddeltas = outputs()
    assert 0 < float((model.drop6.cache.mask == 0).mean()) < 1 and np.count_nonzero(ddeltas) > 0
    dfeatures = model.head_backward(dscores, ddeltas)
    head = [p for p in model.parameters() if p.module in model.trunk + model.heads]
    assert len(head) == 8                                     # fc6, fc7, cls_score, bbox_pred: weight and bias
    for p in head:
        err = rel_error(p.grad, numerical_gradient(loss, p.value))
        assert err <= GRAD_RTOL, f"{p.name}: relative error {err:.2g}"
    assert rel_error(dfeatures, numerical_gradient(loss, features)) <= GRAD_RTOL


def test_whole_model_gradient_check_with_convs():
    """Every parameter of a whole detector -- five convs with ReLUs and Caffe max pools, RoI pool, fc6, fc7, both
    heads, both losses -- gets the numerical derivative's gradient from the hand-written backward (float64).

    Conv1 computes no image gradient (nothing trainable lies before it); the check covers dw of every layer.
    """
    rng = np.random.default_rng(2)
    model = narrow_model(seed=4)
    images = rng.standard_normal((2, 3, 48, 64))
    rois, labels, targets, weights = batch(rng)

    def loss():
        model.set_dropout_rng(np.random.default_rng(11))
        scores, deltas = model.forward(images, rois, train=True)
        return model.loss(scores, deltas, labels, targets, weights).total

    loss()
    assert model["conv1"].need_dx is False and model["conv2"].need_dx is True
    model.backward()
    check_all_gradients(model, loss)


def test_frozen_layers_get_no_gradient_and_the_backward_stops_early():
    """Freezing conv1 and conv2 (as VGG16 freezes conv1_x and conv2_x): they keep no cache and get no gradient,
    conv3 computes dw but no dx, and the remaining gradients are still exact."""
    rng = np.random.default_rng(5)
    model = narrow_model(seed=6)
    model.freeze(["conv1", "conv2"])
    images = rng.standard_normal((2, 3, 48, 64))
    rois, labels, targets, weights = batch(rng)

    def loss():
        model.set_dropout_rng(np.random.default_rng(1))
        return model.loss(*model.forward(images, rois), labels, targets, weights).total

    loss()
    assert [model[n].cache is None for n in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3")] == \
        [True] * 6 + [False]
    assert model["conv3"].need_dx is False and model["relu3"].need_dx is True
    model.backward()
    assert model["conv1"].grads == {} and model["conv2"].grads == {}
    check_all_gradients(model, loss)


def test_all_convs_frozen_skips_the_roi_pool_backward():
    """With every conv frozen (the paper's "fc6 and up" ablation) nothing is backpropagated below fc6."""
    rng = np.random.default_rng(0)
    model = narrow_model()
    model.freeze([n for n, _ in model.spec.convs])
    rois, labels, targets, _ = batch(rng)
    scores, deltas = model.forward(rng.standard_normal((2, 3, 48, 64)), rois)
    model.loss(scores, deltas, labels, targets)
    assert model.roi_pool5.cache is None and model.fc6.need_dx is False
    model.backward()
    assert set(model.gradients()) == {f"{n}.{k}" for n in ("fc6", "fc7", "cls_score", "bbox_pred")
                                      for k in ("weight", "bias")}


# ------------------------------------------------------------------------------------------ model behaviour

def test_outputs_and_inference_mode():
    """forward gives (R, K+1) scores and (R, 4(K+1)) deltas; at test time dropout is off (two calls agree), no
    layer keeps a cache, and predict's probabilities sum to 1."""
    rng = np.random.default_rng(0)
    model = narrow_model(dtype=np.float32)
    images = rng.standard_normal((2, 3, 48, 64)).astype(np.float32)
    rois = batch(rng)[0].astype(np.float32)
    scores, deltas = model.forward(images, rois, train=False)
    assert scores.shape == (6, NUM_CLASSES) and deltas.shape == (6, 4 * NUM_CLASSES)
    assert scores.dtype == np.float32
    assert all(layer.cache is None for layer in model.layers)
    again, _ = model.forward(images, rois, train=False)
    np.testing.assert_array_equal(scores, again)
    probs, _ = model.predict(images, rois)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


def test_same_seed_same_model_and_head_init():
    """A seed fixes every weight; heads start as N(0, 0.01^2) and N(0, 0.001^2) with zero biases (docs/reference.md
    §2)."""
    a, b, c = (build_model("tiny", 21, seed=s) for s in (0, 0, 1))
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name])
    assert not np.array_equal(a["conv1"].params["weight"], c["conv1"].params["weight"])
    assert abs(a.cls_score.params["weight"].std() - 0.01) < 0.001
    assert abs(a.bbox_pred.params["weight"].std() - 0.001) < 0.0001
    assert not a.cls_score.params["bias"].any() and not a.bbox_pred.params["bias"].any()
    assert a.cls_score.params["weight"].shape == (21, 512) and a.bbox_pred.params["weight"].shape == (84, 512)


def test_state_dict_round_trip_and_config():
    """Loading one model's state_dict into another built from its config reproduces its outputs exactly."""
    rng = np.random.default_rng(0)
    a = narrow_model(seed=0, dtype=np.float32)
    b = FastRCNN.from_config(a.config, seed=9)
    b.load_state_dict(a.state_dict(), source="a.npz")
    images, rois = rng.standard_normal((2, 3, 48, 64)).astype(np.float32), batch(rng)[0].astype(np.float32)
    for x, y in zip(a.forward(images, rois, train=False), b.forward(images, rois, train=False)):
        np.testing.assert_array_equal(x, y)


def test_config_carries_the_frozen_flags():
    """Frozen layers -- convs or fc layers, set in the spec or later -- are part of the config a checkpoint stores."""
    model = build_model("tiny", 3, frozen=("conv1", "fc6"))
    assert model["conv1"].frozen and model.fc6.frozen and not model.fc7.frozen
    model.freeze(["cls_score"])
    rebuilt = FastRCNN.from_config(model.config, init=False)
    assert [p.name for p in rebuilt.parameters() if p.frozen] == [f"{n}.{k}" for n in ("conv1", "fc6", "cls_score")
                                                                 for k in ("weight", "bias")]


def test_a_few_sgd_steps_fit_a_fixed_batch():
    """Model, loss, backward and solver together: 30 steps on one batch cut its loss by more than half."""
    rng = np.random.default_rng(0)
    model = narrow_model(dtype=np.float32, channels=(4, 8, 8, 8, 8), fc_width=32, dropout=0.0)
    images = rng.standard_normal((2, 3, 48, 64)).astype(np.float32)
    rois, labels, targets, weights = batch(rng, n_rois=12)
    solver = SGD(model.parameters(), base_lr=0.02, stepsize=None)
    losses = []
    for _ in range(30):
        losses.append(model.loss(*model.forward(images, rois), labels, targets.astype(np.float32), weights).total)
        model.backward()
        solver.step()
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes counts background"):
        build_model("tiny", 1)
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
        build_model("resnet", 21)


@pytest.mark.gpu
def test_gpu_model_equals_cpu_model(cupy):
    """The same seed gives the same detector on the GPU: outputs, loss and gradients agree with the CPU's."""
    rng = np.random.default_rng(0)
    cpu, gpu = narrow_model(), narrow_model().to("gpu")
    images, (rois, labels, targets, weights) = rng.standard_normal((2, 3, 48, 64)), batch(rng)
    results = []
    for model in (cpu, gpu):
        scores, deltas = model.forward(images, rois)
        terms = model.loss(scores, deltas, labels, targets, weights)
        model.backward()
        results.append((asnumpy(scores), asnumpy(deltas), terms.total,
                        {k: asnumpy(v) for k, v in model.gradients().items()}))
    for x, y in zip(results[0][:3], results[1][:3]):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
    for name, g in results[0][3].items():
        np.testing.assert_allclose(g, results[1][3][name], rtol=1e-9, atol=1e-12)


def test_whole_model_with_an_rpn_gradient_check():
    """A detector with an RPN (Faster R-CNN, approximate joint training): the RPN's loss and the detector's both
    reach the convs, and their gradients add at the feature map. Every parameter, RPN and backbone included, gets
    the numerical derivative of the summed loss (float64)."""
    rng = np.random.default_rng(5)
    model = narrow_model(seed=6, rpn={"scales": (16, 32), "ratios": (1.0,), "width": 4})
    for layer in model.rpn.layers:     # weights of order 1 (not the 0.01 of the init): gradients far above round-off
        for key, value in layer.params.items():
            value[...] = rng.standard_normal(value.shape) * (0.5 if key == "weight" else 0.1)
    images = rng.standard_normal((2, 3, 48, 64))
    rois, labels, targets, weights = batch(rng)
    m = 3 * 4 * 2                                              # a 3x4 feature map, 2 anchors per cell
    anchor_labels = rng.choice([-1, 0, 1], size=(2, m))
    anchor_targets = rng.uniform(-0.8, 0.8, (2, m, 4))

    def loss():
        model.set_dropout_rng(np.random.default_rng(11))
        features = model.features(images, train=True)
        rpn_scores, rpn_deltas, _, _ = model.propose(features, [(48, 64)] * 2, [1.0, 1.0], train=True)
        rpn_terms = model.rpn_loss(rpn_scores, rpn_deltas, anchor_labels, anchor_targets)
        scores, deltas = model.head_forward(features, rois, train=True)
        return model.loss(scores, deltas, labels, targets, weights).total + rpn_terms.total

    loss()
    model.backward()
    assert {"rpn_conv.weight", "rpn_cls_score.bias", "rpn_bbox_pred.weight"} <= set(model.gradients())
    check_all_gradients(model, loss)


def test_an_rpn_goes_into_the_config_and_comes_back():
    model = build_model("tiny", NUM_CLASSES, rpn={}, **NARROW)
    assert model.config["rpn"] == {"scales": [16.0, 32.0, 64.0, 128.0, 256.0], "ratios": [0.5, 1.0, 2.0], "width": 3}
    copy = FastRCNN.from_config(model.config, init=False)
    copy.load_state_dict(model.state_dict())
    assert copy.rpn is not None and copy.rpn.num_anchors == 15
    assert "rpn_conv.weight" in model.state_dict()
    plain = build_model("tiny", NUM_CLASSES, **NARROW)
    assert "rpn" not in plain.config and plain.rpn is None
    with pytest.raises(ValueError, match="no RPN"):
        plain.propose(np.zeros((1, 3, 2, 2)), [(32, 32)], [1.0])


def test_adding_an_rpn_leaves_the_detector_s_own_weights_alone():
    """The RPN's initial weights come from a stream of their own: the same seed gives the same detector with or
    without one."""
    with_rpn = build_model("tiny", NUM_CLASSES, seed=2, rpn={}, **NARROW).state_dict()
    without = build_model("tiny", NUM_CLASSES, seed=2, **NARROW).state_dict()
    for name, value in without.items():
        np.testing.assert_array_equal(with_rpn[name], value, err_msg=name)
