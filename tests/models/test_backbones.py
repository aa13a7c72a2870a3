"""Backbone architectures (minircnn/models/backbones.py): VGG16, CaffeNet and VGG_CNN_M_1024 exactly as the paper's
models L, S and M (docs/reference.md §2), tiny, and the spec format that checkpoints store.

VGG16 is built once, with ``init=False``: its 138M parameters are zeros that cost no time and no memory until
written (``np.zeros``), so the shape and flag checks are cheap.
"""
import json

import numpy as np
import pytest

from minircnn.models import (CAFFENET, TINY, VGG16, VGG_CNN_M_1024, BackboneSpec, FastRCNN, build_classifier,
                             build_model, get_spec)


@pytest.fixture(scope="module")
def vgg16():
    return build_model("vgg16", 21, init=False)


VGG16_CONVS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
               ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
               ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
               ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]


def test_vgg16_layers_in_order(vgg16):
    """13 3x3 convs (pad 1, stride 1), each followed by a ReLU; 2x2 stride-2 max pools after conv1_2, conv2_2,
    conv3_3 and conv4_3; roi_pool5 (7x7 at 1/16) on conv5_3 instead of pool5; fc6, fc7 with ReLU and dropout 0.5;
    the two sibling heads."""
    names = [layer.name for layer in vgg16.layers]
    assert names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2",
                     "pool2", "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
                     "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
                     "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3",
                     "roi_pool5", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "cls_score", "bbox_pred"]
    for name, c_in, c_out in VGG16_CONVS:
        conv = vgg16[name]
        assert conv.params["weight"].shape == (c_out, c_in, 3, 3) and conv.params["bias"].shape == (c_out,)
        assert (conv.stride, conv.pad) == (1, 1)
    for i in range(1, 5):
        assert (vgg16[f"pool{i}"].kernel_size, vgg16[f"pool{i}"].stride) == (2, 2)
    assert vgg16.roi_pool5.output_size == (7, 7) and vgg16.roi_pool5.spatial_scale == 1 / 16
    assert vgg16.fc6.params["weight"].shape == (4096, 25088)
    assert vgg16.fc7.params["weight"].shape == (4096, 4096)
    assert vgg16.cls_score.params["weight"].shape == (21, 4096)
    assert vgg16.bbox_pred.params["weight"].shape == (84, 4096)
    assert vgg16.drop6.p == vgg16.drop7.p == 0.5


def test_vgg16_frozen_layers_and_multipliers(vgg16):
    """conv1_1..conv2_2 are frozen, conv3_1 and up train (paper Sec. 4.5); weights lr 1 decay 1, biases lr 2
    decay 0 (docs/reference.md §14.9)."""
    frozen = [p.name for p in vgg16.parameters() if p.frozen]
    assert frozen == [f"{n}.{k}" for n in ("conv1_1", "conv1_2", "conv2_1", "conv2_2") for k in ("weight", "bias")]
    for p in vgg16.parameters():
        assert (p.lr_mult, p.decay_mult) == ((1.0, 1.0) if p.key == "weight" else (2.0, 0.0))


def test_vgg16_conv5_size_and_parameter_count(vgg16):
    """Caffe's ceil pooling gives conv5_3 maps of 38x50 for 600x800 and 38x63 for 600x1000 (docs/reference.md §2); the
    ImageNet classifier with pool5 and fc8 has VGG16's well-known 138,357,544 parameters."""
    assert vgg16.feature_map_size(600, 800) == (38, 50)
    assert vgg16.feature_map_size(600, 1000) == (38, 63)
    assert vgg16.feature_map_size(601, 1001) == (38, 63)        # 601 -> 301 -> 151 -> 76 -> 38
    assert vgg16.backbone.stride == 16
    classifier = build_classifier("vgg16", 1000, init=False)
    assert classifier.num_parameters() == 138_357_544 and classifier.grid == 7


