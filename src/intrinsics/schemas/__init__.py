"""JSON Schemas (draft 2020-12) of intrinsics' outputs, shipped with the package.

- ``measure``: ``intrinsics measure SOURCE --json FILE``, ``intrinsics.measure_dataset(...).to_dict()``;
- ``audit``: ``audit.json`` of ``intrinsics audit SOURCE --out DIR``;
- ``fits``: ``fits.json`` of a study (``intrinsics report --study DIR``).

Each file refers to ``common.schema.json`` beside it (a relative ``$ref``), so a validator given the
folder resolves them; :func:`validate` does so with ``jsonschema``.

>>> from intrinsics.schemas import validate
>>> validate(json.load(open("out.json")), "measure")        # doctest: +SKIP
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import SettingError

__all__ = ["SCHEMAS", "schema", "schema_path", "validate"]

SCHEMAS = ("measure", "audit", "fits")
_COMMON = "common"


def schema_path(name: str) -> Path:
    """The shipped file of schema ``name`` (one of :data:`SCHEMAS`, or ``"common"``)."""
    if name not in (*SCHEMAS, _COMMON):
        raise SettingError("schema", name, f"is not a schema; pass one of {', '.join(SCHEMAS)}")
    return Path(str(resources.files(__package__) / f"{name}.schema.json"))


def schema(name: str) -> dict[str, Any]:
    """Schema ``name`` as a dict."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


def validate(document: Any, name: str) -> None:
    """Raise ``jsonschema.ValidationError`` when ``document`` does not follow schema ``name``.

    Needs the ``jsonschema`` package (``pip install jsonschema``; a dev dependency of intrinsics).
    """
    try:
        import jsonschema
        from referencing import Registry, Resource
    except ImportError:
        raise SettingError("schema", name, "needs the jsonschema package to validate; pip install jsonschema") from None
    common = Resource.from_contents(schema(_COMMON))
    registry = Registry().with_resource(f"{_COMMON}.schema.json", common)
    main = schema(name)
    jsonschema.Draft202012Validator.check_schema(main)
    jsonschema.Draft202012Validator(main, registry=registry).validate(document)
