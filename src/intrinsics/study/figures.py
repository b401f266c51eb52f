"""The study report's figures, drawn for a paper: 300-dpi PNG, SVG and PDF, each with its caption.

:data:`FIGURES` names them in the order the page shows them. :func:`render_figures` draws them all
into ``DIR/figures/`` (with ``captions.json``), :func:`figure_captions` says what each one plots (the
estimator, the preprocessing, the FGSM ε) and :func:`draw_figure` returns one as a matplotlib figure.

Every figure uses the same domain colours (Okabe–Ito, safe for colour-blind readers) and markers,
K_F is on a log axis wherever it is an axis (the natural sets' K_F is ~10x below the medical ones),
and the 95% intervals the study stores are drawn as error bars.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fits import KFLaw

__all__ = ["DPI", "FIGURES", "domain_colours", "draw_figure", "figure_captions", "render_figures"]


FIGURES = ("loss_vs_d_data", "kf_levels", "kf_per_dataset", "robustness_vs_kf", "repr_vs_data", "learning_curves",
           "kf_law")
DPI = 300
FORMATS = ("png", "svg", "pdf")

# Okabe & Ito (2008), "Color universal design": distinguishable under the common colour-vision
# deficiencies. The two named domains keep their colour in every study; other (free) domain names take
# the remaining colours in sorted order, then one default grey.
_OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "bluish green": "#009E73", "reddish purple": "#CC79A7",
              "orange": "#E69F00", "sky blue": "#56B4E9"}
_NAMED_DOMAINS = {"natural": ("#0072B2", "o"), "medical": ("#D55E00", "s")}
_OTHER_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_OTHER_MARKERS = ("^", "D", "v", "P")
DEFAULT_COLOUR = "#7F7F7F"
_DEFAULT_MARKER = "X"
_MODEL_STYLES = ("-", "--", ":", "-.")
_ESTIMATOR_NAMES = {"mle": "MLE", "twonn": "TwoNN"}

_RC = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 6.5, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    # Text stays text in SVG and PDF (editable, searchable); TrueType in PDF as journals ask.
    "svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "intrinsics",
}


def domain_colours(domains: Iterable[str | None]) -> dict[str, tuple[str, str]]:
    """Domain name -> (colour, marker), the same in every figure of a study.

    "natural" and "medical" always get Okabe–Ito blue (circles) and vermillion (squares); other names
    take bluish green, reddish purple, orange and sky blue in sorted order, and any beyond those a grey.
    """
    out = dict(_NAMED_DOMAINS)
    others = sorted({str(d) for d in domains if d is not None} - set(_NAMED_DOMAINS))
    for i, d in enumerate(others):
        out[d] = (_OTHER_COLOURS[i], _OTHER_MARKERS[i]) if i < len(_OTHER_COLOURS) else (DEFAULT_COLOUR, _DEFAULT_MARKER)
    return out


# -- the numbers a figure needs, gathered once per study ---------------------------------------------------


def _num(v: Any) -> float | None:
    """A finite float, or None (missing values arrive as None, NaN or strings in old stores)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _pos(v: Any) -> float | None:
    f = _num(v)
    return f if f is not None and f > 0 else None


def _err(v: float, ci: Any) -> tuple[float, float]:
    """(below, above) error-bar lengths from a 95% interval, (0, 0) when it is missing or does not contain v."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return (0.0, 0.0)
    lo, hi = _num(ci[0]), _num(ci[1])
    if lo is None or hi is None or not lo <= v <= hi:
        return (0.0, 0.0)
    return (v - lo, hi - v)


def _mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean of runs and the half-width of its normal 95% interval (0 for a single run)."""
    a = np.asarray(values, dtype=float)
    if a.size < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(1.96 * a.std(ddof=1) / math.sqrt(a.size))


def _estimator_text(block: Mapping[str, Any] | None) -> str:
    block = block or {}
    est = block.get("estimator")
    if not est:
        return "estimator not recorded"
    name = _ESTIMATOR_NAMES.get(str(est).lower(), str(est))
    return f"{name}, k = {block['k']}" if block.get("k") is not None and str(est).lower() == "mle" else name