def test_vgg16_forward_backward_at_reduced_scale(vgg16):
    """The real layer shapes run on a 64x64 image: (R, 21) scores and (R, 84) deltas. In the backward, conv3_1 is
    the first trainable layer: it computes its weight gradient but no input gradient, and nothing below it runs
    (no cache kept there, no gradients for the frozen convs)."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    rois = np.array([[0, 0, 0, 63, 63], [0, 8, 8, 40, 50]], dtype=np.float32)
    scores, deltas = vgg16.forward(images, rois)
    assert scores.shape == (2, 21) and deltas.shape == (2, 84)
    assert vgg16["conv3_1"].need_dx is False and vgg16["relu3_1"].need_dx is True
    assert all(vgg16[n].cache is None for n in ("conv1_1", "relu1_2", "pool1", "conv2_2", "pool2"))
    vgg16.loss(scores, deltas, np.array([0, 3]), np.zeros((2, 84), np.float32))
    vgg16.backward()
    grads = vgg16.gradients()
    assert "conv3_1.weight" in grads and not any(name.startswith(("conv1", "conv2")) for name in grads)
    assert len(grads) == 2 * (9 + 4)                       # conv3_1..conv5_3, fc6, fc7, cls_score, bbox_pred


def test_tiny_architecture():
    """tiny: convs 16-32-64-128-128 with four pools (total stride 16, RoI pool 7x7 at 1/16), fc6 6272->512,
    fc7 512->512; nothing frozen."""
    model = build_model("tiny", 21)
    assert [(n, model[n].params["weight"].shape[0]) for n, _ in TINY.convs] == list(TINY.convs)
    assert model.backbone.stride == 16 and model.roi_pool5.spatial_scale == 1 / 16
    assert model.fc6.params["weight"].shape == (512, 128 * 7 * 7)
    assert not any(p.frozen for p in model.parameters())
    assert model.feature_map_size(288, 384) == (18, 24)


def test_spec_round_trip_and_overrides():
    """A spec survives to_dict/from_dict (what a checkpoint stores); overrides are checked."""
    for spec in (TINY, VGG16):
        assert BackboneSpec.from_dict(spec.to_dict()) == spec
    narrow = get_spec("tiny", channels=(4, 4, 8, 8, 8), roi_size=3, fc_width=16)
    assert narrow.convs[-1] == ("conv5", 8) and narrow.roi_size == 3
    with pytest.raises(ValueError, match="channels needs 5 values"):
        get_spec("tiny", channels=(4, 4))
    with pytest.raises(ValueError, match=r"unknown backbone settings \['width'\]"):
        get_spec("tiny", width=3)
    with pytest.raises(ValueError, match="frozen names unknown layers"):
        get_spec("tiny", frozen=("conv9",))
    with pytest.raises(ValueError, match="unknown backbone spec keys"):
        BackboneSpec.from_dict({**TINY.to_dict(), "depth": 3})


# ------------------------------------------------------------------------------- models S and M (docs/reference.md §2)

def fc_params(c_in, out):
    """Weights and biases of an fc layer."""
    return out * c_in + out


# The prototxts' numbers (FR:models/{CaffeNet,VGG_CNN_M_1024}/train.prototxt, docs/reference.md §2): the backbone's
# layers in order; each conv's (out, in, kernel, stride, pad, groups); both pools' (kernel, stride, pad); both LRNs'
# (local_size, alpha, beta, k); fc6's inputs (conv5 channels x the 6x6 RoI grid) and fc6, fc7 outputs.
SMALL_MODELS = {
    "caffenet": dict(
        layers=["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2",
                "conv3", "relu3", "conv4", "relu4", "conv5", "relu5"],
        convs={"conv1": (96, 3, 11, 4, 5, 1), "conv2": (256, 96, 5, 1, 2, 2), "conv3": (384, 256, 3, 1, 1, 1),
               "conv4": (384, 384, 3, 1, 1, 2), "conv5": (256, 384, 3, 1, 1, 2)},
        pools=(3, 2, 1), lrn=(5, 1e-4, 0.75, 1.0), fcs=(256 * 36, 4096, 4096)),
    "vgg_cnn_m_1024": dict(
        layers=["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2",
                "conv3", "relu3", "conv4", "relu4", "conv5", "relu5"],
        convs={"conv1": (96, 3, 7, 2, 0, 1), "conv2": (256, 96, 5, 2, 1, 1), "conv3": (512, 256, 3, 1, 1, 1),
               "conv4": (512, 512, 3, 1, 1, 1), "conv5": (512, 512, 3, 1, 1, 1)},
        pools=(3, 2, 0), lrn=(5, 5e-4, 0.75, 2.0), fcs=(512 * 36, 4096, 1024)),
}


@pytest.fixture(scope="module", params=["caffenet", "vgg_cnn_m_1024"])
def small_model(request):
    """Model S or M with its real layer sizes, randomly initialised (float32)."""
    return build_model(request.param, 21, seed=0)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_small_models_layers_in_order(name):
    """CaffeNet (model S): conv1 11x11 stride 4 pad 5, pool1 3x3 stride 2 pad 1 *then* norm1; conv2 5x5 pad 2 in two
    groups (weights hold half the input channels), pool2, norm2; conv3 3x3; conv4, conv5 3x3 in two groups; LRN
    size 5, alpha 1e-4, beta 0.75, k 1; fc6 9216->4096, fc7 4096->4096.
    VGG_CNN_M_1024 (model M): conv1 7x7 stride 2, *then* norm1 (k 2, alpha 5e-4) before pool1 3x3 stride 2 pad 0;
    conv2 5x5 stride 2 pad 1, norm2, pool2; conv3..conv5 3x3 with 512 channels; fc6 18432->4096, fc7 4096->1024,
    so both heads read 1024 features.
    Both: roi_pool5 6x6 at 1/16, dropout 0.5, only conv1 frozen (paper Sec. 4.5)."""
    want = SMALL_MODELS[name]
    model = build_model(name, 21, init=False)
    assert [layer.name for layer in model.backbone.layers] == want["layers"]
    for conv, (out, c_in, k, stride, pad, groups) in want["convs"].items():
        assert model[conv].params["weight"].shape == (out, c_in // groups, k, k)
        assert (model[conv].stride, model[conv].pad, model[conv].groups) == (stride, pad, groups)
    for i in (1, 2):
        pool, norm = model[f"pool{i}"], model[f"norm{i}"]
        assert (pool.kernel_size, pool.stride, pool.pad) == want["pools"]
        assert (norm.local_size, norm.alpha, norm.beta, norm.k) == want["lrn"]
    fc_in, fc6, fc7 = want["fcs"]
    assert model.roi_pool5.output_size == (6, 6) and model.roi_pool5.spatial_scale == 1 / 16
    assert model.fc6.params["weight"].shape == (fc6, fc_in) and model.fc7.params["weight"].shape == (fc7, fc6)
    assert model.cls_score.params["weight"].shape == (21, fc7) and model.bbox_pred.params["weight"].shape == (84, fc7)
    assert model.drop6.p == model.drop7.p == 0.5
    assert [p.name for p in model.parameters() if p.frozen] == ["conv1.weight", "conv1.bias"]


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_small_models_parameter_counts(name):
    """The parameter count is the prototxt's, added up by hand: convs (out x in/groups x k x k weights plus out
    biases), fc6, fc7 and the two heads for 21 classes. CaffeNet's convs, fc6, fc7 and a 1000-way fc8 make the
    well-known 60,965,224 of the ImageNet model."""
    convs, (fc_in, fc6, fc7) = SMALL_MODELS[name]["convs"], SMALL_MODELS[name]["fcs"]
    conv_counts = {conv: out * (c_in // groups) * k * k + out for conv, (out, c_in, k, _, _, groups) in convs.items()}
    backbone_and_fc = sum(conv_counts.values()) + fc_params(fc_in, fc6) + fc_params(fc6, fc7)
    model = build_model(name, 21, init=False)
    assert model.num_parameters() == backbone_and_fc + fc_params(fc7, 21) + fc_params(fc7, 84)
    assert model.num_parameters(trainable_only=True) == model.num_parameters() - conv_counts["conv1"]
    if name == "caffenet":
        assert backbone_and_fc + fc_params(4096, 1000) == 60_965_224


@pytest.mark.parametrize("name, at_600, at_1000", [("caffenet", 39, 64), ("vgg_cnn_m_1024", 36, 61),
                                                   ("vgg16", 38, 63)])
def test_conv5_sizes_and_total_stride(name, at_600, at_1000):
    """conv5 sizes from Caffe's rules (conv floor, pooling ceil), docs/reference.md §2: a 600 x 1000 image gives 39 x 64
    in S, 36 x 61 in M, 38 x 63 in L. All three have total stride 16 (S: 4*2*2, M: 2*2*2*2, L: 2*2*2*2), so the RoI pool
    reads them at spatial scale 1/16 -- for M too, whose map is smaller than image/16 (docs/reference.md §14.4)."""
    model = build_model(name, 21, init=False)
    assert model.feature_map_size(600, 1000) == (at_600, at_1000)
    assert model.feature_map_size(1000, 600) == (at_1000, at_600)
    assert model.backbone.stride == 16 and model.roi_pool5.spatial_scale == 1 / 16


def test_small_models_forward_backward(small_model):
    """A 224x224 image with 3 RoIs runs through S and M (float32): (3, 21) scores and (3, 84) deltas, finite. In the
    backward conv2 is the first trainable layer: it gets its weight gradient but computes no input gradient, so
    nothing below it (conv1, pool1, norm1) keeps a cache or gets gradients."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((1, 3, 224, 224)).astype(np.float32) * 50
    rois = np.array([[0, 0, 0, 223, 223], [0, 16, 32, 120, 200], [0, 100, 60, 180, 110]], dtype=np.float32)
    scores, deltas = small_model.forward(images, rois)
    assert scores.shape == (3, 21) and deltas.shape == (3, 84) and scores.dtype == np.float32
    assert np.isfinite(scores).all() and np.isfinite(deltas).all()
    assert small_model["conv2"].need_dx is False
    assert all(small_model[n].cache is None for n in ("conv1", "relu1", "pool1", "norm1"))
    small_model.loss(scores, deltas, np.array([0, 3, 7]), np.zeros((3, 84), np.float32))
    small_model.backward()
    grads = small_model.gradients()
    assert sorted({name.split(".")[0] for name in grads}) == ["bbox_pred", "cls_score", "conv2", "conv3", "conv4",
                                                              "conv5", "fc6", "fc7"]
    for p in small_model.parameters():
        if p.grad is not None:
            assert p.grad.shape == p.value.shape and p.grad.dtype == np.float32 and np.isfinite(p.grad).all()
    assert np.abs(grads["conv2.weight"]).max() > 0


