"""ImageNet weight import (minircnn.weights, models/torch_pth.py, models/caffemodel.py), on tiny files.

The torchvision fixtures (tests/fixtures/vgg16_narrow*.pth) were written once by make_weight_fixtures.py with
PyTorch; these tests never import torch. Tensor number k of the fixture holds ``k + arange(n) / 1024``, so the
expected values are written here independently of the reader. Caffe files are built by a small protobuf *encoder*
below, independent of the decoder under test; hostile ``.pth`` files are assembled from pickle opcodes by hand.
"""
import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from minircnn import weights
from minircnn.models import imagenet_weights
from minircnn.training import initialization
from minircnn.training.config import get_preset
from minircnn.data.transforms import CAFFE_VGG16, TORCHVISION
from minircnn.models import get_spec
from minircnn.models.caffemodel import CaffemodelError, read_caffemodel
from minircnn.models.torch_pth import TorchFileError, UnsafePickleError, read_pth

FIXTURES = Path(__file__).parent / "fixtures"
PTH, PTH_LEGACY = FIXTURES / "vgg16_narrow.pth", FIXTURES / "vgg16_narrow_legacy.pth"
CHANNELS = (2, 2, 3, 3, 2, 2, 2, 3, 3, 3, 2, 2, 2)          # as in make_weight_fixtures.py
VGG_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
             "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
NARROW = dict(channels=CHANNELS, fc_width=4, roi_size=2)
SPEC = get_spec("vgg16", **NARROW)


def values(k, shape):
    return (k + np.arange(int(np.prod(shape))) / 1024).reshape(shape)


def narrow_params(convs, channels, roi=2, fc=4, fc8=5):
    """Our names -> the deterministic values, in forward order (the fixture's tensor order)."""
    shapes, cin = OrderedDict(), 3
    for name, c in zip(convs, channels):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c, cin, 3, 3), (c,)
        cin = c
    for name, (o, n) in zip(("fc6", "fc7", "fc8"), ((fc, cin * roi * roi), (fc, fc), (fc8, fc))):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (o, n), (o,)
    return OrderedDict((name, values(k, s).astype(np.float32)) for k, (name, s) in enumerate(shapes.items()))


EXPECTED = narrow_params(VGG_CONVS, CHANNELS)


# ------------------------------------------------------------------------------------- hand-made encoders
def pb_varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_len(field, payload):
    return pb_varint(field << 3 | 2) + pb_varint(len(payload)) + payload


def pb_int(field, value):
    return pb_varint(field << 3) + pb_varint(value)


def blob(a, legacy=False, unpacked=False, double=False):
    """BlobProto: current BlobShape (field 7) or legacy num/channels/height/width (1..4); data packed (5),
    unpacked fixed32 floats (5), or double_data (8)."""
    if legacy:
        dims = (1,) * (4 - a.ndim) + a.shape
        msg = b"".join(pb_int(f, d) for f, d in zip((1, 2, 3, 4), dims))
    else:
        msg = pb_len(7, pb_len(1, b"".join(pb_varint(d) for d in a.shape)))
    if double:
        return msg + pb_len(8, a.astype("<f8").tobytes())
    if unpacked:
        return msg + b"".join(pb_varint(5 << 3 | 5) + struct.pack("<f", v) for v in a.ravel())
    return msg + pb_len(5, a.astype("<f4").tobytes())


