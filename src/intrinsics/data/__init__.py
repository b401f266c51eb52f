"""Data layer: loading, preprocessing and provenance of image datasets.

>>> from intrinsics.data import load
>>> ds = load("builtin:digits", size=8)          # doctest: +SKIP
"""

from ._raw import RawImages
from .arrays import from_arrays, from_torch
from .builtin import available_builtins, cache_dir, fetch_medmnist, read_builtin
from .datalist import read_datalist, read_datalist_file
from .files import read_file
from .folder import read_folder
from .idx import read_idx
from .imageset import ImageSet
from .monai_data import from_monai
from .npz import MEDMNIST_LABELS, read_npz
from .options import DataOptions, FileOptions
from .preprocess import comparison_key, preprocess
from .sources import load, read_source

__all__ = [
    "DataOptions",
    "FileOptions",
    "ImageSet",
    "MEDMNIST_LABELS",
    "RawImages",
    "available_builtins",
    "cache_dir",
    "comparison_key",
    "fetch_medmnist",
    "from_arrays",
    "from_torch",
    "from_monai",
    "load",
    "preprocess",
    "read_builtin",
    "read_datalist",
    "read_datalist_file",
    "read_file",
    "read_folder",
    "read_idx",
    "read_npz",
    "read_source",
]
