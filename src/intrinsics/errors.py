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
    "InputTypeError",
    "IntrinsicsWarning",
    "DuplicateWarning",
    "SettingError",
    "Placeholder",
    "spell",
    "python_spelling",
    "use_spelling",
    "describe_failure",
]


class IntrinsicsError(ValueError):
    """Base class of every error caused by input the user can fix."""


class DataError(IntrinsicsError):
    """A dataset cannot be read or preprocessed as asked (bad file, shape, label, option)."""


class EstimationError(IntrinsicsError):
    """An estimate cannot be computed from this data (too few samples, a single class, ...)."""


class InputTypeError(EstimationError, TypeError):
    """The input holds values of a type no estimator takes (objects that are not numbers); a TypeError
    too, as Python and scikit-learn raise for such input."""


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


# -- expected failures that are not IntrinsicsErrors ---------------------------------------------------
# The front end's error boundary turns these into one line naming the problem and the fix; anything
# else is a bug and keeps its traceback.

_ENOSPC, _EROFS, _EACCES = 28, 30, 13


def _where(exc: BaseException) -> str:
    name = getattr(exc, "filename", None)
    return f" {name}" if name else ""


def describe_failure(exc: BaseException) -> str | None:
    """One line for an expected failure (bad input, full disk, read-only media, damaged store, no
    memory), naming the fix; None for an unexpected one (a bug, to be shown with its traceback)."""
    import sqlite3

    text = str(exc)
    if isinstance(exc, IntrinsicsError):
        return text
    if isinstance(exc, MemoryError):
        detail = f" ({text})" if text else ""
        return (f"out of memory{detail}; use fewer or smaller images ({spell('limit')}, {spell('size')}) or "
                "fewer workers")
    if isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, OSError):
        errno = getattr(exc, "errno", None)
        if errno == _ENOSPC or "disk is full" in text:
            return (f"no space left on the device while writing{_where(exc) or ' the study store'}; what was "
                    "finished is saved and consistent: free some space and run the same command again to resume")
        if errno in (_EROFS, _EACCES) or "readonly database" in text or "unable to open database" in text:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else text
            return (f"cannot write{_where(exc) or ' the study store'} ({reason}): the folder is read-only or not "
                    "yours; write to another folder (--out, --to), or fix its permissions")
        if isinstance(exc, sqlite3.DatabaseError):
            return (f"the study store is damaged ({text}); move study.sqlite aside to start over, or restore it "
                    "from a copy")
        if isinstance(exc, FileExistsError):
            return f"{_where(exc).strip() or 'the destination'} exists and is not a folder; give a new or existing folder"
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
            return f"{exc.strerror or text}:{_where(exc)}; check the path"
        return f"{exc.strerror or text}:{_where(exc)}" if exc.strerror else None
    if isinstance(exc, ValueError) and "null" in text and ("embedded" in text or "NUL" in text):
        return "a path or name contains a NUL character (\\0); remove it"
    return None
