"""DICOM reader: the 2-D images of one file, and the rule for which files are DICOM.

Folders of DICOM files (series included) are read by :func:`intrinsics.data.folder.read_folder`, like any
other folder of images; it gives each file that :func:`looks_like_dicom` to :func:`read_dicom_file`.

Pixel values come out in modality units (CT: Hounsfield units), after RescaleSlope/Intercept, so
that files of one series are comparable. The intensity range that later maps to [0, 1] is either a
window (``window=(center, width)`` or a named preset) or, without one, the whole range the stored bits
allow after rescale: the same for every file of a series, never the range of one file's pixels.

Compressed transfer syntaxes decode through pydicom's plugins: JPEG baseline and JPEG 2000 work with
Pillow alone; JPEG lossless (process 14), 12-bit JPEG extended and JPEG-LS need ``pylibjpeg`` and
``pylibjpeg-libjpeg``.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError, SettingError
from .limits import DEFAULT_MAX_PIXELS, check_memory, check_pixels

__all__ = [
    "WINDOW_PRESETS",
    "DICOM_SUFFIXES",
    "parse_window",
    "is_dicom_file",
    "looks_like_dicom",
    "read_dicom_file",
]

#: Named windows as (center, width), in modality units (Hounsfield units for CT).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "abdomen": (50.0, 400.0),
    "liver": (30.0, 150.0),
}

#: File name endings that mark a file as DICOM, lower case (see :func:`looks_like_dicom`).
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".dic", ".ima")
# Files that sit in DICOM exports but hold no image instance.
_NOT_INSTANCES = {"dicomdir"}
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DECODER_HINT = (
    "install a decoder for it (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, "
    "or python-gdcm) or convert the file to an uncompressed transfer syntax"
)


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------
def parse_window(window: Any) -> tuple[float, float] | None:
    """Turn a window option into ``(center, width)``.

    Parameters
    ----------
    window : None, str or pair of float
        ``None`` (no window), a preset name from :data:`WINDOW_PRESETS` (``"lung"``), the string
        ``"center,width"`` (``"-600,1500"``), or a pair ``(center, width)``.

    Returns
    -------
    (float, float) or None
        Center and width; the window keeps values in ``[center - width/2, center + width/2]``.

    Examples
    --------
    >>> parse_window("brain")
    (40.0, 80.0)
    >>> parse_window("-600, 1500")
    (-600.0, 1500.0)
    """
    if window is None:
        return None
    if isinstance(window, str):
        text = window.strip()
        if text.lower() in WINDOW_PRESETS:
            return WINDOW_PRESETS[text.lower()]
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise SettingError("window", window, f"is neither a preset nor 'center,width': use one of "
                               f"{', '.join(sorted(WINDOW_PRESETS))} or two numbers such as '40,80'")
        pair: Sequence[Any] = parts
    elif isinstance(window, Mapping):
        pair = (window.get("center"), window.get("width"))
    else:
        try:
            pair = list(window)
        except TypeError:
            pair = [window]
        if len(pair) != 2:
            raise SettingError("window", window, f"must be (center, width), a 'center,width' string or a preset "
                               f"({', '.join(sorted(WINDOW_PRESETS))})")
    try:
        center, width = float(pair[0]), float(pair[1])
    except (TypeError, ValueError):
        raise SettingError("window", window, "must hold two numbers (center, width), e.g. (40, 80) or '40,80'") from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise SettingError("window", window, "needs a finite center and a width > 0, e.g. (40, 80) for a brain window")
    return center, width


def _window_bounds(window: tuple[float, float]) -> tuple[float, float]:
    center, width = window
    return center - width / 2.0, center + width / 2.0


def _window_record(window_arg: Any, window: tuple[float, float] | None) -> dict[str, Any] | None:
    if window is None:
        return None
    lo, hi = _window_bounds(window)
    preset = window_arg.strip().lower() if isinstance(window_arg, str) else None
    return {
        "center": window[0],
        "width": window[1],
        "preset": preset if preset in WINDOW_PRESETS else None,
        "range": [lo, hi],
    }


# --------------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------------
def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file with the ``DICM`` marker at byte 128 (the DICOM Part 10 preamble)."""
    if not Path(path).is_file():  # never open a pipe or device: the read could block forever
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_file(
    path: str | os.PathLike[str], *, window: Any = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read the 2-D images one DICOM file holds.

    Parameters
    ----------
    path : str or path-like
        A DICOM file (Part 10 with the ``DICM`` marker, or a bare dataset as older scanners write).
    window : None, str or (float, float), optional
        Clip to ``[center - width/2, center + width/2]`` in modality units (see :func:`parse_window`).
    max_pixels : int or None
        Refuse a file whose header declares more than this many pixels (Rows × Columns) per frame,
        before its pixel data is decoded; its frames × samples are checked against the free memory.

    Returns
    -------
    images : list of ndarray
        One (H, W) array per frame for grey-scale data, (H, W, 3) RGB for colour data. The native
        integer dtype is kept when no rescale, window or inversion applies; otherwise float32.
        MONOCHROME1 images are inverted within ``value_range`` so that high values are bright.
    meta : dict
        ``SOPInstanceUID``, ``PatientID``, ``StudyInstanceUID``, ``SeriesInstanceUID``, ``Modality``,
        ``value_range`` (the interval that should map to [0, 1]), ``value_range_source``,
        ``n_frames``, ``photometric``, ``rescale``, ``window`` and more, all JSON-serialisable.

    Raises
    ------
    DataError
        The file is not DICOM, is truncated, holds no pixel data, or cannot be decoded here.

    Examples
    --------
    >>> images, meta = read_dicom_file("CT_small.dcm", window="abdomen")  # doctest: +SKIP
    >>> meta["value_range"]  # doctest: +SKIP
    (-150.0, 250.0)
    """
    path = Path(path)
    win = parse_window(window)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _check_deflated(path, max_pixels)
        ds = _read_dataset(path)
        frames, meta = _decode(ds, path, max_pixels)
    meta["reader_warnings"] = sorted({str(w.message) for w in caught})

    photometric = meta["photometric"]
    colour = frames[0].ndim == 3 or photometric == "PALETTE COLOR"
    if colour:
        if win is not None:
            raise SettingError("window", window, f"applies to grey-scale images, but DICOM file '{path}' is colour "
                               f"({photometric}); drop the window option for this data")
        images, value_range, source = _colour_frames(ds, frames, photometric)
        meta["rescale"] = None
    else:
        images, value_range, source, rescales = _grey_frames(ds, frames, win)
        meta["rescale"] = rescales
        if photometric == "MONOCHROME1":
            # MONOCHROME1 stores low values as bright; mirror inside the range so high = bright for all.
            images = [_invert(img, value_range) for img in images]
    meta["value_range"] = (float(value_range[0]), float(value_range[1]))
    meta["value_range_source"] = source
    meta["window"] = _window_record(window, win)
    meta["inverted"] = bool(photometric == "MONOCHROME1" and not colour)
    return images, meta


_DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
_HEAD_BYTES = 1 << 20  # of the inflated dataset: the image elements (group 0028) come long before this


def _check_deflated(path: Path, max_pixels: int | None) -> None:
    """The size a deflated dataset declares, checked before it is inflated.

    pydicom inflates a deflated dataset whole (pixel data included) before it can read any element, so a
    file of a few kilobytes can take gigabytes first. No library reads the start of a deflated dataset
    alone, hence this: inflate its first megabyte only, read the elements up to BitsAllocated from it,
    and check them as every DICOM header is checked.
    """
    import io
    import struct
    import zlib

    import pydicom
    from pydicom.filereader import read_dataset

    try:
        with open(path, "rb") as fh:
            head = fh.read(132 + 12)
            if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
                return  # no Part 10 header with its group length: the ordinary reader decides
            (group_length,) = struct.unpack("<I", head[140:144])
            meta = fh.read(group_length)
            if _DEFLATED.encode() not in meta:
                return
            inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(fh.read(_HEAD_BYTES), _HEAD_BYTES)
        ds = read_dataset(io.BytesIO(inflated), False, True, stop_when=lambda tag, vr, length: tag > 0x00280100)
    except (OSError, zlib.error, struct.error, ValueError, EOFError, pydicom.errors.InvalidDicomError):
        return  # damaged: the ordinary reader names the problem
    _check_declared_size(ds, path, max_pixels)


def _read_dataset(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise DataError(f"DICOM file '{path}' does not exist: check the path")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        # Older scanners write bare datasets without the 128-byte preamble; accept them only when
        # they really describe an image, since a forced read turns any bytes into a "dataset".
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:  # noqa: BLE001 - any failure here means "not DICOM"
            ds = None
        if ds is not None and "SOPClassUID" in ds and not any(t in ds for t in _PIXEL_TAGS):
            raise DataError(
                f"DICOM file '{path}' holds no pixel data (SOP class: {_uid_name(ds.SOPClassUID)}); "
                "it is not an image: remove it from the image folder"
            ) from None
        if ds is None or not all(k in ds for k in ("Rows", "Columns", "BitsAllocated")):
            raise DataError(
                f"'{path}' is not a DICOM file (no 'DICM' marker at byte 128 and no image elements); "
                "remove it from the folder or give the right file"
            ) from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt headers
        raise DataError(
            f"DICOM file '{path}' cannot be read ({type(exc).__name__}: {exc}); "
            "the file is corrupt or truncated: replace or remove it"
        ) from None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" not in meta and any(t in ds for t in _PIXEL_TAGS):
        # Without a file meta header the encoding is known only from how pydicom parsed it.
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def _last_element_short(ds: Any) -> bool:
    """True when the last element read holds fewer bytes than its header announced (a cut file)."""
    tags = list(ds.keys())
    if not tags:
        return True
    elem = ds.get_item(tags[-1])
    length = getattr(elem, "length", None)
    value = getattr(elem, "value", None)
    if length is None or length == 0xFFFFFFFF or not isinstance(value, (bytes, bytearray)):
        return False
    return len(value) < length


def _uid_name(uid: Any) -> str | None:
    if uid is None:
        return None
    name = getattr(uid, "name", None)
    return str(name) if name else str(uid)


def _check_declared_size(ds: Any, path: Path, max_pixels: int | None) -> None:
    """Rows × Columns against the pixel limit and the decoded size against free memory, from the header."""
    rows, cols = _int_or_none(ds.get("Rows")) or 0, _int_or_none(ds.get("Columns")) or 0
    frames = _int_or_none(ds.get("NumberOfFrames")) or 1
    samples = _int_or_none(ds.get("SamplesPerPixel")) or 1
    bits = _int_or_none(ds.get("BitsAllocated")) or 8
    check_pixels(f"DICOM file '{path}'", rows, cols, max_pixels, frames=frames)
    # pixel_array holds every frame at its stored depth, and rescaling makes a float32 copy.
    check_memory(rows * cols * frames * samples * (max(bits // 8, 1) + 4), f"the {frames} frames of DICOM file "
                 f"'{path}'" if frames > 1 else f"DICOM file '{path}'", "the file is too large to decode here",
                 shape=(frames, rows, cols, samples))


def _decode(ds: Any, path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Pixel frames as arrays (colour already RGB), plus the identifying meta of the file."""
    sop_class = _uid_name(ds.get("SOPClassUID"))
    meta: dict[str, Any] = {
        "path": str(path),
        "SOPInstanceUID": _str_or_none(ds.get("SOPInstanceUID")),
        "SOPClassUID": _str_or_none(ds.get("SOPClassUID")),
        "SOPClass": sop_class,
        "PatientID": _str_or_none(ds.get("PatientID")),
        "StudyInstanceUID": _str_or_none(ds.get("StudyInstanceUID")),
        "SeriesInstanceUID": _str_or_none(ds.get("SeriesInstanceUID")),
        "Modality": _str_or_none(ds.get("Modality")),
        "InstanceNumber": _int_or_none(ds.get("InstanceNumber")),
        "photometric": _str_or_none(ds.get("PhotometricInterpretation")),
        "transfer_syntax": _uid_name(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)),
    }
    if not any(t in ds for t in _PIXEL_TAGS):
        if _last_element_short(ds):
            raise DataError(
                f"DICOM file '{path}' is truncated (it ends inside an element, before any pixel data); "
                "copy it again from the source or remove it"
            )
        kind = f" (SOP class: {sop_class})" if sop_class else ""
        raise DataError(
            f"DICOM file '{path}' holds no pixel data{kind}; it is not an image (or it was cut short): "
            "remove it from the image folder"
        )
    _check_declared_size(ds, path, max_pixels)
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        raise DataError(
            f"DICOM file '{path}' uses transfer syntax '{meta['transfer_syntax']}' that no installed "
            f"decoder can read ({_first_line(exc)}); {_DECODER_HINT}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise ValueError/AttributeError/...
        msg = _first_line(exc)
        if "less than expected" in msg or _last_element_short(ds):
            raise DataError(
                f"DICOM file '{path}' is truncated: its pixel data is shorter than Rows x Columns x "
                f"frames announce ({msg}); copy it again from the source or remove it"
            ) from None
        raise DataError(
            f"the pixel data of DICOM file '{path}' cannot be decoded ({type(exc).__name__}: {msg}); "
            "the file is malformed: fix or remove it"
        ) from None

    arr = np.asarray(arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))  # big-endian files; torch needs native order
    n_frames = _int_or_none(ds.get("NumberOfFrames")) or 1
    samples = _int_or_none(ds.get("SamplesPerPixel")) or 1
    frame_ndim = 3 if samples > 1 else 2
    if arr.ndim == frame_ndim:
        frames = [arr]
    elif arr.ndim == frame_ndim + 1:
        frames = [arr[i] for i in range(arr.shape[0])]
    else:
        raise DataError(
            f"DICOM file '{path}' decodes to an array of shape {arr.shape}, which is not a stack of "
            f"2-D frames with {samples} sample(s) per pixel; the header is inconsistent: fix or remove it"
        )
    meta["n_frames"] = len(frames)
    meta["NumberOfFrames"] = n_frames
    meta["Rows"] = int(frames[0].shape[0])
    meta["Columns"] = int(frames[0].shape[1])
    meta["BitsStored"] = _int_or_none(ds.get("BitsStored"))
    return frames, meta


