"""Datasets: the MVTec AD layout, preprocessing, a torch Dataset, synthetic defects; adapters, converter, demo."""

from .adapters import ADAPTER_NAMES, AdapterIndex, DatasetAdapter, MaskEncoding, get_adapter
from .convert import convert_to_mvtec, verify_mvtec_root
from .dataset import ImageDataset
from .demo import demo_root
from .mvtec import (
    MVTEC_CATEGORIES,
    MVTEC_OBJECTS,
    MVTEC_TEXTURES,
    CategoryIndex,
    DataError,
    Sample,
    index_category,
    list_categories,
    list_images,
    resolve_data_root,
    split_train_val,
)
from .synthetic import make_synthetic_category
from .transforms import denormalize, image_size_of, load_image, load_mask, normalize

__all__ = [
    "CategoryIndex", "DataError", "ImageDataset", "MVTEC_CATEGORIES", "MVTEC_OBJECTS", "MVTEC_TEXTURES",
    "Sample", "denormalize", "image_size_of", "index_category", "list_categories", "list_images",
    "load_image", "load_mask", "make_synthetic_category", "normalize", "resolve_data_root", "split_train_val",
    # adapters, converter, demo (datasets engineer)
    "ADAPTER_NAMES", "AdapterIndex", "DatasetAdapter", "MaskEncoding", "get_adapter", "convert_to_mvtec",
    "verify_mvtec_root", "demo_root",
]