def caffemodel(params, v1=False, extra=(), **blob_kw):
    """A NetParameter with a data layer, each conv/fc layer (+ a ReLU without blobs), and ``extra`` layers."""
    def layer(name, blobs):
        if v1:   # V1LayerParameter: name 4, type 5 (enum), blobs 6; bottom 2 / top 3 strings are skipped
            return pb_len(2, pb_len(2, b"x") + pb_len(4, name.encode()) + pb_int(5, 4)
                          + b"".join(pb_len(6, blob(b, **blob_kw)) for b in blobs))
        return pb_len(100, pb_len(1, name.encode()) + pb_len(2, b"Convolution") + pb_len(3, b"bottom")
                      + pb_varint(5 << 3 | 5) + struct.pack("<f", 1.0)          # loss_weight: a fixed32 to skip
                      + pb_len(106, pb_int(1, 7))                              # convolution_param {num_output}
                      + b"".join(pb_len(7, blob(b, **blob_kw)) for b in blobs))
    layers = {}
    for name, a in params.items():
        layers.setdefault(name.split(".")[0], []).append(a)
    out = pb_len(1, b"net") + layer("data", [])
    for name, blobs in [*layers.items(), *extra]:
        out += layer(name, blobs) + layer("relu_" + name, [])
    return out


def pk_global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def pk_str(text):
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def pk_int(v):
    return b"J" + struct.pack("<i", v)


def pk_tuple(*parts):
    return b"(" + b"".join(parts) + b"t"


def pk_tensor(key, numel, offset, size, stride, storage="FloatStorage", view=None):
    """Pickle opcodes of ``_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())``."""
    pid = [pk_str("storage"), pk_global("torch", storage), pk_str(key), pk_str("cpu"), pk_int(numel)]
    if view is not None:
        pid.append(pk_tuple(pk_str(view[0]), pk_int(view[1]), pk_int(view[2])))
    return (pk_global("torch._utils", "_rebuild_tensor_v2")
            + pk_tuple(pk_tuple(*pid) + b"Q", pk_int(offset), pk_tuple(*map(pk_int, size)),
                       pk_tuple(*map(pk_int, stride)), b"\x89", pk_global("collections", "OrderedDict") + b")R")
            + b"R")


def pk_state(entries):
    """A pickled OrderedDict of (key, opcodes of the value)."""
    return (b"\x80\x02" + pk_global("collections", "OrderedDict") + b")R("
            + b"".join(pk_str(k) + v for k, v in entries) + b"u.")


def torch_zip(path, data_pkl, storages):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")
    return path


