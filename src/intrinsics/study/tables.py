"""The table of a study's runs, read from its :class:`~intrinsics.study.store.Store`.

One row per finished run, joined with its dataset's d_data and K_F: the input of every fit in
:mod:`intrinsics.study.fits`, of the report's figures and of planning from a pilot.
"""

from __future__ import annotations

from typing import Any

from .fits._common import _finite

__all__ = ["study_table"]


def study_table(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Join a store's finished runs with their dataset's d_data and K_F (and the run's d_repr).

    Returns
    -------
    (table, datasets)
        ``table``: one dict per done run (the keys :mod:`intrinsics.study.fits` reads, plus
        ``robustness_drop`` = clean − attacked accuracy at the first FGSM ε and
        ``robustness_drop_loss`` = attacked − clean loss). ``datasets``: one dict per measured dataset
        with d_data and K_F values, intervals and details.
    """
    meas: dict[tuple[str, str], dict[str, Any]] = {}
    d_repr: dict[str, float] = {}
    for m in store.measurements():
        if m["quantity"] == "d_repr":
            key = m["details"].get("run_key") or m["run_key"].split("#")[0]
            d_repr.setdefault(key, m["value"])
        else:
            meas[(m["dataset"], m["quantity"])] = m
    table = []
    for r in store.runs("done"):
        row: dict[str, Any] = {k: r[k] for k in ("run_key", "dataset", "domain", "model", "N", "seed",
                                                 "test_loss", "test_acc", "train_loss", "train_acc")}
        dd, kf = meas.get((r["dataset"], "d_data")), meas.get((r["dataset"], "K_F"))
        row["d_data"] = dd["value"] if dd else None
        row["K_F"] = kf["value"] if kf else None
        row["d_repr"] = d_repr.get(r["run_key"])
        fgsm = (r.get("attacks") or {}).get("fgsm") or []
        if fgsm:  # the smallest ε: rows in the one attack shape (intrinsics.learn.pipeline)
            att = min(fgsm, key=lambda a: a["eps"])
            for key, col in (("accuracy_drop", "robustness_drop"), ("loss_increase", "robustness_drop_loss")):
                if _finite(att.get(key)):
                    row[col] = float(att[key])
            row["fgsm_eps"] = float(att["eps"])
        row["curves"] = r.get("curves")
        table.append(row)
    spec = store.get_meta("spec") or {}
    domain_of = {d["name"]: d["domain"] for d in spec.get("datasets", [])}
    datasets = []
    for name in sorted({k[0] for k in meas}):
        dd, kf = meas.get((name, "d_data")), meas.get((name, "K_F"))
        datasets.append({
            "dataset": name,
            "domain": domain_of.get(name) or next((r["domain"] for r in table if r["dataset"] == name), None),
            "d_data": dd["value"] if dd else None,
            "d_data_ci95": [dd["ci_lo"], dd["ci_hi"]] if dd else None,
            "K_F": kf["value"] if kf else None,
            "K_F_ci95": [kf["ci_lo"], kf["ci_hi"]] if kf else None,
            "d_data_details": dd["details"] if dd else {},
            "K_F_details": kf["details"] if kf else {},
        })
    return table, datasets
