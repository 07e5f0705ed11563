"""CIFAKE data: find images in any supported layout, decode once to a uint8 cache at a model's size, split, audit.

Label convention everywhere: REAL = 1 (the positive class, as in the study), FAKE = 0.
"""

from cifake.data.cache import load_dataset
from cifake.data.dataset import CifakeData, ImageSet, SkippedFile, default_cache_root, train_val_split
from cifake.data.decode import IMAGE_SIZE, BadImage, decode_image
from cifake.data.preprocess import Preprocess
from cifake.data.sources import (
    ALL_SPLIT,
    CIFAR10_CLASSES,
    LABEL_NAMES,
    LABELS,
    SourceError,
    cifar_class,
    find_members,
)

__all__ = [
    "ALL_SPLIT", "CIFAR10_CLASSES", "IMAGE_SIZE", "LABELS", "LABEL_NAMES", "BadImage", "CifakeData",
    "ImageSet", "Preprocess", "SkippedFile", "SourceError", "cifar_class", "decode_image", "default_cache_root",
    "find_members", "load_dataset", "train_val_split",
]
