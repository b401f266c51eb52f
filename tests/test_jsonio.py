"""The one JSON encoder: the same rules for every output."""

import json
import math
from pathlib import Path

import numpy as np
from intrinsics.jsonio import dumps, to_jsonable, write_json
from intrinsics.measure.results import Estimate
from intrinsics.study.fits import LineFit


def test_rules():
    obj = {1: (np.float32(0.5), np.int64(3)), "nan": math.nan, "inf": math.inf, "-inf": -np.inf,
           "arr": np.arange(70).reshape(7, 10), "set": {"b", "a"}, "path": Path("/x/y"), "none": None}
    out = to_jsonable(obj)
    assert out == {"1": [0.5, 3], "nan": None, "inf": "inf", "-inf": "-inf", "arr": np.arange(70).reshape(7, 10).tolist(),
                   "set": ["a", "b"], "path": "/x/y", "none": None}
    assert json.loads(dumps(obj)) == out  # strict JSON: no NaN / Infinity literals


def test_results_and_fits_use_the_same_rules():
    est = Estimate(value=math.inf, ci95=(math.nan, 2.0), estimator="mle", k=20, n_samples=5)
    assert est.to_dict()["value"] == "inf" and est.to_dict()["ci95"] == [None, 2.0]
    fit = LineFit(x="d_data", y="log L", slope=math.inf, slope_ci95=None, intercept=math.nan, intercept_ci95=None,
                  r2=None, n_points=3, n_x=1, status="ok")
    d = fit.to_dict()
    assert d["slope"] == "inf" and d["intercept"] is None


def test_write_json_is_atomic_and_strict(tmp_path):
    target = write_json(tmp_path / "sub" / "a.json", {"x": math.nan})
    assert json.loads(target.read_text()) == {"x": None}
    assert not list(target.parent.glob("*.tmp"))
