"""Turn what a reader returned (:class:`RawImages`) into an :class:`ImageSet`, recording every step.

Every source (arrays, folders, npz, IDX, DICOM, NIfTI, synthetic) goes through :func:`preprocess`, so
two datasets loaded with the same options have pixels on the same scale. That matters because K_F is
measured in pixel units: the same images resized or rescaled differently give a different K_F.

The steps, in order: label encoding, ``exclude`` (images left out by id), ``classes`` selection, ``limit``
subsampling, intensity scaling
("unit" / "minmax"), channel conversion, resizing, and finally per-image-max scaling
("per_image_max" comes last so that every output image has maximum exactly 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError, IntrinsicsWarning, Placeholder, spell
from ..jsonio import to_jsonable
from ._raw import RawImages
from .imageset import ImageSet
from .limits import check_memory
from .options import INTENSITY_MODES, DataOptions

__all__ = [
    "INTENSITY_MODES",
    "LUMA_WEIGHTS",
    "RESIZE_METHOD",
    "comparison_key",
    "preprocess",
]

# ITU-R BT.601 luma, the weights PIL uses for RGB -> "L", so a PNG converted by PIL or by us agrees.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
RESIZE_METHOD = "bilinear, antialias=True (torch.nn.functional.interpolate), stretched to size"
ORDER = "labels, exclude, classes, limit, intensity (unit/minmax), channels, resize, intensity (per_image_max)"
# Keys of provenance["preprocessing"] that fix the pixel scale; K_F values are only comparable when
# these agree (the original dtype or shape of the files does not matter once they do), together with
# the intensity mapping itself (see :func:`pixel_scale`).
COMPARISON_KEYS = ("size", "channels", "intensity", "pixel_scale")


def pixel_scale(preprocessing: dict[str, Any], reader: dict[str, Any] | None = None) -> str | None:
    """Which stored intensities became 0 and 1: ``"full scale"`` (the dtype's or the source's native
    range), ``"lo..hi"`` (an explicit value range or DICOM window), ``"dataset min-max"`` or
    ``"per-image max"``. Two K_F values on different pixel scales differ by the ratio of the scales."""
    scale = preprocessing.get("scale") or {}
    method = scale.get("method")
    if method is None:
        return None
    if method == "dtype_range":
        return "full scale"
    if method == "per_image_max":
        return "per-image max"
    if method == "dataset_minmax":
        return "dataset min-max"
    lo, hi = (float(v) for v in scale.get("value_range") or (math.nan, math.nan))
    native = (reader or {}).get("native_range")
    if (native is not None and [float(v) for v in native] == [lo, hi]) or (lo, hi) == (0.0, 1.0):
        return "full scale"  # the source's native range, or floats already in [0, 1]
    return f"{lo:g}..{hi:g}"


def comparison_key(preprocessing: dict[str, Any], reader: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of a preprocessing record that must agree for K_F values to be comparable.

    Parameters
    ----------
    preprocessing : dict
        ``ImageSet.provenance["preprocessing"]``.
    reader : dict, optional
        ``ImageSet.provenance["reader"]`` (tells a source's native range from an explicit one).

    Returns
    -------
    dict
        ``{"size": [H, W], "channels": C, "intensity": mode, "pixel_scale": str}``.
    """
    key = {k: preprocessing.get(k) for k in COMPARISON_KEYS if k != "pixel_scale"}
    key["pixel_scale"] = pixel_scale(preprocessing, reader)
    return key


# ----------------------------------------------------------------------------------------------------
# labels


def _label_text(value: Any, index: int, origin: str) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return str(int(value))
        raise DataError(
            f"label {value!r} of image {origin} is not a class; labels must be integers or names "
            "(round or map continuous targets to classes first)"
        )
    if isinstance(value, str):
        text = value.strip()
        if text:
            return text
    raise DataError(f"image {origin} (index {index}) has no usable label ({value!r}); give every image a label")


def _sort_key(name: str) -> tuple[int, int, str]:
    # Integer-like names sort numerically ("2" before "10"), names after them alphabetically.
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)


