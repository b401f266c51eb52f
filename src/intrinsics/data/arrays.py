"""Datasets already in memory: numpy arrays / torch tensors (:func:`from_arrays`) and torch Datasets
(:func:`from_torch`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ._raw import RawImages
from .files import pil_to_array
from .imageset import ImageSet
from .preprocess import preprocess

__all__ = ["arrays_to_raw", "from_arrays", "from_torch", "torch_to_raw"]

_CHANNEL_SIZES = (1, 3, 4)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":  # numpy has no bfloat16: widen, exactly
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _split_batch(images: np.ndarray, layout: str | None) -> list[np.ndarray]:
    """(N, H, W) / (N, H, W, C) / (N, C, H, W) -> list of (H, W) or (H, W, C)."""
    if images.ndim == 3:
        if layout not in (None, "NHW"):
            raise DataError(f"layout={layout!r} does not fit 3-D images {images.shape}; use layout=None")
        return list(images)
    if images.ndim != 4:
        raise DataError(
            f"images have shape {images.shape}; pass (N, H, W), (N, H, W, C) or (N, C, H, W) arrays "
            "(3-D volumes: slice them into 2-D images first)"
        )
    if layout is None:
        first, last = images.shape[1] in _CHANNEL_SIZES, images.shape[3] in _CHANNEL_SIZES
        if first and not last:
            layout = "NCHW"
        elif last and not first:
            layout = "NHWC"
        else:
            raise DataError(
                f"cannot tell the channel axis of images with shape {images.shape}; pass layout='NCHW' "
                "or layout='NHWC'"
            )
    if layout == "NCHW":
        images = images.transpose(0, 2, 3, 1)
    elif layout != "NHWC":
        raise DataError(f"layout={layout!r} is unknown; pass 'NCHW', 'NHWC' or None (detect)")
    return list(images)


def arrays_to_raw(
    images: Any,
    labels: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    layout: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> RawImages:
    """Wrap in-memory images and labels as :class:`RawImages` (see :func:`from_arrays`)."""
    if isinstance(images, (list, tuple)):
        items = [_as_numpy(img) for img in images]
        if not items:
            raise DataError("images is an empty list; pass at least one image")
        if all(a.ndim == 3 and a.shape[0] in _CHANNEL_SIZES and a.shape[2] not in _CHANNEL_SIZES for a in items):
            items = [a.transpose(1, 2, 0) for a in items]  # a list of (C, H, W) tensors
    else:
        batch = _as_numpy(images)
        if batch.dtype == object:
            raise DataError("images has dtype object; pass a numeric array, or a list of arrays of mixed shapes")
        items = _split_batch(batch, layout)
    label_list = None
    if labels is not None:
        lab = _as_numpy(labels)
        if lab.ndim == 2 and lab.shape[1] == 1:
            lab = lab[:, 0]
        if lab.ndim != 1:
            raise DataError(
                f"labels have shape {lab.shape}; pass one class per image (shape (N,)), e.g. one column "
                "of a multi-label matrix"
            )
        label_list = lab
    return RawImages(
        images=items,
        labels=label_list,
        class_names=None if class_names is None else tuple(str(c) for c in class_names),
        origins=[f"[{i}]" for i in range(len(items))],
        info={"reader": "arrays", "layout": layout, "n": len(items)},
        value_range=value_range,
    )


def from_arrays(
    images: Any,
    labels: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    layout: str | None = None,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    intensity: str = "unit",
    value_range: tuple[float, float] | None = None,
    classes: Any = None,
    limit: int | None = None,
    seed: int = 0,
    source: str = "arrays",
) -> ImageSet:
    """An :class:`ImageSet` from numpy arrays or torch tensors.

    Parameters
    ----------
    images : array-like
        (N, H, W), (N, H, W, C) or (N, C, H, W) array or tensor, or a list of (H, W)/(H, W, C) arrays
        of mixed sizes (then pass ``size``).
    labels : array-like, optional
        One class per image: integers or names.
    class_names : sequence of str, optional
        Names of the integer classes 0..n-1 (default: the label values as strings).
    layout : {"NCHW", "NHWC"}, optional
        Where the channel axis is; detected when unambiguous.
    size, channels, intensity, value_range, classes, limit, seed
        As in :func:`intrinsics.data.preprocess`. Float images must lie in [0, 1] unless
        ``value_range`` says what their range is (e.g. ``(0, 255)``).
    source : str
        Name stored as ``provenance["source"]``.

    Returns
    -------
    ImageSet

    Examples
    --------
    >>> import numpy as np
    >>> ds = from_arrays(np.zeros((4, 28, 28), np.uint8), [0, 1, 0, 1], size=14)
    >>> ds.images.shape, ds.class_names
    ((4, 1, 14, 14), ('0', '1'))
    """
    raw = arrays_to_raw(images, labels, class_names=class_names, layout=layout)
    return preprocess(
        raw, source=source, size=size, channels=channels, intensity=intensity, value_range=value_range,
        classes=classes, limit=limit, seed=seed,
    )


def _item_image(img: Any, index: int) -> np.ndarray:
    if hasattr(img, "mode") and hasattr(img, "size") and hasattr(img, "getbands"):  # a PIL image
        return pil_to_array(img, f"item {index}")
    is_tensor = hasattr(img, "detach") and hasattr(img, "cpu")
    arr = _as_numpy(img)
    if arr.ndim == 3 and is_tensor:
        if arr.shape[0] not in _CHANNEL_SIZES:
            raise DataError(
                f"item {index} is a tensor of shape {tuple(arr.shape)}; torch images must be (C, H, W) "
                "with C in 1, 3, 4, or (H, W)"
            )
        arr = arr.transpose(1, 2, 0)  # torch images are channel-first
    if arr.ndim not in (2, 3):
        raise DataError(f"item {index} has an image of shape {arr.shape}; expected (H, W), (H, W, C) or (C, H, W)")
    return arr


def _dataset_classes(dataset: Any) -> tuple[str, ...] | None:
    for obj in (dataset, getattr(dataset, "dataset", None)):  # torch Subset wraps the real dataset
        names = getattr(obj, "classes", None)
        if names is not None and len(names) and all(isinstance(c, str) for c in names):
            return tuple(names)
        info = getattr(obj, "info", None)  # a medmnist Dataset: INFO[flag]["label"] = {"0": name, ...}
        labels = info.get("label") if isinstance(info, dict) else None
        if isinstance(labels, dict) and labels and all(str(k).isdigit() for k in labels) \
                and not str(info.get("task", "")).startswith("multi-label"):
            return tuple(str(labels[k]) for k in sorted(labels, key=int))
    return None


def _split_item(item: Any) -> tuple[Any, Any, bool]:
    """(image, label, has_label) of one dataset item."""
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        img, lab = item[0], item[1]
        if hasattr(lab, "item"):
            lab = lab.item() if getattr(lab, "ndim", 0) == 0 or np.size(lab) == 1 else lab
        return img, lab, True
    return (item[0] if isinstance(item, (tuple, list)) else item), None, False


def _cheap_labels(dataset: Any, n: int) -> list[Any] | None:
    """Labels a dataset keeps beside its images (torchvision ``targets``, MedMNIST ``labels``), when
    they are what ``dataset[i]`` would return (no ``target_transform``); None otherwise."""
    if getattr(dataset, "target_transform", None) is not None:
        return None
    for name in ("targets", "labels"):
        lab = getattr(dataset, name, None)
        if lab is None or isinstance(lab, str):
            continue
        try:
            arr = np.asarray(lab.cpu() if hasattr(lab, "cpu") else lab)
        except (TypeError, ValueError):
            continue
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 1 and len(arr) == n and arr.dtype.kind in "iub":
            return arr.tolist()
    return None


class _LazyImages(Sequence):
    """Images of a torch Dataset read on access, so that ``classes``/``limit`` selections read only
    the items they keep."""

    def __init__(self, dataset: Any, n: int, labelled: bool):
        self.dataset, self.n, self.labelled = dataset, n, labelled

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Any:
        return (self[i] for i in range(self.n))

    def __getitem__(self, i: Any) -> np.ndarray:  # type: ignore[override]
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(i)
        img, _, has_label = _split_item(self.dataset[i])
        if has_label != self.labelled:
            raise DataError(f"item {i} of the dataset has {'a' if has_label else 'no'} label, unlike item 0")
        return _item_image(img, i)


def torch_to_raw(
    dataset: Any, *, class_names: Sequence[str] | None = None, value_range: tuple[float, float] | None = None
) -> RawImages:
    """Images and labels of a torch Dataset (see :func:`from_torch`).

    When the labels are known without decoding images (unlabelled datasets, or ``targets``/``labels``
    attributes), images are read lazily: a ``classes`` or ``limit`` selection reads only what it keeps.
    Otherwise every item is read once, here.
    """
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{type(dataset).__name__} has no len(); pass a map-style torch Dataset") from None
    names = tuple(class_names) if class_names is not None else _dataset_classes(dataset)
    origins = [f"item {i}" for i in range(n)]
    info = {"reader": "torch", "dataset": type(dataset).__name__, "n": n}
    labelled = _split_item(dataset[0])[2] if n else False
    cheap = _cheap_labels(dataset, n) if labelled else None
    if n and (cheap is not None or not labelled):
        return RawImages(
            images=_LazyImages(dataset, n, labelled),  # type: ignore[arg-type]
            labels=cheap, class_names=names if labelled else None, origins=origins, info=info,
            value_range=value_range,
        )
    images: list[np.ndarray] = []
    labels: list[Any] = []
    for i in range(n):
        img, lab, has_label = _split_item(dataset[i])
        if has_label != labelled:
            raise DataError(f"item {i} of the dataset has {'a' if has_label else 'no'} label, unlike item 0")
        images.append(_item_image(img, i))
        labels.append(lab)
    return RawImages(
        images=images,
        labels=labels if labelled else None,
        class_names=names if labelled else None,
        origins=origins,
        info=info,
        value_range=value_range,
    )


def from_torch(
    dataset: Any,
    *,
    class_names: Sequence[str] | None = None,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    intensity: str = "unit",
    value_range: tuple[float, float] | None = None,
    classes: Any = None,
    limit: int | None = None,
    seed: int = 0,
    source: str | None = None,
) -> ImageSet:
    """An :class:`ImageSet` from any map-style torch Dataset returning ``(image, label)`` or ``image``.

    Images may be PIL images (read at full bit depth), (C, H, W) tensors or (H, W[, C]) arrays. The
    dataset is read into memory once (only the images a ``classes``/``limit`` selection keeps, when
    labels are available without decoding images). Class names default to ``dataset.classes`` when present.
    Leave out ``Normalize`` transforms: intensities must lie in [0, 1] (or pass ``value_range``).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = from_torch(TensorDataset(torch.rand(6, 1, 8, 8), torch.tensor([0, 1] * 3)))
    >>> ds.N, ds.shape
    (6, (1, 8, 8))
    """
    raw = torch_to_raw(dataset, class_names=class_names)
    return preprocess(
        raw, source=source or f"torch:{type(dataset).__name__}", size=size, channels=channels,
        intensity=intensity, value_range=value_range, classes=classes, limit=limit, seed=seed,
    )
