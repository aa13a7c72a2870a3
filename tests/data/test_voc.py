"""Tests for minircnn.data.voc: VOC XML parsing, class discovery and the errors on bad input (docs/reference.md §5)."""
import re

import numpy as np
import pytest
from PIL import Image

from minircnn.data.voc import VOC_CLASS_NAMES, VOCAnnotationWarning, VOCDataset, VOCFormatError


def object_xml(name, box, difficult=None):
    """One <object>; ``box`` is (xmin, ymin, xmax, ymax) as written in the file (1-based)."""
    flag = "" if difficult is None else f"<difficult>{int(difficult)}</difficult>"
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name>{flag}<bndbox>{coords}</bndbox></object>"


def write_image(root, image_id, size, colour=(200, 30, 60), mode="RGB"):
    """A solid-colour JPEG of ``size`` = (height, width) in JPEGImages."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    value = colour if mode == "RGB" else colour[0]
    Image.new(mode, (size[1], size[0]), value).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)


def write_voc(root, images, classes=None, split="trainval", xml_size=True):
    """A tiny VOC folder. ``images``: id -> (size (h, w), [object_xml, ...]); writes XML, JPEG and the split file."""
    for sub in ("Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (size, objects) in images.items():
        size_xml = f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>"
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>{size_xml if xml_size else ''}"
            f"{''.join(objects)}</annotation>")
        write_image(root, image_id, size)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
    if classes is not None:
        (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return root


def test_item_fields_and_one_based_conversion(tmp_path):
    """XML boxes are 1-based: (1, 1, 10, 20) in the file is (0, 0, 9, 19) in the item; fields have the contract's
    shapes and dtypes, and the image is RGB (a red JPEG reads back with a large first channel)."""
    write_voc(tmp_path, {"000005": ((40, 60), [object_xml("dog", (1, 1, 10, 20), 0),
                                               object_xml("cat", (5, 6, 60, 40), 1)])})
    ds = VOCDataset(tmp_path, "trainval")
    assert len(ds) == 1
    item = ds[0]
    assert item.id == "000005"
    assert item.image.shape == (40, 60, 3) and item.image.dtype == np.uint8
    assert item.image[..., 0].mean() > 180 and item.image[..., 1].mean() < 60  # (200, 30, 60) survives as RGB
    assert item.boxes.dtype == np.float32
    np.testing.assert_array_equal(item.boxes, [[0, 0, 9, 19], [4, 5, 59, 39]])
    assert item.labels.dtype == np.int64
    np.testing.assert_array_equal(item.labels, [VOC_CLASS_NAMES.index("dog") + 1, VOC_CLASS_NAMES.index("cat") + 1])
    assert item.difficult.dtype == bool
    np.testing.assert_array_equal(item.difficult, [False, True])


def test_difficult_defaults_to_false_and_fractional_coordinates(tmp_path):
    """A missing <difficult> means 0; fractional coordinates are accepted (minus 1, not rounded)."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("cat", ("10.5", 2, 20, "30.25"))])})
    a = VOCDataset(tmp_path, "trainval").annotation(0)
    np.testing.assert_array_equal(a.difficult, [False])
    np.testing.assert_array_equal(a.boxes, [[9.5, 1, 19, 29.25]])


def test_class_names_from_classes_txt(tmp_path):
    """classes.txt fixes the names and their order: label k is class_names[k - 1], background is 0."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("zebra", (1, 1, 5, 5)), object_xml("apple", (1, 1, 5, 5))])},
              classes=["zebra", "mango", "apple"])
    ds = VOCDataset(tmp_path, "trainval")
    assert ds.class_names == ("zebra", "mango", "apple") and ds.num_classes == 4
    np.testing.assert_array_equal(ds.annotation(0).labels, [1, 3])


def test_class_names_pascal_subset(tmp_path):
    """Without classes.txt, names that are all PASCAL classes give the 20 PASCAL classes in the devkit's order."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("tvmonitor", (1, 1, 5, 5))]),
                         "b": ((50, 50), [object_xml("aeroplane", (1, 1, 5, 5))])})
    ds = VOCDataset(tmp_path, "trainval")
    assert ds.class_names == VOC_CLASS_NAMES and len(ds.class_names) == 20
    assert [int(ds.annotation(i).labels[0]) for i in range(2)] == [20, 1]


