"""The one JSON encoder of every output: ``measure --json``, run records, checkpoints, the study store,
``fits.json`` and the CLI's printed JSON.

The rules, the same everywhere:

- NaN is written as ``null`` (no value), ``+inf`` / ``-inf`` as the strings ``"inf"`` / ``"-inf"``
  (an infinite K_F — two identical images with different labels — is a finding, not a missing value);
  the output is strict JSON (``allow_nan=False``).
- numpy scalars become Python numbers; numpy arrays, tuples and lists become lists; sets become
  lists sorted by their text; mapping keys become strings.
- objects with a ``to_dict()`` (our result dataclasses) are written as that dict; paths and anything
  else as their text.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

__all__ = ["to_jsonable", "dumps", "write_json"]


def _text(s: str) -> str:
    """A string every JSON parser takes: a file name that is not UTF-8 reaches Python with lone
    surrogates (``"b\\udcff"``), which strict parsers refuse; its raw bytes are written as ``\\xff``."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` made only of dicts, lists, strings, finite numbers, booleans and None."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return _text(obj)
    if isinstance(obj, Mapping):
        return {_text(str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if hasattr(obj, "tolist"):  # torch tensors and the like
        return to_jsonable(obj.tolist())
    if isinstance(obj, PurePath):
        return str(obj)
    return str(obj)


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """``obj`` as strict JSON text, by the rules of this module."""
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` to ``path`` as JSON, atomically (never a half-written file), creating its folder."""
    target = Path(path)
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise IsADirectoryError(21, "is a folder; give a file name for the JSON", str(target))
        # /dev/stdout, a pipe, a device: written in place (renaming onto it would replace the device)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(dumps(obj, indent=indent) + "\n")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(dumps(obj, indent=indent) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target