def _preprocessing_text(pre: Mapping[str, Any] | None) -> str:
    pre = pre or {}
    parts = []
    if pre.get("size") is not None:
        s = pre["size"]
        parts.append(f"{s[0]}×{s[1]} px" if isinstance(s, (list, tuple)) and len(s) == 2 else f"{s}×{s} px")
    if pre.get("channels") is not None:
        parts.append(f"{pre['channels']} channel{'s' if pre['channels'] != 1 else ''}")
    if pre.get("intensity") is not None:
        parts.append(f"intensity {pre['intensity']}")
    return ", ".join(parts) if parts else "preprocessing not recorded"


def _eps_text(eps: float) -> str:
    """ε as the k/255 it usually is, with its decimal value."""
    k = eps * 255
    if abs(k - round(k)) < 1e-3 * max(1.0, k) and round(k) > 0:
        return f"{round(k)}/255 ≈ {eps:.3g}"
    return f"{eps:.3g}"


@dataclass
class _Context:
    """What every figure shares: domain styles, estimators, preprocessing, ε, d_repr intervals."""

    table: list[dict]
    datasets: list[dict]
    fits: dict
    styles: dict[str, tuple[str, str]]
    d_data_estimator: str
    d_repr_estimator: str
    preprocessing: str
    eps: tuple[float, ...]
    repr_ci: dict[str, Any] = field(default_factory=dict)
    by_dataset: dict[str, dict] = field(default_factory=dict)

    def colour(self, domain: str | None) -> str:
        return self.styles.get(str(domain), (DEFAULT_COLOUR, _DEFAULT_MARKER))[0]

    def marker(self, domain: str | None) -> str:
        return self.styles.get(str(domain), (DEFAULT_COLOUR, _DEFAULT_MARKER))[1]

    @property
    def eps_label(self) -> str:
        if not self.eps:
            return "ε not recorded"
        return "ε = " + ", ".join(_eps_text(e) for e in self.eps)


def _repr_details(out_dir: Path | None) -> tuple[dict[str, Any], set[str]]:
    """Per run key, the stored d_repr interval; and the estimators the store says measured d_repr."""
    if out_dir is None:
        return {}, set()
    from .store import STORE_NAME, Store

    path = Path(out_dir) / STORE_NAME
    if not path.exists():
        return {}, set()
    ci: dict[str, Any] = {}
    estimators: set[str] = set()
    with Store(path, read_only=True) as store:
        for m in store.measurements("d_repr"):
            key = (m.get("details") or {}).get("run_key") or str(m["run_key"]).split("#")[0]
            ci.setdefault(key, [m.get("ci_lo"), m.get("ci_hi")])
            if (m.get("details") or {}).get("estimator"):
                estimators.add(str(m["details"]["estimator"]))
        if not estimators:
            rep = (store.get_meta("spec") or {}).get("representation") or {}
            if rep.get("estimator"):
                estimators.add(str(rep["estimator"]))
    return ci, estimators


def _context(table: list[dict], datasets: list[dict], fits: dict, out_dir: Path | None) -> _Context:
    meta = fits.get("meta") or {}
    measure = meta.get("measure")
    if not (measure or {}).get("estimator"):  # older fits.json: the datasets' own measurement details
        measure = next((d.get("d_data_details") for d in datasets if (d.get("d_data_details") or {}).get("estimator")), None)
    repr_ci, repr_est = _repr_details(out_dir)
    eps = tuple(sorted({e for r in table if (e := _pos(r.get("fgsm_eps"))) is not None}))
    domains = [r.get("domain") for r in table] + [d.get("domain") for d in datasets]
    return _Context(
        table=table, datasets=datasets, fits=fits, styles=domain_colours(domains),
        d_data_estimator=_estimator_text(measure),
        d_repr_estimator=" / ".join(_ESTIMATOR_NAMES.get(e.lower(), e) for e in sorted(repr_est)) or "estimator not recorded",
        preprocessing=_preprocessing_text(meta.get("preprocessing")), eps=eps, repr_ci=repr_ci,
        by_dataset={d["dataset"]: d for d in datasets},
    )


# -- drawing ------------------------------------------------------------------------------------------------