def _encode_labels(
    labels: Sequence[Any] | None, class_names: Sequence[str] | None, origins: list[str]
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    if labels is None:
        return None, ()
    n = len(origins)
    if isinstance(labels, np.ndarray) and labels.ndim > 1:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        else:
            raise DataError(
                f"labels have shape {labels.shape}; give one class per image (shape (N,)), e.g. pick one "
                "column of a multi-label matrix"
            )
    if len(labels) != n:
        raise DataError(f"{n} images but {len(labels)} labels: give exactly one label per image")
    if class_names is not None:
        names = tuple(str(c) for c in class_names)
        if len(set(names)) != len(names):
            raise DataError(f"class_names {names!r} repeat a name; give each class a distinct name")
        arr = np.asarray(labels)
        if arr.dtype.kind in "iub":
            codes = arr.astype(np.int64)
            bad = np.flatnonzero((codes < 0) | (codes >= len(names)))
            if bad.size:
                raise DataError(
                    f"{bad.size} labels lie outside 0..{len(names) - 1} (e.g. {codes[bad[0]]} at "
                    f"{origins[bad[0]]}) but {len(names)} class_names were given; fix the labels or class_names"
                )
            return codes, names
        lookup = {name: i for i, name in enumerate(names)}
        codes = np.empty(n, dtype=np.int64)
        for i, value in enumerate(labels):
            text = _label_text(value, i, origins[i])
            if text in lookup:
                codes[i] = lookup[text]
            elif text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
                codes[i] = int(text)
            else:
                raise DataError(
                    f"label {text!r} of {origins[i]} is not one of the class_names {list(names)}; "
                    "fix the label or the class_names"
                )
        return codes, names
    arr = np.asarray(labels)
    if arr.dtype.kind in "iub" and arr.ndim == 1:
        values, codes = np.unique(arr.astype(np.int64), return_inverse=True)
        return codes.astype(np.int64), tuple(str(int(v)) for v in values)
    texts = [_label_text(v, i, origins[i]) for i, v in enumerate(labels)]
    names = tuple(sorted(set(texts), key=_sort_key))
    lookup = {name: i for i, name in enumerate(names)}
    return np.fromiter((lookup[t] for t in texts), dtype=np.int64, count=n), names


def _parse_classes(classes: Any) -> list[Any]:
    if isinstance(classes, str):
        items: list[Any] = [c.strip() for c in classes.split(",") if c.strip()]
    elif isinstance(classes, (int, np.integer)):
        items = [int(classes)]
    else:
        try:
            items = list(classes)
        except TypeError:
            raise DataError(f"classes={classes!r} is not a list of classes; pass e.g. (3, 5) or '3,5'") from None
    if not items:
        raise DataError(f"classes={classes!r} selects nothing; pass at least one class, e.g. (3, 5)")
    return items


def _select_classes(
    codes: np.ndarray, names: tuple[str, ...], classes: Any
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Keep the images of ``classes`` and relabel them 0..len-1 in the order given."""
    counts = np.bincount(codes, minlength=len(names))
    available = ", ".join(f"{i}={name!r} ({counts[i]} images)" for i, name in enumerate(names))
    chosen: list[int] = []
    # A string that is itself a class name (e.g. "normal, benign") is one class, not a list.
    items = [classes.strip()] if isinstance(classes, str) and classes.strip() in names else _parse_classes(classes)
    for item in items:
        if isinstance(item, np.generic):
            item = item.item()
        text = str(item).strip()
        # A class name wins over an index, so folders named "3" and "5" select by name.
        if text in names:
            index = names.index(text)
        elif text.lstrip("-").isdigit() and not isinstance(item, float) and 0 <= int(text) < len(names):
            index = int(text)
        else:
            raise DataError(f"class {item!r} is not in this dataset; available classes: {available}")
        if counts[index] == 0:
            raise DataError(f"class {item!r} has no images in this dataset; available classes: {available}")
        if index in chosen:
            raise DataError(f"classes={classes!r} names class {names[index]!r} twice; list each class once")
        chosen.append(index)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[chosen] = np.arange(len(chosen))
    new_codes = remap[codes]
    keep = np.flatnonzero(new_codes >= 0)
    return keep, new_codes[keep], tuple(names[i] for i in chosen)


def _stratified_quota(counts: np.ndarray, limit: int) -> np.ndarray:
    """How many images of each class to keep: proportional, at least one per present class if possible."""
    total = counts.sum()
    exact = limit * counts / total
    quota = np.floor(exact).astype(np.int64)
    present = counts > 0
    if limit >= present.sum():
        quota[present] = np.maximum(quota[present], 1)
    # Largest remainders first; ties go to the lower class index, so the result is deterministic.
    order = sorted(range(len(counts)), key=lambda c: (-(exact[c] - math.floor(exact[c])), c))
    while quota.sum() < limit:
        for c in order:
            if quota.sum() >= limit:
                break
            if quota[c] < counts[c]:
                quota[c] += 1
    while quota.sum() > limit:
        c = int(np.argmax(quota))
        quota[c] -= 1
    return quota


def _limit_index(n: int, codes: np.ndarray | None, limit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if codes is None:
        return np.sort(rng.choice(n, size=limit, replace=False))
    counts = np.bincount(codes)
    quota = _stratified_quota(counts, limit)
    picked = [rng.permutation(np.flatnonzero(codes == c))[: quota[c]] for c in range(len(counts))]
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------------------------------------------
# pixels


def _examples(items: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(str(x) for x in items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def _native_channels(img: np.ndarray) -> int:
    return 1 if img.ndim == 2 else int(img.shape[2])


def _dtype_range(dtype: np.dtype) -> tuple[float, float] | None:
    if dtype.kind == "b":
        return (0.0, 1.0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return (float(info.min), float(info.max))
    return None


def _chunks(idx: list[int], pixels_per_image: int) -> list[list[int]]:
    # About 4 M values per chunk: temporaries stay small and are reused instead of freshly paged in,
    # which dominates the cost for 70,000 small images.
    step = max(1, (1 << 22) // max(1, pixels_per_image))
    return [idx[i : i + step] for i in range(0, len(idx), step)]


def _stack(images: Sequence[np.ndarray], part: list[int]) -> np.ndarray:
    return np.stack([images[i] for i in part]) if len(part) > 1 else np.asarray(images[part[0]])[None]


def _to_float_hwc(batch: np.ndarray) -> np.ndarray:
    """A float32 (n, H, W, C) copy that may be modified in place."""
    batch = batch.astype(np.float32)  # always a copy: the caller scales it in place
    return batch[..., None] if batch.ndim == 3 else batch


def _convert_channels(batch: np.ndarray, target: int) -> np.ndarray:
    """(n, H, W, C) float32 -> (n, H, W, target)."""
    native = batch.shape[-1]
    if native == target:
        return batch
    if native == 3 and target == 1:
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        return (batch @ weights)[..., None]
    if native == 1 and target == 3:
        return np.repeat(batch, 3, axis=-1)
    raise DataError(
        f"cannot convert {native}-channel images to {spell('channels', target)}; only RGB->grey and grey->RGB are "
        f"defined: pass {spell('channels', None)} to keep them, or convert them yourself first"
    )


def _resize(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, C, H, W) float32 -> (n, C, *size) with antialiased bilinear interpolation."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        part = torch.from_numpy(np.ascontiguousarray(batch))
        return F.interpolate(part, size=size, mode="bilinear", align_corners=False, antialias=True).numpy()


def _group_by_layout(images: Sequence[np.ndarray], origins: list[str]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray):
            img = np.asarray(img)
        if img.ndim not in (2, 3) or img.dtype.kind not in "biuf":
            raise DataError(
                f"image {origins[i]} has shape {img.shape} and dtype {img.dtype}; each image must be a "
                "numeric (H, W) or (H, W, C) array"
            )
        if img.size == 0:
            raise DataError(f"image {origins[i]} has shape {img.shape}: no pixels; remove it or fix its file")
        groups.setdefault((img.shape, img.dtype.str), []).append(i)
    return groups


_Groups = dict[tuple, list[int]]


def _exclude_ids(origins: list[str], codes: np.ndarray | None, exclude: tuple[str, ...],
                 source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The images whose id is not in ``exclude``; every listed id must be an image of the source."""
    listed = set(exclude)
    unknown = listed.difference(origins)
    if unknown:
        ex = ", ".join(repr(u) for u in sorted(unknown)[:3])
        raise DataError(f"{len(unknown)} of the {len(listed)} ids to exclude are not images of {source!r} (e.g. {ex}); "
                        f"ids are as the source names its images (e.g. {origins[0]!r}); fix the list")
    keep = np.array([o not in listed for o in origins])
    if not keep.any():
        raise DataError(f"excluding {len(listed)} ids leaves none of the images of {source!r}; check the list")
    index = np.flatnonzero(keep)
    return index, None if codes is None else codes[index]


def _select(
    raw: RawImages, classes: Any, limit: int | None, seed: int, source: str, exclude: tuple[str, ...] | None = None,
) -> tuple[list[np.ndarray], list[str], np.ndarray | None, tuple[str, ...], list[str] | None, np.ndarray]:
    """Labels encoded, then the ``exclude``, ``classes`` and ``limit`` selections (before any pixel is
    touched); the last item is the positions of the images kept."""
    images = raw.images
    n_read = len(images)
    if n_read == 0:
        raise DataError(f"source {source!r} holds no images; check the path, split or filters")
    origins = list(raw.origins) if raw.origins is not None else [f"#{i}" for i in range(n_read)]
    if len(origins) != n_read:
        raise DataError(f"reader returned {n_read} images but {len(origins)} origins; this is a reader bug")
    codes, names = _encode_labels(raw.labels, raw.class_names, origins)
    index = np.arange(n_read)
    if exclude:
        index, codes = _exclude_ids(origins, codes, exclude, source)
    selected: list[str] | None = None
    if classes is not None:
        if codes is None:
            raise DataError(f"classes={classes!r} needs labels, but {source!r} is unlabelled; drop classes=")
        kept, codes, names = _select_classes(codes, names, classes)
        index = index[kept]
        selected = list(names)
    if limit is not None and limit < len(index):
        pick = _limit_index(len(index), codes, int(limit), int(seed))
        index = index[pick]
        codes = None if codes is None else codes[pick]
    if len(index) != n_read:
        images = [images[i] for i in index]
        origins = [origins[i] for i in index]
    return list(images), origins, codes, names, selected, index


def _output_channels(
    images: list[np.ndarray], origins: list[str], groups: _Groups, channels: int | None
) -> tuple[int, str | None]:
    native = {_native_channels(images[idx[0]]) for idx in groups.values()}
    if channels is None:
        if len(native) > 1:
            by_c: dict[int, list[str]] = {}
            for idx in groups.values():
                by_c.setdefault(_native_channels(images[idx[0]]), []).extend(origins[i] for i in idx[:3])
            detail = "; ".join(f"{c} channel(s): {_examples(o)}" for c, o in sorted(by_c.items()))
            raise DataError(
                f"images have different channel counts ({detail}); pass {spell('channels', 1)} (grey) or "
                f"{spell('channels', 3)} (RGB)"
            )
        return native.pop(), None
    names = {(3, 1): "rgb_to_grey_bt601", (1, 3): "grey_to_rgb_repeat"}
    conversions = sorted((c, channels) for c in native if c != channels)
    conversion = ", ".join(names.get(pair, f"{pair[0]}->{pair[1]}") for pair in conversions) or None
    return channels, conversion


def _output_size(
    origins: list[str], groups: _Groups, size: tuple[int, int] | None
) -> tuple[tuple[int, int], bool]:
    counts: dict[tuple[int, int], int] = {}
    examples: dict[tuple[int, int], list[str]] = {}
    for key, idx in groups.items():
        hw = (int(key[0][0]), int(key[0][1]))
        counts[hw] = counts.get(hw, 0) + len(idx)
        examples.setdefault(hw, []).extend(origins[i] for i in idx[:3])
    detail = "; ".join(f"{h}x{w}: {_examples(o)}" for (h, w), o in sorted(examples.items())[:4])
    if size is None:
        if len(counts) > 1:
            common = max(sorted(counts), key=counts.__getitem__)
            raise DataError(
                f"images have {len(counts)} different sizes ({detail}); pass {spell('size', Placeholder('H', 'W'))} "
                f"to resize them, e.g. {spell('size', common)}"
            )
        return next(iter(counts)), False
    if len(counts) > 1:
        warnings.warn(
            f"images of {len(counts)} different sizes ({detail}) were all resized to {size[0]}x{size[1]}; "
            "check that they show the same field of view, or keep one size with classes/limit",
            IntrinsicsWarning, stacklevel=4,
        )
    return size, any(hw != size for hw in counts)


def _pixel_stats(images: list[np.ndarray], origins: list[str], groups: _Groups, intensity: str) -> dict:
    """(min, max) of each group that needs it; NaN/inf pixels are an error naming the images."""
    nonfinite: list[int] = []
    stats: dict[tuple, tuple[float, float]] = {}
    for key, idx in groups.items():
        if np.dtype(key[1]).kind != "f" and intensity == "unit":
            continue  # integer images under "unit" are scaled by their dtype: no pass over the pixels
        lo, hi = math.inf, -math.inf
        for part in _chunks(idx, images[idx[0]].size):
            batch = _stack(images, part)
            if batch.dtype.kind == "f":
                finite = np.isfinite(batch.reshape(len(part), -1)).all(axis=1)
                if not finite.all():
                    nonfinite.extend(part[j] for j in np.flatnonzero(~finite))
                    continue
            lo, hi = min(lo, float(batch.min())), max(hi, float(batch.max()))
        stats[key] = (lo, hi)
    if nonfinite:
        nonfinite.sort()
        raise DataError(
            f"{len(nonfinite)} of {len(images)} images contain NaN or infinite pixels (e.g. "
            f"{_examples([origins[i] for i in nonfinite])}); remove or repair them before loading"
        )
    return stats


def _intensity_plan(
    raw: RawImages, origins: list[str], groups: _Groups, stats: dict, intensity: str,
    arg_range: tuple[float, float] | None, source: str,
) -> tuple[dict[tuple, tuple[float, float]], dict[str, Any]]:
    """The affine map (low, high) -> (0, 1) of each group, and its record."""
    if intensity == "per_image_max":
        negative = [origins[groups[key][0]] for key, (lo, _) in stats.items() if lo < 0]
        if negative:
            raise DataError(
                f"{spell('intensity', 'per_image_max')} divides by each image's maximum, but some images have negative "
                f"values (e.g. {_examples(negative)}); use {spell('intensity', 'unit')} with "
                f"{spell('value_range', Placeholder('low', 'high'))} instead"
            )
        return {}, {"method": "per_image_max"}
    if intensity == "minmax":
        lo = min(s[0] for s in stats.values())
        hi = max(s[1] for s in stats.values())
        if not hi > lo:
            raise DataError(
                f"every pixel of {source!r} equals {lo:g}, so {spell('intensity', 'minmax')} is undefined; use "
                f"{spell('intensity', 'unit')} or check the data"
            )
        return {key: (lo, hi) for key in groups}, {"method": "dataset_minmax", "value_range": [lo, hi]}
    reader_range = None
    if raw.value_range is not None:
        lo, hi = (float(v) for v in raw.value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise DataError(
                f"the reader of {source!r} gave the intensity range {raw.value_range!r}, which is empty; "
                f"pass {spell('value_range', Placeholder('low', 'high'))} explicitly"
            )
        reader_range = (lo, hi)
    fixed = arg_range or reader_range
    if fixed is not None:
        record = {"method": "value_range", "value_range": list(fixed), "from": "argument" if arg_range else "reader"}
        return {key: fixed for key in groups}, record
    affine: dict[tuple, tuple[float, float]] = {}
    ranges: dict[str, list[float]] = {}
    bad: list[tuple[tuple, tuple[float, float]]] = []
    for key in groups:
        dtype = np.dtype(key[1])
        rng = _dtype_range(dtype)
        if rng is None:  # float data: only [0, 1] speaks for itself
            lo, hi = stats[key]
            if lo < 0.0 or hi > 1.0:
                bad.append((key, (lo, hi)))
                continue
            rng = (0.0, 1.0)
        affine[key] = rng
        ranges[dtype.name] = list(rng)
    if bad:
        lo = min(r[0] for _, r in bad)
        hi = max(r[1] for _, r in bad)
        where = [origins[groups[key][0]] for key, _ in bad]
        raise DataError(
            f"float images span [{lo:g}, {hi:g}], not [0, 1] (e.g. {_examples(where)}), and no value "
            f"range is known; pass {spell('value_range', Placeholder(f'{lo:g}', f'{hi:g}'))} (or the range of the device/format), "
            f"or {spell('intensity', 'minmax')} or 'per_image_max'"
        )
    int_types = sorted(name for name in ranges if np.dtype(name).kind in "iu")
    if len(int_types) > 1:
        warnings.warn(
            f"images mix integer types {int_types}; each is scaled by its own range "
            f"({ranges}); pass {spell('value_range', Placeholder('low', 'high'))} to scale them all alike",
            IntrinsicsWarning,
            stacklevel=3,
        )
    return affine, {"method": "dtype_range", "ranges": dict(sorted(ranges.items()))}


def _render(
    images: list[np.ndarray], groups: _Groups, affine: dict, clip: bool, out_c: int, out_hw: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """Scale, convert and resize every group chunk by chunk into one (N, C, H, W) float32 array."""
    clipped = 0
    shape = (len(images), out_c, out_hw[0], out_hw[1])
    # The output, plus the largest chunk's float copy and its resized copy, before anything is allocated.
    largest = max(len(part) * max(images[part[0]].size, out_c * out_hw[0] * out_hw[1])
                  for idx in groups.values() for part in _chunks(idx, images[idx[0]].size))
    check_memory(4 * (math.prod(shape) + 2 * largest), "the preprocessed images", f"choose a smaller "
                 f"{spell('size')} or fewer images ({spell('limit')})", shape=shape)
    out = np.empty(shape, dtype=np.float32)
    for key, idx in groups.items():
        for part in _chunks(idx, images[idx[0]].size):
            batch = _to_float_hwc(_stack(images, part))
            if key in affine:
                lo, hi = affine[key]
                batch -= np.float32(lo)
                batch *= np.float32(1.0 / (hi - lo))
                if clip:
                    outside = ((batch < 0) | (batch > 1)).reshape(len(part), -1).any(axis=1)
                    if outside.any():
                        clipped += int(outside.sum())
                        np.clip(batch, 0.0, 1.0, out=batch)
            batch = _convert_channels(batch, out_c).transpose(0, 3, 1, 2)
            if batch.shape[2:] != out_hw:
                batch = _resize(batch, out_hw)
            if part[-1] - part[0] + 1 == len(part):  # a run of consecutive images: a cheap slice copy
                out[part[0] : part[-1] + 1] = batch
            else:
                out[np.asarray(part)] = batch
    return out, clipped


def _divide_by_max(out: np.ndarray, origins: list[str]) -> int:
    """Per-image-max scaling in place; returns how many all-zero images were left at 0."""
    n = len(out)
    peak = out.reshape(n, -1).max(axis=1)
    zero = peak <= 0
    if zero.any():
        # Blank images (empty slices, padding) are legitimate data; dividing by 0 is not, so they stay 0.
        warnings.warn(
            f"{int(zero.sum())} of {n} images are all zero (e.g. "
            f"{_examples([origins[i] for i in np.flatnonzero(zero)])}); per_image_max leaves them at 0",
            IntrinsicsWarning,
            stacklevel=3,
        )
    peak[zero] = 1.0
    # Dividing after the resize (not before) gives every non-blank output image a maximum of exactly 1.
    out /= peak[:, None, None, None]
    return int(zero.sum())


def preprocess(
    raw: RawImages,
    *,
    source: str = "arrays",
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    intensity: str = "unit",
    value_range: tuple[float, float] | None = None,
    classes: Any = None,
    limit: int | None = None,
    seed: int = 0,
    exclude: Any = None,
) -> ImageSet:
    """Scale, convert, resize and select the images a reader returned, recording each step.

    Parameters
    ----------
    raw : RawImages
        What a reader returned.
    source : str
        The source string, stored as ``provenance["source"]``.
    size : int or (H, W), optional
        Output size; images are stretched to it with antialiased bilinear interpolation. None keeps
        the native size (all images must then share it).
    channels : {1, 3}, optional
        1 converts RGB to grey (BT.601 luma), 3 repeats grey; None keeps the native channels.
    intensity : {"unit", "per_image_max", "minmax"}
        "unit" maps the range of the dtype (uint8: 0..255, uint16: 0..65535, other integers: their
        full range), or ``value_range`` when given or when the reader defines one, to [0, 1]; float
        images must already lie in [0, 1]. "per_image_max" divides each image by its own maximum (the
        reference study's scaling). "minmax" maps the dataset's own minimum and maximum to [0, 1].
    value_range : (low, high), optional
        Intensities mapped to 0 and 1 under "unit"; overrides the reader's. Values outside are clipped
        (with a warning).
    classes : sequence or str, optional
        Classes to keep, by name or index, e.g. ``(3, 5)`` or ``"3,5"``; relabelled 0..len-1 in the
        order given. A name wins over an index when both could match.
    limit : int, optional
        Keep at most this many images, drawn with ``seed`` (class-stratified when labelled).
    seed : int
        Seed of the ``limit`` draw.
    exclude : file or sequence of str, optional
        Images to leave out, by id (as ``ImageSet.ids`` names them), before ``classes`` and ``limit``;
        an id that names no image is an error.

    Returns
    -------
    ImageSet
        float32 images (N, C, H, W), int64 labels and the provenance record.

    Examples
    --------
    >>> import numpy as np
    >>> from intrinsics.data import RawImages, preprocess
    >>> raw = RawImages(images=[np.full((4, 4), 255, np.uint8)] * 2, labels=[0, 1])
    >>> preprocess(raw, size=2).images.shape
    (2, 1, 2, 2)
    """
    # The same checks as load()'s, declared once in DataOptions (classes are parsed below, against the names).
    opts = DataOptions(size=size, channels=channels, intensity=intensity, value_range=value_range, limit=limit,
                       seed=seed, exclude=exclude)
    target_size, target_channels, arg_range = opts.size, opts.channels, opts.value_range
    n_read = len(raw.images)
    images, origins, codes, names, selected, kept = _select(raw, classes, limit, seed, source, opts.exclude)
    groups = _group_by_layout(images, origins)
    out_c, conversion = _output_channels(images, origins, groups, target_channels)
    out_hw, resized = _output_size(origins, groups, target_size)
    # Decide every affine map before touching pixels, so that option errors come before the work.
    stats = _pixel_stats(images, origins, groups, intensity)
    affine, scale = _intensity_plan(raw, origins, groups, stats, intensity, arg_range, source)
    out, clipped = _render(images, groups, affine, scale["method"] == "value_range", out_c, out_hw)
    if clipped:
        warnings.warn(
            f"{clipped} of {len(out)} images have pixels outside {spell('value_range', tuple(scale['value_range']))}; "
            f"they were clipped to it (widen {spell('value_range')} to keep them)",
            IntrinsicsWarning,
            stacklevel=2,
        )
    zero_images = _divide_by_max(out, origins) if intensity == "per_image_max" else 0

    original_shapes = sorted({tuple(int(s) for s in key[0]) for key in groups})
    preprocessing = {
        "size": [int(out_hw[0]), int(out_hw[1])],
        "channels": int(out_c),
        "intensity": intensity,
        "scale": scale,
        "resize": RESIZE_METHOD if resized else None,
        "channel_conversion": conversion,
        "classes": selected,
        "limit": None if limit is None else int(limit),
        "seed": int(seed),
        "order": ORDER,
        "original_dtypes": sorted({np.dtype(key[1]).name for key in groups}),
        "original_shapes": [list(s) for s in original_shapes[:10]],
        "n_read": int(n_read),
    }
    if opts.exclude:
        preprocessing["excluded"] = {"n": len(opts.exclude), "ids": list(opts.exclude[:20]),
                                     "more": max(0, len(opts.exclude) - 20)}
    if len(original_shapes) > 10:
        preprocessing["original_shapes_more"] = len(original_shapes) - 10
    if clipped:
        preprocessing["clipped_images"] = clipped
    if zero_images:
        preprocessing["all_zero_images"] = zero_images
    provenance = {"source": str(source), "reader": to_jsonable(raw.info), "preprocessing": preprocessing}
    keys = {k: tuple(v[i] for i in kept) for k, v in (raw.keys or {}).items()}
    return ImageSet(images=out, labels=codes, class_names=names if codes is not None else (), provenance=provenance,
                    ids=tuple(origins), keys=keys)
