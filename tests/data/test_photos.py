"""Tests for minircnn.data.photos: objects cut from shipped photographs, pasted onto others, written as a VOC
dataset without classes.txt."""
import numpy as np
import pytest
from PIL import Image

from minircnn.boxes import iou
from minircnn.data import photos
from minircnn.data.photos import PHOTO_CLASS_NAMES, generate_photos_dataset, render_photos_image
from minircnn.data.voc import VOCDataset


def files(root):
    """relative path -> bytes of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 trainval + 10 test images of seed 1."""
    return generate_photos_dataset(tmp_path_factory.mktemp("photos") / "p", seed=1, trainval=10, test=10,
                                   progress=False)


def test_reads_as_voc_with_the_ten_classes_found_in_the_annotations(dataset):
    """There is no classes.txt, yet both splits give the ten class names (sorted, so label k is
    PHOTO_CLASS_NAMES[k - 1]) because image i of a split holds class i % 10; every image decodes to its annotated
    size and holds 1-5 objects."""
    assert not (dataset / "classes.txt").exists()
    assert list(PHOTO_CLASS_NAMES) == sorted(PHOTO_CLASS_NAMES) and len(PHOTO_CLASS_NAMES) == 10
    for split in ("trainval", "test"):
        ds = VOCDataset(dataset, split)
        assert len(ds) == 10 and ds.class_names == PHOTO_CLASS_NAMES
        for i, item in enumerate(ds):
            assert item.image.dtype == np.uint8 and item.image.shape[2] == 3
            assert 1 <= len(item.boxes) <= 5
            assert PHOTO_CLASS_NAMES[item.labels[0] - 1] == PHOTO_CLASS_NAMES[i % 10]


def test_boxes_lie_inside_images_of_the_promised_sizes(dataset):
    """Images are 240-320 x 320-420 px; boxes lie inside them, have a longer side of 16-80 px (down to 14 for the
    masked coins and horse, whose box is the mask's, a pixel or two inside the patch), a shorter side of at least 4
    px, and overlap each other by IoU < 0.3; difficult marks exactly the boxes with sqrt(w * h) < 14."""
    for split in ("trainval", "test"):
        for a in VOCDataset(dataset, split).annotations():
            assert 240 <= a.height <= 320 and 320 <= a.width <= 420
            assert (a.boxes[:, :2] >= 0).all() and (a.boxes[:, 2] <= a.width - 1).all()
            assert (a.boxes[:, 3] <= a.height - 1).all()
            wh = a.boxes[:, 2:] - a.boxes[:, :2] + 1
            masked = np.isin(np.array(a.names), ["coin", "horse"])
            assert (wh.max(1) <= 80).all() and (wh.max(1)[~masked] >= 16).all() and (wh.max(1) >= 14).all()
            assert (wh.min(1) >= 4).all()
            assert (np.triu(iou(a.boxes, a.boxes), 1) < 0.3).all()
            np.testing.assert_array_equal(a.difficult, np.sqrt(wh.prod(1)) < 14)


def test_same_seed_gives_byte_identical_files_and_another_seed_other_images(tmp_path):
    """Generating twice with the same seed writes the same files byte for byte; another seed gives other images;
    the test split does not depend on the number of trainval images."""
    a = files(generate_photos_dataset(tmp_path / "a", seed=3, trainval=3, test=2, progress=False))
    b = files(generate_photos_dataset(tmp_path / "b", seed=3, trainval=3, test=2, progress=False))
    c = files(generate_photos_dataset(tmp_path / "c", seed=4, trainval=3, test=2, progress=False))
    d = files(generate_photos_dataset(tmp_path / "d", seed=3, trainval=1, test=2, progress=False))
    assert len([name for name in a if name.endswith(".jpg")]) == 5
    assert a == b
    assert not {v for k, v in a.items() if k.endswith(".jpg")} & {v for k, v in c.items() if k.endswith(".jpg")}
    assert [a[f"JPEGImages/00000{i}.jpg"] for i in (3, 4)] == [d[f"JPEGImages/00000{i}.jpg"] for i in (1, 2)]


def test_unjittered_object_is_the_resized_source_pasted_inside_its_box():
    """Without jitter, a rectangular crop resized to 20 x 30 and pasted at (x0, y0) = (7, 5) is exactly PIL's
    bilinear resize of the source inside the box's pixels, and the canvas is untouched outside them."""
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    patch, alpha = photos._object_patch(rgb, None, 20, 30)
    expected = np.asarray(Image.fromarray(rgb).resize((30, 20), Image.BILINEAR))
    np.testing.assert_array_equal(patch, expected)
    np.testing.assert_array_equal(alpha, np.ones((20, 30), np.float32))
    canvas = np.full((40, 50, 3), 7.0, np.float32)
    photos._paste(canvas, patch, alpha, 7, 5)
    np.testing.assert_array_equal(canvas[5:25, 7:37], expected)
    canvas[5:25, 7:37] = 7.0
    assert (canvas == 7.0).all()


def test_feathered_masked_object_is_cropped_to_its_mask():
    """A 12 x 12 mask holding a 6 x 4 block (rows 3-8, columns 5-8), resized 1:1 and feathered over 2 px: the patch
    is cropped to the block, its edge pixels get alpha 1/3 and the inner ones 2/3."""
    rgb = np.zeros((12, 12, 3), np.uint8)
    mask = np.zeros((12, 12), bool)
    mask[3:9, 5:9] = True
    patch, alpha = photos._object_patch(rgb, mask, 12, 12, feather=2)
    assert patch.shape == (6, 4, 3)
    expected = np.full((6, 4), 1 / 3, np.float32)
    expected[1:-1, 1:-1] = 2 / 3  # a 4-px-wide block has no pixel 3 px deep
    np.testing.assert_allclose(alpha, expected, rtol=1e-6)


def test_every_class_has_sources_and_objects_look_different():
    """Every class can be drawn; faces, coins and words come from many source crops (real variety)."""
    library = photos._library()
    assert len(library.objects["face"]) == 101 and len(library.objects["coin"]) == 24
    assert len(library.objects["text"]) >= 20
    rng = np.random.default_rng(0)
    for name in PHOTO_CLASS_NAMES:
        rgb, mask = photos._cut(rng, name, library)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and min(rgb.shape[:2]) >= 8
        assert mask is None or mask.shape == rgb.shape[:2]


def test_render_is_deterministic():
    """The same generator state renders the same image and boxes."""
    a, b = (render_photos_image(np.random.default_rng([9, 0, 2])) for _ in range(2))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_command_line(tmp_path, capsys):
    """`python -m minircnn.data.photos --out DIR ...` generates the dataset and prints per-split statistics; a
    non-empty DIR is refused with a one-line error and left alone."""
    photos.main(["--out", str(tmp_path / "p"), "--seed", "2", "--trainval", "2", "--test", "1"])
    out = capsys.readouterr().out
    assert "trainval: {'images': 2" in out and "test: {'images': 1" in out
    with pytest.raises(SystemExit, match="not an empty folder"):
        photos.main(["--out", str(tmp_path / "p"), "--trainval", "1", "--test", "1"])
    with pytest.raises(SystemExit, match="at least one image"):
        photos.main(["--out", str(tmp_path / "q"), "--trainval", "0"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
