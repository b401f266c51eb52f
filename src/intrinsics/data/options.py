"""Typed data settings: how a dataset is read and preprocessed, checked once, passed whole.

:class:`DataOptions` holds every option of :func:`intrinsics.data.load`; each is checked once, where the
object is made (:data:`SETTINGS` declares each setting's check and which sources it applies to), so a
typo fails before anything is read. Readers take their own typed part of it: :class:`FileOptions`
(DICOM window, NIfTI axis, slices, ...) and the folder reader's label options. The CLI, study specs,
checkpoints and ``plan`` all build the same object with :meth:`DataOptions.from_dict` and record it with
:meth:`DataOptions.to_dict`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, SettingError, spell
from .limits import DEFAULT_MAX_PIXELS

__all__ = [
    "DataOptions",
    "FileOptions",
    "SETTINGS",
    "SOURCE_KINDS",
    "INTENSITY_MODES",
    "UNMATCHED_MODES",
    "check_applies",
]

INTENSITY_MODES = ("unit", "per_image_max", "minmax")
UNMATCHED_MODES = ("error", "skip")
SOURCE_KINDS = ("builtin", "synthetic", "folder", "npz", "idx", "file", "datalist")
AXIS_NAMES = {"sagittal": 0, "coronal": 1, "axial": 2}


# -- checks: each takes the given value and returns it normalised, or raises SettingError -------------


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _size(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    value = v
    bad = "is not a size; pass an int like 64 or a pair (H, W)"
    if isinstance(value, str):
        try:
            value = tuple(int(p) for p in value.lower().replace("x", ",").split(",") if p.strip())
        except ValueError:
            raise SettingError("size", v, bad) from None
    if _is_int(value):
        value = (int(value), int(value))
    if not isinstance(value, (tuple, list)) or len(value) not in (1, 2) or not all(_is_int(p) for p in value):
        raise SettingError("size", v, bad)
    h, w = int(value[0]), int(value[-1])
    if h < 1 or w < 1:
        raise SettingError("size", v, f"must be positive; pass e.g. {spell('size', 64)}")
    return h, w


def _channels(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if isinstance(v, bool) or v not in (1, 3):
        raise SettingError("channels", v, "is not supported; pass 1 (grey), 3 (RGB) or None (keep)")
    return int(v)


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in choices:
            raise SettingError(name, v, f"is unknown; pass one of {', '.join(choices)}")
        return v

    return check


def _value_range(v: Any) -> tuple[float, float] | None:
    if v is None:
        return None
    pair = v.split(",") if isinstance(v, str) else v  # "0,255" from a command line
    try:
        lo, hi = (float(p) for p in pair)
    except (TypeError, ValueError):
        raise SettingError("value_range", v, "is not a pair; pass (low, high), e.g. (0, 255)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise SettingError("value_range", v, "must be finite with low < high, e.g. (0, 255)")
    return lo, hi


def _positive_int_or_none(name: str, what: str) -> Callable[[Any], int | None]:
    def check(v: Any) -> int | None:
        if v is None:
            return None
        if not _is_int(v) or v < 1:
            raise SettingError(name, v, f"must be a positive int ({what}) or None")
        return int(v)

    return check


def _seed(v: Any) -> int:
    if not _is_int(v):
        raise SettingError("seed", v, "must be an int")
    return int(v)


def _classes(v: Any) -> tuple[Any, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        items: list[Any] = [c.strip() for c in v.split(",") if c.strip()]
    elif _is_int(v):
        items = [int(v)]
    else:
        try:
            items = [int(c) if _is_int(c) else c for c in v]
        except TypeError:
            raise SettingError("classes", v, "is not a list of classes; pass e.g. (3, 5) or '3,5'") from None
    if not items:
        raise SettingError("classes", v, "selects nothing; pass at least one class, e.g. (3, 5)")
    return tuple(items)


def _optional_str(name: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise SettingError(name, v, "must be a non-empty string")
        return v

    return check


def _labels(v: Any) -> str | os.PathLike[str] | bool | None:
    if v is True:
        raise SettingError("labels", v, f"is not a CSV; pass the path of a labels CSV, or {spell('labels', False)} "
                           "for unlabelled")
    if v is None or v is False or isinstance(v, (str, os.PathLike)):
        return v
    raise SettingError("labels", v, "must be the path of a labels CSV, False (unlabelled) or None")


def _label_column(v: Any) -> str | int | None:
    if v is None or _is_int(v) or (isinstance(v, str) and v.strip()):
        return v
    raise SettingError("label_column", v, "must be a column name or index")


def _window(v: Any) -> Any:
    from .dicom import parse_window

    parse_window(v)  # raises with the presets listed
    return tuple(v) if isinstance(v, list) else v


def _axis(v: Any) -> int | None:
    if v is None:
        return None
    key = v.strip().lower() if isinstance(v, str) else v
    if isinstance(key, str) and key in AXIS_NAMES:
        return AXIS_NAMES[key]
    if isinstance(key, str) and key.lstrip("-").isdigit():
        key = int(key)
    if _is_int(key) and 0 <= int(key) <= 2:
        return int(key)
    raise SettingError("axis", v, "is not a slicing axis: use 0, 1, 2 or 'sagittal', 'coronal', 'axial'")


def _slices(v: Any) -> Any:
    if v is None:
        return None
    raw: Any = v
    if isinstance(v, str):
        sep = ":" if ":" in v else ","
        raw = [None if s.strip() == "" else s.strip() for s in v.split(sep)]
    try:
        bounds = list(raw)
    except TypeError:
        bounds = []
    if len(bounds) != 2:
        raise SettingError("slices", v, "must be a (start, stop) pair or 'start:stop', e.g. (20, 80)")
    try:
        return tuple(None if b is None else int(b) for b in bounds)
    except (TypeError, ValueError):
        raise SettingError("slices", v, "must hold two integers (start, stop), e.g. (20, 80)") from None


def flag_check(name: str) -> Callable[[Any], bool]:
    """The check of a true/false setting (shared by every typed settings object)."""
    def check(v: Any) -> bool:
        if not isinstance(v, (bool, np.bool_)):
            raise SettingError(name, v, "must be true or false")
        return bool(v)

    return check


def _max_pixels(v: Any) -> int:
    if isinstance(v, str) and v.strip().replace("_", "").replace(",", "").isdigit():
        v = int(v.strip().replace("_", "").replace(",", ""))
    if not _is_int(v) or v < 1:
        raise SettingError("max_pixels", v, f"must be a positive number of pixels per image, e.g. "
                           f"{spell('max_pixels', DEFAULT_MAX_PIXELS)} (the default)")
    return int(v)


def _volume(v: Any) -> int | None:
    if v is None:
        return None
    if not _is_int(v) or v < 0:
        raise SettingError("volume", v, "must be the index (0, 1, ...) of a volume in a 4-D file")
    return int(v)


def read_id_list(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The image ids listed in a file: one per line (``#`` starts a comment), or a CSV whose header has
    an ``id`` column (an audit's ``images.csv``, or rows of it a user kept)."""
    import csv

    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingError("exclude", str(path), "names no file; give a file with one image id per line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError("exclude", str(path), f"cannot be read ({exc}); give a UTF-8 text file of ids") from None
    lines = text.splitlines()
    header = next(csv.reader(lines[:1]), []) if lines else []
    if "id" in header:
        ids = [row["id"].strip() for row in csv.DictReader(lines) if (row.get("id") or "").strip()]
    else:
        ids = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not ids:
        raise SettingError("exclude", str(path), "lists no image ids; give one id per line (as in an audit's "
                           "images.csv or pairs.csv)")
    return tuple(dict.fromkeys(ids))


def _exclude(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, (str, os.PathLike)):
        return read_id_list(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(e, str) and e for e in v):
        return tuple(dict.fromkeys(v))
    raise SettingError("exclude", v, "must be a file of image ids or a list of ids (strings)")


@dataclass(frozen=True)
class _Setting:
    default: Any
    check: Callable[[Any], Any]
    applies_to: tuple[str, ...]  # source kinds; the preprocessing settings apply to every kind
    help: str


_ALL = SOURCE_KINDS
_FILES = ("folder", "file", "datalist")
# One row per setting: its default, its check, the sources it applies to and what it means.
SETTINGS: dict[str, _Setting] = {
    "split": _Setting(None, _optional_str("split"), ("builtin", "npz", "folder", "datalist"),
                      "split of an .npz / builtin dataset (train, val, test); for a folder, its subfolder; "
                      "for a datalist (dataset.json), its list (training, validation, test)"),
    "labels": _Setting(None, _labels, ("folder", "idx", "datalist"),
                       "labels CSV of a folder (False: unlabelled, also for a datalist); an IDX labels file"),
    "label_key": _Setting("path", _optional_str("label_key"), ("folder",),
                          "CSV column that identifies an image (path, SOPInstanceUID, PatientID, ...)"),
    "label_column": _Setting(None, _label_column, ("folder", "builtin", "npz", "datalist"),
                             "CSV column (or MedMNIST finding, or datalist entry key) to use as the label"),
    "unmatched": _Setting("error", _choice("unmatched", UNMATCHED_MODES), ("folder",),
                          "CSV rows without files / files without rows: error or skip with a warning"),
    "window": _Setting(None, _window, _FILES, "DICOM/NIfTI window: center,width or a preset (brain, lung, ...)"),
    "axis": _Setting(None, _axis, _FILES, "NIfTI slicing axis: 0/1/2 or sagittal/coronal/axial (default axial)"),
    "slices": _Setting(None, _slices, _FILES, "NIfTI slice range START:STOP along the axis"),
    "skip_empty": _Setting(False, flag_check("skip_empty"), _FILES, "NIfTI: drop constant (empty) slices"),
    "volume": _Setting(None, _volume, _FILES, "NIfTI: index of the volume in a 4-D file"),
    "max_pixels": _Setting(DEFAULT_MAX_PIXELS, _max_pixels, _FILES + ("npz", "idx"),
                           "largest image a file may declare, in pixels (rows × columns), checked from its "
                           "header before decoding (default: Pillow's, 89,478,485)"),
    "follow_links": _Setting(True, flag_check("follow_links"), ("folder",),
                             "read symbolic links to files and folders (a link loop is read once); false: "
                             "skip them with a warning that names them"),
    "size": _Setting(None, _size, _ALL, "resize to S×S or H×W"),
    "channels": _Setting(None, _channels, _ALL, "convert to 1 or 3 channels"),
    "intensity": _Setting("unit", _choice("intensity", INTENSITY_MODES), _ALL,
                          "pixel scaling to [0, 1]: unit, per_image_max or minmax"),
    "value_range": _Setting(None, _value_range, _ALL, "intensity range that maps to [0, 1]"),
    "classes": _Setting(None, _classes, _ALL, "keep these classes, relabelled 0.. in this order"),
    "limit": _Setting(None, _positive_int_or_none("limit", "the number of images to keep"), _ALL,
                      "keep at most this many images (stratified, reproducible with seed)"),
    "seed": _Setting(0, _seed, _ALL, "seed of the limit draw"),
    "exclude": _Setting(None, _exclude, _ALL, "leave out these images: a file of ids (one per line, or a CSV "
                        "with an id column, such as an audit's images.csv) or a list of ids"),
}
FILE_SETTINGS = ("window", "axis", "slices", "skip_empty", "volume", "max_pixels")
PREPROCESSING_SETTINGS = ("size", "channels", "intensity", "value_range", "classes", "limit", "seed", "exclude")


@dataclass(frozen=True)
class FileOptions:
    """Options of the per-file readers: DICOM takes ``window``; NIfTI ``axis``, ``slices``,
    ``skip_empty``, ``volume`` and ``window``; every reader ``max_pixels``. Checked as for
    :class:`DataOptions`."""

    window: Any = None
    axis: int | None = None
    slices: Any = None
    skip_empty: bool = False
    volume: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, SETTINGS[f.name].check(getattr(self, f.name)))

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None = None) -> "FileOptions":
        """Options by name; an unknown name is an error that lists the valid ones."""
        return _from_dict(cls, settings)

    def dicom(self) -> dict[str, Any]:
        """The DICOM reader's keyword arguments."""
        return {"window": self.window, "max_pixels": self.max_pixels}

    def nifti(self) -> dict[str, Any]:
        """The NIfTI reader's keyword arguments (its default axis, axial, when none is set)."""
        out = {"slices": self.slices, "skip_empty": self.skip_empty, "volume": self.volume, "window": self.window,
               "max_pixels": self.max_pixels}
        return out | ({} if self.axis is None else {"axis": self.axis})

    def to_dict(self) -> dict[str, Any]:
        """The options that differ from the defaults (as recorded in provenance)."""
        return _non_default(self)