# ------------------------------------------------------------------------------- spec format compatibility

# What BackboneSpec.to_dict wrote before the spec learned kernels, groups, LRN and fc7 widths (checkpoints made
# then carry these dicts): they must still load, as the same architectures.
OLD_TINY = {"name": "tiny", "convs": [["conv1", 16], ["conv2", 32], ["conv3", 64], ["conv4", 128], ["conv5", 128]],
            "pools": ["conv1", "conv2", "conv3", "conv4"], "frozen": [], "roi_size": 7, "fc_width": 512,
            "dropout": 0.5, "in_channels": 3}
OLD_NARROW = {"name": "tiny", "convs": [["conv1", 2], ["conv2", 2], ["conv3", 3], ["conv4", 3], ["conv5", 4]],
              "pools": ["conv1", "conv2", "conv3", "conv4"], "frozen": ["conv1", "fc6"], "roi_size": 2,
              "fc_width": 8, "dropout": 0.25, "in_channels": 3}


def test_old_spec_dicts_still_load():
    """Dicts of the first spec format load to the same architectures, and tiny and vgg16 still write exactly that
    format (the new fields are left out while they hold their defaults)."""
    assert BackboneSpec.from_dict(OLD_TINY) == TINY and TINY.to_dict() == OLD_TINY
    narrow = BackboneSpec.from_dict(OLD_NARROW)
    assert narrow.to_dict() == OLD_NARROW and narrow.fc_widths == (8, 8) and narrow.lrn == ()
    model = FastRCNN.from_config({"num_classes": 3, "spec": OLD_NARROW})
    assert model.fc7.params["weight"].shape == (8, 8) and model["conv5"].params["weight"].shape == (4, 3, 3, 3)
    assert [p.name for p in model.parameters() if p.frozen] == ["conv1.weight", "conv1.bias", "fc6.weight",
                                                                "fc6.bias"]
    assert "lrn" not in VGG16.to_dict() and "fc7_width" not in VGG16.to_dict()


