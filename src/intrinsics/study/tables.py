"""The table of a study's runs, read from its :class:`~intrinsics.study.store.Store`.

One row per finished run, joined with its dataset's d_data and K_F: the input of every fit in
:mod:`intrinsics.study.fits`, of the report's figures and of planning from a pilot. :func:`wide_table`
is the same table flat, one column per number, as ``study export`` writes it for pandas.
"""

from __future__ import annotations

from typing import Any

from .fits._common import _finite

__all__ = ["study_table", "wide_table", "WIDE_COLUMNS"]

# Result columns a run record may carry beyond the fixed ones (stores before validation-based
# selection have none of them); copied into the table only when the record has them.
_OPTIONAL_RUN_COLUMNS = ("test_loss_last", "test_acc_last", "val_loss", "best_val_epoch", "loss_at")

# The columns of the wide table, in order, with their Parquet types; every row has all of them (empty
# where a run does not carry the value). Scalar fields study_table adds later follow these.
WIDE_COLUMNS: dict[str, str] = {
    "run_key": "string", "dataset": "string", "domain": "string", "model": "string",
    "N": "int64", "seed": "int64",
    "test_loss": "float64", "test_acc": "float64", "test_loss_last": "float64", "test_acc_last": "float64",
    "val_loss": "float64", "best_val_epoch": "int64", "loss_at": "string",
    "train_loss": "float64", "train_acc": "float64",
    "d_data": "float64", "d_data_ci_lo": "float64", "d_data_ci_hi": "float64",
    "K_F": "float64", "K_F_ci_lo": "float64", "K_F_ci_hi": "float64",
    "d_repr": "float64",
    "d_data_mle": "float64", "d_data_twonn": "float64", "d_repr_mle": "float64", "d_repr_twonn": "float64",
    "fgsm_eps": "float64", "robustness_drop": "float64", "robustness_drop_loss": "float64",
}


def study_table(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Join a store's finished runs with their dataset's d_data and K_F (and the run's d_repr).

    Returns
    -------
    (table, datasets)
        ``table``: one dict per done run (the keys :mod:`intrinsics.study.fits` reads, plus
        ``robustness_drop`` = clean − attacked accuracy at the first FGSM ε and
        ``robustness_drop_loss`` = attacked − clean loss; and ``test_loss_last``, ``val_loss``, ... when
        the store's run records carry them). ``datasets``: one dict per measured dataset
        with d_data and K_F values, intervals and details.
    """
    meas: dict[tuple[str, str], dict[str, Any]] = {}
    d_repr: dict[str, float] = {}
    d_repr_by: dict[str, dict[str, Any]] = {}
    for m in store.measurements():
        if m["quantity"] == "d_repr":
            key = m["details"].get("run_key") or m["run_key"].split("#")[0]
            d_repr.setdefault(key, m["value"])
            d_repr_by.setdefault(key, m["details"].get("by_estimator") or {})
        else:
            meas[(m["dataset"], m["quantity"])] = m
    table = []
    for r in store.runs("done"):
        row: dict[str, Any] = {k: r[k] for k in ("run_key", "dataset", "domain", "model", "N", "seed",
                                                 "test_loss", "test_acc", "train_loss", "train_acc")}
        row.update({k: r[k] for k in _OPTIONAL_RUN_COLUMNS if k in r})
        dd, kf = meas.get((r["dataset"], "d_data")), meas.get((r["dataset"], "K_F"))
        row["d_data"] = dd["value"] if dd else None
        row["K_F"] = kf["value"] if kf else None
        row["d_repr"] = d_repr.get(r["run_key"])
        # Both by the same estimator, for each estimator (measured from one neighbour graph each).
        for est in ("mle", "twonn"):
            row[f"d_data_{est}"] = ((dd or {}).get("details") or {}).get("by_estimator", {}).get(est)
            row[f"d_repr_{est}"] = d_repr_by.get(r["run_key"], {}).get(est)
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


def wide_table(store: Any) -> list[dict[str, Any]]:
    """:func:`study_table` as one flat row per finished run, ready for ``pandas.DataFrame(rows)``.

    Each row has every column of :data:`WIDE_COLUMNS` (None where the run or its dataset lacks the
    value, e.g. ``val_loss`` for a run without a validation set), the d_data and K_F intervals as
    ``*_ci_lo`` / ``*_ci_hi``, then any other scalar field of the study table. ``test_loss`` is the
    loss the fits use. Nested fields (the per-epoch curves) stay in the long ``runs`` export.

    Examples
    --------
    >>> import pandas as pd                                          # doctest: +SKIP
    >>> df = pd.DataFrame(wide_table(store))                         # doctest: +SKIP
    >>> df.groupby(["dataset", "N"])["test_loss"].mean()             # doctest: +SKIP
    """
    table, datasets = study_table(store)
    ci = {}
    for d in datasets:
        lo_hi = {}
        for q in ("d_data", "K_F"):
            lo, hi = d[f"{q}_ci95"] or (None, None)
            lo_hi[f"{q}_ci_lo"], lo_hi[f"{q}_ci_hi"] = lo, hi
        ci[d["dataset"]] = lo_hi
    extra = [k for r in table for k, v in r.items() if k not in WIDE_COLUMNS and _scalar(v)]
    extra = [k for k in dict.fromkeys(extra) if all(_scalar(r.get(k)) for r in table)]
    rows = []
    for r in table:
        flat = {**r, **ci.get(r["dataset"], {})}
        rows.append({k: flat.get(k) for k in (*WIDE_COLUMNS, *extra)})
    return rows


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))
