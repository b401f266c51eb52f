"""Datalists: a list of ``{"image": path, "label": class, ...}`` entries, as MONAI uses them, alone or in
a Medical Segmentation Decathlon ``dataset.json`` (its ``training`` / ``validation`` / ``test`` lists).

Each file is read by intrinsics' own readers (with their header checks and limits), so a NIfTI volume
gives its slices (``axis``, ``slices``, ...), each labelled with its entry's label. The other scalar
fields of an entry (a ``patient_id``, a site) become the images' keys, so an audit can group by them.

A ``dataset.json`` is parsed here rather than with ``monai.data.load_decathlon_datalist``: the format is
one JSON object of lists, and reading it should not need MONAI (seven seconds to import) installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, Placeholder, spell
from ._raw import RawImages
from .files import file_kind
from .folder import _check_modality, _image_keys, _listing, _read_files, _read_info, _rel, _union_range
from .options import FileOptions

__all__ = ["DATALIST_SPLITS", "read_datalist", "read_datalist_file"]

# The lists a Decathlon dataset.json (or a MONAI datalist file) holds; "training" is read by default.
DATALIST_SPLITS = ("training", "validation", "test")
_MAX_JSON_BYTES = 256 * 2**20


_MISSING = object()


def scalar_of(value: Any) -> Any:
    """A field's plain value: a str, int, float or bool, unwrapped from a one-element list, a 0-d or
    one-element array or tensor, or a numpy scalar; ``_MISSING`` for anything else (a mask, a dict)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor (or MONAI MetaTensor)
        value = value.detach().cpu()
        if getattr(value, "numel", lambda: 2)() != 1:
            return _MISSING
        return value.reshape(()).item()
    if isinstance(value, np.ndarray):
        return value.reshape(()).item() if value.size == 1 else _MISSING
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else _MISSING


def class_of(value: Any, where: str, label_key: str) -> Any:
    """The class an entry or item gives: an int or a name (an integral float is its int); anything else
    (a mask, a one-hot vector, a continuous value, a path to a mask) is refused with the fix."""
    v = scalar_of(value)
    if v is _MISSING:
        shape = tuple(getattr(value, "shape", ())) or (len(value) if isinstance(value, (list, tuple)) else "?")
        raise DataError(
            f"{where} has a {label_key!r} of shape {shape}, not one class (a segmentation mask or a one-hot "
            f"vector); give each image its class (an int or a name), or read the images unlabelled "
            f"({spell('labels', False)}; from_monai: label_key=None)"
        )
    if isinstance(v, bool) or v is None:
        raise DataError(f"{where} has {label_key}={v!r}, not a class; give an int or a name per image")
    if isinstance(v, float):
        if not v.is_integer():
            raise DataError(f"{where} has {label_key}={v!r}: a continuous value, not a class; give classes "
                            "(ints or names)")
        v = int(v)
    if isinstance(v, str) and file_kind(Path(v)) is not None:
        raise DataError(
            f"the {label_key!r} entries are image files ({v}: segmentation masks), not classes; measure the "
            f"images unlabelled with {spell('labels', False)} (d_data only), or give a datalist whose "
            f"{label_key!r} is each image's class"
        )
    return v


def keys_of(item: Mapping[str, Any], skip: tuple[Any, ...], group_key: str | None, where: str) -> dict[str, Any]:
    """The scalar fields of an entry or item other than ``skip`` (its image and label), unwrapped; the
    ``group_key`` field must be one, not null."""
    out = {}
    for key, value in item.items():
        if key in skip:
            continue
        v = scalar_of(value)
        if key == group_key and (v is _MISSING or v is None):
            raise DataError(f"{where} has {group_key}={value!r}, not one value; give every image one group "
                            "(a patient id, say)")
        if v is not _MISSING:
            out[str(key)] = v
    return out


