"""Folders of image files: one subfolder per class, a CSV of labels, or unlabelled.

Labels from a CSV are matched by relative path (default) or by a metadata key of each file
(``label_key="SOPInstanceUID"``, ``"PatientID"``, ...). Nothing is dropped silently: CSV rows without
a file and files without a row are errors (or, with ``unmatched="skip"``, a warning that counts them).
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DataError, IntrinsicsWarning, Placeholder, spell
from ._raw import RawImages
from .files import file_kind, read_file
from .limits import available_memory, format_bytes
from .options import DataOptions, FileOptions

# Memory kept free while a folder is read (for the preprocessing that follows and the rest of the system).
_MEMORY_RESERVE = 512 * 2**20

__all__ = ["read_folder"]

_SHOW = 10  # files named in an error before "... and N more"


def _listing(items: list[str], k: int = _SHOW) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" ... and {len(items) - k} more" if len(items) > k else "")


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _walk(root: Path, skip: set[Path], follow_links: bool = True) -> tuple[list[Path], list[Path]]:
    """Readable files and unknown files under ``root`` (sorted; hidden entries skipped).

    Symbolic links to files and folders are followed; a folder already walked (a link loop, or two
    links to one folder) is walked once and the repeat named in a warning. With ``follow_links=False``
    links are skipped, and a warning counts and names them. Links that point nowhere are always named.
    """
    readable, unknown = [], []
    seen: set[tuple[int, int]] = set()
    repeats: list[str] = []
    links: list[str] = []
    broken: list[str] = []
    special: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_links):
        here = Path(dirpath)
        st = here.stat()
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: its files are read once
            repeats.append(_rel(here, root))
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        kept = []
        for d in sorted(dirnames):
            if _hidden(d):
                continue
            if (here / d).is_symlink() and not follow_links:
                links.append(_rel(here / d, root) + "/")
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if _hidden(name):
                continue
            path = here / name
            if path.is_symlink():
                if not path.exists():
                    broken.append(_rel(path, root))
                    continue
                if not follow_links:
                    links.append(_rel(path, root) + ("/" if path.is_dir() else ""))
                    continue
            if path.is_dir():  # os.walk lists a link to a folder as a file when links are not followed
                continue
            if not path.is_file():  # a FIFO, device or socket: reading it could block or never end
                special.append(_rel(path, root))
                continue
            if path.resolve() in skip:
                continue
            (readable if file_kind(path) is not None else unknown).append(path)
    for what, items, fix in (
        ("symbolic link{s} skipped", links, f"they are read without {spell('follow_links', False)}"),
        ("folder{s} reached twice through symbolic links and read once", repeats,
         "remove the loop or the duplicate link"),
        ("symbolic link{s} pointing to nothing", broken, "fix or remove them"),
        ("special file{s} (pipes, devices, sockets) skipped", special, "they hold no images; move them out"),
    ):
        if items:
            what = what.format(s="" if len(items) == 1 else "s")
            warnings.warn(f"{len(items)} {what} in {root}: {_listing(items, 5)}; {fix}",
                          IntrinsicsWarning, stacklevel=4)
    return readable, unknown


def _rel(path: Path, root: Path) -> str:
    """How a file is named: its path relative to the folder (a datalist may also name files outside
    its folder: those keep their path as written)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _norm_csv_path(value: str, root: Path) -> str:
    text = value.strip().replace("\\", "/")
    p = PurePosixPath(text)
    if p.is_absolute():
        try:
            return Path(text).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return text
    parts = [part for part in p.parts if part not in (".", "")]
    return "/".join(parts)


def _find_column(header: list[str], wanted: str, what: str, csv_path: Path, option: str) -> str:
    if wanted in header:
        return wanted
    folded = {h.lower(): h for h in header}
    if wanted.lower() in folded:
        return folded[wanted.lower()]
    raise DataError(
        f"{csv_path} has no {what} column {wanted!r} (columns: {', '.join(header)}); pass {option}= one of them"
    )


# Metadata keys a labels CSV may be keyed by instead of file paths (DICOM identifiers).
_ID_KEYS = ("SOPInstanceUID", "PatientID", "StudyInstanceUID", "SeriesInstanceUID")


