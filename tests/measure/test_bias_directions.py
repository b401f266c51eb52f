"""The README says kNN estimators are biased in both directions; this is the test of that sentence."""

import numpy as np

from intrinsics.data import load
from intrinsics.measure import MLE


def test_mle_underestimates_a_high_dimensional_gaussian():
    X = np.random.default_rng(0).normal(size=(2000, 30))
    assert MLE(n_bootstrap=0).fit(X).dimension_ < 0.8 * 30


def test_mle_overestimates_the_waves_manifold_at_d_8_and_12():
    for d in (8, 12):
        ds = load(f"synthetic:manifold?n=2000&d={d}&size=32&kind=waves&seed=0")
        assert MLE(n_bootstrap=0).fit(ds).dimension_ > 1.1 * d
