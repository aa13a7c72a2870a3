"""Atomic writes: a file (or a folder) appears complete under its final name, or not at all.

Caches (proposals, roidb statistics), checkpoints and the generated dataset are written to a temporary sibling first
and then renamed into place. A rename within one folder is atomic on POSIX and Windows, so a crash or Ctrl-C while
writing leaves the old version (or nothing) behind, never a half-written file that a later run would trust.

Example::

    from minircnn.io import atomic_open, atomic_save_npz

    atomic_save_npz("data/shapes/proposals_test.npz", boxes=boxes, image_index=index)
    with atomic_open("run/config.json", "w") as f:
        json.dump(config, f)
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_save_npz", "atomic_directory"]


def _temp_sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name beside ``path``: same folder (so the final rename stays atomic), unique per process."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", encoding: str | None = None):
    """Open ``path`` for writing so that it only ever exists complete.

    The body writes to a temporary file beside ``path``; when it finishes without an exception the file is flushed
    to disk and renamed over ``path`` (replacing an existing file). On an exception the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: destination file (str or Path). Its folder must exist.
        mode: ``"wb"`` (default) or ``"w"`` (text).
        encoding: text encoding for ``mode="w"``; UTF-8 when not given.

    Yields:
        The open file object of the temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = _temp_sibling(path, "tmp")
    # "x" creates the file with the usual permissions (0o666 minus the umask), unlike tempfile's 0o600.
    kwargs = {"encoding": encoding or "utf-8"} if mode == "w" else {}
    try:
        with open(tmp, mode.replace("w", "x"), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_save_npz(path, *, compressed: bool = False, **arrays) -> None:
    """Save arrays to an ``.npz`` file atomically, without pickle.

    Unlike :func:`numpy.savez`, the file is written to exactly ``path`` (no ``.npz`` is appended).

    Args:
        path: destination file.
        compressed: zip-deflate the arrays (smaller, slower); plain storage by default.
        **arrays: name -> array-like; read back with ``np.load(path)[name]``. Object arrays are refused, so the
            file always loads with ``np.load``'s default ``allow_pickle=False``.

    Raises:
        ValueError: an array has an object dtype (it would need pickle).
    """
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise ValueError(f"atomic_save_npz: array {name!r} has an object dtype; only plain arrays are saved "
                             "(no pickle). Store ragged lists as one concatenated array plus offsets.")
    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as f:
        save(f, **arrays)


@contextlib.contextmanager
def atomic_directory(path, replace: bool = False):
    """Build a folder under a temporary sibling name and rename it to ``path`` when the body succeeds.

    On an exception the temporary folder is deleted and ``path`` is untouched. With ``replace=True`` an existing
    ``path`` is first renamed aside and deleted after the new folder is in place (two renames: in between, for an
    instant, ``path`` does not exist; it is never half-filled).

    Args:
        path: the final folder. Its parent is created if needed.
        replace: replace an existing ``path``; when False an existing ``path`` raises FileExistsError (after the
            body ran, e.g. when another process finished first).

    Yields:
        Path of the empty temporary folder to fill.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists() and replace:
            old = _temp_sibling(path, "old")
            os.rename(path, old)
        try:
            os.rename(tmp, path)  # fails if path exists and is not an empty folder
        except OSError as e:
            if old is not None:
                os.rename(old, path)
            raise FileExistsError(f"{path} already exists; not replacing it") from e
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_npz(path) -> dict:
    """Every array of an ``.npz`` file, read without pickle.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a NumPy ``.npz`` archive of plain arrays (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":           # an .npz is a zip archive; NumPy would take anything else for a pickle
        raise ValueError(f"{path}: cannot read it as an .npz file of arrays (not a NumPy .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:      # a damaged archive, or object arrays
        raise ValueError(f"{path}: cannot read it as an .npz file of arrays ({e})") from None