def _grey_frames(
    ds: Any, frames: list[np.ndarray], win: tuple[float, float] | None
) -> tuple[list[np.ndarray], tuple[float, float], str, list[list[float]] | str]:
    """Apply the modality transform (and window) to grey-scale frames.

    Returns the frames, the value range that maps to [0, 1], where that range comes from, and the
    distinct (slope, intercept) pairs applied (or ``"modality LUT"``).
    """
    lut = ds.get("ModalityLUTSequence")
    if lut:
        from pydicom.pixels import apply_modality_lut

        out = [np.asarray(apply_modality_lut(f, ds), dtype=np.float32) for f in frames]
        bits = int(lut[0].LUTDescriptor[2])
        value_range: tuple[float, float] = (0.0, float(2**bits - 1))
        source = f"modality LUT ({bits} bits)"
        applied: list[list[float]] | str = "modality LUT"
    else:
        rescales = _rescale_per_frame(ds, len(frames))
        lo_raw, hi_raw, source = _stored_range(ds, frames)
        out = []
        for f, (slope, intercept) in zip(frames, rescales):
            if slope == 1.0 and intercept == 0.0:
                out.append(f)
            else:
                # float64 arithmetic then float32: exact for 16-bit data, no int16 overflow.
                out.append((f.astype(np.float64) * slope + intercept).astype(np.float32))
        ends = [s * v + i for s, i in set(rescales) for v in (lo_raw, hi_raw)]
        value_range = (min(ends), max(ends))
        applied = [list(r) for r in sorted(set(rescales))]
    if win is not None:
        lo, hi = _window_bounds(win)
        out = [np.clip(f.astype(np.float32, copy=False), lo, hi) for f in out]
        value_range, source = (lo, hi), "window"
    return out, value_range, source, applied


