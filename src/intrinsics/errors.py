"""Exceptions and warnings shared by every layer.

Every error a user can trigger with bad input is an :class:`IntrinsicsError`; its message names the
problem and the fix. The CLI prints it on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "IntrinsicsError",
    "DataError",
    "EstimationError",
    "IntrinsicsWarning",
    "DuplicateWarning",
    "SettingError",
    "Placeholder",
    "spell",
    "python_spelling",
    "use_spelling",
]


class IntrinsicsError(ValueError):
    """Base class of every error caused by input the user can fix."""


class DataError(IntrinsicsError):
    """A dataset cannot be read or preprocessed as asked (bad file, shape, label, option)."""


class EstimationError(IntrinsicsError):
    """An estimate cannot be computed from this data (too few samples, a single class, ...)."""


class IntrinsicsWarning(UserWarning):
    """Something the user should know about the result (it is still computed)."""


class DuplicateWarning(IntrinsicsWarning):
    """Exact duplicate images were found and excluded from an estimate."""


class SettingError(DataError):
    """A setting has a value outside its valid range.

    ``setting`` names it, ``value`` is what was given, ``problem`` says what is allowed and ``hint``
    (optional) how to fix it; a front end that names settings its own way (a study spec's TOML keys)
    builds its message from these parts.
    """

    def __init__(self, setting: str, value: Any, problem: str, hint: str = "") -> None:
        self.setting, self.value, self.problem, self.hint = setting, value, problem, hint
        super().__init__(f"{spell(setting, value)} {problem}" + (f"; {hint}" if hint else ""))


# -- how a message names a setting --------------------------------------------------------------------
# A message that tells the user to change a setting names it the way the user sets it: ``size=(64, 64)``
# in Python, ``--size 64,64`` on the command line. The front end installs its spelling (the CLI's
# table of flags) with :func:`use_spelling`; library code calls :func:`spell` and never rewrites text.


class Placeholder:
    """A value to be filled in by the user, e.g. ``Placeholder("H", "W")``: ``(H, W)`` / ``H,W``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __repr__(self) -> str:
        return self.parts[0] if len(self.parts) == 1 else "(" + ", ".join(self.parts) + ")"


_UNSET = object()
Speller = Callable[..., str]  # speller(name) or speller(name, value)


def python_spelling(name: str, *value: Any) -> str:
    """``name`` or ``name=value`` as a Python keyword argument: ``size=(64, 64)``."""
    return f"{name}={value[0]!r}" if value else name


_spelling: ContextVar[Speller] = ContextVar("intrinsics_spelling", default=python_spelling)


def spell(name: str, value: Any = _UNSET) -> str:
    """How the current front end sets ``name`` (to ``value``): ``size=(64, 64)`` or ``--size 64,64``."""
    speller = _spelling.get()
    return speller(name) if value is _UNSET else speller(name, value)


@contextmanager
def use_spelling(speller: Speller) -> Iterator[None]:
    """Name settings in messages with ``speller(name[, value])`` while the block runs."""
    token = _spelling.set(speller)
    try:
        yield
    finally:
        _spelling.reset(token)
