"""The :class:`ImageSet`: images, labels, class names and the provenance of how they were made."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["ImageSet", "image_id"]


def image_id(ids: tuple[str, ...] | None, i: int) -> str:
    """The identifier of image ``i``: its ``ids`` entry, or ``"[i]"`` when the source gave none."""
    return ids[int(i)] if ids is not None else f"[{int(i)}]"


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A preprocessed image dataset.

    Attributes
    ----------
    images : ndarray of shape (N, C, H, W), float32
        Pixel values after the preprocessing recorded in ``provenance``.
    labels : ndarray of shape (N,), int64, or None
        Class indices into ``class_names``; None for unlabelled data.
    class_names : tuple of str
        Name of each class index.
    provenance : dict
        JSON-serialisable record of the source and the exact preprocessing
        (``source``, ``preprocessing`` = {size, channels, intensity, classes, limit, seed, ...}).
    ids : tuple of str or None
        Where each image can be found: the path relative to the folder (``"scan.nii.gz#z=12"`` for a
        NIfTI slice, ``"cine.dcm#3"`` for a frame of a multi-frame DICOM), ``"train.npz:train[41]"`` for
        an npz or IDX item, ``"[7]"`` for arrays. None means the index is the only identifier.
    keys : dict of str to tuple
        Further identifiers of each image by name, e.g. ``SOPInstanceUID`` and ``PatientID`` of DICOM
        files (None where an image has none); empty when the source has none.
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    ids: tuple[str, ...] | None = None
    keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(
                f"ImageSet.images must have shape (N, C, H, W), got {self.images.shape}; "
                "add a channel axis with images[:, None] for grey-scale data"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(
                f"{len(self.images)} images but {len(self.labels)} labels: give one label per image"
            )
        if self.ids is not None and len(self.ids) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.ids)} ids: give one id per image")
        for name, values in self.keys.items():
            if len(values) != len(self.images):
                raise DataError(f"{len(self.images)} images but {len(values)} values of {name!r}: give one per image")

    def __repr__(self) -> str:
        labels = "unlabelled" if self.labels is None else f"classes={list(self.class_names)!r}"
        return (f"ImageSet(N={len(self)}, shape={self.shape}, {labels}, "
                f"source={self.provenance.get('source')!r})")

    def id_of(self, i: int) -> str:
        """The identifier of image ``i`` (its ``ids`` entry, or ``"[i]"`` when the source has none)."""
        return image_id(self.ids, i)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def N(self) -> int:  # noqa: N802 - the project's name for the sample count
        """Number of images."""
        return len(self)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing record (part of ``provenance``)."""
        return dict(self.provenance.get("preprocessing", {}))

    def flat(self) -> np.ndarray:
        """Images as an (N, C*H*W) float32 matrix, the vectors the estimators see."""
        return self.images.reshape(len(self), -1)

    def subset(self, index: np.ndarray) -> "ImageSet":
        """A new ImageSet with the images at ``index`` (provenance records the subset size)."""
        index = np.asarray(index)
        prov = dict(self.provenance)
        prov["subset_of"] = len(self)
        positions = np.arange(len(self))[index]  # a boolean mask or indices, as positions
        return replace(
            self,
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            provenance=prov,
            ids=None if self.ids is None else tuple(self.ids[int(i)] for i in positions),
            keys={k: tuple(v[int(i)] for i in positions) for k, v in self.keys.items()},
        )

    def describe(self) -> dict[str, Any]:
        """The ``dataset`` block of the JSON contract: source, N, shape, classes, preprocessing, and
        ``reader`` (how the files were read: DICOM window, NIfTI axis and slices, label CSV, a synthetic
        generator's parameters and ground truth)."""
        return {
            "source": self.provenance.get("source"),
            "N": len(self),
            "shape": list(self.shape),
            "classes": list(self.class_names),
            "preprocessing": self.preprocessing,
            "reader": self.provenance.get("reader") or {},
        }