def _known(cls: Any, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The given settings (None meaning "the default" dropped); an unknown name is an error."""
    settings = dict(settings or {})
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise DataError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return {k: v for k, v in settings.items() if v is not None}


def _from_dict(cls: Any, settings: Mapping[str, Any] | None) -> Any:
    return cls(**_known(cls, settings))


def _non_default(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value != SETTINGS[f.name].default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class DataOptions:
    """Every option of :func:`intrinsics.data.load`, checked once when made.

    See :func:`intrinsics.data.load` for what each means; :data:`SETTINGS` lists the checks and which
    sources each option applies to.

    Examples
    --------
    >>> DataOptions.from_dict({"size": "28", "classes": [3, 5]}).size
    (28, 28)
    >>> DataOptions(channels=2)
    Traceback (most recent call last):
    ...
    intrinsics.errors.SettingError: channels=2 is not supported; pass 1 (grey), 3 (RGB) or None (keep)
    """

    split: str | None = None
    labels: str | os.PathLike[str] | bool | None = None
    label_key: str = "path"
    label_column: str | int | None = None
    unmatched: str = "error"
    window: Any = None
    axis: int | None = None
    slices: Any = None
    skip_empty: bool = False
    volume: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    follow_links: bool = True
    size: tuple[int, int] | None = None
    channels: int | None = None
    intensity: str = "unit"
    value_range: tuple[float, float] | None = None
    classes: tuple[Any, ...] | None = None
    limit: int | None = None
    seed: int = 0
    exclude: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, SETTINGS[f.name].check(getattr(self, f.name)))

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None = None) -> "DataOptions":
        """Options from a dict of setting names (a spec block, a checkpoint record, CLI arguments).

        An unknown name is an error that lists the valid ones; ``None`` values mean "the default".
        """
        return _from_dict(cls, settings)

    def to_dict(self) -> dict[str, Any]:
        """The options that differ from the defaults, JSON-ready (pairs as lists)."""
        return _non_default(self)

    def replace(self, **settings: Any) -> "DataOptions":
        """A copy with these settings changed (``None`` keeps the current value)."""
        return replace(self, **_known(type(self), settings))

    @property
    def files(self) -> FileOptions:
        """The per-file readers' part (DICOM, NIfTI)."""
        return FileOptions(**{k: getattr(self, k) for k in FILE_SETTINGS})

    def preprocessing(self) -> dict[str, Any]:
        """Keyword arguments of :func:`intrinsics.data.preprocess.preprocess`."""
        return {k: getattr(self, k) for k in PREPROCESSING_SETTINGS}


# Options that name where the images or labels come from: refused outright by a source without them.
_SOURCE_SETTINGS = ("split", "labels", "label_key")


def check_applies(kind: str, settings: Mapping[str, Any]) -> None:
    """Refuse a setting (given, not the default) that a ``kind`` source does not use, before its value
    is checked or anything is read; the message names the options that source takes."""
    where = "single-file" if kind == "file" else kind
    given = {k: v for k, v in settings.items() if v is not None and not (k in SETTINGS and v == SETTINGS[k].default)}
    if "label_key" in given and kind != "folder":
        raise SettingError("label_key", given["label_key"], f"applies to folders with a labels CSV, not {kind} sources")
    for name in _SOURCE_SETTINGS:
        if name in given and kind not in SETTINGS[name].applies_to:
            raise SettingError(name, given[name], f"does not apply to {where} sources; drop it")
    unknown = sorted(k for k in given if k not in SETTINGS or kind not in SETTINGS[k].applies_to)
    if unknown:
        valid = [n for n, s in SETTINGS.items()
                 if kind in s.applies_to and s.applies_to != _ALL and n not in _SOURCE_SETTINGS]
        raise DataError(f"unknown option(s) {', '.join(map(spell, unknown))} for {where} sources; "
                        f"valid options: {', '.join(map(spell, valid)) or 'none'}")