def read_datalist(
    entries: Sequence[Mapping[str, Any] | str],
    *,
    base_dir: str | os.PathLike | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    group_key: str | None = None,
    file_options: FileOptions | None = None,
    name: str = "datalist",
) -> RawImages:
    """Read the images a datalist names.

    Parameters
    ----------
    entries : sequence of dict or str
        ``{"image": path, "label": class, ...}`` entries; a plain path string is an unlabelled entry
        (as in a Decathlon ``test`` list).
    base_dir : path-like, optional
        What relative paths are relative to (default: the working folder).
    image_key, label_key : str
        The entry keys of the image path and its class; ``label_key=None`` reads the images unlabelled.
    group_key : str, optional
        A key every entry must have (a patient id, say); it is kept, as every other scalar field is, in
        the images' keys.
    file_options : FileOptions, optional
        How DICOM / NIfTI files are read (window, slicing axis and range, ...).
    name : str
        How the datalist is named in messages.

    Returns
    -------
    RawImages
        Origins are the paths as written (without a leading ``./``), with ``#z=12`` for a NIfTI slice.
    """
    root = Path(base_dir or ".").expanduser()
    file_options = file_options or FileOptions()
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise DataError(f"{name} is not a list of entries; give a list of {{{image_key!r}: path, ...}} dicts")
    if not entries:
        raise DataError(f"{name} lists no entries; give at least one {{{image_key!r}: path}}")
    files: list[Path] = []
    labels: list[Any] = []
    extras: list[dict[str, Any]] = []
    first_at: dict[str, int] = {}
    twice: list[str] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {image_key: entry}
        if not isinstance(entry, Mapping):
            raise DataError(f"entry {i} of {name} is {type(entry).__name__}, not a dict; give "
                            f"{{{image_key!r}: path, {label_key!r}: class}} entries")
        if image_key not in entry:
            raise DataError(f"entry {i} of {name} has no {image_key!r} (keys: {', '.join(map(str, entry))}); "
                            "name the image key with image_key=")
        path = entry[image_key]
        if isinstance(path, list):
            raise DataError(f"entry {i} of {name} lists {len(path)} image files under {image_key!r} (one per "
                            "modality); intrinsics measures one image per entry: make a datalist for one modality")
        if not isinstance(path, (str, os.PathLike)):
            raise DataError(f"entry {i} of {name} has {image_key}={path!r}, not a file path; for images in memory "
                            "use from_monai() on the dataset, or from_arrays()")
        file = Path(path).expanduser()
        file = file if file.is_absolute() else root / file
        if not file.is_file():
            raise DataError(f"entry {i} of {name} names {path}, which is not a file"
                            + (f" (relative paths are read from {root})" if not Path(path).is_absolute() else ""))
        rel = _rel(file, root)
        rel = os.path.normpath(rel).replace(os.sep, "/")
        if rel in first_at:
            twice.append(f"{rel} (entries {first_at[rel]} and {i})")
        first_at.setdefault(rel, i)
        if group_key is not None and group_key not in entry:
            raise DataError(f"entry {i} of {name} has no {group_key!r}; give every entry one, or drop group_key")
        if label_key is not None and label_key in entry:
            labels.append(class_of(entry[label_key], f"entry {i} of {name}", label_key))
        else:
            labels.append(None)
        extras.append(keys_of(entry, (image_key, label_key), group_key, f"entry {i} of {name}"))
        files.append(file)
    if twice:
        raise DataError(f"{name} lists {len(twice)} files more than once: {_listing(twice, 5)}; list each image once")
    labelled = [lab is not None for lab in labels]
    named = [i for i, e in enumerate(entries) if isinstance(e, Mapping)]
    if label_key is not None and named and not any(labelled):
        have = sorted({str(k) for i in named for k in entries[i]} - {image_key})
        raise DataError(f"no entry of {name} has {label_key!r} (keys: {', '.join(have) or 'none'}); name the label "
                        f"key ({spell('label_column', Placeholder('KEY'))}; from_monai: label_key=), or read the "
                        f"images unlabelled ({spell('labels', False)}; from_monai: label_key=None)")
    if any(labelled) and not all(labelled):
        missing = [str(i) for i, has in enumerate(labelled) if not has]
        raise DataError(f"entries {_listing(missing, 5)} of {name} have no {label_key!r} but others do; label every "
                        f"entry, or read the images unlabelled with {spell('labels', False)}")
    names = [_rel(f, root) for f in files]
    images, origins, raw_labels, metas, counts = _read_files(root, files, labels, file_options)
    _check_modality(metas, files, root)
    value_range = _union_range(metas, files, root, None)
    if not images:
        raise DataError(f"the files {name} names hold no images (e.g. every slice was skipped); check the options")
    keys = _image_keys(origins, names, metas) or {}
    columns = list(dict.fromkeys(k for e in extras for k in e))
    for column in columns:
        per_file = [e.get(column) for e in extras]
        keys.setdefault(column, [v for v, n in zip(per_file, counts) for _ in range(n)])
    info: dict[str, Any] = {"reader": "datalist", "datalist": name, "root": str(root), "image_key": image_key,
                            "label_key": label_key if any(labelled) else None}
    info.update(_read_info(files, metas, file_options))
    return RawImages(
        images=images,
        labels=raw_labels if any(labelled) else None,
        origins=origins,
        info=info,
        value_range=value_range,
        keys=keys or None,
    )


