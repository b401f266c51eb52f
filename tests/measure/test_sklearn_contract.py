"""The estimators follow scikit-learn's estimator contract: parameters, cloning, repr, and the subset of
scikit-learn's own estimator checks that applies to estimators with ``fit`` and fitted attributes only
(no ``predict``/``transform``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks

from intrinsics.measure import MLE, LabelSharpness, TwoNN

# The checks that apply to an estimator without predict/transform/score. Those left out test methods these
# estimators do not have (predict, transform, score, partial_fit, sample weights, classifiers' labels).
CHECKS = [
    "check_estimator_cloneable", "check_estimator_repr", "check_no_attributes_set_in_init",
    "check_parameters_default_constructible", "check_get_params_invariance", "check_set_params",
    "check_estimators_overwrite_params", "check_dont_overwrite_parameters", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_estimators_fit_returns_self", "check_estimators_pickle",
    "check_estimators_unfitted", "check_n_features_in", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_fit1d", "check_estimators_nan_inf", "check_estimators_dtypes", "check_complex_data",
    "check_dtype_object", "check_requires_y_none", "check_mixin_order", "check_methods_subset_invariance",
    "check_fit2d_predict1d",
]


@pytest.mark.parametrize("estimator", [MLE(k=3, n_bootstrap=5), TwoNN(n_bootstrap=5)], ids=["MLE", "TwoNN"])
@pytest.mark.parametrize("check", CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    # scikit-learn's checks use 10-30 samples: MLE's k is set to 3 so that they can be fitted at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(estimator_checks, check)(type(estimator).__name__, clone(estimator))


def test_params_clone_and_repr():
    est = LabelSharpness(500, pairs="aligned", n_draws=5)
    assert repr(est) == "LabelSharpness(n_draws=5, n_samples=500, pairs='aligned')"
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert repr(MLE(k=10)) == "MLE(k=10)" and MLE().set_params(k=7).k == 7
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    fitted = clone(est).fit(X, y)
    assert fitted.n_features_in_ == 4 and not hasattr(clone(fitted), "estimate_")  # clone drops the fit