def test_class_names_discovered_and_sorted(tmp_path):
    """Without classes.txt and with a non-PASCAL name, the classes are the sorted set of names in the split."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("zebra", (1, 1, 5, 5)), object_xml("dog", (1, 1, 5, 5))]),
                         "b": ((50, 50), [object_xml("apple", (1, 1, 5, 5))])})
    ds = VOCDataset(tmp_path, "trainval")
    assert ds.class_names == ("apple", "dog", "zebra")
    np.testing.assert_array_equal(ds.annotation(0).labels, [3, 2])


def test_unknown_class_with_classes_txt(tmp_path):
    """With classes.txt, a name not in it is an error naming the XML file, the object index and the name."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("cat", (1, 1, 5, 5)), object_xml("cow", (1, 1, 5, 5))])},
              classes=["cat", "dog"])
    with pytest.raises(VOCFormatError, match=r"a\.xml: object 1 has class 'cow'"):
        VOCDataset(tmp_path, "trainval").annotation(0)


def test_annotation_without_decoding_the_image(tmp_path):
    """annotation() and image_size() never touch the image: they work with the JPEG deleted; loading the item then
    raises FileNotFoundError naming JPEGImages/<id>.jpg."""
    write_voc(tmp_path, {"img7": ((30, 70), [object_xml("cat", (2, 3, 4, 5))])})
    (tmp_path / "JPEGImages" / "img7.jpg").unlink()
    ds = VOCDataset(tmp_path, "trainval")
    assert ds.image_size(0) == (30, 70)
    np.testing.assert_array_equal(ds.annotation(0).boxes, [[1, 2, 3, 4]])
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "JPEGImages" / "img7.jpg"))):
        ds[0]


def test_image_size_from_header_when_xml_has_none(tmp_path):
    """Without <size> in the XML the size comes from the image file's header."""
    write_voc(tmp_path, {"a": ((33, 44), [object_xml("cat", (1, 1, 5, 5))])}, xml_size=False)
    assert VOCDataset(tmp_path, "trainval").image_size(0) == (33, 44)