def _key_from_header(csv_path: Path, label_key: str) -> str:
    """The CSV says which column keys it: with the default ``path`` and no such column, a header
    holding exactly one DICOM identifier column (SOPInstanceUID, PatientID, ...) is keyed by it."""
    if label_key != "path":
        return label_key
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip().lower() for h in (next(csv.reader(fh), None) or [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return label_key  # the full read names the problem
    if "path" in header:
        return label_key
    present = [k for k in _ID_KEYS if k.lower() in header]
    return present[0] if len(present) == 1 else label_key


def _read_csv(csv_path: Path, key_column: str, label_column: str, root: Path,
              by_path: bool) -> tuple[dict[str, str], dict[str, dict[str, str | None]]]:
    """The labels of a CSV by key, and each row's other columns by key (a patient or site column:
    per-image keys an audit can group by)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            key_col = _find_column(header, key_column, "key", csv_path, "label_key")
            label_col = _find_column(header, label_column, "label", csv_path, "label_column")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the labels CSV {csv_path}: {exc}") from None
    mapping: dict[str, str] = {}
    extras: dict[str, dict[str, str | None]] = {}
    others = [h for h in header if h and h not in (key_col, label_col)]
    empty: list[str] = []
    conflicts: list[str] = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        key = (row.get(key_col) or "").strip()
        label = (row.get(label_col) or "").strip()
        if not key and not label:
            continue
        if not key or not label:
            empty.append(f"row {number}")
            continue
        if by_path:  # "vol.nii.gz#z=12" (or "#12") labels one slice of a volume / frame of a file
            file_part, sep, frag = key.partition("#")
            key = _norm_csv_path(file_part, root) + (f"#{_slice_id(frag, csv_path, number)}" if sep else "")
        if key in mapping and mapping[key] != label:
            conflicts.append(f"{key} ({mapping[key]!r} vs {label!r})")
        mapping[key] = label
        if others:
            extras[key] = {h: (row.get(h) or "").strip() or None for h in others}
    if empty:
        raise DataError(
            f"{csv_path}: {len(empty)} rows lack a {key_col!r} or {label_col!r} value ({_listing(empty)}); "
            "fill them in or delete those rows"
        )
    if conflicts:
        raise DataError(
            f"{csv_path} gives different labels to the same {key_col!r}: {_listing(conflicts)}; keep one label each"
        )
    if not mapping:
        raise DataError(f"{csv_path} has no label rows; add rows '{key_col},{label_col}'")
    return mapping, extras


def _slice_id(fragment: str, csv_path: Path, row: int) -> int:
    """The slice number of a CSV key's ``#z=12`` / ``#12`` part."""
    text = fragment.strip().rsplit("=", 1)[-1].strip()
    try:
        return int(text)
    except ValueError:
        raise DataError(
            f"{csv_path} row {row}: {fragment!r} is not a slice; write 'file.nii.gz#z=12' or 'file.nii.gz#12'"
        ) from None


def _apply_slice_labels(
    images: list[np.ndarray], origins: list[str], raw_labels: list[str | None], rels: list[str],
    counts: list[int], metas: list[dict[str, Any]], slice_map: dict[str, dict[int, str]], unmatched: str,
) -> tuple[list[np.ndarray], list[str], list[str | None]]:
    """Per-slice labels from the CSV (a slice's own row wins over its file's row); slices left without
    a label, and rows naming slices that were not read, are reported like any unmatched row."""
    out_i, out_o, out_l = [], [], []
    unlabelled, absent = [], []
    pos = 0
    for rel, n, meta in zip(rels, counts, metas):
        ids = [int(i) for i in meta.get("slice_indices", range(n))]
        wanted = slice_map.get(rel, {})
        for sid, j in zip(ids, range(pos, pos + n)):
            label = wanted.get(sid, raw_labels[j])
            if label is None:
                unlabelled.append(origins[j])
                continue
            out_i.append(images[j])
            out_o.append(origins[j])
            out_l.append(label)
        absent += [f"{rel}#{sid}" for sid in sorted(set(wanted) - set(ids))]
        pos += n
    _report_unmatched("CSV rows name slices that were not read (out of range, or skipped as empty)",
                      absent, unmatched, "fix the slice numbers")
    _report_unmatched("slices have no label (neither their own CSV row nor their file's)", unlabelled,
                      unmatched, "add rows 'file#slice,label' or 'file,label' for them")
    return out_i, out_o, out_l


def _resolve_csv(labels: str | os.PathLike, root: Path) -> Path:
    path = Path(labels).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    raise DataError(f"labels CSV {str(labels)!r} not found (looked in the working directory and in {root})")


def _report_unmatched(what: str, items: list[str], unmatched: str, fix: str, stacklevel: int = 4) -> None:
    """Raise on ``items`` left unmatched, or with ``unmatched="skip"`` warn that they are left out.

    ``stacklevel`` counts from here: 4 suits a call made in :func:`read_folder` itself; a helper that
    read_folder calls passes 5 so that its warnings point at the same frame as read_folder's own.
    """
    if not items:
        return
    if unmatched == "skip":
        warnings.warn(f"skipped {len(items)} {what}: {_listing(items, 5)}", IntrinsicsWarning,
                      stacklevel=stacklevel)
        return
    raise DataError(f"{len(items)} {what}: {_listing(items)}; {fix}, or pass {spell('unmatched', 'skip')} to leave them out")


def read_folder(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | bool | None = None,
    label_key: str = "path",
    label_column: str = "label",
    unmatched: str = "error",
    value_range: tuple[float, float] | None = None,
    file_options: FileOptions | None = None,
    follow_links: bool = True,
) -> RawImages:
    """Read every image file under a folder.

    Parameters
    ----------
    path : path-like
        The folder. Without ``labels``: one subfolder per class (the subfolder names are the class
        names; files may be nested deeper inside each), or, with no subfolders, an unlabelled set.
    labels : path-like or False, optional
        A CSV with a key column and a label column. Its path is tried as given, then relative to
        the folder. ``False`` reads the whole tree unlabelled (e.g. a DICOM tree of patients).
    label_key : str
        The CSV column to match files by: "path" (relative to the folder, the default) or a key of
        the files' metadata such as "SOPInstanceUID", "PatientID" or "StudyInstanceUID" (DICOM).
    label_column : str
        The CSV column holding the label (default "label").
    unmatched : {"error", "skip"}
        What to do with CSV rows without a file and files without a CSV row: raise an error listing
        them (default), or leave them out with a warning that counts them.
    value_range : (low, high), optional
        An explicit intensity range; files may then mix formats with and without one.
    file_options : FileOptions, optional
        How each DICOM / NIfTI file is read (window, NIfTI axis, slices, ...); see
        :func:`intrinsics.data.files.read_file`.
    follow_links : bool, default True
        Read symbolic links to files and folders (a folder reached twice, e.g. through a link loop, is
        read once, with a warning). False skips every link, with a warning that counts and names them.

    Returns
    -------
    RawImages
        Origins are paths relative to the folder, with ``#i`` for the i-th image of a multi-image file.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"no folder at {root}; check the path")
    # The same checks as DataOptions: a direct call gets the same messages as load().
    checked = DataOptions(labels=labels, label_key=label_key, label_column=label_column, unmatched=unmatched,
                          follow_links=follow_links)
    labels, label_key, unmatched = checked.labels, checked.label_key, checked.unmatched
    file_options = file_options or FileOptions()
    # Found before the walk, so that a wrong CSV path is reported before any file is read.
    csv_path = None if labels is None or labels is False else _resolve_csv(labels, root)
    files, unknown = _walk(root, {csv_path.resolve()} if csv_path is not None else set(), follow_links)
    info: dict[str, Any] = {"reader": "folder", "root": str(root)}
    # None: unlabelled, or labelled after reading (by a metadata key of the file, by CSV slice rows).
    file_labels: list[str | None] = [None] * len(files)
    class_names: tuple[str, ...] | None = None
    mapping: dict[str, str] = {}
    slice_map: dict[str, dict[int, str]] = {}
    csv_extras: dict[str, dict[str, str | None]] = {}
    if csv_path is not None:
        label_key = _key_from_header(csv_path, label_key)
        mapping, csv_extras = _read_csv(csv_path, label_key, label_column, root, label_key == "path")
        info.update(mode="csv", labels_csv=str(csv_path), label_key=label_key, label_column=label_column)
        if label_key == "path":
            files, file_labels, unknown, slice_map = _match_csv_paths(
                root, csv_path, mapping, files, unknown, unmatched)
    elif labels is False:
        info["mode"] = "unlabelled"
    else:
        class_names = _class_folders(root, files, follow_links)
        if class_names is not None:
            file_labels = [f.relative_to(root).parts[0] for f in files]
        info["mode"] = "unlabelled" if class_names is None else "class_subfolders"
    _check_found(root, files, unknown)
    if unknown:
        info["skipped_unknown"] = len(unknown)

    images, origins, raw_labels, metas, counts = _read_files(root, files, file_labels, file_options)
    if slice_map:
        images, origins, raw_labels = _apply_slice_labels(
            images, origins, raw_labels, [_rel(f, root) for f in files], counts, metas, slice_map, unmatched
        )
    if csv_path is not None and label_key != "path":
        images, origins, raw_labels = _label_by_metadata_key(
            root, csv_path, label_key, mapping, unmatched, files, metas, counts, images, origins)

    _check_modality(metas, files, root)
    range_of_set = _union_range(metas, files, root, value_range)
    if not images:
        raise DataError(f"the files in {root} hold no images (e.g. every slice was skipped); check the options")
    info.update(_read_info(files, metas, file_options))
    has_labels = any(label is not None for label in raw_labels)
    return RawImages(
        images=images,
        labels=raw_labels if has_labels else None,
        class_names=class_names,
        origins=origins,
        info=info,
        value_range=range_of_set,
        keys=_image_keys(origins, [_rel(f, root) for f in files], metas, csv_extras,
                         None if csv_path is None else label_key),
    )


# Identifiers a DICOM file carries that a user finds an image by (or groups images by: a patient).
IMAGE_KEYS = ("SOPInstanceUID", "PatientID")


def _image_keys(origins: list[str], rels: list[str], metas: list[dict[str, Any]],
                csv_extras: dict[str, dict[str, str | None]] | None = None,
                label_key: str | None = None) -> dict[str, list[Any]] | None:
    """Each image's identifiers: its DICOM file's (SOPInstanceUID, PatientID) and the other columns of
    its labels-CSV row (a slice's own row before its volume's). An origin is the file's relative path,
    with ``#...`` for an image inside a multi-image file."""
    by_file = dict(zip(rels, metas))
    file_of = [o if o in by_file else o.rsplit("#", 1)[0] for o in origins]
    keys = {k: [by_file.get(f, {}).get(k) for f in file_of] for k in IMAGE_KEYS if any(m.get(k) for m in metas)}
    if csv_extras:
        def row_of(origin: str, file: str) -> dict[str, str | None]:
            if label_key != "path":  # rows keyed by a metadata value of the file (its PatientID, ...)
                return csv_extras.get(str(by_file.get(file, {}).get(label_key, "")).strip(), {})
            part = origin[len(file) + 1:].rsplit("=", 1)[-1] if origin != file else ""
            return csv_extras.get(f"{file}#{part}") or csv_extras.get(file, {})

        rows = [row_of(o, f) for o, f in zip(origins, file_of)]
        for column in dict.fromkeys(c for r in csv_extras.values() for c in r):
            keys.setdefault(column, [r.get(column) for r in rows])
    return keys or None


def _match_csv_paths(
    root: Path, csv_path: Path, mapping: dict[str, str], files: list[Path], unknown: list[Path], unmatched: str,
) -> tuple[list[Path], list[str | None], list[Path], dict[str, dict[int, str]]]:
    """The files a path-keyed labels CSV names, matched against the files on disk.

    Parameters
    ----------
    root, csv_path : Path
        The folder and its labels CSV.
    mapping : dict
        CSV key (a relative path, or ``path#slice`` for one slice of a file) to label.
    files, unknown : list of Path
        Readable and unknown files found under ``root``.
    unmatched : {"error", "skip"}
        What to do with rows without a file and files without a row.

    Returns
    -------
    files : list of Path
        The files the CSV names, in sorted relative-path order.
    file_labels : list of str or None
        Each file's own label; None for a file named only by slice rows.
    unknown : list of Path
        Unknown files the CSV does not name (a named one is read, whatever its suffix says).
    slice_map : dict
        Relative path to {slice number: label}, from the ``path#slice`` rows.
    """
    slice_map: dict[str, dict[int, str]] = {}
    for key, label in mapping.items():
        file_part, sep, sid = key.partition("#")
        if sep:
            slice_map.setdefault(file_part, {})[int(sid)] = label
    file_map = {k: v for k, v in mapping.items() if "#" not in k}
    named = set(file_map) | set(slice_map)
    on_disk = {_rel(f, root): f for f in files}
    missing = sorted(k for k in named if k not in on_disk and not (root / k).is_file())
    _report_unmatched(f"CSV rows name files that do not exist in {root}", missing, unmatched,
                      "fix the paths (relative to the folder)", stacklevel=5)
    extra = [rel for rel in on_disk if rel not in named]
    _report_unmatched(f"files in {root} have no row in {csv_path.name}", extra, unmatched,
                      "add rows for them or move them out", stacklevel=5)
    chosen = sorted({rel for rel in named if rel in on_disk or (root / rel).is_file()})
    unknown = [u for u in unknown if _rel(u, root) not in named]
    return [root / rel for rel in chosen], [file_map.get(rel) for rel in chosen], unknown, slice_map


def _class_folders(root: Path, files: list[Path], follow_links: bool = True) -> tuple[str, ...] | None:
    """The class names of a folder with one subfolder per class; None when it has no subfolders.

    Every image file must then lie inside a class folder, and every class folder must hold one.
    """
    # Numeric names sort as numbers ("2" before "10"), so folders 0..10 keep their natural indices.
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not _hidden(d.name) and (follow_links or not d.is_symlink())),
        key=lambda d: (0, int(d.name), "") if d.name.isdigit() else (1, 0, d.name),
    )
    if not class_dirs:
        return None
    loose = [_rel(f, root) for f in files if f.parent == root]
    if loose:
        raise DataError(
            f"{len(loose)} image files lie in {root} next to the class subfolders "
            f"({_listing(loose)}); move them into a class folder, or pass {spell('labels', Placeholder('CSV'))}"
        )
    empty = [d.name for d in class_dirs if not any(f.is_relative_to(d) for f in files)]
    if empty:
        raise DataError(
            f"class folders {_listing(empty)} in {root} hold no readable image files; add images "
            "or remove those folders"
        )
    return tuple(d.name for d in class_dirs)