# ------------------------------------------------------------------------------------------------ readers
def test_read_pth_known_values():
    """The zip-format fixture reads back, without torch, to the values its generator wrote: every key in
    torchvision's order, the float16 and float64 tensors in their dtypes, and the transposed (non-contiguous) and
    offset (slice of a larger storage) tensors with their logical values."""
    state = read_pth(PTH)
    indices = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    keys = [f"features.{i}.{p}" for i in indices for p in ("weight", "bias")]
    keys += [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    assert list(state) == keys
    for k, (key, ours) in enumerate(zip(keys, EXPECTED.values())):
        assert state[key].shape == ours.shape, key
        np.testing.assert_array_equal(state[key], values(k, ours.shape), err_msg=key)
    assert state["features.0.bias"].dtype == np.float16 and state["classifier.6.bias"].dtype == np.float64
    assert state["classifier.3.weight"].flags.c_contiguous


def test_read_pth_legacy_format_equals_zip():
    """The pre-1.6 torch.save layout (that of torchvision's vgg16-397923af.pth) gives the same arrays."""
    zipped, legacy = read_pth(PTH), read_pth(PTH_LEGACY)
    assert list(zipped) == list(legacy)
    for key in zipped:
        assert zipped[key].dtype == legacy[key].dtype
        np.testing.assert_array_equal(zipped[key], legacy[key], err_msg=key)


def test_legacy_storage_view(tmp_path):
    """A legacy file whose tensor lives in a *view* (elements 2..5) of a larger storage reads those elements."""
    body = pk_state([("w", pk_tensor("root", 8, 1, (2,), (1,), view=("v", 2, 4)))])
    raw = np.arange(8, dtype="<f4")
    f = tmp_path / "view.pth"
    f.write_bytes(b"".join(pickle.dumps(x, protocol=2) for x in (0x1950a86a20f9469cfc6c, 1001,
                                                                  {"little_endian": True}))
                  + body + pickle.dumps(["root"], protocol=2) + struct.pack("<q", 8) + raw.tobytes())
    np.testing.assert_array_equal(read_pth(f)["w"], [3.0, 4.0])    # view starts at 2, tensor offset 1


@pytest.mark.parametrize("module, name, arg", [
    ("os", "system", "touch {marker}"),
    ("builtins", "eval", "__import__('pathlib').Path(r'{marker}').touch()"),
    ("subprocess", "call", "touch {marker}"),
])
def test_hostile_pickle_is_refused_and_not_run(tmp_path, module, name, arg):
    """A .pth whose pickle calls os.system / eval / subprocess is refused by name, before anything runs: the
    marker file its payload would create does not appear, and OUT is not written."""
    marker = tmp_path / "pwned"
    payload = b"\x80\x02" + pk_global(module, name) + pk_tuple(pk_str(arg.format(marker=marker))) + b"R."
    src = torch_zip(tmp_path / "evil.pth", payload, {})
    out = tmp_path / "out.npz"
    with pytest.raises(UnsafePickleError, match=rf"evil\.pth.*{module}\.{name}"):
        imagenet_weights.convert(src, out, spec=SPEC)
    assert not marker.exists() and not out.exists()


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """Offsets and strides are checked against the storage's length (no read outside the file's bytes)."""
    src = torch_zip(tmp_path / "oob.pth", pk_state([("features.0.bias", pk_tensor("0", 4, 0, (2,), (1000,)))]),
                    {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(TorchFileError, match=r"oob\.pth.*features\.0\.bias.*past the end"):
        read_pth(src)


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_bytes(PTH.read_bytes()[:4000]), "truncated|corrupt"),          # zip cut short
    (lambda p: p.write_bytes(PTH_LEGACY.read_bytes()[:-10]), "truncated"),          # legacy cut short
    (lambda p: p.write_bytes(b"this is not a weight file" * 10), "not a zip-format .pth"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "hi"), "no <prefix>/data.pkl"),
])
def test_broken_pth_files(tmp_path, make, match):
    """Truncated files, non-zip files and other zips are refused with the file named; OUT is not created."""
    src, out = tmp_path / "broken.pth", tmp_path / "out.npz"
    make(src)
    with pytest.raises(TorchFileError, match=match) as e:
        imagenet_weights.convert(src, out, spec=SPEC)
    assert str(src) in str(e.value) and not out.exists()


def test_truncated_caffemodel(tmp_path):
    """A .caffemodel cut in the middle of a blob names the file and the layer being read."""
    src = tmp_path / "vgg.caffemodel"
    src.write_bytes(caffemodel(EXPECTED)[:600])
    with pytest.raises(CaffemodelError, match=r"vgg\.caffemodel: field 100 .*truncated.*layer after #\d+ 'relu_"):
        read_caffemodel(src)


