"""Tests for minircnn.data.proposals: the original .mat layout (docs/reference.md §12, §14.17), our .npz format, dense
boxes, parallel computation, the cache beside the dataset, recall and the command line."""
import numpy as np
import pytest
import scipy.io

from minircnn.data import proposals as P


def write_mat(path, per_image, **extra):
    """A .mat file whose ``boxes`` is a MATLAB cell array (an object array) with one matrix per image."""
    cell = np.empty((len(per_image), 1), dtype=object)
    for k, b in enumerate(per_image):
        cell[k, 0] = np.asarray(b, dtype=np.uint16).reshape(-1, 4)
    scipy.io.savemat(str(path), {"boxes": cell, **extra})
    return path


# ------------------------------------------------------------------------------------------------------- .mat
def test_mat_selective_search_layout(tmp_path):
    """[y1 x1 y2 x2] 1-based rows become [x1 y1 x2 y2] 0-based float32, per image, in file order; an image with
    no boxes gives a (0, 4) array; nothing is deduplicated or filtered."""
    path = write_mat(tmp_path / "voc_2007_test.mat", [
        [[11, 21, 31, 41], [1, 1, 5, 8], [1, 1, 5, 8]],
        np.zeros((0, 4)),
        [[2, 3, 4, 5]],
    ])
    boxes = P.load_proposals_mat(path)
    assert len(boxes) == 3 and all(b.dtype == np.float32 for b in boxes)
    np.testing.assert_array_equal(boxes[0], [[20, 10, 40, 30], [0, 0, 7, 4], [0, 0, 7, 4]])
    assert boxes[1].shape == (0, 4)
    np.testing.assert_array_equal(boxes[2], [[2, 1, 4, 3]])


def test_mat_demo_layout(tmp_path):
    """Demo files hold one image's boxes, already [x1 y1 x2 y2] 0-based: kept unchanged."""
    path = tmp_path / "000004_boxes.mat"
    scipy.io.savemat(str(path), {"boxes": np.array([[0, 5, 499, 300], [10, 20, 30, 40]], dtype=np.uint16)})
    boxes = P.load_proposals_mat(path, layout="demo")
    assert len(boxes) == 1
    np.testing.assert_array_equal(boxes[0], [[0, 5, 499, 300], [10, 20, 30, 40]])


def test_mat_checks_the_split(tmp_path):
    """The image count (and the ids when the file lists them) must match the split; the error names the file."""
    path = write_mat(tmp_path / "props.mat", [[[1, 1, 2, 2]], [[1, 1, 3, 3]]])
    assert len(P.load_proposals_mat(path, image_ids=["a", "b"])) == 2
    with pytest.raises(ValueError, match=r"props\.mat.*2 images.*3"):
        P.load_proposals_mat(path, image_ids=["a", "b", "c"])
    ids = np.empty((2, 1), dtype=object)
    ids[0, 0], ids[1, 0] = "000005", "000007"
    named = write_mat(tmp_path / "named.mat", [[[1, 1, 2, 2]], [[1, 1, 3, 3]]], images=ids)
    assert len(P.load_proposals_mat(named, image_ids=["000005", "000007"])) == 2
    with pytest.raises(ValueError, match=r"named\.mat.*'000007'.*'000009'"):
        P.load_proposals_mat(named, image_ids=["000005", "000009"])


def test_mat_bad_content(tmp_path):
    """Missing ``boxes``, rows that are not 4 wide, and a 0-based file read as 1-based are errors naming the file."""
    scipy.io.savemat(str(tmp_path / "empty.mat"), {"rois": np.zeros((2, 4))})
    with pytest.raises(ValueError, match=r"empty\.mat.*no 'boxes'"):
        P.load_proposals_mat(tmp_path / "empty.mat")
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = np.ones((2, 5))
    scipy.io.savemat(str(tmp_path / "wide.mat"), {"boxes": cell})
    with pytest.raises(ValueError, match=r"wide\.mat.*image 0.*\(n, 4\)"):
        P.load_proposals_mat(tmp_path / "wide.mat")
    zero_based = write_mat(tmp_path / "zero.mat", [[[0, 0, 9, 9]]])
    with pytest.raises(ValueError, match=r"zero\.mat.*layout='demo'"):
        P.load_proposals_mat(zero_based)
    with pytest.raises(ValueError, match="layout"):
        P.load_proposals_mat(zero_based, layout="xyxy")
    (tmp_path / "junk.mat").write_bytes(b"not a MATLAB file " * 10)
    with pytest.raises(ValueError, match=r"junk\.mat"):
        P.load_proposals_mat(tmp_path / "junk.mat")


