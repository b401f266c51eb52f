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

import numpy as np

from ..errors import DataError
from ._raw import RawImages

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


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DataError(f"no file at {path}; check the path") from None
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path} is a damaged or truncated gzip file ({exc}); download it again") from None
    return data


def read_idx_array(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (``.gz`` or plain) into an array of native byte order.

    Raises
    ------
    DataError
        For a file that is not IDX, is truncated, or has trailing bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file (its header is {data[:4]!r}); pass an MNIST-style "
            "*-images-idx3-ubyte[.gz] file"
        )
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its header; download it again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"{path} is {problem}: its header promises {dims} values ({expected} bytes) but "
            f"{found} bytes follow; download it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
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

    Returns
    -------
    RawImages
    """
    path = Path(path)
    images = read_idx_array(path)
    if images.ndim == 1:
        raise DataError(f"{path} holds one value per item (a labels file); pass the images file instead")
    if images.ndim not in (3, 4):
        raise DataError(f"{path} holds an array of shape {images.shape}; expected images (N, H, W)")
    labels_path = Path(labels) if labels is not None else labels_file_for(path)
    label_values = None
    if labels_path is not None:
        label_values = read_idx_array(labels_path)
        if label_values.ndim != 1 or len(label_values) != len(images):
            raise DataError(
                f"{labels_path} holds labels of shape {label_values.shape} for {len(images)} images in {path}; "
                "pair each images file with its own labels file"
            )
    return RawImages(
        images=list(images),
        labels=label_values,
        class_names=class_names if label_values is not None else None,
        origins=[f"{path.name}[{i}]" for i in range(len(images))],
        info={"reader": "idx", "file": str(path), "labels_file": None if labels_path is None else str(labels_path)},
    )
