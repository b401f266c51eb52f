"""NIfTI reader: 3-D volumes (``.nii``, ``.nii.gz``) cut into 2-D slices.

Which intensities map to [0, 1] decides whether slices of *different* volumes are comparable, and
K_F depends on that scale. The choice here, in order:

1. ``window=(center, width)`` (or a preset such as ``"abdomen"``): a fixed interval in the volume's
   units (Hounsfield units for CT), the same for every volume. Use it for CT, and for any float data
   you want to compare across volumes.
2. Integer data: the full range of the stored dtype after the header's scl_slope/scl_inter, e.g.
   [-32768, 32767] for int16. The same for every volume of that dtype and scaling, at the cost of
   contrast (which only scales K_F by a constant, identical across the dataset).
3. Float data without a window: the volume's own (min, max). Slices of one volume are comparable,
   slices of two volumes are not (a bright outlier rescales a whole volume); ``value_range_source``
   says so, so that a loader combining volumes can warn.

Volumes are first reoriented to the closest canonical (RAS+) voxel order, so ``axis=2`` is axial,
``1`` coronal and ``0`` sagittal whatever the acquisition, slice indices count from the inferior /
posterior / left end, and each slice is rotated to the usual upright view.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, Placeholder, SettingError, spell
from ._raw import RawImages
from .dicom import _window_record, parse_window
from .limits import DEFAULT_MAX_PIXELS, check_memory, check_pixels
from .options import AXIS_NAMES, SETTINGS

__all__ = ["AXIS_NAMES", "read_nifti_file", "read_nifti"]

# Letters of the RAS+ axes, for slice origins such as "vol.nii.gz#z=12".
_AXIS_LETTER = ("x", "y", "z")


def read_nifti_file(
    path: str | os.PathLike[str],
    *,
    axis: int | str = 2,
    slices: Any = None,
    skip_empty: bool = False,
    volume: int | None = None,
    window: Any = None,
    reorient: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read a NIfTI volume as a list of 2-D slices.

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file holding a 2-D, 3-D or 4-D image.
    axis : int or {"axial", "coronal", "sagittal"}, default 2
        Axis to slice along, after reorientation to RAS+ (2 = axial).
    slices : (int, int), "start:stop" or None, optional
        Keep slices ``start <= i < stop`` along ``axis`` (Python range semantics, negatives allowed).
    skip_empty : bool, default False
        Drop slices whose voxels are all equal (background outside the body, padding).
    volume : int, optional
        Which volume of a 4-D file to read; required when the fourth axis has more than one volume.
    window : None, str or (float, float), optional
        Clip to ``[center - width/2, center + width/2]``; see :func:`intrinsics.data.dicom.parse_window`.
    reorient : bool, default True
        Reorient to the closest canonical (RAS+) voxel order first, so ``axis`` means the same
        anatomical direction in every volume.
    max_pixels : int or None
        Refuse a file whose slices could hold more than this many pixels, from its header (the two
        largest of its first three dimensions), before any voxel is read; the volume's size is checked
        against the free memory.

    Returns
    -------
    images : list of ndarray
        (H, W) slices: the stored integer dtype when the header applies no scaling, float32 otherwise.
    meta : dict
        ``shape`` (of the file), ``axis``, ``n_slices``, ``slice_indices``, ``value_range``,
        ``value_range_source``, ``dtype``, ``scaling``, ``orientation``, ``zooms``, ``volume``.

    Raises
    ------
    DataError
        Unreadable or truncated file, NaN/inf voxels, a 4-D file without ``volume``, a bad option.

    Examples
    --------
    >>> images, meta = read_nifti_file("ct.nii.gz", window="abdomen", skip_empty=True)  # doctest: +SKIP
    >>> meta["value_range"]  # doctest: +SKIP
    (-150.0, 250.0)
    """
    path = Path(path)
    ax = SETTINGS["axis"].check(axis)
    win = parse_window(window)
    img = _open(path)
    _check_declared_size(img, path, max_pixels)
    data, vol, file_shape = _read_volume(img, path, volume)

    raw_dtype = np.dtype(img.get_data_dtype())
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    data = _native(data)
    reoriented = reorient and img.affine is not None
    if reoriented:
        data = _to_ras(data, img.affine)

    n_total = data.shape[ax]
    start, stop = _parse_slices(slices, n_total, path)
    index = np.arange(start, stop)
    selected = _take_finite_slices(data, index, ax, path)
    value_range, source = _value_range(data, raw_dtype, slope, inter, win)
    if win is not None:
        selected = np.clip(selected.astype(np.float32, copy=False), value_range[0], value_range[1])
    images, kept = _upright_slices(selected, index, ax, skip_empty)
    if not images:
        raise DataError(
            f"all {len(index)} slice(s) {start}..{stop - 1} along axis {ax} of NIfTI file '{path}' are "
            "constant (empty); widen slices= or drop skip_empty, or remove the volume"
        )

    meta: dict[str, Any] = {
        "path": str(path),
        "shape": list(file_shape),
        "axis": ax,
        "n_slices": len(images),
        "n_slices_in_axis": int(n_total),
        "slice_indices": kept,
        "skipped_empty": len(index) - len(kept),
        "value_range": (float(value_range[0]), float(value_range[1])),
        "value_range_source": source,
        "dtype": str(raw_dtype),
        "scaling": [slope, inter],
        "orientation": _orientation(img),
        "reoriented_to": "RAS" if reoriented else None,
        "zooms": [float(z) for z in img.header.get_zooms()],
        "volume": vol,
        "window": _window_record(window, win),
    }
    return images, meta


