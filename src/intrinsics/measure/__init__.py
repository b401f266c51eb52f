"""Measurement layer: nearest neighbours, intrinsic dimension (d_data, d_repr) and label sharpness (K_F)."""

from ._device import resolve as engine_device
from .dimension import ESTIMATORS, MLE, TwoNN, by_estimator, intrinsic_dimension, k_sweep, shared_graph
from .neighbors import DuplicateReport, NeighborGraph, find_duplicates, kneighbors, nearest_other_label
from .results import ClosestPair, Estimate, KSweep, SharpnessEstimate
from .sharpness import LabelSharpness, label_conflicts, label_sharpness

__all__ = [
    "ESTIMATORS",
    "MLE",
    "TwoNN",
    "intrinsic_dimension",
    "by_estimator",
    "shared_graph",
    "k_sweep",
    "DuplicateReport",
    "NeighborGraph",
    "find_duplicates",
    "kneighbors",
    "engine_device",
    "nearest_other_label",
    "ClosestPair",
    "Estimate",
    "KSweep",
    "SharpnessEstimate",
    "LabelSharpness",
    "label_conflicts",
    "label_sharpness",
]
