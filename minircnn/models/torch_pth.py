"""Read a PyTorch ``state_dict`` file (``torch.save(model.state_dict(), "x.pth")``) without PyTorch, and safely.

A ``.pth`` file is a pickle, and unpickling runs whatever functions the pickle names: loading an untrusted one with
:mod:`pickle` (or ``torch.load(weights_only=False)``) can execute code. This reader uses a restricted
:class:`pickle.Unpickler` whose ``find_class`` hands out only the handful of globals a tensor state dict uses
(:data:`ALLOWED_GLOBALS`) and refuses everything else before anything runs. Even the admitted ones are stand-ins
written here: the storage types are dtype tags, and ``_rebuild_tensor_v2`` only records its arguments. The arrays
are built afterwards, from the raw bytes, with every offset, size and stride checked against the storage's length.

Two layouts exist (``torch/serialization.py``):

* **zip** (``torch.save`` since PyTorch 1.6)::

      <prefix>/data.pkl        the pickled dict; each tensor refers to a storage by key (a "persistent id")
      <prefix>/data/<key>      the raw bytes of that storage
      <prefix>/byteorder       "little" or "big" (absent in old files: little)
      <prefix>/version ...

* **legacy** (before 1.6, e.g. torchvision's ``vgg16-397923af.pth``): five pickles in a row -- a magic number, the
  protocol version, a dict of system info, the pickled dict, the list of storage keys -- and then, for each key in
  that list, an int64 element count followed by the storage's raw bytes.

In both, a tensor is pickled as ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` (or
``_rebuild_tensor(storage, offset, size, stride)`` in files from PyTorch < 0.4), with offset and strides counted in
elements of the storage.

Example::

    from minircnn.models.torch_pth import read_pth
    state = read_pth("vgg16-397923af.pth")     # {"features.0.weight": (64, 3, 3, 3) float32, ...}
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["read_pth", "is_zip", "TorchFileError", "UnsafePickleError", "ALLOWED_GLOBALS"]

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c           # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
BFLOAT16 = "bfloat16"                           # no NumPy dtype: widened to float32 by hand

#: torch storage class -> element type (NumPy dtype string, little-endian; byte order fixed when reading).
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": BFLOAT16,
                  "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
                  "ByteStorage": "u1", "BoolStorage": "?"}


class TorchFileError(ValueError):
    """A ``.pth`` file is not a readable tensor state dict; the message names the file and what is wrong."""


class UnsafePickleError(TorchFileError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing of it was executed."""


class _StorageType(NamedTuple):
    """Stand-in for ``torch.FloatStorage`` & co.: only its element type matters."""
    name: str
    dtype: str


class _Storage(NamedTuple):
    """A storage the pickle refers to; its bytes are read after unpickling."""
    key: str
    dtype: str
    numel: int


class _Tensor(NamedTuple):
    """The arguments of one ``_rebuild_tensor_v2`` call, turned into an array by :func:`_materialize`."""
    storage: object
    offset: object
    size: object
    stride: object


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_requires_grad_hooks_metadata):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data                                   # a Parameter is its tensor for our purpose


#: (module, name) -> what the unpickler gets instead; nothing else can be named by the pickle.
ALLOWED_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                   ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
                   ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}
ALLOWED_GLOBALS.update({("torch", name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()})


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals from :data:`ALLOWED_GLOBALS` only, and storages to :class:`_Storage`."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        self.storages = {}                         # key -> _Storage, every storage the pickle refers to

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load: the pickle names the global {module}.{name}, which a tensor state "
                f"dict never needs (allowed: {', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}). Nothing "
                "was executed.") from None

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy: the same plus view_metadata
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], _StorageType) and isinstance(pid[4], int)):
            raise TorchFileError(f"{self.source}: unexpected persistent id {pid!r:.200} (not a tensor storage)")
        storage = self.storages.setdefault(str(pid[2]), _Storage(str(pid[2]), pid[1].dtype, pid[4]))
        view = pid[5] if len(pid) == 6 else None
        if view is not None:                       # legacy: a view of a larger storage, (key, offset, numel)
            if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
                raise TorchFileError(f"{self.source}: malformed storage view {view!r:.200}")
            return _Tensor(storage, view[1], (view[2],), (1,))
        return storage


