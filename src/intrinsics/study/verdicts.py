"""The method's claims checked against a study's fits, each with a plain verdict and its evidence.

A verdict comes from 95% intervals: ``supported`` when the interval lies on the predicted side,
``inconclusive`` when it contains no effect, ``not supported`` when it lies on the other side, and
``not enough runs`` when the data cannot support the fit; :func:`_combine` merges the verdicts of a
claim's parts. The claims are those of method.md §3-§5, one function each.
"""

from __future__ import annotations

from typing import Any

__all__ = ["claims"]


def _fmt(v: Any, digits: int = 3) -> str:
    """A number, interval or missing value as the evidence and the report page print it."""
    if v is None:
        return "n/a"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x, digits) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _sign(ci: Any) -> int | None:
    """+1 / -1 when a 95% interval excludes 0 on that side, 0 when it contains 0, None without one."""
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return 1 if ci[0] > 0 else (-1 if ci[1] < 0 else 0)


def claims(fits: dict[str, Any]) -> list[dict[str, Any]]:
    """The method's claims checked against the fits: each with a verdict and the numbers behind it.

    Parameters
    ----------
    fits : dict
        A study's fits, as :meth:`intrinsics.study.fits.StudyFits.to_dict` gives them (``fits.json``).

    Returns
    -------
    list of dict
        One per claim, in the method's order, with keys ``claim`` (the claim in words), ``verdict``
        and ``evidence`` (the numbers behind the verdict, as sentences).
    """
    return [
        _loss_grows_with_d_data(fits),
        _loss_follows_kf_law(fits),
        _vulnerability_grows_with_kf(fits),
        _d_data_bounds_d_repr(fits),
    ]


def _pair(fits: dict[str, Any]) -> tuple[str, str]:
    """(reference domain, sharp domain) the fits compare; the reference study's names by default."""
    d = fits.get("domains") or {}
    return d.get("reference") or "natural", d.get("sharp") or "medical"


def _loss_grows_with_d_data(fits: dict[str, Any]) -> dict[str, Any]:
    """Claim 1: log test loss grows with d_data, and faster in the sharper (medical) domain."""
    lines = fits.get("loss_vs_d_data", {})
    ref, sharp = _pair(fits)
    parts, verdicts = [], []
    for dom, f in sorted(lines.items()):
        if f["slope"] is None or f["slope_ci95"] is None:
            parts.append(f"{dom}: {f['status']} ({f.get('note', '')})")
            verdicts.append("not enough runs")
            continue
        s = _sign(f["slope_ci95"])
        verdicts.append({1: "supported", 0: "inconclusive", -1: "not supported"}[s])
        parts.append(f"{dom}: slope {_fmt(f['slope'])} per unit d_data, 95% CI {_fmt(f['slope_ci95'])}, "
                     f"R² {_fmt(f['r2'], 2)}, {f['n_points']} runs on {f['n_x']} d_data values")
    steeper = "n/a"
    nat, med = lines.get(ref), lines.get(sharp)
    if nat and med and nat["slope_ci95"] and med["slope_ci95"]:
        if med["slope_ci95"][0] > nat["slope_ci95"][1]:
            steeper = "supported"
        elif med["slope_ci95"][1] < nat["slope_ci95"][0]:
            steeper = "not supported"
        else:
            steeper = "inconclusive"
        parts.append(f"{sharp} steeper than {ref}: {steeper} (intervals "
                     f"{'overlap' if steeper == 'inconclusive' else 'do not overlap'})")
    if (fits.get("domains") or {}).get("rule"):
        d = fits["domains"]
        parts.append(f"domains compared: {sharp!r} against {ref!r} ({d['rule']})" if d.get("reference")
                     else f"no domains compared: {d['rule']}")
    return {
        "claim": f"Test loss grows with d_data (log L roughly linear in d_data), faster for {sharp} images",
        "verdict": _combine(verdicts + ([steeper] if steeper != "n/a" else [])),
        "evidence": parts,
    }


def _loss_follows_kf_law(fits: dict[str, Any]) -> dict[str, Any]:
    """Claim 2: the K_F-aware law holds (positive beta_N and beta_K), and K_F explains the domain gap."""
    law = fits.get("kf_law", {})
    c, ci = law.get("coefficients") or {}, law.get("coefficients_ci95") or {}
    ref, sharp = _pair(fits)
    title = ("Test loss follows the K_F-aware law log L ≈ −(log N)/d_data + log K_F, and K_F explains the "
             f"{sharp}–{ref} gap")
    if c.get("beta_N") is None:
        return {"claim": title, "verdict": "not enough runs",
                "evidence": [f"{law.get('status')}: {law.get('note', '')}"]}
    ev = [f"beta_N (coefficient of −log N / d_data) = {_fmt(c['beta_N'])}, 95% CI {_fmt(ci.get('beta_N'))}; "
          "the law predicts a positive coefficient (≈ 1 as an upper bound)",
          f"beta_K (coefficient of log K_F) = {_fmt(c['beta_K'])}, 95% CI {_fmt(ci.get('beta_K'))}; "
          "the law predicts a positive coefficient (≈ 1)",
          f"R² {_fmt(law.get('r2'), 2)} over {law['n_points']} runs on {law['n_datasets']} datasets"]
    sign_map = {1: "supported", 0: "inconclusive", -1: "not supported", None: "not enough runs"}
    v = [sign_map[_sign(ci.get("beta_N"))], sign_map[_sign(ci.get("beta_K"))]]
    if law.get("gap") is not None:
        gap_evidence, gap_verdict = _kf_explains_gap(law, ref, sharp)
        ev.extend(gap_evidence)
        v.append(gap_verdict)
    elif law.get("note"):
        ev.append(law["note"])
    return {"claim": title, "verdict": _combine(v), "evidence": ev}