def read_nifti(
    path: str | os.PathLike[str],
    *,
    axis: int | str = 2,
    slices: Any = None,
    skip_empty: bool = False,
    volume: int | None = None,
    window: Any = None,
    reorient: bool = True,
    label: Any = None,
) -> RawImages:
    """Read one NIfTI volume as a :class:`RawImages` of its slices.

    Parameters are those of :func:`read_nifti_file`, plus ``label``: one label shared by every slice
    (None for unlabelled data). Origins read ``"vol.nii.gz#z=12"`` (the axis letter, the slice index).

    Examples
    --------
    >>> raw = read_nifti("brain.nii.gz", skip_empty=True, label="tumour")  # doctest: +SKIP
    >>> len(raw.images) == raw.info["n_slices"]  # doctest: +SKIP
    True
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(
            f"'{p}' is a folder; read_nifti reads one volume: use intrinsics.data.load('{p}') for a folder"
        )
    images, meta = read_nifti_file(
        p, axis=axis, slices=slices, skip_empty=skip_empty, volume=volume, window=window, reorient=reorient
    )
    letter = _AXIS_LETTER[meta["axis"]]
    origins = [f"{p}#{letter}={k}" for k in meta["slice_indices"]]
    info = {"reader": "nifti", "source": str(p)}
    info.update({k: v for k, v in meta.items() if k not in ("path", "slice_indices")})
    info["value_range"] = list(meta["value_range"])
    return RawImages(
        images=images,
        labels=None if label is None else [label] * len(images),
        class_names=None,
        origins=origins,
        info=info,
        value_range=meta["value_range"],
    )


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _open(path: Path) -> Any:
    """The nibabel image of ``path``, its header read (the voxels are read later)."""
    import nibabel as nib

    if not path.is_file():
        raise DataError(f"NIfTI file '{path}' does not exist: check the path")
    try:
        return nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, EOFError, ...
        raise DataError(
            f"'{path}' cannot be read as NIfTI ({type(exc).__name__}: {_first_line(exc)}); "
            "give a valid .nii or .nii.gz file"
        ) from None


def _check_declared_size(img: Any, path: Path, max_pixels: int | None) -> None:
    """The header's slice size against the pixel limit and one volume's size against free memory."""
    shape = [int(s) for s in img.shape] + [1, 1]
    spatial = sorted(shape[:3], reverse=True)  # the axis is chosen after reorientation: the largest slice
    check_pixels(f"NIfTI file '{path}'", spatial[0], spatial[1], max_pixels, frames=spatial[2], unit="slices")
    # One volume as stored, plus a float32 copy when the header scales it (and for reorientation).
    itemsize = np.dtype(img.get_data_dtype()).itemsize
    check_memory(shape[0] * shape[1] * shape[2] * (itemsize + 4), f"a volume of NIfTI file '{path}'",
                 "the file is too large to read here", shape=tuple(shape[:3]))


def _read_volume(img: Any, path: Path, volume: int | None) -> tuple[np.ndarray, int | None, tuple[int, ...]]:
    """The voxels of the one 3-D volume to slice.

    Returns
    -------
    data : ndarray
        (X, Y, Z) voxels as stored (a 2-D image gets Z = 1).
    volume : int or None
        The volume read from a 4-D file; None for a 2-D or 3-D one.
    file_shape : tuple of int
        The shape stored in the file.
    """
    file_shape = tuple(int(s) for s in img.shape)
    shape = list(file_shape)
    while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1) is a 3-D volume stored as 4-D
        shape.pop()
    if len(shape) > 4:
        raise DataError(
            f"NIfTI file '{path}' has {len(shape)} dimensions (shape {file_shape}); only 2-D, 3-D and "
            "4-D images can be sliced: split it into volumes first"
        )
    dataobj = img.dataobj
    try:
        if len(shape) == 4:
            n_vol = shape[3]
            if volume is None:
                raise DataError(
                    f"NIfTI file '{path}' is 4-D with {n_vol} volumes (shape {file_shape}); "
                    f"pick one with {spell('volume', Placeholder('i'))} (0..{n_vol - 1})"
                )
            vol = _check_int(volume, "volume", path)
            if not 0 <= vol < n_vol:
                raise DataError(
                    f"volume={volume!r} is out of range for NIfTI file '{path}' with {n_vol} volumes: "
                    f"use 0..{n_vol - 1}"
                )
            data = np.asarray(dataobj[:, :, :, vol]).reshape(shape[:3])
        else:
            if volume not in (None, 0):
                raise DataError(
                    f"volume={volume!r} was given but NIfTI file '{path}' is {len(shape)}-D "
                    f"(shape {file_shape}); drop the volume option for 3-D files"
                )
            vol = None
            data = np.asarray(dataobj).reshape(shape)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a cut .nii/.nii.gz fails only when the voxels are read
        raise DataError(
            f"the voxels of NIfTI file '{path}' cannot be read ({type(exc).__name__}: {_first_line(exc)}); "
            "the file is truncated or corrupt: copy it again or remove it"
        ) from None
    if data.ndim == 2:
        data = data[:, :, None]
    return data, vol, file_shape


def _native(data: np.ndarray) -> np.ndarray:
    """``data`` in native byte order, with float voxels as float32."""
    if data.dtype == np.float64 or (data.dtype.kind == "f" and data.dtype != np.float32):
        data = data.astype(np.float32)  # scaled data comes back float64; float32 is exact enough
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _orientation(img: Any) -> str | None:
    """The voxel axis codes of the file as stored, e.g. "LPS"; None without an affine."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(img.affine)) if img.affine is not None else None


