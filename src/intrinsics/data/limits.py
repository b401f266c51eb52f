"""Resource limits, checked before the work: pixels per image from a file's header, memory before an
allocation.

A file that declares 20000 × 20000 pixels in a few kilobytes (a "decompression bomb") is refused from
its header, before any decoder allocates. Every reader calls :func:`check_pixels` with what the header
says, and :func:`check_memory` before it allocates a whole file (all frames, slices and samples).
Preprocessing calls :func:`check_memory` before it allocates the output stack. Both raise a
:class:`~intrinsics.errors.DataError` that gives the figure and the option to change.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DataError, spell

__all__ = ["DEFAULT_MAX_PIXELS", "check_pixels", "check_memory", "available_memory", "format_bytes"]

# Pillow's own default (Image.MAX_IMAGE_PIXELS: 1024**3 // 4 // 3, about 89 megapixels). It is the limit
# per 2-D image (a frame, a slice), counted as rows x columns like Pillow does. A 512 x 512 x 600 CT
# volume passes (its slices do); its total size is then checked against the free memory.
DEFAULT_MAX_PIXELS = 89_478_485


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``12 KiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def check_pixels(origin: str, rows: int, columns: int, limit: int | None, frames: int = 1,
                 unit: str = "frames") -> None:
    """Refuse an image whose header declares more than ``limit`` pixels (rows × columns) per image.

    Parameters
    ----------
    origin : str
        The file (or item) named in the message.
    rows, columns : int
        The size the header declares.
    limit : int or None
        Pixels per image allowed; None means no limit.
    frames : int
        How many images of that size the file holds (named in the message only).
    unit : str
        What those images are called ("frames", "slices", "images").
    """
    if limit is None:
        return
    pixels = int(rows) * int(columns)
    if pixels > limit:
        many = f" in each of {frames:,} {unit}" if frames > 1 else ""
        raise DataError(
            f"{origin} declares {int(rows)} × {int(columns)} = {pixels:,} pixels per image{many}, above the limit "
            f"of {limit:,} (a decompression bomb, or an image far larger than any network input); if the file is "
            f"trusted, raise the limit with {spell('max_pixels', _round_up(pixels))}"
        )


def _round_up(n: int) -> int:
    """A round limit at or above ``n`` (two significant figures), for the message's suggestion."""
    digits = max(len(str(n)) - 2, 0)
    step = 10**digits
    return -(-n // step) * step


def available_memory() -> int:
    """Bytes of memory available to a new allocation without swapping (psutil's estimate)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(nbytes: float, what: str, fix: str, shape: Sequence[int] | None = None) -> None:
    """Refuse an allocation of ``nbytes`` that the available memory cannot hold.

    Parameters
    ----------
    nbytes : float
        The size of what is about to be allocated.
    what : str
        What it is ("the preprocessed images", "the voxels of vol.nii.gz").
    fix : str
        How to make it smaller (an option and a value), ending the message.
    shape : sequence of int, optional
        The array's shape, named in the message.
    """
    free = available_memory()
    if nbytes > free:
        dims = f" ({' × '.join(str(int(s)) for s in shape)})" if shape is not None else ""
        raise DataError(
            f"{what}{dims} would need {format_bytes(nbytes)} of memory, but {format_bytes(free)} is available; {fix}"
        )
