"""Test time: :func:`im_detect` and the detection of image sets (:mod:`.im_detect`), the two test protocols
(:mod:`.protocols`), and truncated-SVD compression of the fc layers (:mod:`.svd`, paper Sec. 3.1)."""
from .im_detect import (detect_image, detect_images, detect_images_both, detect_proposals, detect_split, im_detect,
                        ordered_map, proposal_boxes, proposal_seconds_per_image, proposals_for_test, rpn_proposals)
from .protocols import PROTOCOLS, make_protocol
from .svd import compress, factor_layers, truncated_svd