def _kf_explains_gap(law: dict[str, Any], ref: str, sharp: str) -> tuple[list[str], str]:
    """Claim 2's second part, for a law fitted with a domain gap: the evidence and the verdict."""
    ev = [f"domain gap in log loss at equal N and d_data: {_fmt(law['gap'])}, CI {_fmt(law.get('gap_ci95'))}"]
    gap_sign = _sign(law.get("gap_ci95"))
    if gap_sign == 1:
        share_ci = law.get("share_explained_ci95")
        ev.append(f"K_F accounts for {_fmt(law.get('gap_predicted'))} of it (share "
                  f"{_fmt(law.get('share_explained'))}, CI {_fmt(share_ci)}); left once K_F is in the "
                  f"model: {_fmt(law.get('gap_remaining'))}, CI {_fmt(law.get('gap_remaining_ci95'))}")
        return ev, "supported" if share_ci and share_ci[0] > 0 else "inconclusive"
    ev.append(f"no {sharp}–{ref} gap beyond N and d_data at this scale (its interval "
              f"{'contains 0' if gap_sign == 0 else 'is negative'}), so there is no gap for K_F to explain")
    return ev, "inconclusive" if gap_sign == 0 else "not supported"


def _vulnerability_grows_with_kf(fits: dict[str, Any]) -> dict[str, Any]:
    """Claim 3: the adversarial robustness drop correlates positively with K_F (over datasets)."""
    rob = fits.get("robustness", {})
    ev, v = [], []
    for metric, label in (("robustness_drop", "accuracy drop"), ("robustness_drop_loss", "loss increase")):
        if metric not in rob:
            continue
        for level in ("datasets", "runs"):
            f = rob[metric][level]
            if f["pearson_r"] is None:
                ev.append(f"{label} vs K_F over {level}: {f['status']}")
                if level == "datasets":
                    v.append("not enough runs")
                continue
            ev.append(f"{label} vs K_F over {f['n_points']} {level}: Pearson r {_fmt(f['pearson_r'], 2)} "
                      f"(p {_fmt(f['pearson_p'], 2)}, CI {_fmt(f['pearson_ci95'], 2)}), Spearman ρ "
                      f"{_fmt(f['spearman_r'], 2)} (p {_fmt(f['spearman_p'], 2)}, bootstrap CI "
                      f"{_fmt(f['spearman_boot_ci95'], 2)})")
            if level == "datasets" and metric == "robustness_drop":
                # Supported only when both the linear and the rank correlation are significant.
                sig = [p is not None and p < 0.05 for p in (f["pearson_p"], f["spearman_p"])]
                sign = "supported" if f["pearson_r"] > 0 else "not supported"
                v.append(sign if all(sig) else ("partly supported" if sign == "supported" and any(sig)
                                                else "inconclusive"))
    return {"claim": "Adversarial vulnerability (FGSM robustness drop) grows with K_F",
            "verdict": _combine(v) if v else "not enough runs", "evidence": ev or ["no attack results"]}


def _d_data_bounds_d_repr(fits: dict[str, Any]) -> dict[str, Any]:
    """Claim 4: d_data is an approximate upper bound of d_repr (and the law holds with d_repr too)."""
    rep = fits.get("repr_vs_data", {})
    line = rep.get("line") or {}
    ev = [f"{rep.get('n_runs', 0)} runs; d_repr < d_data in {_fmt(100 * rep['share_below'], 3)}% of them"
          if rep.get("share_below") is not None else "no d_repr measured"]
    if line.get("slope") is not None:
        ev.append(f"d_repr vs d_data slope {_fmt(line['slope'])}, CI {_fmt(line.get('slope_ci95'))}")
    law_r = fits.get("kf_law_repr") or {}
    cr, cir = law_r.get("coefficients") or {}, law_r.get("coefficients_ci95") or {}
    if cr.get("beta_N") is not None:
        r2_data = (fits.get("kf_law") or {}).get("r2")
        ev.append(f"the same law with d_repr in place of d_data: beta_N {_fmt(cr['beta_N'])}, CI "
                  f"{_fmt(cir.get('beta_N'))}; beta_K {_fmt(cr['beta_K'])}, CI {_fmt(cir.get('beta_K'))}; "
                  f"R² {_fmt(law_r.get('r2'), 2)} (with d_data: {_fmt(r2_data, 2)}) over {law_r['n_points']} runs")
    elif law_r:
        ev.append(f"the law with d_repr in place of d_data: {law_r.get('status')}")
    share, ci = rep.get("share_below"), rep.get("share_below_ci95")
    if share is None:
        verdict = "not enough runs"
    elif ci is None:
        verdict = "inconclusive"
    else:  # a bound holds in most runs: the share's interval lies above one half
        ev.append(f"share of runs with d_repr < d_data: 95% CI {_fmt(ci, 2)} (Clopper–Pearson; runs of one "
                  "dataset are not independent, so read it as optimistic)")
        verdict = "supported" if ci[0] > 0.5 else "not supported" if ci[1] < 0.5 else "inconclusive"
    return {"claim": "d_data is an approximate upper bound of d_repr", "verdict": verdict, "evidence": ev}


def _combine(verdicts: list[str]) -> str:
    """One verdict for a claim from its parts' (``mixed`` when some are supported and some not)."""
    if not verdicts:
        return "not enough runs"
    if all(v == "supported" for v in verdicts):
        return "supported"
    if all(v == "not enough runs" for v in verdicts):
        return "not enough runs"
    if any(v == "not supported" for v in verdicts):
        return "not supported" if not any(v == "supported" for v in verdicts) else "mixed"
    if any(v in ("supported", "partly supported") for v in verdicts):
        return "partly supported"
    return "inconclusive"