# ------------------------------------------------------------------------------------------------------- .npz
def test_npz_round_trip(tmp_path):
    """save/load returns the same boxes (also an image with none), ids and metadata; no temporary file is left."""
    boxes = [np.array([[0, 0, 5, 5], [1, 2, 3, 4]], np.float32), np.zeros((0, 4), np.float32),
             np.array([[7, 7, 9, 9]], np.float32)]
    path = tmp_path / "test_ss-fast.npz"
    P.save_proposals(path, boxes, ["a", "b", "c"], method="ss-fast", seed=3)
    loaded, meta = P.load_proposals(path, ["a", "b", "c"], return_meta=True)
    assert len(loaded) == 3
    for a, b in zip(boxes, loaded):
        assert b.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_array_equal(a, b)
    assert meta["method"] == "ss-fast" and meta["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_npz_mismatch_names_the_file(tmp_path):
    """Other ids, another count, or a file that is not ours: a ValueError naming the file."""
    path = tmp_path / "props.npz"
    P.save_proposals(path, [np.zeros((1, 4)), np.zeros((2, 4))], ["a", "b"])
    with pytest.raises(ValueError, match=r"props\.npz.*2 images.*3"):
        P.load_proposals(path, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"props\.npz.*image 1.*'b'.*'x'"):
        P.load_proposals(path, ["a", "x"])
    np.savez(tmp_path / "other.npz", boxes=np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"other\.npz.*not a minircnn proposal file"):
        P.load_proposals(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        P.load_proposals(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="image_ids"):
        P.save_proposals(path, [np.zeros((1, 4))], ["a", "b"])


# ------------------------------------------------------------------------------------------------ dense boxes
def test_dense_boxes_by_hand():
    """4x4 windows with stride 0.5 (2 px) over a 10x10 image: starts 0, 2, 4, 6 in each direction, 16 boxes."""
    boxes = P.dense_boxes((10, 10), scales=(4,), aspect_ratios=(1.0,), stride=0.5)
    assert boxes.dtype == np.float32 and boxes.shape == (16, 4)
    np.testing.assert_array_equal(boxes[:5], [[0, 0, 3, 3], [2, 0, 5, 3], [4, 0, 7, 3], [6, 0, 9, 3], [0, 2, 3, 5]])


def test_dense_boxes_reach_the_edges_and_clip():
    """The last window touches the far edge; windows larger than the image are clipped and appear once."""
    boxes = P.dense_boxes((10, 11), scales=(4,), aspect_ratios=(1.0,), stride=0.75)   # x starts 0, 3, 6, 7
    assert boxes[:, 2].max() == 10 and boxes[:, 3].max() == 9
    np.testing.assert_array_equal(np.unique(boxes[:, 0]), [0, 3, 6, 7])
    big = P.dense_boxes((10, 11, 3), scales=(20, 40), aspect_ratios=(1.0,))
    np.testing.assert_array_equal(big, [[0, 0, 10, 9]])


def test_dense_boxes_shapes_and_counts():
    """Aspect ratio h / w: ratio 4 gives windows twice as tall as the scale and half as wide; every box lies
    inside the image and no two are equal."""
    boxes = P.dense_boxes((100, 100), scales=(20,), aspect_ratios=(4.0,), stride=1.0)
    np.testing.assert_array_equal(np.unique(boxes[:, 2] - boxes[:, 0] + 1), [10])
    np.testing.assert_array_equal(np.unique(boxes[:, 3] - boxes[:, 1] + 1), [40])
    assert len(boxes) == 10 * 3    # x starts 0..90 step 10; y starts 0, 40, 60 (the last one touching the edge)
    full = P.dense_boxes((300, 250))
    assert 10000 < len(full) < 60000 and len(np.unique(full, axis=0)) == len(full)
    assert full.min() >= 0 and full[:, 2].max() == 249 and full[:, 3].max() == 299


@pytest.mark.parametrize("kwargs, name", [({"image_shape": (0, 5)}, "image_shape"),
                                          ({"scales": ()}, "scales"), ({"scales": (8, -1)}, "scales"),
                                          ({"aspect_ratios": (0.0,)}, "aspect_ratios"),
                                          ({"stride": 0}, "stride"), ({"stride": 1.5}, "stride")])
def test_dense_boxes_bad_arguments(kwargs, name):
    args = {"image_shape": (20, 20), **kwargs}
    with pytest.raises(ValueError, match=name):
        P.dense_boxes(**args)


# ------------------------------------------------------------------------------------- computing and caching
def small_images(n=3):
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        image = rng.integers(80, 120, (48, 64, 3)).astype(np.uint8)
        x, y = rng.integers(0, 40), rng.integers(0, 24)
        image[y:y + 20, x:x + 20] = rng.integers(0, 256, 3)
        images.append(image)
    return images


def test_compute_is_independent_of_workers():
    """Image i is seeded with (seed, i): one process and two processes give identical boxes."""
    images = small_images()
    one = P.compute_proposals(images, "ss-fast", seed=1, workers=1, progress=False)
    two = P.compute_proposals(images, "ss-fast", seed=1, workers=2, progress=False)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="method"):
        P.compute_proposals(images, "edge-boxes")


class TinySplit:
    """The part of VOCDataset the cache needs: root, split, ids and images."""

    def __init__(self, root, ids):
        self.root, self.split, self.ids = root, "test", list(ids)
        self.images = small_images(len(self.ids))

    def __len__(self):
        return len(self.ids)

    def load_image(self, i):
        return self.images[i]


def test_cache_beside_the_dataset(tmp_path, monkeypatch):
    """The first call computes and writes <root>/proposals/<split>_<method>.npz; the next call reads it; another
    seed, or a split whose ids changed, is recomputed."""
    split = TinySplit(tmp_path, ["a", "b"])
    first = P.proposals_for_split(split, "dense", workers=1, progress=False)
    path = tmp_path / "proposals" / "test_dense.npz"
    assert path.is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although cached")
    monkeypatch.setattr(P, "compute_proposals", refuse)
    again = P.proposals_for_split(split, "dense", workers=1, progress=False)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="recomputed"):
        P.proposals_for_split(split, "dense", seed=1, workers=1, progress=False)
    monkeypatch.undo()
    changed = TinySplit(tmp_path, ["a", "b", "c"])
    with pytest.warns(UserWarning, match=r"test_dense\.npz"):
        assert len(P.proposals_for_split(changed, "dense", workers=1, progress=False)) == 3
    assert len(P.load_proposals(path, ["a", "b", "c"])) == 3


