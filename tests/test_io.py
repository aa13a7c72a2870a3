"""Tests for minircnn.io: atomic writes leave either the complete new file (or folder) or the old one, never a part."""
import os

import numpy as np
import pytest

from minircnn.io import atomic_directory, atomic_open, atomic_save_npz, atomic_write_bytes, atomic_write_text


def leftovers(folder):
    """Hidden temporary siblings left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_write_bytes_creates_and_replaces(tmp_path):
    """atomic_write_bytes writes exactly the given bytes, replaces an existing file, and leaves no temporary file."""
    path = tmp_path / "cache.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert leftovers(tmp_path) == []


def test_write_text(tmp_path):
    """atomic_write_text writes UTF-8 text."""
    atomic_write_text(tmp_path / "a.txt", "größe\n")
    assert (tmp_path / "a.txt").read_bytes() == "größe\n".encode("utf-8")


def test_exception_keeps_the_old_file(tmp_path):
    """An exception inside atomic_open leaves the previous content untouched and removes the temporary file."""
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_open(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_new_file_is_invisible_until_complete(tmp_path):
    """While the body writes, the destination does not exist yet."""
    path = tmp_path / "new.bin"
    with atomic_open(path) as f:
        f.write(b"x")
        assert not path.exists()
    assert path.read_bytes() == b"x"


def test_permissions_follow_the_umask(tmp_path):
    """The file gets the permissions a plain open() would give (not tempfile's private 0o600)."""
    atomic_write_bytes(tmp_path / "a", b"")
    (tmp_path / "b").write_bytes(b"")
    assert os.stat(tmp_path / "a").st_mode == os.stat(tmp_path / "b").st_mode


def test_save_npz_round_trip_at_the_exact_path(tmp_path):
    """atomic_save_npz writes to exactly the given path (no '.npz' appended) and the arrays load back without pickle."""
    boxes = np.arange(12, dtype=np.float32).reshape(3, 4)
    for compressed in (False, True):
        path = tmp_path / f"proposals_{compressed}.cache"
        atomic_save_npz(path, compressed=compressed, boxes=boxes, count=np.int64(3))
        assert path.is_file() and not path.with_name(path.name + ".npz").exists()
        with np.load(path, allow_pickle=False) as data:
            np.testing.assert_array_equal(data["boxes"], boxes)
            assert data["boxes"].dtype == np.float32 and int(data["count"]) == 3


def test_save_npz_refuses_object_arrays(tmp_path):
    """Object arrays (ragged lists) are refused, naming the array: they would need pickle to load."""
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros((1, 4)), np.zeros((2, 4))]
    with pytest.raises(ValueError, match="'boxes'"):
        atomic_save_npz(tmp_path / "x.npz", boxes=ragged)
    assert not (tmp_path / "x.npz").exists() and leftovers(tmp_path) == []


def test_directory_appears_complete(tmp_path):
    """atomic_directory fills a hidden temporary folder and renames it to the destination at the end."""
    dest = tmp_path / "sub" / "dataset"
    with atomic_directory(dest) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not dest.exists()
    assert (dest / "a.txt").read_text() == "a"
    assert leftovers(dest.parent) == []


def test_directory_failure_leaves_nothing(tmp_path):
    """An exception in the body deletes the temporary folder; the destination is not created."""
    dest = tmp_path / "dataset"
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(dest) as tmp:
            (tmp / "a.txt").write_text("a")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_directory_replace(tmp_path):
    """An existing destination is kept without replace=True (FileExistsError) and replaced with it."""
    dest = tmp_path / "dataset"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="dataset"):
        with atomic_directory(dest) as tmp:
            (tmp / "new.txt").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["old.txt"]
    with atomic_directory(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    assert leftovers(tmp_path) == []


def test_read_npz_names_files_that_are_not_archives(tmp_path):
    """read_npz reads an .npz back; a text file, a single .npy array, a truncated archive or a missing file are
    refused with the file's name (never NumPy's pickle message)."""
    from minircnn.io import read_npz
    good = tmp_path / "good.npz"
    atomic_save_npz(good, a=np.arange(3))
    np.testing.assert_array_equal(read_npz(good)["a"], np.arange(3))
    (tmp_path / "notes.npz").write_text("hello\n")
    np.save(tmp_path / "one.npy", np.arange(3))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:40])
    for name in ("notes.npz", "one.npy", "cut.npz"):
        with pytest.raises(ValueError, match=rf"{name}: cannot read it as an \.npz file") as e:
            read_npz(tmp_path / name)
        assert "pickle" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="missing.npz: no such file"):
        read_npz(tmp_path / "missing.npz")