def _rescale_per_frame(ds: Any, n_frames: int) -> list[tuple[float, float]]:
    """(slope, intercept) of each frame: top level, else the functional groups of enhanced files."""

    def from_item(item: Any) -> tuple[float, float] | None:
        if item is None or not ("RescaleSlope" in item or "RescaleIntercept" in item):
            return None
        slope = item.get("RescaleSlope")
        intercept = item.get("RescaleIntercept")
        return (
            1.0 if slope in (None, "") else float(slope),
            0.0 if intercept in (None, "") else float(intercept),
        )

    def group(seq: Any, index: int) -> Any:
        if not seq or index >= len(seq):
            return None
        pvt = seq[index].get("PixelValueTransformationSequence")
        return pvt[0] if pvt else None

    top = from_item(ds)
    if top is not None:
        return [top] * n_frames
    shared = from_item(group(ds.get("SharedFunctionalGroupsSequence"), 0)) or (1.0, 0.0)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    return [from_item(group(per_frame, i)) or shared for i in range(n_frames)]


def _stored_range(ds: Any, frames: list[np.ndarray]) -> tuple[float, float, str]:
    """Range of raw values the header allows (BitsStored, PixelRepresentation) before rescale."""
    if frames[0].dtype.kind == "f":
        # Float Pixel Data has no bit depth: the file's own range is all we have.
        lo = min(float(np.min(f)) for f in frames)
        hi = max(float(np.max(f)) for f in frames)
        return lo, hi, "file min-max (float pixel data)"
    signed = _int_or_none(ds.get("PixelRepresentation")) == 1 or frames[0].dtype.kind == "i"
    bits = _int_or_none(ds.get("BitsStored")) or _int_or_none(ds.get("BitsAllocated")) or 8 * frames[0].itemsize
    lo, hi = _bits_range(bits, signed)
    data_lo = min(int(np.min(f)) for f in frames)
    data_hi = max(int(np.max(f)) for f in frames)
    if data_lo >= lo and data_hi <= hi:
        return float(lo), float(hi), f"BitsStored={bits} ({'signed' if signed else 'unsigned'})"
    # Some writers leave values outside BitsStored; fall back to the container so nothing exceeds 1.
    info = np.iinfo(frames[0].dtype)
    return float(info.min), float(info.max), f"dtype {frames[0].dtype} (values exceed BitsStored={bits})"


