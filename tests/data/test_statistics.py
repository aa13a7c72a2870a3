"""minircnn.data.statistics: summary numbers of a VOC split, on a folder whose numbers can be counted by hand."""
from minircnn.data import split_statistics
from test_voc import object_xml, write_voc


def test_split_statistics_counts_a_hand_made_split(tmp_path):
    """Two images: a 40x60 one with a 10x10 dog at the top-left corner (touching the border) overlapping a difficult
    10x10 cat, and a 50x50 one with a 5x20 dog inside. So 3 objects (2 and 1 per image), 2 dogs and 1 cat, and every
    box has side sqrt(w * h) = 10."""
    write_voc(tmp_path, {
        "a": ((40, 60), [object_xml("dog", (1, 1, 10, 10)), object_xml("cat", (6, 6, 15, 15), difficult=1)]),
        "b": ((50, 50), [object_xml("dog", (11, 11, 15, 30))]),
    }, classes=["dog", "cat"])
    stats = split_statistics(tmp_path, "trainval")
    assert stats["images"] == 2 and stats["objects"] == 3
    assert stats["objects_per_image"] == (1, 1.5, 2)
    assert stats["per_class"] == {"dog": 2, "cat": 1}
    assert stats["box_size"] == (10.0, 10.0, 10.0)
    assert stats["difficult"] == 1
    assert stats["at_border"] == 1              # only the dog at (0, 0)
    assert stats["images_with_overlap"] == 1    # image a's dog and cat
    assert stats["image_sides"] == (40, 60)
