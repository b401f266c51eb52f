"""Study presets: packaged, commented TOML specs (``intrinsics study init --preset NAME``).

The presets are the files ``src/intrinsics/presets/NAME.toml``, read with :mod:`importlib.resources`,
so the file a user gets is the file in the package, comments and all.
"""

from __future__ import annotations

import shlex
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from .spec import SpecError

__all__ = ["PRESETS", "preset_text", "write_preset", "run_command", "dataset_block"]

DOMAINS_HINT = "'natural' or 'medical'"

# Existing study folders are keyed by the presets' digests and run keys: an edit to a preset's values
# gives new runs, so change one only on purpose.
PRESETS = ("demo-quick", "demo", "reference")


def preset_text(preset: str) -> str:
    """The commented TOML text of a preset.

    Parameters
    ----------
    preset : str
        One of :data:`PRESETS`: 'demo-quick', 'demo' or 'reference'.

    Returns
    -------
    str
        The packaged file's text, ready for :func:`parse_spec` after ``tomllib.loads``.

    Raises
    ------
    SpecError
        If ``preset`` is not one of :data:`PRESETS` (the message names them).
    """
    if preset not in PRESETS:
        raise SpecError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return resources.files("intrinsics").joinpath("presets", f"{preset}.toml").read_text(encoding="utf-8")


def write_preset(preset: str, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a preset spec to ``path``, with the command that runs it, and return the path.

    The written file is the packaged preset with one comment added under its title line:
    ``# Run it with:   intrinsics study run PATH --out runs/NAME``, naming the actual file.

    Parameters
    ----------
    preset : str
        One of :data:`PRESETS`.
    path : path
        Where to write the spec; parent folders are created.
    overwrite : bool
        Replace an existing file (``intrinsics study init --force``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    SpecError
        If the preset is unknown, or ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    text = preset_text(preset)
    if path.exists() and not overwrite:
        raise SpecError(f"{str(path)!r} already exists; choose another file name or pass --force to overwrite")
    title, rest = text.split("\n", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{title}\n# Run it with:   {run_command(path, text)}\n{rest}", encoding="utf-8")
    return path


def run_command(path: str | Path, text: str | None = None) -> str:
    """The command that runs the spec at ``path`` (whose TOML ``text`` may be given) into runs/NAME."""
    name = tomllib.loads(Path(path).read_text(encoding="utf-8") if text is None else text)["name"]
    # Quoted so the command can be pasted as it is even when the path has spaces.
    return f"intrinsics study run {shlex.quote(str(path))} --out runs/{name}"


def dataset_block(name: str, source: str, domain: str, classes: Any = None, limit: int | None = None) -> str:
    """One ``[[datasets]]`` block in the presets' layout, for specs extended in code (the demo's extras)."""
    lines = ["", "[[datasets]]", f'name = "{name}"', f'source = "{source}"',
             f'domain = "{domain}"          # {DOMAINS_HINT}: the fits are made per domain']
    if classes is not None:
        lines.append(f"classes = {list(classes)!r}")
    if limit is not None:
        lines.append(f"limit = {limit}")
    return "\n".join(lines) + "\n"
