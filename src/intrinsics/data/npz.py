"""MedMNIST-layout ``.npz`` files (``train_images``, ``train_labels``, ``val_*``, ``test_*``) and plain
``images``/``labels`` archives, read without ever unpickling."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, Placeholder, SettingError, spell
from ._raw import RawImages
from .limits import DEFAULT_MAX_PIXELS, check_memory, check_pixels
from .medmnist import MEDMNIST_LABELS, MEDMNIST_MULTILABEL

__all__ = ["MEDMNIST_LABELS", "MEDMNIST_MULTILABEL", "medmnist_name", "read_npz"]

_SPLITS = ("train", "val", "test")


def medmnist_name(path: str | os.PathLike) -> str | None:
    """The MedMNIST dataset a file name refers to (``pneumoniamnist_64.npz`` -> ``pneumoniamnist``)."""
    stem = Path(path).name.lower()
    stem = re.sub(r"\.npz$", "", stem)
    stem = re.sub(r"_(28|64|128|224)$", "", stem)
    return stem if stem in MEDMNIST_LABELS else None


def _member_header(npz: Any, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of an archive member from its .npy header alone: a compressed member is
    decompressed only as far as its header. None when the header cannot be read (``_get`` then says why)."""
    fmt = np.lib.format
    names = set(npz.zip.namelist())
    member = f"{key}.npy" if f"{key}.npy" in names else key  # numpy reads a member stored without the suffix too
    try:
        with npz.zip.open(member) as fh:
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _check_declared(header: tuple[tuple[int, ...], np.dtype] | None, key: str, path: Path,
                    max_pixels: int | None, images: bool) -> None:
    """Refuse, before decompressing, a member whose header declares images above ``max_pixels`` or an
    array larger than the free memory (a few kilobytes of zeros can declare terabytes)."""
    if header is None:
        return
    shape, dtype = header
    if images and len(shape) >= 3:
        check_pixels(f"{path} ({key!r})", shape[1], shape[2], max_pixels, frames=shape[0], unit="images")
    check_memory(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, f"{key!r} of {path}",
                 "use a smaller file (or save the images in several files)", shape=shape)


def _check_label_count(images: tuple[tuple[int, ...], np.dtype] | None, labels: tuple[tuple[int, ...], np.dtype] | None,
                       label_key: str, path: Path) -> None:
    """Refuse, from the headers alone, labels that cannot belong to the images (before either is read)."""
    if images is None or labels is None or not images[0] or not labels[0]:
        return
    if labels[0][0] != images[0][0]:
        raise DataError(f"{path}: {images[0][0]} images but {labels[0][0]} labels in {label_key!r}")