def _check_found(root: Path, files: list[Path], unknown: list[Path]) -> None:
    """Warn about files of unknown type; fail when there is nothing to read."""
    if unknown:
        names = [_rel(u, root) for u in unknown]
        warnings.warn(
            f"skipped {len(unknown)} files of unknown type in {root}: {_listing(names, 5)}",
            IntrinsicsWarning,
            stacklevel=3,  # the caller of read_folder
        )
    if not files:
        found = f" (only files of unknown type: {_listing([u.name for u in unknown], 5)})" if unknown else ""
        raise DataError(
            f"found no image files in {root}{found}; readable are PNG/TIFF/JPEG/BMP, DICOM, NIfTI and .npy files"
        )


def _read_files(
    root: Path, files: list[Path], file_labels: list[str | None], file_options: FileOptions,
) -> tuple[list[np.ndarray], list[str], list[str | None], list[dict[str, Any]], list[int]]:
    """Every image of every file, in order.

    Returns
    -------
    images, origins, labels : list
        One entry per image; an origin is the relative path, with ``#k`` for the k-th image of a
        multi-image file, and the label is its file's.
    metas, counts : list
        One entry per file: its metadata and how many images it gave.
    """
    images: list[np.ndarray] = []
    origins: list[str] = []
    raw_labels: list[str | None] = []
    metas: list[dict[str, Any]] = []
    counts: list[int] = []
    pairs: Any = zip(files, file_labels)
    if len(files) >= 200 and sys.stderr.isatty():  # reading thousands of DICOMs takes a while
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, total=len(files), desc=f"reading {root.name}", unit="file", leave=False)
    held = 0
    for f, label in pairs:
        arrays, meta = read_file(f, file_options)
        rel = _rel(f, root)
        held += sum(a.nbytes for a in arrays)
        # Each file passed its own checks; the images of all of them are held at native size until they
        # are resized together, so the total is watched as well.
        if available_memory() < _MEMORY_RESERVE:
            raise DataError(
                f"reading {root} stopped at file {len(metas) + 1} of {len(files)} ({rel}): the images read so far "
                f"take {format_bytes(held)} at their native size and memory is nearly exhausted; read fewer files "
                f"({spell('limit')} applies after reading: split the folder) or smaller images"
            )
        metas.append(meta)
        counts.append(len(arrays))
        for k, arr in enumerate(arrays):
            images.append(arr)
            origins.append(f"{rel}#{_part_name(meta, k)}" if len(arrays) > 1 or "slice_indices" in meta else rel)
            raw_labels.append(label)
    return images, origins, raw_labels, metas, counts


