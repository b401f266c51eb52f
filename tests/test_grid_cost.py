"""The grid-cost benchmark's scheduling arithmetic (its timings are benchmarks, not tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("grid_cost", Path(__file__).resolve().parents[1] / "benchmarks" /
                                               "grid_cost.py")
grid_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grid_cost)


def test_makespan_hands_each_run_in_order_to_the_first_free_device():
    assert grid_cost.makespan([1.0] * 8, 1) == 8.0
    assert grid_cost.makespan([1.0] * 8, 4) == 2.0
    assert grid_cost.makespan([1.0] * 8, 16) == 1.0  # more devices than runs: the longest run
    # In order: 2 | 3, then 2 onto the first free (at 2), 3 onto the one free at 3, 2 onto the one free at 4.
    assert grid_cost.makespan([2.0, 3.0, 2.0, 3.0, 2.0], 2) == 6.0
    assert grid_cost.makespan([1.0, 1.0, 4.0], 2) == 5.0  # a long run last is not moved forward


def test_run_hours_counts_training_and_test_images_at_the_models_rate():
    # One model at 100 training images/s; a test image costs a third of a training image's FLOPs.
    hours = grid_cost.run_hours({"m": 100.0}, {"m": (3.0, 1.0)}, datasets=2, sizes=[500, 1000], epochs=10,
                                n_test=300)
    per_run = [10 * (n + 300 / 3) / 100 / 3600 for n in (500, 1000)]
    assert hours == pytest.approx(per_run * 2)  # dataset by dataset, each with every N