@pytest.mark.parametrize("spec", [CAFFENET, VGG_CNN_M_1024])
def test_new_specs_round_trip_through_json(spec):
    """S and M survive to_dict -> JSON -> from_dict (what a checkpoint does), kernels, groups and LRN included."""
    assert BackboneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_entries_short_and_long_forms():
    """A conv entry with default settings spelled out is the short entry; a pool given as (name, 2, 2, 0) is its
    name; partial long entries are completed; overriding channels keeps each conv's kernel, stride, pad, groups."""
    short = BackboneSpec("t", convs=(("c1", 4), ("c2", 6, 5, 2)), pools=("c1",))
    long = BackboneSpec("t", convs=(("c1", 4, 3, 1, 1, 1), ("c2", 6, 5, 2, 1, 1)), pools=(("c1", 2, 2, 0),))
    assert short == long and short.convs == (("c1", 4), ("c2", 6, 5, 2, 1, 1)) and short.pools == ("c1",)
    assert [tuple(c) for c in short.conv_layers()] == [("c1", 4, 3, 1, 1, 1), ("c2", 6, 5, 2, 1, 1)]
    narrow = get_spec("caffenet", channels=(8, 8, 6, 6, 4))
    assert narrow.convs[1] == ("conv2", 8, 5, 1, 2, 2) and narrow.out_channels == 4


@pytest.mark.parametrize("changes, match", [
    (dict(channels=(8, 7, 6, 6, 4)), r"conv2: groups=2 must divide"),       # 7 outputs in 2 groups
    (dict(lrn=("pool3",)), r"lrn names unknown layers \['pool3'\]"),
    (dict(lrn=("pool1", "pool1")), r"lrn names a layer twice"),
    (dict(lrn_params=(4, 1e-4, 0.75, 1.0)), r"odd local_size"),
    (dict(lrn_params=(5, 1e-4, 0.75, 0.0)), r"k > 0"),
    (dict(pools=(("conv1", 3, 2, 3), ("conv2", 3, 2, 1))), r"pool1 needs .* pad < kernel"),
    (dict(convs=(("conv1", 96, 11, 0, 5),) + CAFFENET.convs[1:]), r"conv conv1 needs"),          # stride 0
    (dict(fc7_width=0), r"fc widths must be positive"),
])
def test_spec_rejects_bad_settings(changes, match):
    """Impossible architectures are refused when the spec is made, naming the backbone and the problem."""
    with pytest.raises(ValueError, match=match):
        get_spec("caffenet", **changes)
