"""Data: decoding images, labelled in-memory image sets, splits, samplers, augmentation."""

from twinshot.data.dataset import LabelledImages
from twinshot.data.images import Preprocessing, load_image, load_images

__all__ = ["LabelledImages", "Preprocessing", "load_image", "load_images"]
