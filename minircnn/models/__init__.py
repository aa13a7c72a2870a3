"""Models: the backbones (``tiny``; the paper's ``caffenet``, ``vgg_cnn_m_1024``, ``vgg16``), the Fast R-CNN detector
and its loss, and the classifier it is initialised from."""
from .backbones import BACKBONES, CAFFENET, TINY, VGG16, VGG_CNN_M_1024, BackboneSpec, build_backbone, get_spec
from .classifier import Classifier, build_classifier, from_classifier, resize_fc6
from .fast_rcnn import FastRCNN, LossTerms, bbox_loss_weights, build_model, multitask_loss, softmax

__all__ = ["BackboneSpec", "TINY", "VGG16", "CAFFENET", "VGG_CNN_M_1024", "BACKBONES", "get_spec", "build_backbone",
           "FastRCNN", "LossTerms", "multitask_loss", "bbox_loss_weights", "softmax", "build_model",
           "Classifier", "build_classifier", "from_classifier", "resize_fc6"]