def _part_name(meta: dict[str, Any], k: int) -> str:
    """How the k-th image of a file is named after ``#``: ``z=12`` for a NIfTI slice (its axis letter and
    its index in the volume, so a skipped empty slice leaves a gap), else its position (a frame)."""
    if "slice_indices" in meta and "axis" in meta:
        return f"{'xyz'[int(meta['axis'])]}={int(meta['slice_indices'][k])}"
    return str(k)


def _label_by_metadata_key(
    root: Path, csv_path: Path, label_key: str, mapping: dict[str, str], unmatched: str,
    files: list[Path], metas: list[dict[str, Any]], counts: list[int], images: list[np.ndarray], origins: list[str],
) -> tuple[list[np.ndarray], list[str], list[str | None]]:
    """Label each file's images by the CSV row of its metadata value ``label_key`` (e.g. its PatientID).

    Every file must have that key; CSV rows and files left unmatched are reported. Returns the
    images, origins and labels of the files that have a row.
    """
    keyed = [str(m.get(label_key, "")).strip() for m in metas]
    lacking = [_rel(f, root) for f, key in zip(files, keyed) if not key]
    if lacking:
        raise DataError(
            f"{len(lacking)} files have no {label_key!r} in their metadata ({_listing(lacking)}); "
            f"match by {spell('label_key', 'path')} instead"
        )
    _report_unmatched(
        f"CSV rows have a {label_key} that no file in {root} has",
        sorted(set(mapping) - set(keyed)), unmatched, "fix the CSV", stacklevel=5,
    )
    _report_unmatched(
        f"files in {root} have a {label_key} missing from {csv_path.name}",
        [_rel(f, root) for f, key in zip(files, keyed) if key not in mapping], unmatched, "add rows for them",
        stacklevel=5,
    )
    keep_file = [key in mapping for key in keyed]
    return _apply_key_labels(images, origins, keyed, counts, keep_file, mapping)


