"""From Fast to Faster R-CNN: a Region Proposal Network that learns the proposals on the detector's own feature map
(Ren et al., 2015; docs/reference.md §16), with every backward written out like the rest of the project.

=====================  ======================================================================================
module                 what it holds
=====================  ======================================================================================
:mod:`.anchors`        the k reference boxes at every feature cell (scales x aspect ratios, blob pixels)
:mod:`.targets`        which anchors are objects, background or ignored; the sample of 256 per image
:mod:`.head`           the 3x3 conv and the two sibling 1x1 convs, their backward, the RPN loss
:mod:`.proposals`      decode, clip, minimum size, top-N, NMS 0.7, top-N: the proposals of one image
:mod:`.joint`          one SGD step that trains the RPN and the detector together (approximate joint training)
=====================  ======================================================================================

``python -m minircnn.train --proposals rpn`` trains both; :mod:`minircnn.evaluate` and :mod:`minircnn.detect` then
use the checkpoint's RPN (:func:`minircnn.inference.detect_proposals`).
"""
from .anchors import DEFAULT_RATIOS, DEFAULT_SCALES, anchor_shapes, grid_anchors
from .head import RPNHead, RPNLossTerms, rpn_loss
from .proposals import TEST_PROPOSALS, TRAIN_PROPOSALS, ProposalSettings, proposals_from_outputs
from .targets import AnchorTargetSettings, anchor_targets, inside_image

__all__ = ["DEFAULT_SCALES", "DEFAULT_RATIOS", "anchor_shapes", "grid_anchors", "RPNHead", "RPNLossTerms", "rpn_loss",
           "ProposalSettings", "TRAIN_PROPOSALS", "TEST_PROPOSALS", "proposals_from_outputs", "AnchorTargetSettings",
           "anchor_targets", "inside_image"]