def _plt() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: reports are drawn off-screen, often with no display."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax: Any, **kw: Any) -> None:
    """A legend only when something is labelled (an empty study has nothing to name)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _log_axis(ax: Any, which: str = "x") -> None:
    """A log scale whose ticks read as plain numbers (0.5, 1, 2, 5), labelled at 1-2-5 within short ranges.

    matplotlib's default labels minor ticks as "6×10⁻¹" when an axis spans less than a decade, and
    those long labels run into each other.
    """
    from matplotlib.ticker import FuncFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")

    def minor(v: float, _pos: Any) -> str:
        lo, hi = sorted(axis.get_view_interval())
        span = math.log10(hi / lo) if lo > 0 and hi > 0 else math.inf
        keep = (2, 3, 5) if span <= 1 else (2, 5) if span <= 2 else ()
        mant = v / 10 ** math.floor(math.log10(v) + 1e-9)
        return f"{v:g}" if any(abs(mant - m) < 1e-6 for m in keep) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _dataset_means(rows: list[dict], key: str) -> dict[str, tuple[float, float]]:
    vals: dict[str, list[float]] = {}
    for r in rows:
        vals.setdefault(r["dataset"], []).append(r[key])
    return {d: _mean_ci(v) for d, v in vals.items()}


def _fig_loss_vs_d(fig: Any, c: _Context) -> None:
    ax = fig.add_subplot()
    pts = [{**r, "test_loss": _pos(r.get("test_loss")), "d_data": _num(r.get("d_data"))} for r in c.table]
    pts = [r for r in pts if r["d_data"] is not None and r["test_loss"] is not None]
    if not pts:
        _no_data(ax, "no finished runs")
        return
    fits = c.fits.get("loss_vs_d_data") or {}
    for dom in sorted({str(r["domain"]) for r in pts}):
        sub = [r for r in pts if str(r["domain"]) == dom]
        ax.scatter([r["d_data"] for r in sub], [r["test_loss"] for r in sub], s=9, alpha=0.35, lw=0,
                   color=c.colour(dom), marker=c.marker(dom))
        # Dataset points: geometric mean loss over its runs, d_data with its 95% interval.
        for name in sorted({r["dataset"] for r in sub}):
            runs = [r for r in sub if r["dataset"] == name]
            x = runs[0]["d_data"]
            y = math.exp(np.mean([math.log(r["test_loss"]) for r in runs]))
            xe = _err(x, c.by_dataset.get(name, {}).get("d_data_ci95"))
            ax.errorbar([x], [y], xerr=[[xe[0]], [xe[1]]], fmt=c.marker(dom), ms=5, color=c.colour(dom),
                        mec="k", mew=0.5, elinewidth=1, capsize=2, zorder=3)
        f = fits.get(dom) or {}
        slope, icpt = _num(f.get("slope")), _num(f.get("intercept"))
        label = dom
        if slope is not None and icpt is not None:
            xs = np.linspace(min(r["d_data"] for r in sub), max(r["d_data"] for r in sub), 20)
            ax.plot(xs, np.exp(icpt + slope * xs), color=c.colour(dom), lw=1.2)
            ci = f.get("slope_ci95")
            label = f"{dom}: slope {slope:.2g}" + (
                f" [{ci[0]:.2g}, {ci[1]:.2g}]" if isinstance(ci, (list, tuple)) and None not in ci else "")
        ax.plot([], [], color=c.colour(dom), marker=c.marker(dom), ms=4, label=label)
    _log_axis(ax, "y")
    ax.set_xlabel(f"d_data ({c.d_data_estimator})")
    ax.set_ylabel("test loss (log scale)")
    ax.set_title("Test loss vs intrinsic dimension")
    _legend(ax, loc="best")


# K_F levels are told apart by colours the domains do not use, least sharp first.
_LEVEL_COLOURS = ("#56B4E9", "#E69F00", "#CC79A7", "#009E73")


def _compared_levels(c: _Context) -> list[tuple[str, dict]]:
    return [(dom, lv) for dom, lv in sorted(((c.fits.get("kf_levels") or {}).get("by_domain") or {}).items())
            if lv.get("status") == "ok"]


def _fig_levels(fig: Any, c: _Context) -> None:
    """Small multiples, one panel per N: each K_F level's log test loss against d_data (dataset means and
    their 95% interval over seeds), so the levels' offset and slopes can be read at equal N."""
    compared = _compared_levels(c)
    if not compared:
        _no_data(fig.add_subplot(), "no two K_F levels to compare (datasets of one domain sharing K_F to ±10% "
                                    "while d_data differs)")
        return
    _, lv = compared[0]  # the first domain with a comparison (the demo's medical family)
    members = {ds for level in lv["levels"] for ds in level["datasets"]}
    rows = [r for r in c.table if r["dataset"] in members and _pos(r.get("test_loss")) is not None
            and _num(r.get("d_data")) is not None and _pos(r.get("N")) is not None]
    Ns = sorted({float(r["N"]) for r in rows})
    if not Ns:
        _no_data(fig.add_subplot(), "no finished runs on the K_F levels")
        return
    axes = fig.subplots(1, len(Ns), sharex=True, sharey=True, squeeze=False)[0]
    for ax, n in zip(axes, Ns):
        for i, level in enumerate(lv["levels"]):
            colour = _LEVEL_COLOURS[i % len(_LEVEL_COLOURS)]
            pts = []
            for ds in level["datasets"]:
                runs = [r for r in rows if r["dataset"] == ds and float(r["N"]) == n]
                if runs:
                    logs = [math.log(float(r["test_loss"])) for r in runs]
                    m, half = _mean_ci(logs)
                    pts.append((float(runs[0]["d_data"]), m, half))
                    ax.scatter([float(r["d_data"]) for r in runs], [float(r["test_loss"]) for r in runs], s=7,
                               alpha=0.4, lw=0, color=colour)
            pts.sort()
            if pts:
                x, m, h = (np.array(v) for v in zip(*pts))
                ax.errorbar(x, np.exp(m), yerr=[np.exp(m) - np.exp(m - h), np.exp(m + h) - np.exp(m)], fmt="-o",
                            ms=3.5, lw=1.1, capsize=2, color=colour, mec="k", mew=0.4,
                            label=f"{level['name']}" if n == Ns[0] else None)
        ax.set_title(f"N = {int(n)}")
        ax.set_xlabel(f"d_data ({c.d_data_estimator.split(',')[0]})")
        _log_axis(ax, "y")
    axes[0].set_ylabel("test loss (log scale)")
    _legend(axes[0], loc="best")


