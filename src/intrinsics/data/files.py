"""Read one image file into arrays at its full bit depth: PNG/TIFF/JPEG/BMP, DICOM, NIfTI, .npy.

:func:`read_file` is what the folder reader calls for every file. DICOM and NIfTI are delegated to
the readers of :mod:`intrinsics.data.dicom` and :mod:`intrinsics.data.nifti`, looked up (and pydicom or
nibabel imported) only when such a file is met.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .dicom import looks_like_dicom, read_dicom_file  # pydicom itself is imported when a file is read
from .limits import DEFAULT_MAX_PIXELS, check_memory, check_pixels
from .nifti import read_nifti_file
from .options import FileOptions

__all__ = [
    "IMAGE_EXTENSIONS",
    "file_kind",
    "is_dicom",
    "pil_to_array",
    "read_file",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".pgm", ".ppm", ".pnm")


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a DICOM file, by :func:`intrinsics.data.dicom.looks_like_dicom` (a DICOM suffix or the
    "DICM" marker at byte 128; never a DICOMDIR)."""
    return looks_like_dicom(path)


def file_kind(path: str | os.PathLike) -> str | None:
    """"image", "dicom", "nifti", "npy", or None for a file no reader knows."""
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(IMAGE_EXTENSIONS):
        return "image"
    if name.endswith(".npy"):
        return "npy"
    if is_dicom(path):
        return "dicom"
    return None


