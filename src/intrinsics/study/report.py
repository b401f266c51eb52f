"""The study report: ``fits.json`` (every fitted number), figures (PNG + SVG) and one self-contained HTML page.

The page opens with the method's three claims, each with its numbers, intervals and a plain verdict
(``supported``, ``not supported``, ``inconclusive`` or ``not enough runs``), then the figures and a
table of every dataset's d_data and K_F with the closest differently-labelled image pairs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonio import write_json
from .runner import open_store
from .scaling import fit_study, study_table

__all__ = ["compute_fits", "write_fits", "write_report", "claims", "FIGURES"]

FIGURES = ("loss_vs_d_data", "kf_per_dataset", "robustness_vs_kf", "repr_vs_data", "learning_curves", "kf_law")
_DOMAIN_COLOURS = {"natural": "#1f77b4", "medical": "#d62728"}


def _colour(domain: str | None) -> str:
    return _DOMAIN_COLOURS.get(domain or "", "#2ca02c")


def compute_fits(out_dir: str | os.PathLike[str], *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Fit everything on a study folder's finished runs; returns the ``fits.json`` dict."""
    with open_store(out_dir) as store:
        table, datasets = study_table(store)
        spec = store.get_meta("spec") or {}
        counts = store.counts()
        code = store.get_meta("code_version")
    fits = fit_study(table, n_bootstrap=n_bootstrap, seed=seed, datasets=datasets).to_dict()
    fits["claims"] = claims(fits)
    fits["meta"] = {
        "study": spec.get("name"),
        "preprocessing": spec.get("preprocessing"),
        "measure": spec.get("measure"),
        "runs": counts,
        "n_bootstrap": n_bootstrap,
        "code_version": code,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return fits


def write_fits(out_dir: str | os.PathLike[str], *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Compute the fits and write ``DIR/fits.json``; returns the dict."""
    fits = compute_fits(out_dir, n_bootstrap=n_bootstrap, seed=seed)
    write_json(Path(out_dir, "fits.json"), fits, indent=1)
    return fits


# -- verdicts ---------------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 3) -> str:
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
    """The method's claims checked against the fits: each with a verdict and the numbers behind it."""
    out = []
    # Claim 1: log test loss grows with d_data, and faster in the medical domain.
    lines = fits.get("loss_vs_d_data", {})
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
    nat, med = lines.get("natural"), lines.get("medical")
    if nat and med and nat["slope_ci95"] and med["slope_ci95"]:
        if med["slope_ci95"][0] > nat["slope_ci95"][1]:
            steeper = "supported"
        elif med["slope_ci95"][1] < nat["slope_ci95"][0]:
            steeper = "not supported"
        else:
            steeper = "inconclusive"
        parts.append(f"medical steeper than natural: {steeper} (intervals "
                     f"{'overlap' if steeper == 'inconclusive' else 'do not overlap'})")
    out.append({
        "claim": "Test loss grows with d_data (log L roughly linear in d_data), faster for medical images",
        "verdict": _combine(verdicts + ([steeper] if steeper != "n/a" else [])),
        "evidence": parts,
    })
    # Claim 2: the K_F-aware law; K_F explains the domain gap.
    law = fits.get("kf_law", {})
    c, ci = law.get("coefficients") or {}, law.get("coefficients_ci95") or {}
    title = ("Test loss follows the K_F-aware law log L ≈ −(log N)/d_data + log K_F, and K_F explains the "
             "medical–natural gap")
    if c.get("beta_N") is None:
        out.append({"claim": title, "verdict": "not enough runs",
                    "evidence": [f"{law.get('status')}: {law.get('note', '')}"]})
    else:
        ev = [f"beta_N (coefficient of −log N / d_data) = {_fmt(c['beta_N'])}, 95% CI {_fmt(ci.get('beta_N'))}; "
              "the law predicts a positive coefficient (≈ 1 as an upper bound)",
              f"beta_K (coefficient of log K_F) = {_fmt(c['beta_K'])}, 95% CI {_fmt(ci.get('beta_K'))}; "
              "the law predicts a positive coefficient (≈ 1)",
              f"R² {_fmt(law.get('r2'), 2)} over {law['n_points']} runs on {law['n_datasets']} datasets"]
        sign_map = {1: "supported", 0: "inconclusive", -1: "not supported", None: "not enough runs"}
        v = [sign_map[_sign(ci.get("beta_N"))], sign_map[_sign(ci.get("beta_K"))]]
        if law.get("gap") is not None:
            ev.append(f"domain gap in log loss at equal N and d_data: {_fmt(law['gap'])}, CI {_fmt(law.get('gap_ci95'))}")
            gap_sign = _sign(law.get("gap_ci95"))
            if gap_sign == 1:
                share_ci = law.get("share_explained_ci95")
                ev.append(f"K_F accounts for {_fmt(law.get('gap_predicted'))} of it (share "
                          f"{_fmt(law.get('share_explained'))}, CI {_fmt(share_ci)}); left once K_F is in the "
                          f"model: {_fmt(law.get('gap_remaining'))}, CI {_fmt(law.get('gap_remaining_ci95'))}")
                v.append("supported" if share_ci and share_ci[0] > 0 else "inconclusive")
            else:
                ev.append("no medical–natural gap beyond N and d_data at this scale (its interval "
                          f"{'contains 0' if gap_sign == 0 else 'is negative'}), so there is no gap for K_F to explain")
                v.append("inconclusive" if gap_sign == 0 else "not supported")
        elif law.get("note"):
            ev.append(law["note"])
        out.append({"claim": title, "verdict": _combine(v), "evidence": ev})
    # Claim 3: robustness drop correlates positively with K_F.
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
    out.append({"claim": "Adversarial vulnerability (FGSM robustness drop) grows with K_F",
                "verdict": _combine(v) if v else "not enough runs", "evidence": ev or ["no attack results"]})
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
    out.append({"claim": "d_data is an approximate upper bound of d_repr", "verdict": verdict, "evidence": ev})
    return out


def _combine(verdicts: list[str]) -> str:
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


# -- figures ----------------------------------------------------------------------------------------------


def _legend(ax: Any, **kw: Any) -> None:
    """A legend only when something is labelled (an empty study has nothing to name)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)



def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#555")


def _fig_loss_vs_d(ax: Any, table: list[dict], fits: dict) -> None:
    pts = [r for r in table if r.get("d_data") and r.get("test_loss") and r["test_loss"] > 0]
    for dom in sorted({r["domain"] for r in pts}):
        sub = [r for r in pts if r["domain"] == dom]
        ax.scatter([r["d_data"] for r in sub], [math.log(r["test_loss"]) for r in sub], s=18, alpha=0.6,
                   color=_colour(dom), label=dom)
        f = fits["loss_vs_d_data"].get(dom, {})
        if f.get("slope") is not None:
            xs = np.linspace(min(r["d_data"] for r in sub), max(r["d_data"] for r in sub), 20)
            ci = f.get("slope_ci95")
            ax.plot(xs, f["intercept"] + f["slope"] * xs, color=_colour(dom),
                    label=f"{dom} fit: slope {f['slope']:.3g}" + (f" [{ci[0]:.2g}, {ci[1]:.2g}]" if ci else ""))
    if not pts:
        _no_data(ax, "no finished runs")
    ax.set_xlabel("d_data (MLE)")
    ax.set_ylabel("log test loss")
    ax.set_title("Test loss vs intrinsic dimension")
    _legend(ax, fontsize=7)


def _fig_kf(ax: Any, datasets: list[dict]) -> None:
    ds = [d for d in datasets if d.get("K_F")]
    if not ds:
        _no_data(ax, "no K_F measured")
        return
    ds = sorted(ds, key=lambda d: d["K_F"])
    y = np.arange(len(ds))
    vals = [d["K_F"] for d in ds]
    lo = [d["K_F"] - (d["K_F_ci95"][0] if d.get("K_F_ci95") and d["K_F_ci95"][0] is not None else d["K_F"]) for d in ds]
    hi = [(d["K_F_ci95"][1] if d.get("K_F_ci95") and d["K_F_ci95"][1] is not None else d["K_F"]) - d["K_F"] for d in ds]
    ax.barh(y, vals, xerr=[np.maximum(lo, 0), np.maximum(hi, 0)], color=[_colour(d["domain"]) for d in ds], alpha=0.8)
    ax.set_yticks(y, [d["dataset"] for d in ds], fontsize=7)
    ax.set_xlabel("K_F (sampled estimator, 95% interval over draws)")
    ax.set_title("Label sharpness per dataset")


def _fig_robust(ax: Any, table: list[dict], fits: dict) -> None:
    pts = [r for r in table if r.get("robustness_drop") is not None and r.get("K_F")]
    if not pts:
        _no_data(ax, "no attack results")
        return
    for dom in sorted({r["domain"] for r in pts}):
        sub = [r for r in pts if r["domain"] == dom]
        ax.scatter([r["K_F"] for r in sub], [r["robustness_drop"] for r in sub], s=14, alpha=0.35, color=_colour(dom))
        means: dict[str, list[float]] = {}
        for r in sub:
            means.setdefault(r["dataset"], []).append(r["robustness_drop"])
        kf = {r["dataset"]: r["K_F"] for r in sub}
        ax.scatter([kf[d] for d in means], [np.mean(v) for v in means.values()], s=60, marker="D",
                   color=_colour(dom), edgecolor="k", label=f"{dom} (dataset means)")
    f = fits.get("robustness", {}).get("robustness_drop", {}).get("datasets", {})
    if f.get("pearson_r") is not None:
        ax.set_title(f"FGSM accuracy drop vs K_F (datasets: r={f['pearson_r']:.2f}, p={f['pearson_p']:.2g})", fontsize=9)
    else:
        ax.set_title("FGSM accuracy drop vs K_F")
    ax.set_xlabel("K_F")
    ax.set_ylabel("clean − attacked accuracy")
    _legend(ax, fontsize=7)


def _fig_repr(ax: Any, table: list[dict]) -> None:
    pts = [r for r in table if r.get("d_repr") is not None and r.get("d_data")]
    if not pts:
        _no_data(ax, "no d_repr measured")
        return
    for dom in sorted({r["domain"] for r in pts}):
        sub = [r for r in pts if r["domain"] == dom]
        ax.scatter([r["d_data"] for r in sub], [r["d_repr"] for r in sub], s=16, alpha=0.6, color=_colour(dom), label=dom)
    top = max(max(r["d_data"] for r in pts), max(r["d_repr"] for r in pts)) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1, label="d_repr = d_data")
    ax.set_xlabel("d_data")
    ax.set_ylabel("d_repr (penultimate layer)")
    ax.set_title("Representation vs data dimension")
    _legend(ax, fontsize=7)


def _fig_curves(ax: Any, table: list[dict], fits: dict) -> None:
    groups: dict[str, dict[int, list[float]]] = {}
    dom = {}
    for r in table:
        if r.get("test_loss") and r["test_loss"] > 0:
            key = f"{r['dataset']}/{r['model']}"
            groups.setdefault(key, {}).setdefault(r["N"], []).append(r["test_loss"])
            dom[key] = r["domain"]
    if not groups:
        _no_data(ax, "no finished runs")
        return
    styles = ["-", "--", ":", "-."]
    for i, (key, byN) in enumerate(sorted(groups.items())):
        Ns = sorted(byN)
        ax.plot(Ns, [np.mean(byN[n]) for n in Ns], marker="o", ms=3, ls=styles[i % 4], color=_colour(dom[key]),
                label=key.split("/")[0])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (training images)")
    ax.set_ylabel("test loss (mean over seeds)")
    ax.set_title("Learning curves")
    _legend(ax, fontsize=6, ncol=2)


def _fig_law(ax: Any, table: list[dict], fits: dict) -> None:
    from .scaling import KFLaw

    law = fits.get("kf_law", {})
    c = law.get("coefficients") or {}
    pts = [r for r in table if r.get("K_F") and r.get("d_data") and r.get("test_loss") and r["test_loss"] > 0]
    if c.get("beta_N") is None or not pts:
        _no_data(ax, f"K_F law not fitted: {law.get('status', 'no runs')}")
        return
    fitted = KFLaw.from_dict(law)
    for d in sorted({r["domain"] for r in pts}):
        sub = [r for r in pts if r["domain"] == d]
        pred = [fitted.predict_log_loss(r["N"], r["d_data"], r["K_F"]) for r in sub]
        ax.scatter(pred, [math.log(r["test_loss"]) for r in sub], s=16, alpha=0.6, color=_colour(d), label=d)
    lims = ax.get_xlim()
    ax.plot(lims, lims, "k--", lw=1)
    ax.set_xlabel("log L predicted by the K_F law")
    ax.set_ylabel("log L observed")
    ax.set_title(f"K_F-aware law (R² = {law.get('r2', float('nan')):.2f})")
    _legend(ax, fontsize=7)


def _render_figures(out_dir: Path, table: list[dict], datasets: list[dict], fits: dict) -> dict[str, str]:
    """Draw each figure, save PNG and SVG under DIR/figures, return base64 PNGs for the page."""
    plt = _plt()
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    draw = {
        "loss_vs_d_data": lambda ax: _fig_loss_vs_d(ax, table, fits),
        "kf_per_dataset": lambda ax: _fig_kf(ax, datasets),
        "robustness_vs_kf": lambda ax: _fig_robust(ax, table, fits),
        "repr_vs_data": lambda ax: _fig_repr(ax, table),
        "learning_curves": lambda ax: _fig_curves(ax, table, fits),
        "kf_law": lambda ax: _fig_law(ax, table, fits),
    }
    encoded = {}
    for name in FIGURES:
        fig, ax = plt.subplots(figsize=(5.6, 4.0), dpi=110)
        draw[name](ax)
        fig.tight_layout()
        fig.savefig(fig_dir / f"{name}.png")
        fig.savefig(fig_dir / f"{name}.svg")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        encoded[name] = base64.b64encode(buf.getvalue()).decode("ascii")
    return encoded


# -- HTML -------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.claim{border-left:5px solid #999;padding:.4em .8em;margin:.8em 0;background:#fafafa}
.claim.supported{border-color:#2a9d2a}.claim.notsupported,.claim.mixed{border-color:#d62728}
.claim.inconclusive,.claim.partlysupported{border-color:#e8a33c}.claim.notenoughruns{border-color:#999}
.verdict{font-weight:bold;text-transform:uppercase;font-size:.85em}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1em}
.figs img{width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.85em;width:100%}th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.pair img{height:48px;image-rendering:pixelated;display:block}
.small{color:#666;font-size:.85em}code{background:#f3f3f3;padding:0 .2em}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _pair_cell(out_dir: Path, pairs: list[dict]) -> str:
    cells = []
    for p in pairs:
        path = out_dir / p["image"]
        if not path.exists():
            continue
        b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        cells.append(f'<div class="pair"><img alt="closest pair" src="data:image/png;base64,{b64}">'
                     f'<span class="small">{_esc(p["label_i"])} vs {_esc(p["label_j"])}, '
                     f'distance {p["distance"]:.3g}</span></div>')
    return "".join(cells) or '<span class="small">none</span>'


def _dataset_rows(out_dir: Path, datasets: list[dict]) -> str:
    rows = []
    for d in datasets:
        kd = d.get("K_F_details") or {}
        dd = d.get("d_data_details") or {}
        rows.append(
            "<tr>"
            f"<td>{_esc(d['dataset'])}<br><span class='small'>{_esc(kd.get('source', ''))}</span></td>"
            f"<td>{_esc(d.get('domain'))}</td>"
            f"<td>{_fmt(d.get('d_data'))}<br><span class='small'>CI {_fmt(d.get('d_data_ci95'))}, "
            f"{_esc(dd.get('estimator', ''))} k={_esc(dd.get('k', ''))}, n={_esc(dd.get('n_samples', ''))}</span></td>"
            f"<td>{_fmt(d.get('K_F'))}<br><span class='small'>CI {_fmt(d.get('K_F_ci95'))}, M={_esc(kd.get('M', ''))}; "
            f"exact {_fmt(kd.get('exact'))}</span></td>"
            f"<td>{_pair_cell(out_dir, kd.get('closest_pair_images') or [])}</td>"
            "</tr>"
        )
    return "\n".join(rows)


def _curve_rows(fits: dict) -> str:
    rows = []
    for key, f in sorted(fits.get("learning_curves", {}).items()):
        rows.append(
            f"<tr><td>{_esc(key)}</td><td>{_fmt(f.get('b'))}</td><td>{_fmt(f.get('b_ci95'))}</td>"
            f"<td>{_fmt(f.get('inv_d_data'))}</td><td>{_fmt(f.get('b_times_d'))}</td>"
            f"<td>{_esc(f.get('method'))}</td><td>{_esc(f.get('status'))}"
            + (f"<br><span class='small'>{_esc(f['note'])}</span>" if f.get("note") else "") + "</td></tr>"
        )
    return "\n".join(rows)


def write_report(
    out_dir: str | os.PathLike[str], *, n_bootstrap: int = 1000, seed: int = 0, fits: dict[str, Any] | None = None
) -> Path:
    """Write ``DIR/fits.json``, ``DIR/figures/*.png|svg`` and ``DIR/report.html``; return the HTML path."""
    out = Path(out_dir)
    if fits is None:
        fits = write_fits(out, n_bootstrap=n_bootstrap, seed=seed)
    with open_store(out) as store:
        table, datasets = study_table(store)
    figs = _render_figures(out, table, datasets, fits)
    meta = fits.get("meta", {})
    runs = meta.get("runs", {})
    claim_html = "\n".join(
        f'<div class="claim {c["verdict"].replace(" ", "")}"><div class="verdict">{_esc(c["verdict"])}</div>'
        f'<b>{_esc(c["claim"])}</b><ul>' + "".join(f"<li>{_esc(e)}</li>" for e in c["evidence"]) + "</ul></div>"
        for c in fits["claims"]
    )
    fig_html = "\n".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{b64}"><figcaption class="small">'
        f'{name} (also figures/{name}.png and .svg)</figcaption></figure>'
        for name, b64 in figs.items()
    )
    pre = meta.get("preprocessing") or {}
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>intrinsics study report: {_esc(meta.get('study'))}</title>
<style>{_CSS}</style></head><body>
<h1>Study report: {_esc(meta.get('study'))}</h1>
<p class="small">{runs.get('done', 0)} of {runs.get('total', 0)} runs done ({runs.get('failed', 0)} failed) on
{fits.get('n_datasets', 0)} datasets; shared preprocessing <code>{_esc(json.dumps(pre))}</code> (K_F values are
only comparable under it); {meta.get('n_bootstrap')} bootstrap resamples; code {_esc(meta.get('code_version'))};
generated {_esc(meta.get('generated'))}. Every number on this page is in <code>fits.json</code>.</p>
<h2>The method's claims on this study</h2>
<p class="small">Verdicts come from 95% intervals: "supported" when the interval lies on the predicted side,
"inconclusive" when it contains no effect, "not enough runs" when the data cannot support a fit. At the scale
of a small study many claims are honestly inconclusive.</p>
{claim_html}
<h2>Figures</h2>
<div class="figs">{fig_html}</div>
<h2>Datasets</h2>
<table><tr><th>dataset</th><th>domain</th><th>d_data</th><th>K_F</th><th>closest differently-labelled pairs
(what defines K_F; often label errors or near-duplicates)</th></tr>
{_dataset_rows(out, datasets)}
</table>
<h2>Learning curves: L(N) = a·N<sup>−b</sup> + c</h2>
<table><tr><th>dataset/model</th><th>b</th><th>95% CI</th><th>1/d_data</th><th>b·d_data</th><th>method</th><th>status</th></tr>
{_curve_rows(fits)}
</table>
<p class="small">The covering law predicts b ≈ 1/d_data (b·d_data ≈ 1); scaling theory for regression
suggests ≈ 4/d_data. Exponent vs 1/d_data across datasets: slope {_fmt(fits['exponent_vs_inv_d'].get('slope'))},
CI {_fmt(fits['exponent_vs_inv_d'].get('slope_ci95'))} ({_esc(fits['exponent_vs_inv_d'].get('status'))}).</p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