def _fig_kf(fig: Any, c: _Context) -> None:
    ax = fig.add_subplot()
    ds = [d for d in c.datasets if _pos(d.get("K_F")) is not None]
    if not ds:
        _no_data(ax, "no K_F measured")
        return
    ds = sorted(ds, key=lambda d: float(d["K_F"]))
    for i, d in enumerate(ds):
        v = float(d["K_F"])
        e = _err(v, d.get("K_F_ci95"))
        e = (min(e[0], v * (1 - 1e-9)), e[1])  # a log axis has no room for a lower end at 0
        ax.errorbar([v], [i], xerr=[[e[0]], [e[1]]], fmt=c.marker(d.get("domain")), ms=5,
                    color=c.colour(d.get("domain")), mec="k", mew=0.5, elinewidth=1, capsize=2)
    for dom in sorted({str(d.get("domain")) for d in ds}):
        ax.plot([], [], ls="", marker=c.marker(dom), color=c.colour(dom), mec="k", mew=0.5, label=dom)
    _log_axis(ax, "x")
    ax.set_yticks(range(len(ds)), [d["dataset"] for d in ds])
    ax.set_ylim(-0.6, len(ds) - 0.4)
    ax.set_xlabel("K_F (log scale; median over draws, bars 95% of draws)")
    ax.set_title("Label sharpness per dataset")
    ax.grid(which="major", lw=0.4, alpha=0.4)
    _legend(ax, loc="lower right")


