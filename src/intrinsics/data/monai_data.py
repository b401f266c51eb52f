"""MONAI datasets and datalists: :func:`from_monai`.

Three inputs, one result:

- a MONAI ``Dataset`` / ``CacheDataset`` (any map-style dataset of dict items): each item's image
  (a ``MetaTensor``, a tensor or an array, channel-first as MONAI makes them) and label are read through
  the user's own transforms, and the file name in the ``MetaTensor``'s metadata is the image's id;
- a datalist (``[{"image": path, "label": class, ...}]``) with the transforms to apply: it is made into
  a ``monai.data.Dataset`` and read as above;
- a datalist, or a Decathlon ``dataset.json``, without transforms: the files are read by intrinsics'
  own readers (:mod:`intrinsics.data.datalist`), so NIfTI volumes give their slices.

Every other scalar field of an item (``patient_id``, ...) is kept in the images' keys, so that an audit
can check groups (``group_key``) across a split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, spell
from ._raw import RawImages
from .arrays import _CHANNEL_SIZES, _as_numpy
from .datalist import class_of, keys_of, read_datalist, read_datalist_file
from .imageset import ImageSet
from .options import DataOptions
from .preprocess import preprocess

__all__ = ["from_monai", "monai_to_raw"]


def _image_of(value: Any, i: int, image_key: str) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        raise DataError(f"item {i}'s {image_key!r} is a path ({value}), not an image; add LoadImaged(keys="
                        f"{image_key!r}) to the transforms, or pass the datalist without transforms")
    arr = _as_numpy(value)
    if arr.ndim == 3 and arr.shape[0] in _CHANNEL_SIZES:
        return arr.transpose(1, 2, 0)  # MONAI images are channel-first
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[-1] in _CHANNEL_SIZES:
        raise DataError(
            f"item {i}'s {image_key!r} has shape {tuple(arr.shape)}: channel-last (LoadImaged without "
            f"EnsureChannelFirstd); add EnsureChannelFirstd(keys={image_key!r}) after LoadImaged (a 3-D volume "
            "of that depth needs a transform that takes 2-D slices)"
        )
    if arr.ndim in (3, 4):
        raise DataError(
            f"item {i}'s {image_key!r} has shape {tuple(arr.shape)}: a 3-D volume; intrinsics measures 2-D images: "
            "add a transform that takes 2-D slices, or pass the datalist without transforms to read each "
            f"volume as its slices ({spell('axis')}, {spell('slices')})"
        )
    raise DataError(f"item {i}'s {image_key!r} has shape {tuple(arr.shape)}; expected (C, H, W) or (H, W)")


def _origin(value: Any, i: int) -> str:
    meta = getattr(value, "meta", None)  # a MetaTensor carries the file it was loaded from
    name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if isinstance(name, (list, tuple)) and name:
        name = name[0]
    return str(name) if isinstance(name, (str, os.PathLike)) and str(name) else f"item {i}"


def monai_to_raw(
    dataset: Any, *, image_key: str = "image", label_key: str | None = "label", group_key: str | None = None,
) -> RawImages:
    """Images, labels and keys of a MONAI (or any map-style) dataset of dict items (see :func:`from_monai`)."""
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{type(dataset).__name__} has no len(); pass a map-style MONAI Dataset") from None
    if n == 0:
        raise DataError(f"the {type(dataset).__name__} is empty; give it at least one item")
    images: list[np.ndarray] = []
    labels: list[Any] = []
    origins: list[str] = []
    extras: list[dict[str, Any]] = []
    for i in range(n):
        item = dataset[i]
        if isinstance(item, (list, tuple)):
            raise DataError(
                f"item {i} is a list of {len(item)} samples (a transform such as RandCropByPosNegLabeld makes "
                "several per image); measure the images without it"
            )
        if not isinstance(item, Mapping):
            raise DataError(f"item {i} is a {type(item).__name__}, not a dict; for (image, label) tuples use "
                            "from_torch()")
        if image_key not in item:
            raise DataError(f"item {i} has no {image_key!r} (keys: {', '.join(map(str, item))}); pass image_key=")
        if label_key is not None and label_key not in item:
            raise DataError(f"item {i} has no {label_key!r} (keys: {', '.join(map(str, item))}); pass label_key= "
                            "the key of its class, or label_key=None for unlabelled images")
        if group_key is not None and group_key not in item:
            raise DataError(f"item {i} has no {group_key!r} (keys: {', '.join(map(str, item))}); give every "
                            "item one, or drop group_key")
        images.append(_image_of(item[image_key], i, image_key))
        origins.append(_origin(item[image_key], i))
        labels.append(None if label_key is None else class_of(item[label_key], f"item {i}", label_key))
        extras.append(keys_of(item, (image_key, label_key), group_key, f"item {i}"))
    if len(set(origins)) < len(origins):  # two items from one file (or no file names): index them
        origins = [f"{o}#{i}" if o != f"item {i}" else o for i, o in enumerate(origins)]
    columns = list(dict.fromkeys(k for e in extras for k in e))
    return RawImages(
        images=images,
        labels=None if label_key is None else labels,
        origins=origins,
        info={"reader": "monai", "dataset": type(dataset).__name__, "n": n, "image_key": image_key,
              "label_key": label_key},
        keys={c: [e.get(c) for e in extras] for c in columns} or None,
    )


def from_monai(
    data: Any,
    transform: Any = None,
    *,
    image_key: str = "image",
    label_key: str | None = "label",
    group_key: str | None = None,
    class_names: Sequence[str] | None = None,
    base_dir: str | os.PathLike | None = None,
    split: str | None = None,
    source: str | None = None,
    **settings: Any,
) -> ImageSet:
    """An :class:`ImageSet` from a MONAI dataset, a datalist, or a Decathlon ``dataset.json``.

    Parameters
    ----------
    data : monai.data.Dataset, list of dict, or path
        A MONAI ``Dataset``/``CacheDataset`` (or any map-style dataset of dict items); a datalist of
        ``{"image": path, "label": class, ...}`` entries; or the path of a ``dataset.json`` / JSON datalist.
    transform : callable, optional
        MONAI transforms to apply to a datalist (e.g. ``LoadImaged``, ``EnsureChannelFirstd``,
        ``ScaleIntensityd``). Without them a datalist's files are read by intrinsics' own readers.
    image_key, label_key : str
        The keys of the image and of its class; ``label_key=None`` reads the images unlabelled.
    group_key : str, optional
        A key every item must carry (a patient id, say), kept in ``ImageSet.keys`` for
        :func:`intrinsics.audit`'s ``group_key`` (every other scalar field is kept too).
    class_names : sequence of str, optional
        Names of the integer classes 0..n-1.
    base_dir : path-like, optional
        What a datalist's relative paths are relative to (a ``dataset.json``'s: its folder).
    split : str, optional
        The list of a ``dataset.json`` to read ("training", the default; "validation", "test").
    source : str, optional
        Name stored as ``provenance["source"]``.
    **settings
        Any option of :func:`intrinsics.data.load` that applies to files and preprocessing: ``size``,
        ``channels``, ``intensity``, ``value_range``, ``classes``, ``limit``, ``seed``, ``exclude``, and,
        for files read by intrinsics, ``window``, ``axis``, ``slices``, ``skip_empty``, ``volume``,
        ``max_pixels``. Checked before anything is read.

    Returns
    -------
    ImageSet

    Examples
    --------
    >>> from monai.data import Dataset                                    # doctest: +SKIP
    >>> from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd, ScaleIntensityd
    >>> items = [{"image": "a.png", "label": 0, "patient_id": "p1"}, ...]   # doctest: +SKIP
    >>> ds = from_monai(Dataset(items, Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
    ...                                         ScaleIntensityd("image")])), group_key="patient_id")  # doctest: +SKIP
    """
    opts = DataOptions.from_dict(settings)  # every option checked before anything is read
    not_here = sorted(set(settings) & {"labels", "label_key", "label_column", "unmatched", "follow_links"})
    if not_here:
        raise DataError(f"from_monai() names its keys with image_key= and label_key= (None: unlabelled); "
                        f"drop {', '.join(not_here)}")
    if isinstance(data, Mapping):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        raise DataError(f"data is a dict (a parsed dataset.json?), not a datalist; pass the dataset.json path, or "
                        f"one of its lists ({', '.join(repr(k) for k in lists) or 'none'}), e.g. doc['training']")
    if isinstance(data, (str, os.PathLike)):
        if base_dir is not None:
            raise DataError("a dataset.json's relative paths are read from its own folder; drop base_dir=")
        if transform is not None:
            raise DataError("transforms apply to a datalist or a dataset; for a dataset.json, load its list with "
                            "monai.data.load_decathlon_datalist and pass the list with the transforms")
        if image_key != "image":
            raise DataError(f"a dataset.json names its images 'image'; drop image_key={image_key!r}")
        raw = read_datalist_file(data, split=split, label_column=label_key, labels=False if label_key is None
                                 else None, file_options=opts.files)
        name = source or os.fspath(data)
    elif isinstance(data, Sequence) and not isinstance(data, (bytes, str)) and transform is None:
        if split is not None:
            raise DataError(f"a datalist has no splits; drop split={split!r}")
        raw = read_datalist(data, base_dir=base_dir, image_key=image_key, label_key=label_key,
                            group_key=group_key, file_options=opts.files)
        name = source or "monai:datalist"
    else:
        if split is not None or base_dir is not None:
            raise DataError("split= and base_dir= apply to datalists and dataset.json files, not to datasets")
        if opts.files.to_dict():
            raise DataError(f"{', '.join(opts.files.to_dict())} apply to files intrinsics reads; a MONAI "
                            "dataset's transforms read its files: set them there")
        if isinstance(data, Sequence) and not isinstance(data, (bytes, str)):  # a datalist with its transforms
            try:
                from monai.data import Dataset  # MONAI itself only where its transforms are used
            except ImportError:
                raise DataError("transforms need MONAI: pip install 'intrinsics[monai]' (or pass the datalist "
                                "without transforms: intrinsics reads its files itself)") from None

            data = Dataset(data=list(data), transform=transform)
        elif transform is not None:
            raise DataError("the dataset applies its own transforms; pass transform= only with a datalist")
        raw = monai_to_raw(data, image_key=image_key, label_key=label_key, group_key=group_key)
        name = source or f"monai:{type(data).__name__}"
    if group_key is not None and group_key not in (raw.keys or {}):
        raise DataError(f"no image has {group_key!r}; give every entry one, or drop group_key")
    if class_names is not None:
        raw.class_names = tuple(str(c) for c in class_names)
    return preprocess(raw, source=name, **opts.preprocessing())