def _bits_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _colour_frames(
    ds: Any, frames: list[np.ndarray], photometric: str | None
) -> tuple[list[np.ndarray], tuple[float, float], str]:
    """Colour frames as RGB (pydicom already converts YBR); value range from the bit depth."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        frames = [np.asarray(apply_color_lut(f, ds)) for f in frames]
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        source = f"palette LUT ({bits} bits)"
    else:
        bits = _int_or_none(ds.get("BitsStored")) or 8 * frames[0].itemsize
        source = f"BitsStored={bits} ({photometric})"
    lo, hi = _bits_range(bits, signed=False)
    if max(int(f.max()) for f in frames) > hi:  # values beyond the declared depth: use the container
        hi = int(np.iinfo(frames[0].dtype).max)
        source = f"dtype {frames[0].dtype} (values exceed {bits} bits)"
    return frames, (float(lo), float(hi)), source


def _invert(img: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    if img.dtype.kind in "iu" and float(lo).is_integer() and float(hi).is_integer():
        return (int(lo) + int(hi) - img.astype(np.int64)).astype(img.dtype)
    return (np.float32(lo + hi) - img.astype(np.float32)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# which files are DICOM
# --------------------------------------------------------------------------------------------------
def looks_like_dicom(path: str | os.PathLike[str]) -> bool:
    """True for a file to read as DICOM: the rule behind :func:`intrinsics.data.files.file_kind`.

    A name ending in one of :data:`DICOM_SUFFIXES` (any case) is DICOM, so that bare datasets without the
    ``DICM`` marker, as older scanners write them, are read too; any other file is DICOM when it carries the
    marker (:func:`is_dicom_file`), as exports without suffixes (``IM0001``) do. A ``DICOMDIR`` is not: it
    indexes the export it sits in and holds no image.

    Examples
    --------
    >>> looks_like_dicom("series/IM0001.IMA")
    True
    >>> looks_like_dicom("export/DICOMDIR")
    False
    """
    path = Path(path)
    if path.name.lower() in _NOT_INSTANCES:
        return False
    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(t.strip() for t in text[:3]) if text else type(exc).__name__