# ------------------------------------------------------------------------------------------ conversion
def _load_npz(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("src", [PTH, PTH_LEGACY])
def test_convert_torchvision(tmp_path, src):
    """features.{0,2,...,28} become conv1_1..conv5_3 and classifier.{0,3,6} fc6, fc7, fc8, as float32 in our
    (out, in[, kh, kw]) layout, with torchvision's preprocessing (RGB, 0-1, ImageNet mean/std) and the source."""
    out = tmp_path / "w.npz"
    imagenet_weights.convert(src, out, spec=SPEC)
    arrays = _load_npz(out)
    params = {k: v for k, v in arrays.items() if "." in k}
    assert list(params) == list(EXPECTED)
    for name, want in EXPECTED.items():
        assert params[name].dtype == np.float32
        np.testing.assert_array_equal(params[name], want, err_msg=name)
    assert json.loads(str(arrays["preprocessing"])) == json.loads(json.dumps(TORCHVISION.to_dict()))
    assert str(arrays["arch"]) == "vgg16" and str(arrays["source"]) == f"{src.name} (pth)"
    loaded, preprocessing = imagenet_weights.load_weights(out)
    assert preprocessing == TORCHVISION and loaded.keys() == EXPECTED.keys()


@pytest.mark.parametrize("kw", [dict(), dict(v1=True, legacy=True), dict(v1=True, legacy=True, unpacked=True),
                                dict(double=True)])
def test_convert_caffemodel(tmp_path, kw):
    """Caffe layer names are ours (blob 0 = weight, 1 = bias), in the current and the V1 layer format, with
    BlobShape or legacy 4-D shapes (fc weights (1, 1, out, in)), packed or unpacked float data or double_data;
    the preprocessing is Caffe's (BGR, 0-255, BGR means)."""
    src, out = tmp_path / "vgg16.caffemodel", tmp_path / "w.npz"
    src.write_bytes(caffemodel(EXPECTED, **kw))
    imagenet_weights.convert(src, out, spec=SPEC)
    params, preprocessing = imagenet_weights.load_weights(out)
    assert preprocessing == CAFFE_VGG16 and list(params) == list(EXPECTED)
    for name, want in EXPECTED.items():
        np.testing.assert_array_equal(params[name], want, err_msg=name)
    assert str(_load_npz(out)["source"]) == "vgg16.caffemodel (caffemodel)"


def test_caffemodel_path_works_for_any_backbone(tmp_path):
    """The Caffe mapping is the identity, so a file for another registered backbone (here a narrow ``tiny``,
    conv1..conv5) converts when checked against that backbone's spec -- and is refused against VGG16's."""
    spec = get_spec("tiny", channels=(2, 3, 2, 3, 2), fc_width=4, roi_size=2)
    params = narrow_params(("conv1", "conv2", "conv3", "conv4", "conv5"), (2, 3, 2, 3, 2))
    src = tmp_path / "tiny.caffemodel"
    src.write_bytes(caffemodel(params))
    got = imagenet_weights.convert(src, tmp_path / "w.npz", arch="tiny", spec=spec)
    np.testing.assert_array_equal(got["conv5.weight"], params["conv5.weight"])
    with pytest.raises(imagenet_weights.WeightsError,
                       match=r"missing 26: conv1_1\.weight .*; unexpected 10: conv1\.weight"):
        imagenet_weights.convert(src, tmp_path / "x.npz", spec=SPEC)
    assert not (tmp_path / "x.npz").exists()


def test_caffemodel_of_models_s_and_m(tmp_path):
    """Files shaped like the paper's models S and M convert: grouped convs store (out, in/groups, k, k) weights in
    Caffe as here, and an fc8 reads fc7, which is narrower than fc6 in VGG_CNN_M_1024 (narrow stand-ins: fc6 6,
    fc7 3 wide). A file with a missing layer is refused with the spec's widths in the message."""
    from minircnn.models import FastRCNN
    narrow = dict(channels=(4, 4, 6, 6, 4), fc_width=6, fc7_width=3)
    for spec in (get_spec("vgg_cnn_m_1024", **narrow), get_spec("caffenet", **narrow)):
        shapes = [(p.name, p.value.shape) for p in FastRCNN(spec, 2, init=False).parameters()
                  if p.module.name not in ("cls_score", "bbox_pred")] + [("fc8.weight", (5, 3)), ("fc8.bias", (5,))]
        params = OrderedDict((name, values(k, shape).astype(np.float32)) for k, (name, shape) in enumerate(shapes))
        src = tmp_path / f"{spec.name}.caffemodel"
        src.write_bytes(caffemodel(params))
        got = imagenet_weights.convert(src, tmp_path / f"{spec.name}.npz", spec=spec)
        assert list(got) == list(params) and got["fc8.weight"].shape == (5, 3)
        if spec.name == "caffenet":
            assert got["conv2.weight"].shape == (4, 2, 5, 5)       # group 2: half of conv1's 4 channels
        del params["conv5.bias"]
        src.write_bytes(caffemodel(params))
        with pytest.raises(imagenet_weights.WeightsError, match=r"\(convs 4-4-6-6-4, fc 6-3\): missing 1: conv5\.bias"):
            imagenet_weights.convert(src, tmp_path / "x.npz", spec=spec)


@pytest.mark.parametrize("change, match", [
    (lambda p: [p.pop("conv5_3.weight"), p.pop("conv5_3.bias")],
     r"missing 2: conv5_3\.weight \(2, 2, 3, 3\), conv5_3\.bias \(2,\)"),
    (lambda p: p.update({"conv6.weight": np.zeros((2, 2, 3, 3), np.float32)}), r"unexpected 1: conv6\.weight"),
    (lambda p: p.update({"conv2_1.weight": np.zeros((3, 2, 5, 5), np.float32)}),
     r"wrong shape 1: conv2_1\.weight \(3, 2, 5, 5\) instead of \(3, 2, 3, 3\)"),
    (lambda p: p.update({"fc8.bias": np.zeros(7, np.float32)}), r"fc8\.weight has 5 rows but fc8\.bias 7"),
    (lambda p: p.update({"fc8.weight": np.zeros((5, 3), np.float32)}), r"fc8\.weight \(5, 3\) instead of \(M, 4\)"),
])
def test_wrong_architecture_is_refused(tmp_path, change, match):
    """Missing, extra or mis-shaped parameters: an error naming the file and the first mismatches; no OUT."""
    params = OrderedDict(EXPECTED)
    change(params)
    src, out = tmp_path / "other.caffemodel", tmp_path / "w.npz"
    src.write_bytes(caffemodel(params))
    with pytest.raises(imagenet_weights.WeightsError, match=match) as e:
        imagenet_weights.convert(src, out, spec=SPEC)
    assert "other.caffemodel" in str(e.value) and not out.exists()


def test_cli_refuses_narrow_file_for_full_vgg16(tmp_path, capsys):
    """The CLI checks against the full VGG16 spec: the narrow fixture is refused (one error line, non-zero exit),
    the message lists the first shape mismatches, and OUT is not written."""
    out = tmp_path / "w.npz"
    with pytest.raises(SystemExit) as e:
        weights.main(["convert", str(PTH), str(out), "--arch", "vgg16"])
    err = str(e.value.code)
    assert err.startswith("error: ") and "\n" not in err
    assert "wrong shape 31: conv1_1.weight (2, 3, 3, 3) instead of (64, 3, 3, 3)" in err and "(and 27 more)" in err
    assert not out.exists()


def test_unknown_torchvision_arch_and_format(tmp_path):
    """No torchvision table for an architecture, or a file of unknown format: clear errors."""
    with pytest.raises(imagenet_weights.WeightsError, match="no torchvision layout is known for backbone 'tiny'"):
        imagenet_weights.convert(PTH, tmp_path / "w.npz", spec=get_spec("tiny"))
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"\x00" * 16)
    with pytest.raises(imagenet_weights.WeightsError, match="cannot tell the format"):
        imagenet_weights.convert(odd, tmp_path / "w.npz", spec=SPEC)


