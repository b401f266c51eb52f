"""Small frozen result records: a value, its uncertainty and how it was computed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


from ..jsonio import dumps, to_jsonable

__all__ = ["Estimate", "KSweep", "ClosestPair", "SharpnessEstimate"]


@dataclass(frozen=True)
class Estimate:
    """An intrinsic-dimension estimate (``d_data`` or ``d_repr``).

    Attributes
    ----------
    value : float
        The estimate.
    ci95 : (float, float) or None
        95% bootstrap percentile interval over points; None when no bootstrap was run
        (``n_bootstrap=0``; JSON ``null``).
    estimator : str
        ``"mle"`` or ``"twonn"``.
    k : int or None
        Neighbours used (None for TwoNN, which uses two).
    n_samples : int
        Distinct points the estimate is based on (after duplicate and tie removal).
    params : dict
        Everything else that defines the number (normaliser, averaging, method, bootstrap, seed,
        ``duplicates_removed``, ``ties_dropped``).
    warnings : tuple of str
        What the user should know (duplicates removed, tied neighbour distances, ...).
    preprocessing : dict or None
        The dataset's preprocessing when it was measured from an ImageSet.
    """

    value: float
    ci95: tuple[float, float] | None
    estimator: str
    k: int | None
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    preprocessing: dict[str, Any] | None = None

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON text (the encoder of every file the toolkit writes)."""
        return dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        ci = f" [{self.ci95[0]:.2f}, {self.ci95[1]:.2f}]" if self.ci95 is not None else ""
        return f"{self.value:.2f}{ci} ({self.estimator}{k}, n={self.n_samples})"

    def __repr__(self) -> str:
        ci = "None" if self.ci95 is None else f"({self.ci95[0]:.4g}, {self.ci95[1]:.4g})"
        return (f"Estimate(value={self.value:.4g}, ci95={ci}, estimator={self.estimator!r}, k={self.k}, "
                f"n_samples={self.n_samples})")


@dataclass(frozen=True)
class KSweep:
    """MLE estimate as a function of k, all from one neighbour graph."""

    ks: tuple[int, ...]
    values: tuple[float, ...]
    normalizer: str
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class ClosestPair:
    """Two differently-labelled images and their distance: candidates for label errors or near-duplicates."""

    i: int
    j: int
    distance: float
    label_i: int
    label_j: int

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class SharpnessEstimate:
    """Label sharpness ``K_F`` = max |y_j − y_k| / ‖x_j − x_k‖.

    Attributes
    ----------
    value : float
        The reference estimator, max over all pairs among ``M`` randomly drawn images: the median over
        ``n_draws`` independent draws (``params["first_draw"]`` holds the single first draw). Equals
        ``exact`` when ``M`` covers the dataset.
    ci95 : (float, float)
        2.5/97.5 percentiles of the estimator over ``n_draws`` independent draws of ``M`` images.
    exact : float or None
        Exact full-dataset value, 1 / (smallest distance between two images of different labels).
    M : int
        Images per draw.
    pairs : int
        Pairs compared in one draw, M·(M−1)/2.
    label_mode : str
        ``"binary"`` (|y_j − y_k| on labels {0, 1}) or ``"multiclass"`` (1[y_j ≠ y_k]); both are 1 for
        a pair with different labels and 0 otherwise.
    closest_pairs : tuple of ClosestPair
        The closest differently-labelled pairs of the dataset (input indices), nearest first.
    label_conflicts : tuple of tuple of int
        Groups of identical images carrying different labels (K_F would be infinite); excluded.
    n_samples : int
        Images the exact value is computed on (after excluding conflicts).
    params : dict
        n_draws, seed and other settings.
    warnings : tuple of str
    preprocessing : dict or None
    """

    value: float
    ci95: tuple[float, float]
    exact: float | None
    M: int
    pairs: int
    label_mode: str
    closest_pairs: tuple[ClosestPair, ...] = ()
    label_conflicts: tuple[tuple[int, ...], ...] = ()
    n_samples: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    preprocessing: dict[str, Any] | None = None

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON text (the encoder of every file the toolkit writes)."""
        return dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        ci = "None" if self.ci95 is None else f"({self.ci95[0]:.4g}, {self.ci95[1]:.4g})"
        exact = "None" if self.exact is None else f"{self.exact:.4g}"
        return (f"SharpnessEstimate(value={self.value:.4g}, ci95={ci}, exact={exact}, M={self.M}, "
                f"pairs={self.pairs}, closest_pairs=<{len(self.closest_pairs)}>)")
