"""The input side of Fast R-CNN: datasets (VOC format and the built-in one), region proposals, image preparation,
the roidb with regression targets, and the hierarchical mini-batch sampler.

The pipeline, stage by stage (each module is one stage)::

    voc.py / shapes.py   images, ground-truth boxes, labels, difficult flags (statistics.py: summary numbers;
                         photos.py: a second generated set, small objects on real photographs)
    proposals.py         candidate boxes per image (selective search, dense boxes, or a proposal file)
    roidb.py             ground truth + proposals, their overlaps, normalised regression targets
    transforms.py        scaling, flipping, preprocessing, batching into a blob
    sampler.py           N images x R/N RoIs per SGD step, 25% foreground
"""
from .photos import PHOTO_CLASS_NAMES, generate_photos_dataset
from .proposals import METHODS as PROPOSAL_METHODS
from .proposals import (compute_proposals, dense_boxes, load_proposals, load_proposals_mat, proposal_recall,
                        proposals_for_split, save_proposals)
from .roidb import RoidbEntry, append_flipped, build_roidb, compute_targets, roidb_from_dataset, unnormalize_deltas
from .sampler import (MiniBatch, SamplerConfig, get_minibatch, images_of_step, iterate_minibatches, minibatch_at,
                      sample_rois, step_rng)
from .shapes import CLASS_NAMES as SHAPES_CLASS_NAMES
from .shapes import (ShapesImage, default_shapes_root, ensure_shapes_dataset, generate_shapes_dataset,
                     render_shapes_image)
from .transforms import (CAFFE_VGG16, PLAIN, PREPROCESSING_PRESETS, TORCHVISION, Preprocessing, flip_boxes,
                         flip_image, image_pyramid, images_to_blob, prepare_image, pyramid_rois, resize_bilinear,
                         scale_for, scaled_size, warp_region)
from .selective_search import selective_search
from .statistics import split_statistics
from .voc import VOC_CLASS_NAMES, VOCAnnotation, VOCAnnotationWarning, VOCDataset, VOCFormatError, VOCItem