def pil_to_array(img: Any, origin: str = "image") -> np.ndarray:
    """A PIL image as an (H, W) or (H, W, C) array at its full bit depth (16-bit stays uint16).

    Palette images become RGB, alpha channels are dropped (they are not intensities), and
    CMYK/YCbCr/LAB images become RGB.
    """
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("LA", "La", "PA"):
        img = img.convert("L")
    elif mode in ("RGBA", "RGBa", "RGBX"):
        img = img.convert("RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    if mode.startswith("I;16"):
        arr = arr.astype(np.uint16, copy=False)  # I;16B arrives big-endian: store native uint16
    elif mode == "I" and getattr(img, "format", None) == "PNG":
        # Older Pillow opens 16-bit grey PNGs as 32-bit "I"; PNG grey is at most 16 bits, so the
        # uint16 range (not int32's) is the one to scale by.
        arr = arr.astype(np.uint16)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{origin}: PIL mode {mode!r} gave dtype {arr.dtype}; convert the image to grey or RGB")
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.array(arr, copy=True) if not arr.flags.writeable else arr


def _png_is_16bit_colour(path: Path) -> bool:
    """A 16-bit PNG with colour or alpha (IHDR colour type 2, 4 or 6): Pillow would cut it to 8 bits."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError:
        return False
    return len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16 and head[25] in (2, 4, 6)


def _png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk, or None for a file that is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def _read_png16(path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A 16-bit colour/alpha PNG at full depth (pypng), alpha dropped as for every other format."""
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    except (png.Error, OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read image file {path}: {exc}; the file is corrupt or not an image") from None
    planes = int(info["planes"])
    arr = arr.reshape(height, width, planes)
    colour = planes - int(bool(info.get("alpha")))
    arr = arr[:, :, 0] if colour == 1 else arr[:, :, :colour]
    return [np.ascontiguousarray(arr)], {"format": "PNG", "mode": f"{'RGB' if colour == 3 else 'L'};16", "n_frames": 1}


def _tiff_needs_tifffile(path: Path) -> bool:
    """A TIFF whose pages have several samples deeper than 8 bits (16-bit RGB, float RGB, ...):
    Pillow would cut those to 8 bits, tifffile reads them as stored."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError:
        return False
    if magic[:2] not in (b"II", b"MM"):
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            return page.samplesperpixel > 1 and np.dtype(page.dtype).itemsize > 1
    except Exception:  # noqa: BLE001 - anything tifffile cannot parse goes to Pillow, which names the problem
        return False


def _read_tifffile(path: Path, max_pixels: int | None) -> tuple[list[np.ndarray], dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            pages = list(tf.pages)
            for k, page in enumerate(pages):  # every page declares its own size
                where = str(path) if len(pages) == 1 else f"{path} (page {k})"
                check_pixels(where, page.imagelength, page.imagewidth, max_pixels)
            check_memory(sum(np.prod(p.shape) * np.dtype(p.dtype).itemsize for p in pages),
                         f"the {len(pages)} pages of {path}", "read fewer or smaller pages")
            arrays = []
            for page in pages:
                a = page.asarray()
                if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and a.ndim == 3:
                    a = np.moveaxis(a, 0, -1)
                colour = page.samplesperpixel - len(page.extrasamples)  # alpha is not intensity
                a = a[..., :colour] if colour > 1 else a[..., 0]
                arrays.append(np.ascontiguousarray(a))
            dtype = tf.pages[0].dtype
    except (tifffile.TiffFileError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, DataError):  # a limit, already one line
            raise
        hint = "; install imagecodecs to decode it" if "imagecodecs" in str(exc) else "; the file is corrupt"
        raise DataError(f"cannot read TIFF file {path}: {exc}{hint}") from None
    return arrays, {"format": "TIFF", "mode": f"{'RGB' if arrays[0].ndim == 3 else 'L'};{dtype}", "n_frames": len(arrays)}


# Bytes per sample of a decoded PIL image by mode; 1 for the 8-bit modes.
_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def _read_pil(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[list[np.ndarray], dict[str, Any]]:
    size = _png_size(path)
    if size is not None:  # from IHDR, before pypng (which has no limit of its own) or Pillow decode
        check_pixels(str(path), *size, max_pixels)
    if _png_is_16bit_colour(path):
        return _read_png16(path)
    if _tiff_needs_tifffile(path):
        return _read_tifffile(path, max_pixels)
    from PIL import Image, UnidentifiedImageError

    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Our check below replaces Pillow's own: it reads the same header size, with the user's limit,
        # and says how to raise it (Pillow's DecompressionBombError would be a traceback here).
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as img:
            fmt = img.format
            n_frames = int(getattr(img, "n_frames", 1))
            width, height = img.size
            check_pixels(str(path), height, width, max_pixels, frames=n_frames)
            check_memory(width * height * len(img.getbands()) * _MODE_BYTES.get(img.mode, 1) * n_frames,
                         f"the {n_frames} frames of {path}" if n_frames > 1 else str(path),
                         "split the file or reduce its size")
            arrays = []
            total = 0
            for frame in range(n_frames):
                if frame:
                    img.seek(frame)
                    # each frame declares its own size (a multi-page TIFF's page 2 may be a bomb)
                    width, height = img.size
                    check_pixels(f"{path} (frame {frame})", height, width, max_pixels)
                    total += width * height * len(img.getbands()) * _MODE_BYTES.get(img.mode, 1)
                    check_memory(total, f"the first {frame + 1} frames of {path}", "split the file or reduce its size")
                img.load()
                arrays.append(pil_to_array(img, str(path)))
            mode = img.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read image file {path}: {exc}; the file is corrupt or not an image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return arrays, {"format": fmt, "mode": mode, "n_frames": n_frames}


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy file's header, without reading its data."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _read_npy(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[list[np.ndarray], dict[str, Any]]:
    try:
        shape, dtype = _npy_header(path)  # the header only: nothing is read yet
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; .npy images must be plain numeric arrays") from None
    if len(shape) == 3 and shape[2] not in (1, 3, 4) or len(shape) not in (2, 3):
        raise DataError(
            f"{path} holds an array of shape {shape}; a .npy image must be (H, W) or (H, W, C) with "
            "C in 1, 3, 4 (save a stack of images as .npz or load it with from_arrays)"
        )
    check_pixels(str(path), shape[0], shape[1], max_pixels)
    check_memory(int(np.prod(shape)) * dtype.itemsize, str(path), "the array is too large to load", shape=shape)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; .npy images must be plain numeric arrays") from None
    return [arr], {"format": "NPY"}


def read_file(
    path: str | os.PathLike, options: FileOptions | None = None, **settings: Any
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read every 2-D image one file holds, at native dtype.

    Parameters
    ----------
    path : path-like
        A PNG/TIFF/JPEG/BMP/GIF/WebP/PNM image (multi-page files give one image per page), a DICOM
        file (``.dcm`` or any file with the DICOM preamble), a NIfTI volume (``.nii``/``.nii.gz``,
        one image per slice) or a ``.npy`` array holding one image.
    options : FileOptions, optional
        The DICOM reader takes its ``window``; the NIfTI reader its ``axis``, ``slices``,
        ``skip_empty``, ``volume`` and ``window``; other formats take none.
    **settings
        The same options by name (``window="brain"``), checked as :class:`FileOptions`.

    Returns
    -------
    images : list of ndarray
        (H, W) or (H, W, C) arrays; 16-bit files stay uint16.
    meta : dict
        Per-file metadata (format; for DICOM ``Modality``, ``SOPInstanceUID``, ...; ``value_range``).
    """
    path = Path(path)
    if not path.is_file():
        if path.exists() and not path.is_dir():
            raise DataError(f"{path} is a pipe, device or socket, not a regular file; copy the data into a file")
        raise DataError(f"no file at {path}; check the path")
    kind = file_kind(path)
    if kind is None:
        raise DataError(
            f"{path} has an unknown file type; readable are {', '.join(IMAGE_EXTENSIONS)}, .dcm (or DICOM "
            "preamble), .nii/.nii.gz and .npy"
        )
    opts = FileOptions.from_dict(settings) if options is None else replace(options, **settings)
    try:
        if kind == "image":
            return _read_pil(path, opts.max_pixels)
        if kind == "npy":
            return _read_npy(path, opts.max_pixels)
        if kind == "dicom":
            images, meta = read_dicom_file(path, **opts.dicom())
        else:
            images, meta = read_nifti_file(path, **opts.nifti())
        return list(images), dict(meta or {})
    except DataError:
        raise
    except (gzip.BadGzipFile, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError) as exc:
        # Never a bare traceback for a bad file: name it and what went wrong.
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