def test_torchvision_vgg16_table_follows_the_spec():
    """The table's conv indices are those of torchvision's ``features`` Sequential: each conv is followed by a
    ReLU, and the convs that end a stage by a max pool too (so +2 per conv, +1 per pool), in VGG16's conv order."""
    spec, table, i = get_spec("vgg16"), imagenet_weights.TORCHVISION_LAYOUTS["vgg16"], 0
    for name, _ in spec.convs:
        assert table[f"features.{i}"] == name
        i += 2 + (name in spec.pools or name == spec.convs[-1][0])
    assert i == 31     # features has 31 modules, the last one pool5
    assert [table[f"classifier.{i}"] for i in (0, 3, 6)] == ["fc6", "fc7", "fc8"]


# --------------------------------------------------------------------------------------- checksum, train
def _tamper(path):
    arrays = _load_npz(path)
    arrays["conv3_1.weight"] = arrays["conv3_1.weight"] + np.float32(1e-3)
    np.savez(path, **arrays)


def test_checksum_mismatch(tmp_path, capsys):
    """Changing one parameter of a converted file makes load_weights fail with the file named, and info report
    the failure (exit status 1)."""
    out = tmp_path / "w.npz"
    imagenet_weights.convert(PTH, out, spec=SPEC)
    assert weights.main(["info", str(out)]) == 0
    assert "checksum:      ok" in capsys.readouterr().out
    _tamper(out)
    with pytest.raises(imagenet_weights.WeightsError, match=r"w\.npz: checksum mismatch"):
        imagenet_weights.load_weights(out)
    assert weights.main(["info", str(out)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cli_convert_and_info(tmp_path, capsys, monkeypatch):
    """``convert`` then ``info``: arch, source, preprocessing, the parameter table and the checksum status."""
    monkeypatch.setattr(imagenet_weights, "get_spec", lambda name: get_spec(name, **NARROW))
    src, out = tmp_path / "vgg16.caffemodel", tmp_path / "sub" / "w.npz"
    src.write_bytes(caffemodel(EXPECTED))
    assert weights.main(["convert", str(src), str(out), "--arch", "vgg16"]) == 0
    assert "32 parameters" in capsys.readouterr().out
    assert weights.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for line in ("arch:          vgg16", "source:        vgg16.caffemodel (caffemodel)", '"channel_order": "BGR"',
                 "checksum:      ok"):
        assert line in text
    assert any(line.split()[:3] == ["fc6.weight", "(4,", "8)"] for line in text.splitlines())


def _narrow_build_model(monkeypatch):
    build = initialization.build_model
    monkeypatch.setattr(initialization, "build_model", lambda name, n, **kw: build(name, n, **{**kw, **NARROW}))


@pytest.mark.parametrize("fmt, wanted, configured", [("pth", TORCHVISION, "caffe_vgg16"),
                                                     ("caffemodel", CAFFE_VGG16, "torchvision")])
def test_train_initial_model_uses_the_weights_preprocessing(tmp_path, monkeypatch, fmt, wanted, configured):
    """initialization.initial_model loads converted weights into the detector (fc8 dropped) and takes the preprocessing
    from the file, overriding the config's (set here to the other convention on purpose)."""
    _narrow_build_model(monkeypatch)
    src = PTH if fmt == "pth" else tmp_path / "vgg16.caffemodel"
    if fmt == "caffemodel":
        src.write_bytes(caffemodel(EXPECTED))
    out = tmp_path / "w.npz"
    imagenet_weights.convert(src, out, spec=SPEC)
    config = get_preset("tiny").replace(backbone="vgg16", weights=str(out), preprocessing=configured)
    model, preprocessing = initialization.initial_model(config, num_classes=3)
    assert preprocessing == wanted
    state = model.state_dict()
    for name in ("conv1_1.weight", "conv5_3.bias", "fc6.weight", "fc7.bias"):
        np.testing.assert_array_equal(state[name], EXPECTED[name], err_msg=name)
    assert state["cls_score.weight"].shape == (3, 4)


def test_train_initial_model_refuses_corrupted_weights(tmp_path, monkeypatch):
    """A converted file whose checksum no longer holds stops training with the file named."""
    _narrow_build_model(monkeypatch)
    out = tmp_path / "w.npz"
    imagenet_weights.convert(PTH, out, spec=SPEC)
    _tamper(out)
    config = get_preset("tiny").replace(backbone="vgg16", weights=str(out))
    with pytest.raises(imagenet_weights.WeightsError, match=r"w\.npz: checksum mismatch"):
        initialization.initial_model(config, num_classes=3)
