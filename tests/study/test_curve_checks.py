"""The report flags learning curves that rise with N beyond their seed spread and epoch swing."""

import numpy as np


def test_learning_curves_that_rise_with_n_are_flagged_by_name():
    from intrinsics.study.fits import check_learning_curves

    rows = []
    for i, N in enumerate((100, 200, 400)):
        for s in (0, 1):
            flat = [0.5, 0.49, 0.5, 0.49, 0.5]  # small swing
            rows.append({"dataset": "good", "model": "m", "N": N, "seed": s, "test_loss": 1.0 / (i + 1) + 0.01 * s,
                         "curves": {"test_loss": flat}})
            rows.append({"dataset": "bad", "model": "m", "N": N, "seed": s, "test_loss": 0.2 + 0.3 * i + 0.01 * s,
                         "curves": {"test_loss": flat}})
    checks = check_learning_curves(rows)
    assert not checks["good/m"]["rises_with_N"] and checks["bad/m"]["rises_with_N"]
    (first, *_), cell = checks["bad/m"]["rises"], checks["bad/m"]["cells"][0]
    assert (first["from_N"], first["to_N"]) == (100, 200) and abs(first["rise"] - 0.3) < 1e-12
    assert abs(cell["seed_sd"] - np.std([0.2, 0.21], ddof=1)) < 1e-12 and abs(cell["swing"] - np.std(flat)) < 1e-12
    # A rise smaller than the swing is not flagged.
    noisy = [dict(r, curves={"test_loss": [0.1, 0.9, 0.1, 0.9, 0.1]}) for r in rows if r["dataset"] == "bad"]
    assert not check_learning_curves(noisy)["bad/m"]["rises_with_N"]
