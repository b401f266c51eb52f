"""One entry point for every dataset source: :func:`load`.

``load`` picks the reader from the source string, then applies the shared preprocessing
(:func:`intrinsics.data.preprocess.preprocess`), so every source ends up on the same pixel scale.

Sources
-------
- ``"builtin:NAME"``: digits, mnist, fashion-mnist, MedMNIST 2-D sets (``pneumoniamnist``, ``..._64``).
- ``"synthetic:NAME?k=v&..."``: generated sets of known d_data and K_F (:mod:`intrinsics.data.synthetic`).
- a folder: one subfolder per class, or a CSV of labels (``labels=``), or unlabelled.
- a ``.npz`` file (MedMNIST layout or ``images``/``labels``), an IDX file (``*-images-idx3-ubyte[.gz]``),
  or a single image/DICOM/NIfTI file.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from ._raw import RawImages
from .builtin import available_builtins, read_builtin
from .files import file_kind, file_option_names, read_file
from .folder import read_folder
from .idx import read_idx
from .imageset import ImageSet
from .npz import read_npz
from .preprocess import _check_options, preprocess

__all__ = ["load", "read_source", "source_kind"]


def source_kind(source: str | os.PathLike) -> str:
    """Which reader a source goes to: builtin, synthetic, folder, npz, idx or file."""
    text = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(text, str):
        raise DataError(
            f"load() takes a source string or path, not {type(source).__name__}; use from_arrays() for arrays "
            "and from_torch() for a torch Dataset"
        )
    if text.startswith("builtin:"):
        return "builtin"
    if text.startswith("synthetic:"):
        return "synthetic"
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DataError(
            f"no file or folder at {text!r}; named datasets are written 'builtin:NAME' "
            f"({', '.join(available_builtins()[:4])}, ...) or 'synthetic:NAME?...'"
        )
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if "idx" in name and "ubyte" in name:
        return "idx"
    return "file"


def _refuse(kind: str, **given: Any) -> None:
    for option, value in given.items():
        if value is not None:
            raise DataError(f"{option}={value!r} does not apply to {kind} sources; drop it")


def _check_reader_options(kind: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise DataError(f"unknown option(s) {', '.join(unknown)} for {kind} sources; valid options: {valid}")


def read_source(
    source: str | os.PathLike,
    *,
    split: str | None = None,
    labels: str | os.PathLike | bool | None = None,
    label_key: str = "path",
    value_range: tuple[float, float] | None = None,
    **reader_options: Any,
) -> RawImages:
    """Read a source into :class:`RawImages` without preprocessing (see :func:`load` for the options)."""
    kind = source_kind(source)
    text = os.fspath(source)
    if label_key != "path" and kind != "folder":
        raise DataError(f"label_key={label_key!r} applies to folders with a labels CSV, not {kind} sources")
    if kind == "builtin":
        _refuse(kind, labels=labels)
        _check_reader_options(kind, reader_options, ("label_column",))
        return read_builtin(text[len("builtin:"):], split=split, **reader_options)
    if kind == "synthetic":
        _refuse(kind, split=split, labels=labels)
        _check_reader_options(kind, reader_options, ())
        try:
            synthetic = importlib.import_module("intrinsics.data.synthetic")
        except ModuleNotFoundError as exc:
            if exc.name == "intrinsics.data.synthetic":
                raise DataError("this installation has no synthetic data generator") from None
            raise
        return synthetic.from_spec(text[len("synthetic:"):])
    path = Path(text).expanduser()
    if kind == "folder":
        _check_reader_options(kind, reader_options, ("label_column", "unmatched", *file_option_names()))
        if split is not None:
            # A folder holding train/, test/, ...: the split is the subfolder.
            sub = path / split
            if not sub.is_dir():
                subs = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
                raise DataError(f"split={split!r} names no subfolder of {path} (subfolders: {', '.join(subs)})")
            path = sub
        return read_folder(path, labels=labels, label_key=label_key, value_range=value_range, **reader_options)
    if kind == "npz":
        _refuse(kind, labels=labels)
        _check_reader_options(kind, reader_options, ("label_column",))
        return read_npz(path, split=split, **reader_options)
    if kind == "idx":
        _refuse(kind, split=split)
        _check_reader_options(kind, reader_options, ())
        return read_idx(path, labels=labels if labels not in (None, False) else None)
    _refuse("single-file", split=split, labels=labels)
    _check_reader_options("single-file", reader_options, file_option_names())
    if file_kind(path) is None:
        raise DataError(
            f"{text!r} is not a dataset file intrinsics can read (.npz, IDX, image, DICOM, NIfTI, .npy); "
            "for a folder of files pass the folder"
        )
    images, meta = read_file(path, **reader_options)
    origins = [f"{path.name}#{i}" if len(images) > 1 else path.name for i in range(len(images))]
    vr = meta.get("value_range")
    return RawImages(
        images=images,
        origins=origins,
        info={"reader": "file", "file": str(path), "format": meta.get("format"), "modality": meta.get("Modality")},
        value_range=None if vr is None else (float(vr[0]), float(vr[1])),
    )


def load(
    source: str | os.PathLike,
    *,
    split: str | None = None,
    labels: str | os.PathLike | bool | None = None,
    label_key: str = "path",
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    intensity: str = "unit",
    value_range: tuple[float, float] | None = None,
    classes: Any = None,
    limit: int | None = None,
    seed: int = 0,
    **reader_options: Any,
) -> ImageSet:
    """Load and preprocess an image dataset from any supported source.

    Parameters
    ----------
    source : str or path
        ``"builtin:NAME"``, ``"synthetic:NAME?k=v"``, a folder, an ``.npz``, an IDX images file, or a
        single image/DICOM/NIfTI file.
    split : str, optional
        "train"/"val"/"test" for MedMNIST and Fashion-MNIST (default "train"); for a folder, the
        subfolder to read.
    labels : path or False, optional
        Folders: a CSV with ``path,label`` columns (``False``: read unlabelled). IDX: the labels file
        (default: the sibling ``*-labels-idx1-ubyte[.gz]``).
    label_key : str
        CSV column that identifies files: "path" or a metadata key ("SOPInstanceUID", "PatientID", ...).
    size : int or (H, W), optional
        Resize (antialiased bilinear) to this size; None keeps the native size.
    channels : {1, 3}, optional
        Convert to grey (BT.601 luma) or RGB; None keeps the native channels.
    intensity : {"unit", "per_image_max", "minmax"}
        How pixels are scaled to [0, 1] (see :func:`intrinsics.data.preprocess.preprocess`).
    value_range : (low, high), optional
        Intensities that map to 0 and 1 under "unit", overriding the format's range.
    classes : sequence or str, optional
        Keep these classes (names or indices, e.g. ``(3, 5)`` or ``"3,5"``), relabelled 0..len-1.
    limit : int, optional
        Keep at most this many images, drawn with ``seed`` (class-stratified).
    seed : int
        Seed of the ``limit`` draw.
    **reader_options
        ``label_column`` (CSV label column; ChestMNIST finding), ``unmatched`` ("error"/"skip"),
        DICOM ``window``, NIfTI ``axis``/``slices``/``skip_empty``/``volume``.

    Returns
    -------
    ImageSet
        float32 images (N, C, H, W), int64 labels, class names, and ``provenance`` with the source
        and every preprocessing step.

    Examples
    --------
    >>> ds = load("builtin:digits", classes=(3, 5))
    >>> ds.images.shape[1:], ds.class_names
    ((1, 8, 8), ('3', '5'))
    """
    # Check the cheap options before reading anything: a typo should not cost a long read.
    _check_options(size, channels, intensity, value_range, limit, seed)
    raw = read_source(source, split=split, labels=labels, label_key=label_key, value_range=value_range,
                      **reader_options)
    return preprocess(
        raw, source=os.fspath(source), size=size, channels=channels, intensity=intensity,
        value_range=value_range, classes=classes, limit=limit, seed=seed,
    )
