"""Input checks shared by the estimators: one place that turns user input into vectors or fails clearly."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EstimationError, InputTypeError, SettingError

__all__ = ["as_matrix", "as_labels", "check_seed", "is_int_at_least", "preprocessing_of"]


def _to_numpy(X: Any) -> np.ndarray:
    if hasattr(X, "images") and hasattr(X, "provenance"):  # an ImageSet
        return np.asarray(X.images)
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, without importing torch
        return X.detach().cpu().numpy()
    return np.asarray(X)


def as_matrix(X: Any, *, name: str = "X", min_samples: int = 2, values_checked: bool = False) -> np.ndarray:
    """Return ``X`` as a C-contiguous (N, D) float matrix (float32 or float64, as given).

    Accepts (N, D) and (N, C, H, W) / (N, H, W) arrays, torch tensors and ImageSets. Integer input is
    converted to float64. NaN or infinite values and too few rows raise :class:`EstimationError`.
    """
    A = _to_numpy(X)
    if A.dtype == object:  # numbers held as Python objects are numbers; anything else is refused
        try:
            A = A.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(f"{name} has dtype object and not only numbers ({exc}); pass a numeric array "
                                 "of images or vectors") from None
    if A.dtype.kind == "c":
        raise EstimationError(f"{name} holds complex values: Complex data not supported; pass real-valued "
                              "images, e.g. their magnitude np.abs(X)")
    if A.ndim < 2:
        raise EstimationError(
            f"{name} must have one row per sample, got shape {A.shape}; reshape a single vector "
            "with X.reshape(1, -1) or a list of scalars with X.reshape(-1, 1)"
        )
    if A.ndim > 2:
        A = A.reshape(A.shape[0], -1)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    A = np.ascontiguousarray(A)
    n = A.shape[0]
    if n < min_samples:
        raise EstimationError(
            f"{name} has {n} sample{'' if n == 1 else 's'}; at least {min_samples} are needed here: pass more "
            "images (one per row, e.g. a larger --limit or more classes)"
        )
    if A.shape[1] == 0:
        raise EstimationError(f"{name} has 0 features per sample; pass non-empty images or vectors")
    if values_checked:  # the caller checked this same X's values already (a pass over every value saved)
        return A
    finite_rows = np.isfinite(A).all(axis=1)
    if not finite_rows.all():
        bad = np.flatnonzero(~finite_rows)
        raise EstimationError(
            f"{name} has NaN or infinite values in {bad.size} of {n} samples (e.g. rows "
            f"{bad[:5].tolist()}); remove or repair those images before measuring"
        )
    return A


def as_labels(y: Any, n: int) -> np.ndarray:
    """Return labels as an int64 vector of class indices 0..C-1 (any hashable input labels)."""
    if y is None:
        raise EstimationError("labels are required for K_F; pass y with one label per sample")
    y = _to_numpy(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise EstimationError(
            f"labels must be one label per sample, got shape {y.shape}; multi-label targets are not "
            "supported (binarise one label column first)"
        )
    if len(y) != n:
        raise EstimationError(f"{n} samples but {len(y)} labels; pass one label per sample")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise EstimationError(
            f"labels contain {int((~np.isfinite(y)).sum())} NaN/inf values; drop unlabelled samples first"
        )
    _, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def is_int_at_least(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``minimum``: the check every count
    parameter (k, n_bootstrap, n_draws, ...) needs before numpy sees it."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= minimum


def check_seed(seed: Any) -> None:
    """Accept a seed numpy takes: a non-negative integer or None (a fresh random seed)."""
    if seed is not None and not is_int_at_least(seed, 0):
        raise EstimationError(f"seed={seed!r} must be a non-negative integer (or None for a fresh seed); use e.g. seed=0")


def preprocessing_of(X: Any) -> dict | None:
    """The preprocessing record of an ImageSet, None for plain arrays."""
    prov = getattr(X, "provenance", None)
    if isinstance(prov, dict):
        return dict(prov.get("preprocessing", {}))
    return None


def int_setting(name: str, minimum: int, *, optional: bool = False):
    """The check of an integer setting >= ``minimum`` (None allowed when ``optional``), for a
    :class:`CheckedSettings` table."""

    def check(v: Any) -> Any:
        if v is None and optional:
            return None
        if not is_int_at_least(v, minimum):
            raise SettingError(name, v, f"must be an integer >= {minimum}" + (" (or left out)" if optional else ""))
        return int(v)

    return check


class CheckedSettings:
    """Base of the measurement layer's typed settings (frozen dataclasses): each setting's check is
    declared once, in the subclass's ``_CHECKS`` table, and runs on construction; ``from_dict`` takes
    settings by name (a spec block) and names an unknown one with the valid ones."""

    _CHECKS: dict[str, Any] = {}
    _WHAT = "settings"

    def __post_init__(self) -> None:
        from dataclasses import fields

        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, self._CHECKS[f.name](getattr(self, f.name)))

    @classmethod
    def from_dict(cls, settings: Any = None) -> Any:
        """Settings by name; None values mean "the default"."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls._CHECKS))
        if unknown:
            raise EstimationError(f"unknown {cls._WHAT} setting(s) {', '.join(unknown)}; valid: {', '.join(cls._CHECKS)}")
        return cls(**{k: v for k, v in settings.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)  # type: ignore[call-overload]