def _fig_robust(fig: Any, c: _Context) -> None:
    ax = fig.add_subplot()
    pts = [{**r, "K_F": _pos(r.get("K_F")), "robustness_drop": _num(r.get("robustness_drop"))} for r in c.table]
    pts = [r for r in pts if r["K_F"] is not None and r["robustness_drop"] is not None]
    ax.set_title(f"FGSM accuracy drop vs K_F ({c.eps_label})")
    if not pts:
        _no_data(ax, "no attack results")
        return
    for dom in sorted({str(r["domain"]) for r in pts}):
        sub = [r for r in pts if str(r["domain"]) == dom]
        ax.scatter([r["K_F"] for r in sub], [r["robustness_drop"] for r in sub], s=9, alpha=0.35, lw=0,
                   color=c.colour(dom), marker=c.marker(dom))
        kf = {r["dataset"]: r["K_F"] for r in sub}
        for name, (m, half) in sorted(_dataset_means(sub, "robustness_drop").items()):
            xe = _err(kf[name], c.by_dataset.get(name, {}).get("K_F_ci95"))
            xe = (min(xe[0], kf[name] * (1 - 1e-9)), xe[1])
            ax.errorbar([kf[name]], [m], xerr=[[xe[0]], [xe[1]]], yerr=[[half], [half]], fmt=c.marker(dom), ms=5,
                        color=c.colour(dom), mec="k", mew=0.5, elinewidth=1, capsize=2, zorder=3)
        ax.plot([], [], ls="", marker=c.marker(dom), color=c.colour(dom), mec="k", mew=0.5, label=dom)
    f = ((c.fits.get("robustness") or {}).get("robustness_drop") or {}).get("datasets") or {}
    r, p = _num(f.get("pearson_r")), _num(f.get("pearson_p"))
    if r is not None:
        ax.text(0.02, 0.98, f"datasets: Pearson r = {r:.2f}" + (f", p = {p:.2g}" if p is not None else ""),
                transform=ax.transAxes, ha="left", va="top", fontsize=7)
    _log_axis(ax, "x")
    ax.set_xlabel("K_F (log scale)")
    ax.set_ylabel(f"clean − FGSM accuracy ({c.eps_label})")
    _legend(ax, loc="lower right")


def _fig_repr(fig: Any, c: _Context) -> None:
    ax = fig.add_subplot()
    pts = [{**r, "d_repr": _num(r.get("d_repr")), "d_data": _num(r.get("d_data"))} for r in c.table]
    pts = [r for r in pts if r["d_repr"] is not None and r["d_data"] is not None]
    if not pts:
        _no_data(ax, "no d_repr measured")
        return
    for dom in sorted({str(r["domain"]) for r in pts}):
        sub = [r for r in pts if str(r["domain"]) == dom]
        for r in sub:  # each run's own interval, where its estimator gave one
            e = _err(r["d_repr"], c.repr_ci.get(r.get("run_key")))
            if e != (0.0, 0.0):
                ax.errorbar([r["d_data"]], [r["d_repr"]], yerr=[[e[0]], [e[1]]], fmt="none", ecolor=c.colour(dom),
                            alpha=0.35, elinewidth=0.6)
        ax.scatter([r["d_data"] for r in sub], [r["d_repr"] for r in sub], s=9, alpha=0.35, lw=0,
                   color=c.colour(dom), marker=c.marker(dom))
        dd = {r["dataset"]: r["d_data"] for r in sub}
        for name, (m, half) in sorted(_dataset_means(sub, "d_repr").items()):
            xe = _err(dd[name], c.by_dataset.get(name, {}).get("d_data_ci95"))
            ax.errorbar([dd[name]], [m], xerr=[[xe[0]], [xe[1]]], yerr=[[half], [half]], fmt=c.marker(dom), ms=5,
                        color=c.colour(dom), mec="k", mew=0.5, elinewidth=1, capsize=2, zorder=3)
        ax.plot([], [], ls="", marker=c.marker(dom), color=c.colour(dom), mec="k", mew=0.5, label=dom)
    # Room for the runs' own intervals too, so no bar runs off the top.
    highs = [r["d_repr"] + _err(r["d_repr"], c.repr_ci.get(r.get("run_key")))[1] for r in pts]
    top = max(max(r["d_data"] for r in pts), max(highs)) * 1.08
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="d_repr = d_data")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"d_data ({c.d_data_estimator})")
    ax.set_ylabel(f"d_repr ({c.d_repr_estimator}, per run)")
    ax.set_title("Representation vs data dimension")
    _legend(ax, loc="upper left")


def _n_ticks(Ns: Sequence[int]) -> list[int]:
    """The training sizes as log-axis ticks: all of up to four, else the smallest, a middle one and the largest."""
    Ns = sorted(set(Ns))
    if len(Ns) <= 4:
        return Ns
    idx = np.unique(np.round(np.linspace(0, len(Ns) - 1, 3)).astype(int))
    return [Ns[i] for i in idx]