def _take_finite_slices(data: np.ndarray, index: np.ndarray, ax: int, path: Path) -> np.ndarray:
    """The slices ``index`` along ``ax``; float voxels in them must be finite (others may be NaN)."""
    selected = np.take(data, index, axis=ax)
    if selected.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(selected)))
        if bad:
            n_nan = int(np.count_nonzero(np.isnan(selected)))
            raise DataError(
                f"NIfTI file '{path}' has {bad} non-finite voxel(s) ({n_nan} NaN, {bad - n_nan} inf) in "
                f"the slices read; replace them (e.g. with the background value) or restrict slices="
            )
    return selected


def _upright_slices(
    selected: np.ndarray, index: np.ndarray, ax: int, skip_empty: bool
) -> tuple[list[np.ndarray], list[int]]:
    """The 2-D slices of ``selected`` in the upright view, and their indices in the volume.

    With ``skip_empty``, constant slices (background, padding) are left out.
    """
    images: list[np.ndarray] = []
    kept: list[int] = []
    for pos, k in enumerate(index):
        sl = np.take(selected, pos, axis=ax)
        if skip_empty and sl.size and sl.min() == sl.max():
            continue
        # rot90 of a RAS slice puts anterior / superior at the top: the view radiologists expect.
        images.append(np.ascontiguousarray(np.rot90(sl)))
        kept.append(int(k))
    return images, kept


def _check_int(value: Any, name: str, path: Path) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        out = None
    if out is None or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise DataError(f"{name}={value!r} for NIfTI file '{path}' must be an integer index")
    return out


def _parse_slices(slices: Any, n: int, path: Path) -> tuple[int, int]:
    """Resolve ``slices`` into a non-empty [start, stop) range within 0..n."""
    if slices is None:
        return 0, n
    start, stop = SETTINGS["slices"].check(slices)
    lo, hi, _ = slice(start, stop).indices(n)
    if hi <= lo:
        raise SettingError("slices", slices, f"selects no slice of NIfTI file '{path}', which has {n} along "
                           f"this axis: use a range within 0..{n}")
    return lo, hi


def _to_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Flip/transpose voxel axes to the closest canonical RAS+ order (no resampling)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    ornt = io_orientation(affine)
    transform = ornt_transform(ornt, axcodes2ornt(("R", "A", "S")))
    if np.array_equal(transform, axcodes2ornt(("R", "A", "S"))):
        return data
    return np.asarray(apply_orientation(data, transform))


def _value_range(
    data: np.ndarray, raw_dtype: np.dtype, slope: float, inter: float, win: tuple[float, float] | None
) -> tuple[tuple[float, float], str]:
    if win is not None:
        center, width = win
        return (center - width / 2.0, center + width / 2.0), "window"
    if raw_dtype.kind in "iu":
        info = np.iinfo(raw_dtype)
        ends = sorted((info.min * slope + inter, info.max * slope + inter))
        scaled = " after scl_slope/scl_inter" if (slope, inter) != (1.0, 0.0) else ""
        return (ends[0], ends[1]), f"dtype {raw_dtype} range{scaled}"
    lo, hi = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        finite = data[np.isfinite(data)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0  # a constant volume: any non-empty interval maps it to 0
    return (lo, hi), (
        f"volume min-max (float data: not comparable across volumes; pass {spell('window')} for a fixed range)"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return " ".join(s.strip() for s in lines[:2]) if lines else type(exc).__name__