@pytest.mark.parametrize("damage", [lambda b: b"not a jpeg at all", lambda b: b[: len(b) // 2]],
                         ids=["garbage", "truncated"])
def test_corrupt_jpeg(tmp_path, damage):
    """A file that is not a decodable image (garbage, or a JPEG cut in half) raises VOCFormatError naming it."""
    write_voc(tmp_path, {"a": ((64, 64), [object_xml("cat", (1, 1, 5, 5))])})
    path = tmp_path / "JPEGImages" / "a.jpg"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(VOCFormatError, match=re.escape(str(path))):
        VOCDataset(tmp_path, "trainval")[0]


def test_image_size_mismatch(tmp_path):
    """An image whose size differs from the XML <size> is an error naming the image."""
    write_voc(tmp_path, {"a": ((50, 60), [object_xml("cat", (1, 1, 5, 5))])})
    write_image(tmp_path, "a", (60, 50))
    with pytest.raises(VOCFormatError, match=r"a\.jpg: image is 50x60 but .* says 60x50"):
        VOCDataset(tmp_path, "trainval")[0]


def test_grey_image_becomes_rgb(tmp_path):
    """A greyscale JPEG is returned as (H, W, 3) with three equal channels."""
    write_voc(tmp_path, {"a": ((20, 30), [object_xml("cat", (1, 1, 5, 5))])})
    write_image(tmp_path, "a", (20, 30), colour=(90,), mode="L")
    image = VOCDataset(tmp_path, "trainval")[0].image
    assert image.shape == (20, 30, 3)
    assert (image[..., 0] == image[..., 2]).all()


def test_malformed_xml(tmp_path):
    """XML that does not parse raises VOCFormatError naming the file."""
    write_voc(tmp_path, {"a": ((50, 50), [])})
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><object><name>cat</name></annotation>")
    with pytest.raises(VOCFormatError, match=r"a\.xml: malformed XML"):
        VOCDataset(tmp_path, "trainval").annotation(0)


@pytest.mark.parametrize("bad_object, message", [
    ("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>", "missing <name>"),
    ("<object><name>cat</name></object>", "missing <bndbox>"),
    ("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>5</ymax></bndbox></object>",
     "missing <xmax>"),
    ("<object><name>cat</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>",
     "<xmin> is not a number"),
    ("<object><name>cat</name><difficult>yes</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
     "<ymax>5</ymax></bndbox></object>", "<difficult> must be 0 or 1"),
], ids=["name", "bndbox", "xmax", "not-a-number", "difficult"])
def test_missing_or_bad_fields(tmp_path, bad_object, message):
    """A missing or unreadable field raises VOCFormatError naming the file and the object index."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("cat", (1, 1, 5, 5)), bad_object])})
    with pytest.raises(VOCFormatError, match=r"a\.xml: object 1.*" + re.escape(message)):
        VOCDataset(tmp_path, "trainval").annotation(0)


def test_xmax_below_xmin(tmp_path):
    """A box with xmax < xmin is an error naming the file and the object; xmax == xmin (1 px wide) is valid."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("cat", (7, 1, 7, 5)), object_xml("cat", (9, 1, 8, 5))])})
    with pytest.raises(VOCFormatError, match=r"a\.xml: object 1 has xmax < xmin"):
        VOCDataset(tmp_path, "trainval").annotation(0)


def test_box_outside_the_image(tmp_path):
    """A box entirely outside the image is an error naming the file and the object."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("cat", (60, 1, 70, 5))])})
    with pytest.raises(VOCFormatError, match=r"a\.xml: object 0 lies outside the 50x50 image"):
        VOCDataset(tmp_path, "trainval").annotation(0)


def test_box_poking_out_is_clipped_with_a_warning(tmp_path):
    """A box that only pokes outside the image is clipped to [0, W-1] x [0, H-1] with a warning naming the file and
    the object; boxes inside are untouched."""
    write_voc(tmp_path, {"a": ((50, 40), [object_xml("cat", (2, 2, 9, 9)), object_xml("cat", (0, 10, 45, 51))])})
    with pytest.warns(VOCAnnotationWarning, match=r"a\.xml: object 1 .* pokes outside the 40x50 image"):
        boxes = VOCDataset(tmp_path, "trainval").annotation(0).boxes
    np.testing.assert_array_equal(boxes, [[1, 1, 8, 8], [0, 9, 39, 49]])


@pytest.mark.parametrize("content", ["", "\n  \n"], ids=["empty", "blank-lines"])
def test_empty_split_file(tmp_path, content):
    """A split file without ids is an error naming it."""
    write_voc(tmp_path, {"a": ((50, 50), [])})
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text(content)
    with pytest.raises(VOCFormatError, match=r"trainval\.txt: the split file is empty"):
        VOCDataset(tmp_path, "trainval")


def test_missing_split_file_lists_the_available_ones(tmp_path):
    """Asking for a split that does not exist names the missing file and the splits that do."""
    write_voc(tmp_path, {"a": ((50, 50), [])}, split="val")
    with pytest.raises(FileNotFoundError, match=r"test\.txt not found \(splits there: \['val'\]\)"):
        VOCDataset(tmp_path, "test")


def test_missing_annotation_file(tmp_path):
    """An id without an XML file raises FileNotFoundError naming the XML path."""
    write_voc(tmp_path, {"a": ((50, 50), [])})
    (tmp_path / "Annotations" / "a.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"Annotations.a\.xml"):
        VOCDataset(tmp_path, "trainval").annotation(0)


def test_annotations_are_parsed_once_and_read_only(tmp_path):
    """Annotations are cached (editing the XML afterwards changes nothing) and the cached arrays are read-only, so
    a caller cannot corrupt them in place."""
    write_voc(tmp_path, {"a": ((50, 50), [object_xml("cat", (1, 1, 5, 5))])}, classes=["cat"])
    ds = VOCDataset(tmp_path, "trainval")
    first = ds.annotation(0)
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation>broken")
    assert ds.annotation(0) is first and ds[0].boxes is first.boxes
    with pytest.raises(ValueError, match="read-only"):
        first.boxes[0, 0] = 3


def test_indexing_iteration_and_empty_images(tmp_path):
    """len, negative indices, IndexError past the end, iteration in split order; an image without objects gives
    (0, 4) boxes."""
    write_voc(tmp_path, {"b": ((50, 50), [object_xml("cat", (1, 1, 5, 5))]), "a": ((40, 40), [])})
    ds = VOCDataset(tmp_path, "trainval")
    assert len(ds) == 2 and ds.ids == ["b", "a"]
    assert ds[-1].id == "a" and ds[-1].boxes.shape == (0, 4) and ds[-1].labels.shape == (0,)
    with pytest.raises(IndexError):
        ds[2]
    assert [item.id for item in ds] == ["b", "a"]
    assert ds.image_path(1) == tmp_path / "JPEGImages" / "a.jpg"


def test_box_errors_print_plain_numbers(tmp_path):
    """An object outside its image is refused with its 0-based box written as plain numbers (101.0), the way a user
    reads them, not as NumPy scalar reprs (np.float64(101.0))."""
    from minircnn.data.voc import VOCFormatError, _checked_boxes
    with pytest.raises(VOCFormatError) as e:
        _checked_boxes(np.array([[101.0, 5.0, 120.0, 9.0]]), 50, 100, "a.xml")
    assert "[101.0, 5.0, 120.0, 9.0]" in str(e.value) and "np." not in str(e.value)