def _fig_curves(fig: Any, c: _Context) -> None:
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        MaxNLocator,
        NullFormatter,
        NullLocator,
    )

    rows = [{**r, "test_loss": _pos(r.get("test_loss")), "N": _pos(r.get("N"))} for r in c.table]
    rows = [r for r in rows if r["test_loss"] is not None and r["N"] is not None]
    names = sorted({r["dataset"] for r in rows})
    if not names:
        _no_data(fig.add_subplot(), "no finished runs")
        return
    nrows = math.ceil(len(names) / 4)  # at most four panels a row, rows filled evenly
    ncols = math.ceil(len(names) / nrows)
    fig.set_size_inches(1.75 * ncols + 0.5, 1.55 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    models = sorted({str(r["model"]) for r in rows})
    ticks = _n_ticks([int(r["N"]) for r in rows])
    curves = c.fits.get("learning_curves") or {}
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        sub = [r for r in rows if r["dataset"] == name]
        dom = sub[0]["domain"]
        notes = []
        for m_i, model in enumerate(models):
            runs = [r for r in sub if str(r["model"]) == model]
            if not runs:
                continue
            ax.scatter([r["N"] for r in runs], [r["test_loss"] for r in runs], s=10, alpha=0.6, lw=0,
                       color=c.colour(dom), marker=c.marker(dom))
            f = curves.get(f"{name}/{model}") or {}
            a, b, cc = _num(f.get("a")), _num(f.get("b")), _num(f.get("c"))
            if None not in (a, b, cc):
                ns = np.geomspace(min(r["N"] for r in runs), max(r["N"] for r in runs), 50)
                ax.plot(ns, a * ns ** (-b) + cc, color=c.colour(dom), lw=1.1, ls=_MODEL_STYLES[m_i % len(_MODEL_STYLES)])
                ci = f.get("b_ci95")
                notes.append(f"b = {b:.2g}" + (f" [{ci[0]:.2g}, {ci[1]:.2g}]"
                                               if isinstance(ci, (list, tuple)) and None not in ci else ""))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3))
        ax.tick_params(labelsize=6.5)
        # The exponent in the title, not over the data where it could hide a point.
        ax.set_title(name + ("\n" + "; ".join(notes) if notes else ""), fontsize=7, color="k", pad=3)
        # Tick labels where no panel sits below (sharex hides them on all but the bottom row).
        if k + ncols >= len(names):
            ax.xaxis.set_tick_params(labelbottom=True)
    handles = []
    from matplotlib.lines import Line2D

    for dom in sorted({str(r["domain"]) for r in rows}):
        handles.append(Line2D([], [], ls="", marker=c.marker(dom), ms=4, color=c.colour(dom),
                              label=f"{dom} (one point per seed)"))
    for m_i, model in enumerate(models):
        handles.append(Line2D([], [], color="#444", ls=_MODEL_STYLES[m_i % len(_MODEL_STYLES)],
                              label=r"fitted $a\,N^{-b} + c$" + (f" ({model})" if len(models) > 1 else "")))
    fig.supxlabel("N (training images, log scale)", fontsize=8)
    fig.supylabel("test loss", fontsize=8)
    fig.legend(handles=handles, loc="outside upper center", ncol=min(4, len(handles)), fontsize=6.5, frameon=False)