def read_datalist_file(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    label_column: str | None = None,
    labels: Any = None,
    file_options: FileOptions | None = None,
) -> RawImages:
    """Read a Decathlon ``dataset.json`` (or any JSON datalist: a list of entries, or an object of lists).

    Parameters
    ----------
    path : path-like
        The JSON file; relative image paths are read from its folder.
    split : str, optional
        Which list of an object to read (default "training"); a plain list has no splits.
    label_column : str, optional
        The entry key holding the class (default "label").
    labels : False, optional
        False reads the images unlabelled (e.g. a segmentation set, whose labels are masks).
    file_options : FileOptions, optional
        How DICOM / NIfTI files are read.

    Returns
    -------
    RawImages
        With class names from the file's ``labels`` object when it names every class index.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a datalist; load a folder of images with load({str(path)!r}), or "
                        "pass its dataset.json")
    if path.suffix.lower() != ".json":
        raise DataError(f"{path} is not a datalist (.json); load an image file with load({str(path)!r})")
    if labels not in (None, False):
        raise DataError(f"a datalist holds its own labels; {spell('labels', labels)} does not apply (pass "
                        f"{spell('labels', False)} to read it unlabelled, {spell('label_column')} to name its key)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}); check the path") from None
    if size > _MAX_JSON_BYTES:
        raise DataError(f"{path} is {size / 2**20:.0f} MiB, more than a datalist holds ({_MAX_JSON_BYTES >> 20} "
                        "MiB); check that it is a datalist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#x}); save it as UTF-8") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and integers too long to convert
        raise DataError(f"{path} is not valid JSON ({exc}); fix the file") from None
    label_key = None if labels is False else (label_column or "label")
    class_names = None
    if isinstance(doc, list):
        if split is not None:
            raise DataError(f"{path} is a plain list of entries with no splits; drop {spell('split', split)}")
        entries, which = doc, path.name
    elif isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list) and all(isinstance(e, (dict, str)) for e in v)]
        which_key = split or "training"
        if which_key not in lists:
            raise DataError(f"{path} has no {which_key!r} list (lists: {', '.join(lists) or 'none'}); pass "
                            f"{spell('split')} one of them")
        entries, which = doc[which_key], f"{path.name} ({which_key})"
        named = doc.get("labels")
        if isinstance(named, dict) and named and all(str(k).isdigit() for k in named):
            class_names = tuple(str(named[k]) for k in sorted(named, key=lambda k: int(k)))
            if [int(k) for k in sorted(named, key=int)] != list(range(len(named))):
                class_names = None  # not every class index 0..n-1 is named
    else:
        raise DataError(f"{path} holds a JSON {type(doc).__name__}, not a datalist; give a list of entries or a "
                        "Decathlon dataset.json")
    raw = read_datalist(entries, base_dir=path.parent, label_key=label_key, file_options=file_options, name=which)
    if raw.labels is not None and class_names is not None \
            and all(isinstance(lab, (int, np.integer)) and 0 <= lab < len(class_names) for lab in raw.labels):
        raw.class_names = class_names  # the file's "labels" object names the class indices
    raw.info.update(file=str(path), split=None if isinstance(doc, list) else (split or "training"))
    return raw
