"""The input side of Fast R-CNN: datasets (VOC format and the built-in one), region proposals, image preparation,
the roidb with regression targets, and the hierarchical mini-batch sampler."""
