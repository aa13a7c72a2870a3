"""Read the weights of a Caffe ``.caffemodel`` without Caffe or protobuf: a hand-written protobuf wire-format reader.

A ``.caffemodel`` is one serialized ``NetParameter`` message (``CF:src/caffe/proto/caffe.proto``). Protobuf's wire
format is a sequence of fields, each a *key* -- the varint ``field_number << 3 | wire_type`` -- and a value:

=========  =================  =====================================================================
wire type  value              used here for
=========  =================  =====================================================================
0          varint             ints (7 bits per byte, low group first, high bit = "more bytes follow")
1          8 bytes            an unpacked double
2          varint length, raw strings, sub-messages, and *packed* repeated numbers
5          4 bytes            an unpacked float
=========  =================  =====================================================================

Only the fields that hold weights are read; every other field is skipped by its wire type::

    NetParameter      layer = 100 (LayerParameter, current)   layers = 2 (V1LayerParameter, before 2015)
    LayerParameter    name = 1, type = 2, blobs = 7
    V1LayerParameter  name = 4, blobs = 6                     (field 1 would be the even older V0 format)
    BlobProto         num, channels, height, width = 1..4 (legacy 4-D shape), data = 5 (float),
                      shape = 7 (BlobShape: dim = 1, int64), double_data = 8

The original VGG16 release stores the legacy 4-D shapes, so its fc weights come out as (1, 1, out, in) and biases
as (1, 1, 1, out); :mod:`minircnn.weights` squeezes those leading ones against the architecture.

Example::

    from minircnn.models.caffemodel import read_caffemodel
    layers = read_caffemodel("VGG16.v2.caffemodel")  # {"conv1_1": [(64, 3, 3, 3) weight, (64,) bias], ...}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_caffemodel", "CaffemodelError"]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
NET_LAYER, NET_LAYERS_V1 = 100, 2
LAYER_NAME, LAYER_BLOBS = 1, 7
V1_V0LAYER, V1_NAME, V1_BLOBS = 1, 4, 6
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH, BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 1, 2, 3, 4, 5, 7, 8
SHAPE_DIM = 1


class CaffemodelError(ValueError):
    """A ``.caffemodel`` cannot be read; the message names the file, the layer and the field at fault."""


def _varint(buf, pos, end, where):
    """Decode one varint at ``buf[pos]``; returns (value, next position)."""
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise CaffemodelError(f"{where}: truncated varint at byte {pos}")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CaffemodelError(f"{where}: varint longer than 10 bytes at byte {pos}")


def _fields(buf, start, end, where):
    """Iterate over the fields of the message ``buf[start:end]``.

    Yields:
        (field_number, wire_type, value): value is an int for varints, the (start, end) byte range for
        length-delimited fields, and the raw bytes' start position for fixed32/fixed64.
    """
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end, where)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(buf, pos, end, where)
        elif wire == LENGTH:
            n, pos = _varint(buf, pos, end, where)
            value = (pos, pos + n)
            pos += n
        elif wire in (FIXED32, FIXED64):
            value = pos
            pos += 4 if wire == FIXED32 else 8
        else:
            raise CaffemodelError(f"{where}: unsupported wire type {wire} (field {field}) at byte {pos}")
        if pos > end:
            raise CaffemodelError(f"{where}: field {field} ends at byte {pos}, past the end of its message at byte "
                                  f"{end} (truncated file?)")
        yield field, wire, value


def _numbers(buf, field, wire, value, kind, where):
    """The numbers of one occurrence of a repeated numeric field (packed or not) as a 1-D array.

    Args:
        kind: ``"<f4"``, ``"<f8"`` (little-endian floats) or ``"varint"``.
    """
    if wire == LENGTH:
        a, b = value
        if kind == "varint":
            out, pos = [], a
            while pos < b:
                v, pos = _varint(buf, pos, b, where)
                out.append(v)
            return np.array(out, dtype=np.int64)
        size = np.dtype(kind).itemsize
        if (b - a) % size:
            raise CaffemodelError(f"{where}: packed field {field} has {b - a} bytes, not a multiple of {size}")
        return np.frombuffer(buf, dtype=kind, count=(b - a) // size, offset=a)
    expected = {"varint": VARINT, "<f4": FIXED32, "<f8": FIXED64}[kind]
    if wire != expected:
        raise CaffemodelError(f"{where}: field {field} has wire type {wire}, expected {expected} or 2 (packed)")
    if kind == "varint":
        return np.array([value], dtype=np.int64)
    return np.frombuffer(buf, dtype=kind, count=1, offset=value)


def _blob(buf, start, end, where):
    """A BlobProto as an array: float32 (from ``data``) or float64 (``double_data``), in its stored shape."""
    legacy, dims, parts, doubles = {}, [], [], []
    for field, wire, value in _fields(buf, start, end, where):
        if field in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH) and wire == VARINT:
            legacy[field] = value
        elif field == BLOB_DATA:
            parts.append(_numbers(buf, field, wire, value, "<f4", where))
        elif field == BLOB_DOUBLE_DATA:
            doubles.append(_numbers(buf, field, wire, value, "<f8", where))
        elif field == BLOB_SHAPE and wire == LENGTH:
            for f, w, v in _fields(buf, *value, where + " shape"):
                if f == SHAPE_DIM:
                    dims.extend(int(d) for d in _numbers(buf, f, w, v, "varint", where + " shape"))
    if parts and doubles:
        raise CaffemodelError(f"{where}: holds both data and double_data")
    data = np.concatenate(parts or doubles) if (parts or doubles) else np.zeros(0, np.float32)
    if dims:
        shape = tuple(dims)
    elif legacy:
        shape = tuple(legacy.get(f, 0) for f in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH))
    else:
        shape = (data.size,)
    if int(np.prod(shape, dtype=np.int64)) != data.size:
        raise CaffemodelError(f"{where}: shape {shape} needs {int(np.prod(shape))} values, the blob has {data.size}")
    return data.astype(data.dtype.newbyteorder("="), copy=True).reshape(shape)


def _layer(buf, start, end, v1, path, index):
    """(name, [blob arrays]) of the ``index``-th LayerParameter (``v1=False``) or V1LayerParameter of ``path``."""
    where = f"{path}: {'layers' if v1 else 'layer'} #{index}"
    name_field, blobs_field = (V1_NAME, V1_BLOBS) if v1 else (LAYER_NAME, LAYER_BLOBS)
    name, blob_ranges = None, []
    for field, wire, value in _fields(buf, start, end, where):
        if v1 and field == V1_V0LAYER and wire == LENGTH:
            raise CaffemodelError(f"{where}: a V0-format layer; upgrade the file with Caffe's "
                                  "upgrade_net_proto_binary first")
        if field == name_field and wire == LENGTH:
            name = bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
        elif field == blobs_field and wire == LENGTH:
            blob_ranges.append(value)
    if name is None:
        raise CaffemodelError(f"{where}: a layer without a name")
    where = f"{path}: layer {name!r}"
    return name, [_blob(buf, a, b, f"{where} blob {i}") for i, (a, b) in enumerate(blob_ranges)]


def read_caffemodel(path) -> dict:
    """The learned blobs of every layer that has any, by layer name, in the file's order.

    Args:
        path: a ``.caffemodel`` (binary ``NetParameter``, current or V1 layer format).

    Returns:
        ``{layer_name: [blob0, blob1, ...]}``: for conv and fc layers blob 0 is the weight -- conv (out, in, kh, kw),
        fc (out, in), or (1, 1, out, in) in the legacy 4-D format -- and blob 1 the bias ((out,) or (1, 1, 1, out)).
        float32 arrays (float64 if the file stores ``double_data``). Layers without blobs (ReLU, pooling, data,
        loss) are left out.

    Raises:
        CaffemodelError: truncated or malformed protobuf, a layer name seen twice, or no layer with weights.
    """
    path = Path(path)
    buf = memoryview(path.read_bytes())
    layers, index, name = {}, 0, None
    fields = _fields(buf, 0, len(buf), f"{path}")
    while True:
        try:
            field, wire, value = next(fields)
        except StopIteration:
            break
        except CaffemodelError as e:           # a break between layers: say after which layer it came
            raise CaffemodelError(f"{e}; in the layer after #{index - 1} {name!r}" if name else str(e)) from None
        if field in (NET_LAYER, NET_LAYERS_V1) and wire == LENGTH:
            name, blobs = _layer(buf, *value, v1=field == NET_LAYERS_V1, path=path, index=index)  # names the layer
            index += 1
            if not blobs:
                continue
            if name in layers:
                raise CaffemodelError(f"{path}: layer {name!r} appears twice")
            layers[name] = blobs
    if not layers:
        raise CaffemodelError(f"{path}: no layer with weights (not a .caffemodel, or an empty net)")
    return layers
