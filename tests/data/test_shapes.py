"""Tests for minircnn.data.shapes: the built-in dataset is deterministic, has the promised statistics, and is a valid
VOC-format dataset."""
import json
import math

import numpy as np
import pytest

from minircnn.boxes import iou
from minircnn.data import shapes
from minircnn.data.shapes import CLASS_NAMES, ensure_shapes_dataset, generate_shapes_dataset, render_shapes_image
from minircnn.data.voc import VOCDataset


def files(root):
    """relative path -> bytes of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rendered():
    """150 rendered trainval images of seed 0 (no disk I/O)."""
    return [render_shapes_image(np.random.default_rng([0, 0, i])) for i in range(150)]


def test_same_seed_gives_byte_identical_files(tmp_path):
    """Generating twice with the same seed writes the same files, byte for byte (JPEGs, XML, lists, manifest)."""
    a = files(generate_shapes_dataset(tmp_path / "a", seed=3, trainval=4, test=2, progress=False))
    b = files(generate_shapes_dataset(tmp_path / "b", seed=3, trainval=4, test=2, progress=False))
    assert len([name for name in a if name.endswith(".jpg")]) == 6
    assert a == b


def test_different_seed_gives_different_images(tmp_path):
    """Another seed gives other images; the test split does not depend on the number of trainval images."""
    a = generate_shapes_dataset(tmp_path / "a", seed=3, trainval=4, test=2, progress=False)
    b = generate_shapes_dataset(tmp_path / "b", seed=4, trainval=4, test=2, progress=False)
    c = generate_shapes_dataset(tmp_path / "c", seed=3, trainval=1, test=2, progress=False)
    jpegs = [sorted(v for k, v in files(root).items() if k.endswith(".jpg")) for root in (a, b)]
    assert not set(jpegs[0]) & set(jpegs[1])
    test_images = [[(root / "JPEGImages" / f"{i}.jpg").read_bytes() for i in VOCDataset(root, "test").ids]
                   for root in (a, c)]
    assert test_images[0] == test_images[1]


def test_images_and_objects_have_the_promised_statistics(rendered):
    """Images are 200-300 px per side; 1-5 objects each (every count occurs); all classes occur; boxes lie inside the
    image; untruncated boxes have sides of 11-100 px (12-100 nominal, minus at most one rasterised pixel) with
    log-uniform sizes (about half below the geometric mean 34.6 px of 12 and 100); some objects are truncated, some
    difficult, some images have overlapping boxes."""
    sides = np.array([it.image.shape[:2] for it in rendered])
    assert sides.min() >= 200 and sides.max() <= 300
    counts = np.array([len(it.boxes) for it in rendered])
    assert set(counts) == {1, 2, 3, 4, 5}
    labels = np.concatenate([it.labels for it in rendered])
    assert set(labels) == set(range(1, len(CLASS_NAMES) + 1)) and len(CLASS_NAMES) >= 4
    for it in rendered:
        h, w = it.image.shape[:2]
        assert it.image.dtype == np.uint8 and it.boxes.dtype == np.float32 and it.labels.dtype == np.int64
        assert (it.boxes[:, :2] >= 0).all() and (it.boxes[:, 2] <= w - 1).all() and (it.boxes[:, 3] <= h - 1).all()
    boxes = np.concatenate([it.boxes for it in rendered])
    truncated = np.concatenate([it.truncated for it in rendered])
    wh = boxes[:, 2:] - boxes[:, :2] + 1
    whole = wh[~truncated]
    assert whole.min() >= 11 and whole.max() <= 100
    assert 0.35 < np.mean(np.sqrt(whole.prod(1)) < math.sqrt(12 * 100)) < 0.65
    assert 0.05 < truncated.mean() < 0.5
    difficult = np.concatenate([it.difficult for it in rendered])
    assert 0.01 < difficult.mean() < 0.15
    np.testing.assert_array_equal(difficult, np.sqrt(wh.prod(1)) < shapes.DIFFICULT_BELOW)
    overlapping = sum((np.triu(iou(it.boxes, it.boxes), 1) > 0).any() for it in rendered)
    assert 0.1 < overlapping / len(rendered) < 0.6


def test_boxes_are_tight_around_the_visible_pixels(monkeypatch):
    """With a black background and no noise, the ground-truth box of a single shape is exactly the tight box of the
    non-black pixels, also for shapes truncated by the image border."""
    monkeypatch.setattr(shapes, "_background", lambda rng, h, w: np.zeros((h, w, 3), np.float32))
    monkeypatch.setattr(shapes, "NOISE_SIGMA", (0.0, 0.0))
    monkeypatch.setattr(shapes, "OBJECTS_PER_IMAGE", (1, 1))
    n_truncated = 0
    for i in range(40):
        it = render_shapes_image(np.random.default_rng(i))
        ys, xs = np.nonzero(it.image.any(axis=2))
        np.testing.assert_array_equal(it.boxes, [[xs.min(), ys.min(), xs.max(), ys.max()]])
        n_truncated += int(it.truncated[0])
    assert n_truncated > 0


def test_generated_dataset_reads_back_through_voc_dataset(tmp_path):
    """The written dataset is valid VOC: VOCDataset gives the generator's classes, boxes, labels and difficult flags,
    and images equal to the rendered ones (in RGB order) up to JPEG error."""
    root = generate_shapes_dataset(tmp_path / "s", seed=5, trainval=3, test=2, progress=False)
    assert (root / "classes.txt").read_text().split() == list(CLASS_NAMES)
    for split, key in (("trainval", 0), ("test", 1)):
        ds = VOCDataset(root, split)
        assert ds.class_names == CLASS_NAMES
        for i, item in enumerate(ds):
            expected = render_shapes_image(np.random.default_rng([5, key, i]))
            np.testing.assert_array_equal(item.boxes, expected.boxes)
            np.testing.assert_array_equal(item.labels, expected.labels)
            np.testing.assert_array_equal(item.difficult, expected.difficult)
            diff = item.image.astype(np.float64) - expected.image
            assert np.abs(diff).mean() < 12  # JPEG error on noisy textures; another image differs by ~60
            assert np.abs(diff.mean(axis=(0, 1))).max() < 2  # same channel order (RGB)


def test_ensure_generates_once_and_regenerates_when_the_seed_changes(tmp_path, monkeypatch):
    """ensure_shapes_dataset generates on first use, reuses a dataset whose manifest matches, regenerates one made
    with another seed, and leaves no temporary folders."""
    root = tmp_path / "shapes"
    assert ensure_shapes_dataset(root, seed=1, trainval=2, test=1, progress=False) == root
    assert json.loads((root / "shapes.json").read_text())["seed"] == 1
    before = files(root)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although the manifest matches")

    with monkeypatch.context() as m:
        m.setattr(shapes, "generate_shapes_dataset", fail)
        ensure_shapes_dataset(root, seed=1, trainval=2, test=1, progress=False)
    ensure_shapes_dataset(root, seed=2, trainval=2, test=1, progress=False)
    assert json.loads((root / "shapes.json").read_text())["seed"] == 2
    assert files(root) != before
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]


def test_ensure_never_overwrites_a_foreign_folder(tmp_path):
    """A non-empty folder that is not a generated dataset (no manifest) is refused and left as it is."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a generated shapes dataset"):
        ensure_shapes_dataset(tmp_path / "mine", trainval=1, test=1, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    """If generation fails halfway, neither the dataset folder nor a temporary folder remains."""
    calls = []

    def render_then_fail(rng):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render_shapes_image(rng)

    monkeypatch.setattr(shapes, "render_shapes_image", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes_dataset(tmp_path / "shapes", trainval=3, test=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_command_line(tmp_path, capsys):
    """`python -m minircnn.data.shapes --out DIR ...` generates the dataset and prints per-split statistics."""
    shapes.main(["--out", str(tmp_path / "s"), "--seed", "7", "--trainval", "3", "--test", "2"])
    out = capsys.readouterr().out
    assert "trainval: {'images': 3" in out and "test: {'images': 2" in out
    assert len(VOCDataset(tmp_path / "s", "trainval")) == 3