def _unpickle(data, source):
    """Unpickle ``data`` (bytes or file) with the restricted unpickler; pickle's own errors name the file.

    Returns:
        (object, {key: _Storage} of the storages it refers to).
    """
    file = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    unpickler = _RestrictedUnpickler(file, source)
    try:
        return unpickler.load(), unpickler.storages
    except TorchFileError:
        raise
    except Exception as e:      # UnpicklingError, EOFError, or a TypeError from a malformed call
        raise TorchFileError(f"{source}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None


def _dtype(tag, byteorder):
    return np.dtype("<u2" if tag == BFLOAT16 else tag).newbyteorder("<" if byteorder == "little" else ">")


def _materialize(t, name, storages, byteorder, source):
    """The array of tensor ``t`` (a :class:`_Tensor`), copied out of its storage's bytes after bounds checks."""
    if isinstance(t.storage, _Tensor):             # legacy view: its own storage, already a flat array
        base = _materialize(t.storage, name, storages, byteorder, source)
        tag = base.dtype.str
    else:
        if not isinstance(t.storage, _Storage):
            raise TorchFileError(f"{source}: tensor {name!r} has no storage")
        raw, tag = storages(t.storage), t.storage.dtype
        dtype = _dtype(tag, byteorder)
        if len(raw) != t.storage.numel * dtype.itemsize:
            raise TorchFileError(f"{source}: storage {t.storage.key!r} of tensor {name!r} has {len(raw)} bytes, "
                                 f"expected {t.storage.numel} x {dtype.itemsize}")
        base = np.frombuffer(raw, dtype=dtype)
    size, stride, offset = tuple(t.size), tuple(t.stride), t.offset
    ints = all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride))
    if not ints or len(size) != len(stride):
        raise TorchFileError(f"{source}: tensor {name!r} has a malformed offset/size/stride "
                             f"({offset!r}, {size!r}, {stride!r})")
    if 0 not in size and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= base.size:
        raise TorchFileError(f"{source}: tensor {name!r} (offset {offset}, size {size}, stride {stride}) reaches "
                             f"past the end of its storage of {base.size} elements")
    view = np.lib.stride_tricks.as_strided(base[offset:] if base.size else base, shape=size,
                                           strides=[s * base.itemsize for s in stride], writeable=False)
    array = np.array(view, dtype=view.dtype.newbyteorder("="), order="C")   # a copy, native byte order
    if tag == BFLOAT16:                            # bfloat16 is the top half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _state_dict(obj, storages, byteorder, source):
    """``{name: array}`` from the unpickled object, which must be a flat dict of tensors."""
    if not isinstance(obj, dict):
        raise TorchFileError(f"{source}: holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    out = {}
    for name, value in obj.items():
        if not isinstance(value, _Tensor):
            raise TorchFileError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor; expected "
                                 "a flat state dict such as torch.save(model.state_dict(), path) writes")
        out[str(name)] = _materialize(value, name, storages, byteorder, source)
    return out


def is_zip(path) -> bool:
    """Whether ``path`` starts with a zip file's magic bytes (``PK\\x03\\x04``)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _read_zip(path, source):
    try:
        with zipfile.ZipFile(path) as zf:
            pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                raise TorchFileError(f"{source}: a zip file but not a torch.save archive (no <prefix>/data.pkl)")
            prefix = pkls[0][:-len("data.pkl")]
            byteorder = "little"
            if prefix + "byteorder" in zf.namelist():
                byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise TorchFileError(f"{source}: unknown byteorder {byteorder!r}")
            obj, _ = _unpickle(zf.read(pkls[0]), source)

            def storages(s):
                try:
                    return zf.read(f"{prefix}data/{s.key}")
                except KeyError:
                    raise TorchFileError(f"{source}: storage {prefix}data/{s.key} is missing") from None

            return _state_dict(obj, storages, byteorder, source)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise TorchFileError(f"{source}: not a zip-format .pth, or truncated/corrupt ({e})") from None


def _read_legacy(path, source):
    with open(path, "rb") as f:
        try:
            magic, _ = _unpickle(f, source)
        except TorchFileError:
            magic = None
        if magic != LEGACY_MAGIC:
            raise TorchFileError(f"{source}: not a zip-format .pth, nor a legacy torch.save file")
        if _unpickle(f, source)[0] != LEGACY_PROTOCOL:
            raise TorchFileError(f"{source}: legacy torch.save file of an unknown protocol version")
        info, _ = _unpickle(f, source)
        byteorder = "little" if not isinstance(info, dict) or info.get("little_endian", True) else "big"
        obj, seen = _unpickle(f, source)
        keys, _ = _unpickle(f, source)
        if not isinstance(keys, list):
            raise TorchFileError(f"{source}: malformed legacy file (no list of storage keys)")
        raw = {}
        for key in map(str, keys):                 # int64 element count, then the bytes, in the order of `keys`
            head = f.read(8)
            if len(head) != 8 or key not in seen:
                raise TorchFileError(f"{source}: truncated, or storage {key!r} is not used by any tensor")
            numel = int(np.frombuffer(head, "<i8" if byteorder == "little" else ">i8")[0])
            nbytes = numel * _dtype(seen[key].dtype, byteorder).itemsize
            data = f.read(nbytes)
            if numel < 0 or len(data) != nbytes:
                raise TorchFileError(f"{source}: truncated in the data of storage {key!r}")
            raw[key] = data

    def storages(s):
        if s.key not in raw:
            raise TorchFileError(f"{source}: storage {s.key!r} is missing")
        return raw[s.key]

    return _state_dict(obj, storages, byteorder, source)


def read_pth(path) -> dict:
    """The tensors of a PyTorch state-dict file, as NumPy arrays, without importing torch or running its code.

    Args:
        path: a ``.pth``/``.pt`` file written by ``torch.save(state_dict, path)``, zip or legacy layout.

    Returns:
        ``{name: array}`` in the file's order; each array is a C-contiguous copy in its stored dtype (float32 for
        VGG16; bfloat16 is widened to float32), shape as the tensor's, e.g. ``"features.0.weight"`` (64, 3, 3, 3).

    Raises:
        UnsafePickleError: the pickle names any global besides :data:`ALLOWED_GLOBALS` (e.g. ``os.system``).
        TorchFileError: not a torch file, truncated or corrupt, or not a flat dict of tensors.
    """
    path = Path(path)
    source = str(path)
    return _read_zip(path, source) if is_zip(path) else _read_legacy(path, source)
