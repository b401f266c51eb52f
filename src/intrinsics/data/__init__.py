"""Data layer: loading, preprocessing and provenance of image datasets."""

from .imageset import ImageSet

__all__ = ["ImageSet"]
