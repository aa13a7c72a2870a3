"""Evaluation: VOC average precision (:mod:`.voc`), and the scores and reports of a split's detections
(:mod:`.report`)."""
from .report import LOCALISATION_KEYS, format_table, score_both, score_detections, write_results
from .voc import COCO_IOUS, eval_detection_coco_style, eval_detection_voc, match_detections, precision_recall, voc_ap
