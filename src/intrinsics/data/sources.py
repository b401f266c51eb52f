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
- a ``.json`` datalist: a Decathlon ``dataset.json`` or a MONAI-style list of ``{"image", "label"}`` entries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DataError, spell
from ._raw import RawImages
from .builtin import available_builtins, read_builtin
from .datalist import read_datalist_file
from .files import file_kind, read_file
from .folder import read_folder
from .idx import read_idx
from .imageset import ImageSet
from .npz import read_npz
from .options import DataOptions, check_applies
from .preprocess import preprocess
from .synthetic import from_spec

__all__ = ["load", "read_source", "source_kind"]


def source_kind(source: str | os.PathLike) -> str:
    """Which reader a source goes to: builtin, synthetic, folder, npz, idx, datalist or file."""
    text = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(text, str):
        raise DataError(
            f"load() takes a source string or path, not {type(source).__name__}; use intrinsics.from_arrays() for "
            "arrays and intrinsics.from_torch() for a torch Dataset"
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
    if name.endswith(".json"):
        return "datalist"
    if "idx" in name and "ubyte" in name:
        return "idx"
    return "file"


def read_source(source: str | os.PathLike, options: DataOptions | None = None) -> RawImages:
    """Read a source into :class:`RawImages` without preprocessing (see :func:`load` for the options)."""
    kind = source_kind(source)
    opts = options or DataOptions()
    check_applies(kind, opts.to_dict())
    text = os.fspath(source)
    if kind == "builtin":
        return read_builtin(text[len("builtin:"):], split=opts.split, label_column=opts.label_column)
    if kind == "synthetic":
        return from_spec(text[len("synthetic:"):])
    path = Path(text).expanduser()
    if kind == "folder":
        if opts.split is not None:
            # A folder holding train/, test/, ...: the split is the subfolder.
            sub = path / opts.split
            if not sub.is_dir():
                subs = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
                raise DataError(f"{spell('split', opts.split)} names no subfolder of {path} "
                                f"(subfolders: {', '.join(subs)})")
            path = sub
        return read_folder(path, labels=opts.labels, label_key=opts.label_key,
                           label_column=opts.label_column or "label", unmatched=opts.unmatched,
                           value_range=opts.value_range, file_options=opts.files,
                           follow_links=opts.follow_links)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise DataError(f"{path} is a pipe, device or socket, not a regular file; copy the data into a file")
    if kind == "datalist":
        return read_datalist_file(path, split=opts.split, label_column=None if opts.label_column is None
                                  else str(opts.label_column), labels=opts.labels, file_options=opts.files)
    if kind == "npz":
        return read_npz(path, split=opts.split, label_column=opts.label_column, max_pixels=opts.max_pixels)
    if kind == "idx":
        return read_idx(path, labels=opts.labels if opts.labels not in (None, False) else None,
                        max_pixels=opts.max_pixels)
    if file_kind(path) is None:
        raise DataError(
            f"{text!r} is not a dataset file intrinsics can read (.npz, IDX, image, DICOM, NIfTI, .npy); "
            "for a folder of files pass the folder"
        )
    images, meta = read_file(path, opts.files)
    origins = [f"{path.name}#{i}" if len(images) > 1 else path.name for i in range(len(images))]
    vr = meta.get("value_range")
    return RawImages(
        images=images,
        origins=origins,
        info={"reader": "file", "file": str(path), "format": meta.get("format"), "modality": meta.get("Modality")},
        value_range=None if vr is None else (float(vr[0]), float(vr[1])),
    )


def load(source: str | os.PathLike, options: DataOptions | None = None, **settings: Any) -> ImageSet:
    """Load and preprocess an image dataset from any supported source.

    Parameters
    ----------
    source : str or path
        ``"builtin:NAME"``, ``"synthetic:NAME?k=v"``, a folder, an ``.npz``, an IDX images file, or a
        single image/DICOM/NIfTI file.
    options : DataOptions, optional
        All of the options below as one checked object; keyword settings given as well override it.
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
    label_column, unmatched, window, axis, slices, skip_empty, volume
        ``label_column`` (CSV label column; ChestMNIST finding), ``unmatched`` ("error"/"skip"),
        DICOM/NIfTI ``window``, NIfTI ``axis``/``slices``/``skip_empty``/``volume``
        (:class:`~intrinsics.data.options.FileOptions`). An option the source does not use is an error.

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
    # Every option is checked before anything is read: a typo should not cost a long read. Whether an
    # option applies to this kind of source is checked first, so a misplaced option is named as such.
    check_applies(source_kind(source), settings)
    opts = (options or DataOptions()).replace(**settings) if settings else (options or DataOptions())
    raw = read_source(source, opts)
    return preprocess(raw, source=os.fspath(source), **opts.preprocessing())
