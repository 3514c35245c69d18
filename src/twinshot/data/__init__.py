"""Data: decoding images, labelled in-memory image sets, splits, samplers, augmentation."""

from twinshot.data.augment import (
    AUGMENTATIONS,
    Augmentation,
    KochAffine,
    NoAugmentation,
    add_rotated_classes,
)
from twinshot.data.dataset import LabelledImages
from twinshot.data.images import Preprocessing, load_image, load_images
from twinshot.data.samplers import (
    ClassBalancedSampler,
    Episode,
    EpisodeSampler,
    PairBatch,
    PairSampler,
    TripletBatch,
    TripletSampler,
)
from twinshot.data.sources import IMAGE_EXTENSIONS, list_images, load_dataset
from twinshot.data.splits import Split, class_split, limit_units

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "ClassBalancedSampler",
    "Episode",
    "EpisodeSampler",
    "IMAGE_EXTENSIONS",
    "KochAffine",
    "LabelledImages",
    "NoAugmentation",
    "PairBatch",
    "PairSampler",
    "Preprocessing",
    "Split",
    "TripletBatch",
    "TripletSampler",
    "add_rotated_classes",
    "class_split",
    "limit_units",
    "list_images",
    "load_dataset",
    "load_image",
    "load_images",
]