def _fig_law(fig: Any, c: _Context) -> None:
    ax = fig.add_subplot()
    law = c.fits.get("kf_law") or {}
    coef = law.get("coefficients") or {}
    pts = [{**r, "K_F": _pos(r.get("K_F")), "d_data": _pos(r.get("d_data")), "test_loss": _pos(r.get("test_loss")),
            "N": _pos(r.get("N"))} for r in c.table]
    pts = [r for r in pts if None not in (r["K_F"], r["d_data"], r["test_loss"], r["N"])]
    if _num(coef.get("beta_N")) is None or not pts:
        _no_data(ax, f"K_F law not fitted: {law.get('status', 'no runs')}")
        return
    fitted = KFLaw.from_dict(law)
    for d in sorted({str(r["domain"]) for r in pts}):
        sub = [r for r in pts if str(r["domain"]) == d]
        pred = [math.exp(float(fitted.predict_log_loss(r["N"], r["d_data"], r["K_F"]))) for r in sub]
        ax.scatter(pred, [r["test_loss"] for r in sub], s=12, alpha=0.6, lw=0, color=c.colour(d), marker=c.marker(d),
                   label=d)
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    lo = min(min(ax.get_xlim()), min(ax.get_ylim()))
    hi = max(max(ax.get_xlim()), max(ax.get_ylim()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="observed = predicted")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("test loss predicted by the K_F law (log scale)")
    ax.set_ylabel("test loss observed (log scale)")
    r2 = _num(law.get("r2"))
    ax.set_title("K_F-aware law" + (f" (R² = {r2:.2f} in log L)" if r2 is not None else ""))
    _legend(ax, loc="upper left")


_DRAW = {
    "loss_vs_d_data": _fig_loss_vs_d,
    "kf_levels": _fig_levels,
    "kf_per_dataset": _fig_kf,
    "robustness_vs_kf": _fig_robust,
    "repr_vs_data": _fig_repr,
    "learning_curves": _fig_curves,
    "kf_law": _fig_law,
}


def _new_figure(plt: Any, name: str, c: _Context) -> Any:
    if name == "kf_per_dataset":  # one row per dataset: room for each name
        return plt.figure(figsize=(5.2, max(2.4, 0.9 + 0.24 * len(c.datasets))), layout="constrained")
    if name == "learning_curves":
        return plt.figure(figsize=(7.0, 4.0), layout="constrained")
    if name == "kf_levels":
        return plt.figure(figsize=(7.0, 2.8), layout="constrained")
    return plt.figure(figsize=(5.2, 3.6), layout="constrained")


def draw_figure(name: str, table: list[dict], datasets: list[dict], fits: dict, *, out_dir: Path | None = None,
                _ctx: _Context | None = None) -> Any:
    """One of :data:`FIGURES` as a matplotlib ``Figure`` (close it with ``matplotlib.pyplot.close``).

    ``out_dir`` (the study folder) lets the d_repr figure read each run's stored d_repr interval and
    estimator; without it those come from ``table`` alone.
    """
    if name not in _DRAW:
        raise KeyError(f"unknown figure {name!r}; the figures are {', '.join(FIGURES)}")
    plt = _plt()
    c = _ctx or _context(table, datasets, fits, out_dir)
    with plt.rc_context(_RC):
        fig = _new_figure(plt, name, c)
        _DRAW[name](fig, c)
    return fig


# -- captions -----------------------------------------------------------------------------------------------


def _levels_caption(c: _Context, loss: str, dd: str, pre: str) -> str:
    compared = _compared_levels(c)
    if not compared:
        return f"No K_F levels to compare: the study has no two groups of datasets that share K_F while d_data differs. {pre}"
    dom, lv = compared[0]
    cmp = lv["comparison"]
    levels = "; ".join(f"{x['name']}: {', '.join(x['datasets'])}" for x in lv["levels"])
    return (f"K_F levels of the {dom} domain ({levels}): {loss} against d_data, one panel per N; small points single "
            f"runs, connected markers each dataset's geometric-mean loss with the 95% interval over seeds. The law "
            f"puts the sharper level above the other by log of the K_F ratio ({_fmt(cmp.get('kf_ratio'))}: "
            f"{_fmt(cmp.get('log_kf_ratio'))} in log L); fitted offset {_fmt(cmp.get('offset'))} "
            f"[{_fmt((cmp.get('offset_ci95') or [None])[0])}, {_fmt((cmp.get('offset_ci95') or [None, None])[1])}]. "
            f"{dd}. {pre}")


def _captions(c: _Context) -> dict[str, str]:
    pre = (f"Images preprocessed as {c.preprocessing} (shared by all datasets; K_F is comparable only under it)."
           if c.preprocessing != "preprocessing not recorded" else "Preprocessing not recorded in fits.json.")
    dd = f"d_data by {c.d_data_estimator} on the preprocessed images"
    kf_est = "K_F = 1 / (smallest distance between differently-labelled images), the median over draws of M images"
    ms = sorted({int(m) for d in c.datasets if (m := _pos((d.get("K_F_details") or {}).get("M"))) is not None})
    if ms:
        kf_est += f" (M = {', '.join(map(str, ms))})"
    rob = ((c.fits.get("robustness") or {}).get("robustness_drop") or {}).get("datasets") or {}
    law = c.fits.get("kf_law") or {}
    coef = law.get("coefficients") or {}
    loss = {"best_val": "test loss (at each run's epoch of lowest validation loss)",
            "last": "test loss (last epoch)"}.get(str(c.fits.get("loss_metric")), "test loss")
    loss_fit = c.fits.get("loss_vs_d_data") or {}
    slopes = ", ".join(f"{k} slope {_fmt(v.get('slope'))}" for k, v in sorted(loss_fit.items()) if isinstance(v, dict))
    est_dd, est_dr = c.d_data_estimator.split(",")[0], c.d_repr_estimator
    same = "" if "not recorded" in est_dd + est_dr or est_dd == est_dr else (
        f" d_data ({est_dd}) and d_repr ({est_dr}) come from different estimators, whose biases differ.")
    caps = {
        "loss_vs_d_data": (
            f"{loss} of every run (small points) against its dataset's d_data; large markers: each dataset's "
            f"geometric-mean loss, horizontal bars the 95% interval of d_data. Lines: the per-domain fit of log L "
            f"against d_data ({slopes or 'not fitted'}). "
            f"{dd}. {pre}"),
        "kf_levels": _levels_caption(c, loss, dd, pre),
        "kf_per_dataset": (
            f"Label sharpness K_F of each dataset on a log axis; {kf_est}, bars the 2.5–97.5% range over draws. "
            f"{pre}"),
        "robustness_vs_kf": (
            f"Drop in accuracy under an FGSM attack ({c.eps_label}, pixel scale [0, 1]) against K_F (log axis): "
            f"small points single runs, large markers dataset means with their 95% interval over runs (vertical) "
            f"and the 95% interval of K_F (horizontal). "
            + (f"Dataset-level Pearson r = {_fmt(rob.get('pearson_r'))} over {rob.get('n_points')} datasets. "
               if _num(rob.get("pearson_r")) is not None else "")
            + f"{kf_est}. {pre}"),
        "repr_vs_data": (
            f"Intrinsic dimension d_repr of each trained network's penultimate layer ({c.d_repr_estimator}, as "
            f"stored per run; thin "
            f"vertical bars its interval where the estimator gave one) against d_data ({c.d_data_estimator}); large "
            f"markers dataset means (vertical bars 95% interval over runs, horizontal the 95% interval of d_data). "
            f"Dashed: d_repr = d_data.{same} {pre}"),
        "learning_curves": (
            f"{loss} against the training size N (log axis), one panel per dataset: points single runs (seeds), "
            f"line the fitted power law L(N) = a·N^−b + c (b in each panel). Datasets with d_data by "
            f"{c.d_data_estimator}. {pre}"),
        "kf_law": (
            f"Observed {loss} of every run against the K_F-aware law's prediction, log L = intercept + "
            f"β_N·(−log N / d_data) + β_K·log K_F (β_N = {_fmt(coef.get('beta_N'))}, β_K = {_fmt(coef.get('beta_K'))}, "
            f"R² = {_fmt(law.get('r2'))}); dashed the identity. {dd}; {kf_est}. {pre}"),
    }
    return {k: v[0].upper() + v[1:] for k, v in caps.items()}


def _fmt(v: Any) -> str:
    f = _num(v)
    return "n/a" if f is None else f"{f:.3g}"


def figure_captions(table: list[dict], datasets: list[dict], fits: dict, *, out_dir: Path | None = None) -> dict[str, str]:
    """Each name of :data:`FIGURES` -> its caption: what is plotted, the estimators, the preprocessing, ε."""
    return _captions(_context(table, datasets, fits, out_dir))


def render_figures(out_dir: Path, table: list[dict], datasets: list[dict], fits: dict,
                   to: Path | None = None) -> dict[str, str]:
    """Draw each figure, save it as 300-dpi PNG, SVG and PDF under DIR/figures, return base64 PNGs for the page.

    Also writes ``DIR/figures/captions.json`` (name -> caption, as :func:`figure_captions` gives).

    Parameters
    ----------
    out_dir : Path
        The study folder; the figures go to its ``figures/`` subfolder (created when missing).
    to : Path, optional
        Write the ``figures/`` subfolder here instead (the study folder is then only read).
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
    out_dir = Path(out_dir)
    fig_dir = Path(out_dir if to is None else to) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    c = _context(table, datasets, fits, out_dir)
    encoded = {}
    # No timestamps in SVG/PDF: the same study gives the same files.
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    for name in FIGURES:
        fig = draw_figure(name, table, datasets, fits, _ctx=c)
        try:
            with plt.rc_context(_RC):
                for fmt in FORMATS:
                    fig.savefig(fig_dir / f"{name}.{fmt}", dpi=DPI, metadata=metadata[fmt])
        finally:
            plt.close(fig)
        encoded[name] = base64.b64encode((fig_dir / f"{name}.png").read_bytes()).decode("ascii")
    (fig_dir / "captions.json").write_text(json.dumps(_captions(c), indent=1, ensure_ascii=False), encoding="utf-8")
    return encoded
