"""The study report's figures: one matplotlib axis per view of the fits, saved as PNG and SVG.

:data:`FIGURES` names them in the order the page shows them; :func:`render_figures` draws them all.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from .fits import KFLaw

__all__ = ["FIGURES", "render_figures"]


FIGURES = ("loss_vs_d_data", "kf_per_dataset", "robustness_vs_kf", "repr_vs_data", "learning_curves", "kf_law")
_DOMAIN_COLOURS = {"natural": "#1f77b4", "medical": "#d62728"}


def _colour(domain: str | None) -> str:
    return _DOMAIN_COLOURS.get(domain or "", "#2ca02c")


def _legend(ax: Any, **kw: Any) -> None:
    """A legend only when something is labelled (an empty study has nothing to name)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _plt() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: reports are drawn off-screen, often with no display."""
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


def render_figures(out_dir: Path, table: list[dict], datasets: list[dict], fits: dict) -> dict[str, str]:
    """Draw each figure, save PNG and SVG under DIR/figures, return base64 PNGs for the page.

    Parameters
    ----------
    out_dir : Path
        The study folder; the figures go to its ``figures/`` subfolder (created when missing).
    table, datasets : list of dict
        The study's runs and datasets, as :func:`intrinsics.study.tables.study_table` returns them.
    fits : dict
        The study's fits (``fits.json``), for the fitted lines and laws drawn over the points.

    Returns
    -------
    dict of str -> str
        Each name of :data:`FIGURES` -> its PNG, base64-encoded, to embed in the page.
    """
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