def _read_info(files: list[Path], metas: list[dict[str, Any]], file_options: FileOptions) -> dict[str, Any]:
    """The ``info`` entries that describe what was read: file count, file options, modality."""
    info: dict[str, Any] = {"n_files": len(files)}
    if file_options.to_dict():
        info["file_options"] = dict(sorted(file_options.to_dict().items()))
    modality = {m.get("Modality") for m in metas} - {None}
    if modality:
        info["modality"] = modality.pop()
    return info


def _apply_key_labels(
    images: list[np.ndarray], origins: list[str], keyed: list[str], counts: list[int],
    keep_file: list[bool], mapping: dict[str, str],
) -> tuple[list[np.ndarray], list[str], list[str | None]]:
    out_images, out_origins, out_labels = [], [], []
    pos = 0
    for key, count, keep in zip(keyed, counts, keep_file):
        if keep:
            out_images.extend(images[pos : pos + count])
            out_origins.extend(origins[pos : pos + count])
            out_labels.extend([mapping[key]] * count)
        pos += count
    return out_images, out_origins, out_labels


def _check_modality(metas: list[dict[str, Any]], files: list[Path], root: Path) -> None:
    by_modality: dict[str, list[str]] = {}
    for meta, f in zip(metas, files):
        modality = meta.get("Modality")
        if modality:
            by_modality.setdefault(str(modality), []).append(_rel(f, root))
    if len(by_modality) > 1:
        detail = "; ".join(f"{m}: {_listing(fs, 3)}" for m, fs in sorted(by_modality.items()))
        raise DataError(
            f"{root} mixes imaging modalities ({detail}); their intensities are not comparable: load each "
            "modality from its own folder"
        )


def _union_range(
    metas: list[dict[str, Any]], files: list[Path], root: Path, explicit: tuple[float, float] | None
) -> tuple[float, float] | None:
    ranges = [m.get("value_range") for m in metas]
    given = [(f, r) for f, r in zip(files, ranges) if r is not None]
    if not given or explicit is not None:
        return None
    if len(given) < len(files):
        without = [_rel(f, root) for f, r in zip(files, ranges) if r is None]
        with_range = [_rel(f, root) for f, _ in given]
        raise DataError(
            f"some files define an intensity range ({_listing(with_range, 3)}) and others do not "
            f"({_listing(without, 3)}), so they cannot be scaled alike; load them separately or pass "
            f"{spell('value_range', Placeholder('low', 'high'))}"
        )
    lo = min(float(r[0]) for _, r in given)
    hi = max(float(r[1]) for _, r in given)
    return (lo, hi)
