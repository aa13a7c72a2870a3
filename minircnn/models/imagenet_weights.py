"""ImageNet weights for the backbone: convert torchvision's or Caffe's VGG16 file into one checked ``.npz``.

The paper starts every detector from an ImageNet classifier (Sec. 2.2). This module turns the two public releases
of those weights into the ``.npz`` that ``python -m minircnn.train --weights`` reads::

    python -m minircnn.weights convert vgg16-397923af.pth vgg16_torchvision.npz --arch vgg16
    python -m minircnn.weights convert VGG16.v2.caffemodel vgg16_caffe.npz --arch vgg16
    python -m minircnn.weights info vgg16_torchvision.npz

* torchvision ``.pth`` (read without PyTorch, :mod:`minircnn.models.torch_pth`): the state dict's layer indices
  are renamed by a per-architecture table (:data:`TORCHVISION_LAYOUTS`).
* Caffe ``.caffemodel`` (read without Caffe, :mod:`minircnn.models.caffemodel`): layer names already are ours
  (``conv1_1`` ... ``fc7``; blob 0 = weight, blob 1 = bias), for any backbone of
  :func:`minircnn.models.get_spec`.

Both store conv weights as (out, in, kh, kw) and fc weights as (out, in), our layout, so nothing is transposed.
fc6's inputs are pool5's (C, 7, 7) map flattened in C order (channel, row, column) -- in torchvision
(``torch.flatten(x, 1)``) and in Caffe's InnerProduct alike -- and our ``roi_pool5`` output (R, C, 7, 7) is flattened
the same way: ``FastRCNN.head_forward`` (:mod:`minircnn.models.fast_rcnn`) hands that 4-D output to ``fc6``, whose
:func:`~minircnn.functional.linear_forward` reshapes it to (R, C*7*7) in C order. So fc6 carries over as is. (Checked
once end to end against torchvision's VGG16 in eval mode on a 224x224 input, RoI = the whole 14x14 conv5 map: conv5_3
and fc7 outputs agreed to 6e-7.)

Every name and shape is checked against the architecture before anything is written; a file for another network is
refused with the first mismatches. The ``.npz`` holds (no pickle):

=================  ==================================================================================
key                value
=================  ==================================================================================
``conv1_1.weight``  ... one float32 array per parameter, our names; ``fc8.*`` = the 1000-way ImageNet
                   layer (kept for reference; ``train`` replaces it by the detector's two heads)
``preprocessing``  JSON of the :class:`~minircnn.data.Preprocessing` the weights expect (torchvision: RGB,
                   0-1, ImageNet mean/std; Caffe: BGR, 0-255, minus the BGR pixel means)
``arch``           the backbone name, e.g. ``"vgg16"``
``source``         the file it came from and its format, e.g. ``"vgg16-397923af.pth (pth)"``
``checksum``       sha256 of the parameters (:func:`params_checksum`), verified on load
=================  ==================================================================================
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..data.transforms import CAFFE_VGG16, TORCHVISION, Preprocessing
from ..io import atomic_save_npz, read_npz
from .backbones import BackboneSpec, get_spec
from .caffemodel import CaffemodelError, read_caffemodel
from .torch_pth import TorchFileError, is_zip, read_pth

__all__ = ["convert", "load_weights", "verify_checksum", "params_checksum", "expected_shapes", "check_architecture",
           "from_torchvision", "from_caffe", "detect_format", "WeightsError", "TORCHVISION_LAYOUTS", "METADATA_KEYS"]

METADATA_KEYS = ("preprocessing", "arch", "source", "checksum")
HEADS = ("fc8", "cls_score", "bbox_pred")        # optional layers on top of fc7: (M, fc7 width) weights
FORMATS = {"pth": TORCHVISION, "caffemodel": CAFFE_VGG16}   # format -> the preprocessing its weights expect
MAX_LISTED = 4                                   # names listed per kind of mismatch in an error message

#: arch -> {torchvision module name: our layer}. VGG16's ``features`` is a Sequential of conv, ReLU (and after
#: conv1_2, 2_2, 3_3, 4_3, 5_3 a max pool), so the convs sit at these indices; ``classifier`` is fc6, ReLU,
#: Dropout, fc7, ReLU, Dropout, fc8. (Its ``avgpool``, AdaptiveAvgPool2d(7), has no weights and is the identity on
#: the 7x7 map of a 224x224 image.)
TORCHVISION_LAYOUTS = {
    "vgg16": {"features.0": "conv1_1", "features.2": "conv1_2",
              "features.5": "conv2_1", "features.7": "conv2_2",
              "features.10": "conv3_1", "features.12": "conv3_2", "features.14": "conv3_3",
              "features.17": "conv4_1", "features.19": "conv4_2", "features.21": "conv4_3",
              "features.24": "conv5_1", "features.26": "conv5_2", "features.28": "conv5_3",
              "classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"},
}

READ_ERRORS = (TorchFileError, CaffemodelError)


class WeightsError(ValueError):
    """A weight file does not fit the architecture, or a converted ``.npz`` fails its checksum."""


# ----------------------------------------------------------------------------------------------- renaming
def _split(key):
    module, _, param = key.rpartition(".")
    return module, param


def _first(items, n=MAX_LISTED):
    items = list(items)
    return ", ".join(items[:n]) + (f" (and {len(items) - n} more)" if len(items) > n else "")


def from_torchvision(state: dict, arch: str, source: str) -> dict:
    """Rename a torchvision state dict to our parameter names.

    Args:
        state: ``{"features.0.weight": array, ...}`` as :func:`~minircnn.models.torch_pth.read_pth` returns.
        arch: key of :data:`TORCHVISION_LAYOUTS`.
        source: the file's name, for error messages.

    Returns:
        ``{"conv1_1.weight": array, ...}``, arrays unchanged.

    Raises:
        WeightsError: no table for ``arch``, or keys the table does not know.
    """
    if arch not in TORCHVISION_LAYOUTS:
        raise WeightsError(f"{source}: no torchvision layout is known for backbone {arch!r} (known: "
                           f"{', '.join(TORCHVISION_LAYOUTS)}); convert a .caffemodel instead")
    table = TORCHVISION_LAYOUTS[arch]
    unknown = [k for k in state if _split(k)[0] not in table or _split(k)[1] not in ("weight", "bias")]
    if unknown:
        raise WeightsError(f"{source} is not a torchvision {arch} state dict: unknown keys {_first(unknown)}; "
                           f"expected {_first(f'{m}.weight/bias' for m in table)}")
    return {f"{table[_split(k)[0]]}.{_split(k)[1]}": v for k, v in state.items()}


def from_caffe(layers: dict, source: str) -> dict:
    """Our parameters from Caffe layers: ``name.weight`` = blob 0, ``name.bias`` = blob 1.

    Args:
        layers: ``{layer_name: [blob, ...]}`` as :func:`~minircnn.models.caffemodel.read_caffemodel` returns.
        source: the file's name, for error messages.

    Raises:
        WeightsError: a layer with more than two blobs (not a conv or fc layer, e.g. BatchNorm).
    """
    params = {}
    for name, blobs in layers.items():
        if len(blobs) > 2:
            raise WeightsError(f"{source}: layer {name!r} has {len(blobs)} blobs; conv and fc layers have a weight "
                               "and a bias")
        params.update(zip((f"{name}.weight", f"{name}.bias"), blobs))
    return params


# ---------------------------------------------------------------------------------------- architecture check
def expected_shapes(spec: BackboneSpec) -> dict:
    """``{name: shape}`` of the backbone's convs, fc6 and fc7, in forward order, from a detector built with
    ``init=False`` (its zero weights are never touched, so even VGG16's 138M parameters cost no memory)."""
    from .fast_rcnn import FastRCNN
    model = FastRCNN(spec, num_classes=2, init=False)
    return {p.name: tuple(p.value.shape) for p in model.parameters() if p.module.name not in HEADS}


def _shape(shape):
    return str(tuple(shape)).replace("'", "")


def _strip(shape):
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _fit(array, shape):
    """``array`` reshaped to ``shape`` if it equals it up to leading ones (Caffe's legacy 4-D blobs), else None."""
    if tuple(array.shape) == tuple(shape):
        return array
    return array.reshape(shape) if _strip(array.shape) == _strip(shape) else None


def check_architecture(params: dict, spec: BackboneSpec, source: str) -> dict:
    """Check names, shapes and dtypes against ``spec``; return float32 parameters in forward order.

    Every conv, fc6 and fc7 parameter of the spec must be present with its shape (up to leading ones); besides
    those only the heads of :data:`HEADS` may appear, with (M, fc7 width) weights and (M,) biases.

    Args:
        params: ``{our_name: array}`` from :func:`from_torchvision` or :func:`from_caffe`.
        spec: the architecture (a narrow one in tests).
        source: the file's name, for error messages.

    Returns:
        ``{name: float32 array}``: the spec's parameters in forward order, then any heads.

    Raises:
        WeightsError: listing the first missing, unexpected, mis-shaped or non-floating parameters.
    """
    expected = expected_shapes(spec)
    for name, a in params.items():
        module, param = _split(name)
        if module in HEADS and name not in expected:
            width = spec.fc_widths[1]                  # the heads read fc7 (1024 wide in VGG_CNN_M_1024)
            rows = a.size // width if a.size % width == 0 else "M"     # "M": no fit
            expected[name] = (rows, width) if param == "weight" else (a.size,)
    problems = {"missing": [f"{n} {s}" for n, s in expected.items() if n not in params],
                "unexpected": [f"{n} {tuple(a.shape)}" for n, a in params.items() if n not in expected],
                "wrong shape": [], "other": []}
    out = {}
    for name, shape in expected.items():
        if name not in params:
            continue
        a = params[name]
        fitted = _fit(a, shape)
        if fitted is None:
            problems["wrong shape"].append(f"{name} {tuple(a.shape)} instead of {_shape(shape)}")
        elif not np.issubdtype(a.dtype, np.floating):
            problems["other"].append(f"{name} has dtype {a.dtype}, not floating")
        else:
            out[name] = np.ascontiguousarray(fitted, dtype=np.float32)
    for head in HEADS:
        w, b = out.get(f"{head}.weight"), out.get(f"{head}.bias")
        if w is not None and b is not None and w.shape[0] != b.shape[0]:
            problems["other"].append(f"{head}.weight has {w.shape[0]} rows but {head}.bias {b.shape[0]} values")
    if any(problems.values()):
        convs = "-".join(str(c[1]) for c in spec.convs)
        fcs = "-".join(str(w) for w in spec.fc_widths)
        raise WeightsError(f"{source} does not fit the {spec.name} backbone (convs {convs}, fc {fcs}): "
                           + "; ".join(f"{kind} {len(items)}: {_first(items)}"
                                       for kind, items in problems.items() if items))
    return out


# ------------------------------------------------------------------------------------------- the .npz file
def params_checksum(params: dict) -> str:
    """sha256 (hex) over the parameters sorted by name: each contributes ``"name shape\\n"`` and its float32
    little-endian bytes, so a changed value, shape or name changes it."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(params[name], dtype="<f4")
        h.update(f"{name} {a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def verify_checksum(arrays, source) -> None:
    """Check the ``checksum`` entry of a converted file against its parameters.

    Args:
        arrays: ``{key: array}`` of the whole ``.npz`` (metadata keys included).
        source: the file's name, for the message.

    Raises:
        WeightsError: no checksum, or it differs (a corrupted or edited file).
    """
    if "checksum" not in arrays:
        raise WeightsError(f"{source}: no checksum (not written by `python -m minircnn.weights convert`)")
    stored = str(arrays["checksum"])
    actual = params_checksum({k: v for k, v in arrays.items() if k not in METADATA_KEYS})
    if actual != stored:
        raise WeightsError(f"{source}: checksum mismatch (stored {stored[:16]}..., the parameters give "
                           f"{actual[:16]}...): the file is corrupt or was modified; convert it again")


def save_weights(path, params: dict, preprocessing: Preprocessing, arch: str, source: str) -> None:
    """Write parameters and metadata to ``path`` atomically (a complete file or none); see the module table."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(path, **params, preprocessing=json.dumps(preprocessing.to_dict()), arch=arch, source=source,
                    checksum=params_checksum(params))