def test_recall_by_hand():
    """Recall counts objects whose best proposal reaches the IoU threshold; ignored objects are not counted."""
    proposals = [np.array([[0, 0, 9, 9]]), np.zeros((0, 4))]
    gt = [np.array([[0, 0, 9, 9], [0, 0, 9, 14], [50, 50, 60, 60]]), np.array([[0, 0, 5, 5]])]
    r = P.proposal_recall(proposals, gt, (0.5, 0.7))             # IoUs 1, 100/150, 0 and (no proposals) 0
    assert r["recall"] == {0.5: 0.5, 0.7: 0.25} and r["objects"] == 4 and r["boxes_per_image"] == 0.5
    r = P.proposal_recall(proposals, gt, (0.5,), ignore=[np.array([False, False, True]), np.array([True])])
    assert r["recall"] == {0.5: 1.0} and r["objects"] == 2


def test_command_line(tmp_path, capsys):
    """``python -m minircnn.data.proposals`` prints boxes per image and recall at IoU 0.5 and 0.7."""
    from minircnn.data.shapes import generate_shapes_dataset
    root = generate_shapes_dataset(tmp_path / "shapes", seed=0, trainval=1, test=2, progress=False)
    P.main(["--data", str(root), "--split", "test", "--method", "dense", "--workers", "1"])
    out = capsys.readouterr().out
    assert "boxes per image" in out and "IoU>=0.5" in out and "IoU>=0.7" in out
    assert (root / "proposals" / "test_dense.npz").is_file()
