"""IDX files (the MNIST / Fashion-MNIST format), gzipped or not, parsed with numpy.

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension, then the values in big-endian C order.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._raw import RawImages
from .limits import DEFAULT_MAX_PIXELS, check_memory, check_pixels

__all__ = ["IDX_IMAGES_PATTERN", "labels_file_for", "read_idx", "read_idx_array"]

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_IMAGES_PATTERN = re.compile(r"images([.\-_])idx3([.\-_])ubyte", re.IGNORECASE)


def _open(path: Path) -> Any:
    """The file as a binary stream, gunzipped when it starts with gzip's magic (whatever its name)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"no file at {path}; check the path") from None
    zipped = fh.read(2) == b"\x1f\x8b"
    if zipped:
        fh.close()
        return gzip.open(path, "rb")  # owns (and closes) its file
    fh.seek(0)
    return fh


def _read_exactly(stream: Any, n: int, path: Path) -> bytes:
    try:
        return stream.read(n)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is a damaged or truncated gzip file ({exc}); download it again") from None


def read_idx_array(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   items: int | None = None, pair: str | os.PathLike | None = None) -> np.ndarray:
    """Parse one IDX file (``.gz`` or plain) into an array of native byte order.

    The header is read first and checked before any value is: each item's rows × columns against
    ``max_pixels`` and the whole array against the free memory, so a small gzip file that declares a
    huge array (a decompression bomb) is refused without being decompressed.

    Raises
    ------
    DataError
        For a file that is not IDX, is truncated, has trailing bytes, or declares too much.
    """
    path = Path(path)
    with _open(path) as stream:
        magic = _read_exactly(stream, 4, path)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
            raise DataError(
                f"{path} is not an IDX file (its header is {magic!r}); pass an MNIST-style "
                "*-images-idx3-ubyte[.gz] file"
            )
        dtype, ndim = _IDX_TYPES[magic[2]], magic[3]
        raw_dims = _read_exactly(stream, 4 * ndim, path)
        if len(raw_dims) < 4 * ndim:
            raise DataError(f"{path} is truncated inside its header; download it again")
        dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4", count=ndim))
        if items is not None and (ndim != 1 or dims[0] != items):
            raise DataError(f"{path} declares labels of shape {dims} for {items} images in {pair}; pair each "
                            "images file with its own labels file")
        if ndim >= 3:
            check_pixels(str(path), dims[1], dims[2], max_pixels, frames=dims[0], unit="images")
        expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        check_memory(expected, f"the values of {path}", "use a smaller file (or split it)", shape=dims)
        data = _read_exactly(stream, expected, path)
        trailing = _read_exactly(stream, 1, path)
    if len(data) != expected or trailing:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        found = f"{len(data)} bytes follow" if len(data) < expected else "more bytes follow"
        raise DataError(
            f"{path} is {problem}: its header promises {dims} values ({expected} bytes) but "
            f"{found}; download it again"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.itemsize > 1 else arr.copy()


def labels_file_for(images_path: str | os.PathLike) -> Path | None:
    """The labels file that sits next to an images file, if there is one.

    ``train-images-idx3-ubyte.gz`` pairs with ``train-labels-idx1-ubyte.gz`` (or the unzipped name).
    """
    images_path = Path(images_path)
    name = images_path.name
    if not IDX_IMAGES_PATTERN.search(name):
        return None
    label_name = IDX_IMAGES_PATTERN.sub(lambda m: f"labels{m.group(1)}idx1{m.group(2)}ubyte", name)
    base = label_name[:-3] if label_name.lower().endswith(".gz") else label_name
    for candidate in (label_name, base, base + ".gz"):
        path = images_path.with_name(candidate)
        if path.is_file():
            return path
    return None


def read_idx(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    class_names: tuple[str, ...] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> RawImages:
    """Read an IDX images file, with labels from ``labels`` or the sibling labels file when present.

    Parameters
    ----------
    path : path-like
        ``*-images-idx3-ubyte`` or ``*-images-idx3-ubyte.gz``.
    labels : path-like, optional
        The labels file; default: the sibling ``*-labels-idx1-ubyte[.gz]``, else unlabelled.
    class_names : tuple of str, optional
        Names of the classes (e.g. Fashion-MNIST's).
    max_pixels : int or None
        Largest image (rows × columns) the header may declare; None: no limit.

    Returns
    -------
    RawImages
    """
    path = Path(path)
    images = read_idx_array(path, max_pixels=max_pixels)
    if images.ndim == 1:
        raise DataError(f"{path} holds one value per item (a labels file); pass the images file instead")
    if images.ndim not in (3, 4):
        raise DataError(f"{path} holds an array of shape {images.shape}; expected images (N, H, W)")
    labels_path = Path(labels) if labels is not None else labels_file_for(path)
    label_values = None
    if labels_path is not None:
        # the count is checked against the images from the labels file's header, before it is read
        label_values = read_idx_array(labels_path, items=len(images), pair=path)
    return RawImages(
        images=list(images),
        labels=label_values,
        class_names=class_names if label_values is not None else None,
        origins=[f"{path.name}[{i}]" for i in range(len(images))],
        info={"reader": "idx", "file": str(path), "labels_file": None if labels_path is None else str(labels_path)},
    )