def load_weights(path):
    """Read a converted file back, checking its checksum.

    Args:
        path: an ``.npz`` written by :func:`convert`.

    Returns:
        params: ``{name: float32 array}`` (``conv1_1.weight`` (64, 3, 3, 3), ..., ``fc8.bias`` (1000,)).
        preprocessing: the :class:`~minircnn.data.Preprocessing` the weights expect.

    Raises:
        WeightsError: the checksum is absent or wrong.
    """
    arrays = read_npz(path)
    verify_checksum(arrays, str(path))
    params = {k: v for k, v in arrays.items() if k not in METADATA_KEYS}
    return params, Preprocessing.from_dict(json.loads(str(arrays["preprocessing"])))


def detect_format(path) -> str:
    """``"pth"`` (a zip archive, or a ``.pth``/``.pt`` name) or ``"caffemodel"`` (that extension)."""
    path = Path(path)
    if is_zip(path) or path.suffix in (".pth", ".pt"):
        return "pth"
    if path.suffix == ".caffemodel":
        return "caffemodel"
    raise WeightsError(f"{path}: cannot tell the format (not a zip archive; extension neither .pth nor "
                       ".caffemodel); pass --format pth or --format caffemodel")


def convert(src, out, arch: str = "vgg16", fmt: str = "auto", spec: BackboneSpec | None = None) -> dict:
    """Read ``src``, check it against the architecture, write ``out`` (nothing is written if any check fails).

    Args:
        src: torchvision ``.pth`` (zip or legacy) or Caffe ``.caffemodel``.
        out: the ``.npz`` to write (parent folders are created).
        arch: backbone name for :func:`~minircnn.models.get_spec`.
        fmt: ``"auto"``, ``"pth"`` or ``"caffemodel"``.
        spec: the architecture to check against instead of ``get_spec(arch)`` (e.g. a narrow VGG16 in tests).

    Returns:
        The written parameters, ``{name: float32 array}``.

    Raises:
        WeightsError, TorchFileError (incl. UnsafePickleError), CaffemodelError: the message names the file and
        the key, layer or field at fault.
    """
    src = Path(src)
    spec = spec or get_spec(arch)
    if not src.is_file():
        raise WeightsError(f"{src}: no such file")
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise WeightsError(f"unknown format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    if fmt == "pth":
        params = from_torchvision(read_pth(src), spec.name, str(src))
    else:
        params = from_caffe(read_caffemodel(src), str(src))
    params = check_architecture(params, spec, str(src))
    save_weights(out, params, FORMATS[fmt], arch=spec.name, source=f"{src.name} ({fmt})")
    return params
