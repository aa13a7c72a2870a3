"""The classifier and the paper's three transformations that make it a detector (minircnn/models/classifier.py,
paper Sec. 2.2)."""
import numpy as np
import pytest

from minircnn.gradcheck import GRAD_RTOL, numerical_gradient, rel_error
from minircnn.models import build_classifier, from_classifier, resize_fc6

NARROW = dict(channels=(2, 3, 4, 4, 4), roi_size=2, fc_width=8)


def classifier(num_classes=5, **kw):
    return build_classifier("tiny", num_classes, seed=1, **{**NARROW, **kw})


def test_classifier_shapes():
    """Default input: 16 (stride) x 2 (pool5) x roi_size pixels, so pool5's grid equals the spec's RoI grid."""
    net = classifier()
    assert net.input_size == 64 and net.grid == 2
    assert net.fc6.params["weight"].shape == (8, 4 * 2 * 2) and net.fc8.params["weight"].shape == (5, 8)
    scores = net.forward(np.zeros((3, 3, 64, 64), np.float32))
    assert scores.shape == (3, 5)
    np.testing.assert_allclose(net.predict(np.zeros((1, 3, 64, 64))).sum(), 1, rtol=1e-6)
    with pytest.raises(ValueError, match=r"takes \(N, 3, 64, 64\) images"):
        net.forward(np.zeros((1, 3, 32, 32), np.float32))


def test_classifier_gradient_check():
    """The classifier's hand-written backward (fc8 -> fc7 -> fc6 -> pool5 -> convs) matches numerical derivatives."""
    rng = np.random.default_rng(0)
    net = classifier(dtype=np.float64, dropout=0.0)
    for layer in net.layers:                                  # off ReLU's kink at exactly 0 (see test_fast_rcnn)
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.uniform(0.05, 0.15, layer.params["bias"].shape)
    images, labels = rng.standard_normal((2, 3, 64, 64)), np.array([1, 4])

    def loss():
        return net.loss(net.forward(images), labels)

    loss()
    net.backward()
    for p in net.parameters():
        if p.name.startswith(("conv1", "conv3", "fc6", "fc8")):   # a sample of layers keeps the test fast
            assert np.count_nonzero(p.grad) > 0, p.name
            assert rel_error(p.grad, numerical_gradient(loss, p.value)) <= GRAD_RTOL, p.name


def test_from_classifier_copies_the_trunk_and_initialises_the_heads():
    """Transformations 1-3: the convs, fc6 and fc7 keep the classifier's weights; the RoI pool takes pool5's grid
    at 1/16; fc8 is replaced by cls_score (K+1, N(0, 0.01^2)) and bbox_pred (4(K+1), N(0, 0.001^2)), biases 0;
    the detector takes images and RoIs. The classifier is left unchanged."""
    net = build_classifier("tiny", 12, seed=1, fc_width=256)       # real tiny channels, 224 px inputs
    before = net.state_dict()
    detector = from_classifier(net, num_classes=21, seed=5)
    assert detector.roi_pool5.output_size == (7, 7) and detector.roi_pool5.spatial_scale == 1 / 16
    for name, value in before.items():
        if not name.startswith("fc8"):
            np.testing.assert_array_equal(detector.state_dict()[name], value)
        np.testing.assert_array_equal(net.state_dict()[name], value)
    w_cls, w_box = detector.cls_score.params["weight"], detector.bbox_pred.params["weight"]
    assert w_cls.shape == (21, 256) and w_box.shape == (84, 256)
    assert abs(w_cls.std() - 0.01) < 0.001 and abs(w_box.std() - 0.001) < 0.0001
    assert not detector.cls_score.params["bias"].any() and not detector.bbox_pred.params["bias"].any()
    scores, deltas = detector.forward(np.zeros((1, 3, 96, 128), np.float32), np.array([[0, 4, 4, 60, 90]]),
                                      train=False)
    assert scores.shape == (1, 21) and deltas.shape == (1, 84)


def test_the_whole_crop_roi_reproduces_the_classifier():
    """The transformations keep the function: on a classifier-sized image, a RoI whose rounded extent is exactly
    pool5's windows (here 4x4 conv5 cells -> 2x2 bins of 2x2 cells: x2 = y2 = 3 * 16 = 48) gives the RoI pool the
    same maxima as pool5, so with fc8's weights copied into cls_score the detector outputs the classifier's scores."""
    rng = np.random.default_rng(0)
    net = classifier(num_classes=3)
    detector = from_classifier(net, num_classes=3)
    detector.cls_score.params["weight"][...] = net.fc8.params["weight"]
    detector.cls_score.params["bias"][...] = net.fc8.params["bias"]
    images = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    rois = np.array([[0, 0, 0, 48, 48], [1, 0, 0, 48, 48]], np.float32)
    scores, _ = detector.forward(images, rois, train=False)
    np.testing.assert_array_equal(scores, net.forward(images, train=False))


def test_resize_fc6_keeps_a_constant_input_s_output():
    """A 2x2 grid's constant weight map v resized to 4x4 is v / 4 in every cell (bilinear keeps a constant, the
    factor (2/4)^2 keeps the sum), so fc6's output on a constant RoI feature is unchanged."""
    weight = np.zeros((2, 3 * 2 * 2), np.float32)
    weight[0] = 8.0                                     # output 0: every cell of every channel 8
    weight[1, 4:8] = [4.0, 4.0, 4.0, 4.0]               # output 1: channel 1 only, 4 in each of its 4 cells
    resized = resize_fc6(weight, channels=3, grid=2, roi_size=4)
    assert resized.shape == (2, 3 * 4 * 4) and resized.dtype == np.float32
    np.testing.assert_allclose(resized[0], 2.0)
    np.testing.assert_allclose(resized[1, 16:32], 1.0)
    np.testing.assert_allclose(resized[1, :16], 0.0)
    np.testing.assert_allclose(resized[1, 32:], 0.0)
    x_coarse, x_fine = np.full(12, 0.5, np.float32), np.full(48, 0.5, np.float32)
    np.testing.assert_allclose(resized @ x_fine, weight @ x_coarse, rtol=1e-6)
    np.testing.assert_array_equal(resize_fc6(weight, 3, 2, 2), weight)        # same grid: unchanged
    with pytest.raises(ValueError, match="does not fit 3 channels of 3x3"):
        resize_fc6(weight, channels=3, grid=3, roi_size=4)


def test_from_classifier_with_another_grid_and_dropout():
    """roi_size 4 on a classifier whose pool5 grid is 2: the RoI pool is 4x4, fc6 is resize_fc6 of the classifier's
    (the other layers are copied), and dropout is the one asked for."""
    net = classifier(num_classes=3)
    detector = from_classifier(net, num_classes=3, roi_size=4, dropout=0.0)
    assert detector.roi_pool5.output_size == (4, 4) and detector.spec.dropout == 0.0
    np.testing.assert_array_equal(detector.fc6.params["weight"], resize_fc6(net.fc6.params["weight"], 4, 2, 4))
    np.testing.assert_array_equal(detector.fc7.params["weight"], net.fc7.params["weight"])
    np.testing.assert_array_equal(detector.backbone.layers[0].params["weight"], net.backbone.layers[0].params["weight"])
    assert from_classifier(net, num_classes=3).spec.dropout == net.spec.dropout == 0.5