def _get(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):  # a short or malformed member, not a pickled one
            raise DataError(f"{path} is damaged ({key!r}: {exc}); download or save it again") from None
        # np.load(allow_pickle=False) refuses object arrays: unpickling a downloaded file could run code.
        raise DataError(
            f"{path} stores {key!r} as pickled Python objects, which intrinsics refuses to load (unpickling "
            f"can run code); re-save it with plain numeric arrays ({exc})"
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is damaged ({key!r}: {exc}); download or save it again") from None


def _pick_label_column(
    labels: np.ndarray, name: str | None, label_column: Any, path: Path
) -> tuple[np.ndarray, tuple[str, ...]]:
    findings = MEDMNIST_LABELS.get(name or "", ())
    n_cols = labels.shape[1]
    names = findings if len(findings) == n_cols else tuple(str(i) for i in range(n_cols))
    listing = ", ".join(f"{i}={f!r}" for i, f in enumerate(names))
    if label_column is None:
        raise DataError(
            f"{path} has {n_cols} labels per image (multi-label); pick one finding as a binary task with "
            f"{spell('label_column', Placeholder('INDEX or NAME'))} ({listing})"
        )
    text = str(label_column).strip()
    if text in names:
        col = names.index(text)
    elif text.isdigit() and int(text) < n_cols:
        col = int(text)
    else:
        raise SettingError("label_column", label_column, f"is not one of the {n_cols} label columns: {listing}")
    return labels[:, col].astype(np.int64), (f"no {names[col]}", names[col])


def read_npz(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    label_column: int | str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> RawImages:
    """Read a MedMNIST-layout or plain ``.npz`` file (never unpickling anything).

    Parameters
    ----------
    path : path-like
        ``{split}_images`` / ``{split}_labels`` arrays (MedMNIST), or ``images`` (+ ``labels``).
    split : {"train", "val", "test"}, optional
        MedMNIST split; default "train".
    label_column : int or str, optional
        For multi-label files (ChestMNIST): the finding that defines a binary task.
    max_pixels : int or None
        Largest image (rows × columns) the images array may declare, checked from its header before it
        is decompressed; None: no limit. The arrays' sizes are checked against the free memory too.

    Returns
    -------
    RawImages
        With MedMNIST's official class names when the file name tells the dataset.
    """
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"no file at {path}; check the path") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}; the file is damaged or not an npz archive") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an .npz archive; load it with from_arrays(np.load(...))")
    with npz:
        keys = sorted(npz.files)
        medmnist = any(k.endswith("_images") for k in keys)
        if medmnist:
            split = "train" if split is None else str(split)
            image_key, label_key = f"{split}_images", f"{split}_labels"
            if image_key not in keys:
                splits = sorted(k[: -len("_images")] for k in keys if k.endswith("_images"))
                raise DataError(
                    f"{path} has no {image_key!r} array (keys present: {', '.join(keys)}); pass {spell('split')} one of "
                    f"{', '.join(repr(s) for s in splits)}"
                )
        else:
            image_key, label_key = "images", "labels"
            if image_key not in keys:
                raise DataError(
                    f"{path} has no 'images' array (keys present: {', '.join(keys) or 'none'}); save images as "
                    "'images' (and labels as 'labels'), or as MedMNIST's 'train_images'/'train_labels'"
                )
            if split is not None:
                raise DataError(f"{path} has no splits (keys: {', '.join(keys)}); drop {spell('split', split)}")
        image_header = _member_header(npz, image_key)
        _check_declared(image_header, image_key, path, max_pixels, images=True)
        if label_key in keys:
            label_header = _member_header(npz, label_key)
            _check_declared(label_header, label_key, path, None, images=False)
            _check_label_count(image_header, label_header, label_key, path)
        images = _get(npz, image_key, path)
        labels = _get(npz, label_key, path) if label_key in keys else None
    if labels is not None and labels.ndim == 0:
        raise DataError(f"{path}: {label_key!r} is a single value, not one label per image; save labels of shape (N,)")
    if images.dtype.kind not in "biuf":
        raise DataError(f"{path}: {image_key!r} has dtype {images.dtype}; images must be numeric")
    if images.ndim == 4 and images.shape[3] not in (1, 3, 4) or images.ndim == 5:
        raise DataError(
            f"{path}: {image_key!r} holds 3-D volumes of shape {images.shape[1:]}; intrinsics measures 2-D "
            "images: use the 2-D dataset, or slice the volumes and pass them to from_arrays"
        )
    if images.ndim not in (3, 4):
        raise DataError(f"{path}: {image_key!r} has shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    name = medmnist_name(path)
    class_names: tuple[str, ...] | None = None
    if labels is not None:
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels in {label_key!r}")
        if labels.ndim == 2 and labels.shape[1] > 1:
            labels, class_names = _pick_label_column(labels, name, label_column, path)
        else:
            if label_column is not None:
                raise DataError(f"{path} has one label per image; drop {spell('label_column', label_column)}")
            labels = labels.reshape(len(labels))
            official = MEDMNIST_LABELS.get(name or "")
            if official and labels.dtype.kind in "iu" and labels.size and labels.max() < len(official):
                class_names = official
    prefix = split if medmnist else "images"
    return RawImages(
        images=list(images),
        labels=labels,
        class_names=class_names,
        origins=[f"{prefix}[{i}]" for i in range(len(images))],
        info={"reader": "npz", "file": str(path), "split": split if medmnist else None, "dataset": name,
              "label_column": None if label_column is None else str(label_column)},
    )
