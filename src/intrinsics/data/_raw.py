"""The contract between file readers and preprocessing.

Every reader (arrays, folders, npz, IDX, DICOM, NIfTI, synthetic, ...) returns a :class:`RawImages`:
images at their native dtype and size, raw labels, and where each image came from. Preprocessing
(:func:`intrinsics.data.preprocess.preprocess`) turns it into an :class:`~intrinsics.data.ImageSet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["RawImages"]


@dataclass
class RawImages:
    """Images as read, before any preprocessing.

    Attributes
    ----------
    images : list of ndarray
        Each (H, W) or (H, W, C), native dtype (uint8, uint16, int16, float32, ...), never truncated.
    labels : sequence or None
        One raw label per image (int or str), or None when the source has no labels.
    class_names : tuple of str or None
        Official names of the integer classes, when the source defines them (MedMNIST, folders).
    origins : list of str or None
        Where each image came from (a file path, ``"vol.nii.gz#z=12"``, ``"npz:train[41]"``), so that
        errors can name the offending item.
    info : dict
        Source-specific provenance (split, DICOM window, NIfTI axis, generator parameters, ...).
    value_range : (float, float) or None
        The intensity range that maps to [0, 1] under ``intensity="unit"`` when the dtype does not
        define one (a DICOM window, a generator's range). None means: use the dtype's range.
    keys : dict of str to list, or None
        Identifiers of each image beside its origin, by name (``SOPInstanceUID``, ``PatientID`` of
        DICOM files): one entry per image, None where an image has none.
    """

    images: list[np.ndarray]
    labels: Sequence[Any] | None = None
    class_names: tuple[str, ...] | None = None
    origins: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    value_range: tuple[float, float] | None = None
    keys: dict[str, list[Any]] | None = None
