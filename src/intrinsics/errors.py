"""Exceptions and warnings shared by every layer.

Every error a user can trigger with bad input is an :class:`IntrinsicsError`; its message names the
problem and the fix. The CLI prints it on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "IntrinsicsError",
    "DataError",
    "EstimationError",
    "IntrinsicsWarning",
    "DuplicateWarning",
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
