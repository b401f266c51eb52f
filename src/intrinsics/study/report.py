"""The study report: ``fits.json`` (every fitted number), figures (300-dpi PNG, SVG, PDF) and one
self-contained HTML page.

The page opens with the method's claims, each with the law's prediction, its numbers, intervals and a
verdict from magnitudes (``consistent``, ``same sign, other magnitude``, ``opposite``,
``inconclusive``, ``not enough runs``; the rules are on the page), then the figures with captions, a
table of every dataset's d_data and K_F with the closest differently-labelled image pairs, the learning
curves and their checks, and the plan's backtest.

Verdicts come from :mod:`intrinsics.study.verdicts` and figures from :mod:`intrinsics.study.figures`;
this module computes the fits, writes ``fits.json`` and lays out the page.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path
from typing import Any

from ..jsonio import write_json
from .figures import figure_captions, render_figures
from .fits import fit_study
from .plan import plan_backtest
from .runner import open_store
from .tables import study_table
from .verdicts import _fmt, claims, verdict_rules

__all__ = ["compute_fits", "write_fits", "write_report"]


def compute_fits(out_dir: str | os.PathLike[str], *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Fit everything on a study folder's finished runs; returns the ``fits.json`` dict."""
    with open_store(out_dir) as store:
        table, datasets = study_table(store)
        spec = store.get_meta("spec") or {}
        counts = store.counts()
        code = store.get_meta("code_version")
    fits = fit_study(table, n_bootstrap=n_bootstrap, seed=seed, datasets=datasets).to_dict()
    fits["claims"] = claims(fits)
    # The plan checked on the same table: each dataset's largest N predicted from the other runs.
    fits["plan_backtest"] = plan_backtest(table, n_bootstrap=n_bootstrap, seed=seed,
                                          reference_domain=fits["domains"].get("reference")).to_dict()
    # ... and each dataset's own learning curve (plan --pilot) predicting its largest N from its smaller ones.
    fits["plan_backtest_pilot"] = plan_backtest(table, n_bootstrap=n_bootstrap, seed=seed, method="pilot").to_dict()
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


def write_fits(out_dir: str | os.PathLike[str], *, n_bootstrap: int = 1000, seed: int = 0,
               to: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Compute the fits and write ``DIR/fits.json`` (or ``TO/fits.json``); returns the dict."""
    fits = compute_fits(out_dir, n_bootstrap=n_bootstrap, seed=seed)
    dest = Path(out_dir if to is None else to)
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "fits.json", fits, indent=1)
    return fits


# -- HTML -------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.claim{border-left:5px solid #999;padding:.4em .8em;margin:.8em 0;background:#fafafa}
.verdict{font-weight:bold;text-transform:uppercase;font-size:.85em}
.claim.consistent{border-color:#2a9d2a}.claim.consistent .verdict,.verdict-name.consistent{color:#2a9d2a}
.claim.samesign\\,othermagnitude{border-color:#e8a33c}.claim.samesign\\,othermagnitude .verdict,.verdict-name.samesign\\,othermagnitude{color:#b87a14}
.claim.opposite{border-color:#d62728}.claim.opposite .verdict,.verdict-name.opposite{color:#d62728}
.claim.inconclusive{border-color:#8c8c8c}.claim.inconclusive .verdict,.verdict-name.inconclusive{color:#6b6b6b}
.claim.notenoughruns{border-color:#7f9cc0}.claim.notenoughruns .verdict,.verdict-name.notenoughruns{color:#5a7aa3}
.verdict-name{font-weight:bold}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1em}
.figs img{width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.85em;width:100%}th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.pair{margin-bottom:.4em}.pair img{height:72px;image-rendering:pixelated;display:block}
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
        # Stores written before identifiers existed hold only the indices.
        id_i, id_j = p.get("id_i", f"[{p['i']}]"), p.get("id_j", f"[{p['j']}]")
        stretch = p.get("difference_stretch")
        diff = f", |A−B| ×{stretch:.3g}" if stretch else ""
        cells.append(f'<div class="pair"><img alt="closest pair {_esc(id_i)} and {_esc(id_j)}" '
                     f'src="data:image/png;base64,{b64}">'
                     f'<span class="small">A <code>{_esc(id_i)}</code> ({_esc(p["label_i"])}) · '
                     f'B <code>{_esc(id_j)}</code> ({_esc(p["label_j"])}){diff} · '
                     f'distance {p["distance"]:.3g}</span></div>')
    return "".join(cells) or '<span class="small">none</span>'


def _backtest_html(bt: dict, interval_note: str) -> str:
    """One backtest (``plan_backtest`` or ``plan_backtest_pilot``) as a summary line and a table."""
    def name(c: dict) -> str:
        return f"{c['dataset']}/{c['model']}" if c.get("model") else c["dataset"]

    rows = "\n".join(
        f"<tr><td>{_esc(name(c))}</td><td>{_esc(c.get('domain'))}</td><td>{_esc(c['N'])}</td>"
        f"<td>{_esc(c['n_runs'])}</td><td>{_fmt(c.get('observed'))}</td><td>{_fmt(c.get('predicted'))}</td>"
        f"<td>{_fmt(c.get('predicted_ci95'))}</td><td>{_fmt(c.get('abs_log_error'))}</td>"
        f"<td>{'n/a' if c.get('covered') is None else ('yes' if c['covered'] else 'no')}</td>"
        f"<td>{_esc(c['status'])}</td></tr>"
        for c in bt.get("cases") or []
    )
    targets = bt.get("targets") or {}
    return (
        f"<p>Median |log error| <b>{_fmt(bt.get('median_abs_log_error'))}</b> "
        f"(target ≤ {_fmt(targets.get('median_abs_log_error'))}); the 95% interval covered the observed mean for "
        f"<b>{_fmt(None if bt.get('coverage') is None else round(100 * bt['coverage']))}%</b> of "
        f"{_esc(bt.get('n_predicted', 0))} predicted (target ≥ {_fmt(round(100 * targets.get('coverage', 0)))}%) "
        f"and {_fmt(None if bt.get('run_coverage') is None else round(100 * bt['run_coverage']))}% of single runs. "
        f"Targets {'met' if bt.get('meets_targets') else 'not met' if bt.get('meets_targets') is False else 'n/a'}."
        + (f"<br><span class='small'>{_esc(bt['note'])}</span>" if bt.get("note") else "") + "</p>"
        "<table><tr><th>dataset</th><th>domain</th><th>held-out N</th><th>runs</th><th>observed mean loss</th>"
        "<th>predicted</th><th>95% interval</th><th>|log error|</th><th>covered</th><th>status</th></tr>"
        f"{rows}</table><p class='small'>{_esc(bt.get('basis', 'not computed'))}. {interval_note}</p>"
    )


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
    out_dir: str | os.PathLike[str], *, n_bootstrap: int = 1000, seed: int = 0, fits: dict[str, Any] | None = None,
    to: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``fits.json``, ``figures/*.png|svg|pdf`` and ``report.html`` into the study folder, or into
    ``to`` (the study is then only read: a study on read-only media can be reported); return the HTML path."""
    out = Path(out_dir)
    dest = out if to is None else Path(to)
    if fits is None:
        fits = write_fits(out, n_bootstrap=n_bootstrap, seed=seed, to=dest)
    with open_store(out) as store:
        table, datasets = study_table(store)
    figs = render_figures(out, table, datasets, fits, to=dest)
    meta = fits.get("meta", {})
    runs = meta.get("runs", {})
    claim_html = "\n".join(
        f'<div class="claim {c["verdict"].replace(" ", "")}"><div class="verdict">{_esc(c["verdict"])}</div>'
        f'<b>{_esc(c["claim"])}</b><ul>' + "".join(f"<li>{_esc(e)}</li>" for e in c["evidence"]) + "</ul></div>"
        for c in fits["claims"]
    )
    captions = figure_captions(table, datasets, fits, out_dir=out)
    fig_html = "\n".join(
        f'<figure id="fig-{name}"><img alt="{name}" src="data:image/png;base64,{b64}"><figcaption class="small">'
        f'<b>Figure {i}.</b> {_esc(captions.get(name, name))} <span class="figfiles">Files: '
        + ", ".join(f'<a href="figures/{name}.{ext}">{ext.upper()}</a>' for ext in ("png", "svg", "pdf"))
        + " (PNG at 300 dpi).</span></figcaption></figure>"
        for i, (name, b64) in enumerate(figs.items(), start=1)
    )
    pre = meta.get("preprocessing") or {}
    bt_html = _backtest_html(fits.get("plan_backtest") or {}, "The interval is the one "
                             "<code>intrinsics plan</code> gives for a single run.")
    pilot_html = _backtest_html(fits.get("plan_backtest_pilot") or {}, "The interval is the one "
                                "<code>intrinsics plan --pilot</code> gives for the curve's mean.")
    rising = {k: v for k, v in (fits.get("curve_checks") or {}).items() if v.get("rises_with_N")}
    rise_html = ("<p>Every learning curve is non-increasing in N within its spread (seed spread and "
                 "epoch-to-epoch swing).</p>") if not rising else (
        "<p><b>Learning curves that rise with N beyond their spread</b> (their fits are not to be trusted):</p><ul>"
        + "".join(f"<li>{_esc(k)}: " + "; ".join(
            f"N {_fmt(r['from_N'])} → {_fmt(r['to_N'])}: mean test loss +{_fmt(r['rise'])} (spread {_fmt(r['spread'])})"
            for r in v["rises"]) + "</li>" for k, v in rising.items()) + "</ul>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>intrinsics study report: {_esc(meta.get('study'))}</title>
<style>{_CSS}</style></head><body>
<h1>Study report: {_esc(meta.get('study'))}</h1>
<p class="small">{runs.get('done', 0)} of {runs.get('total', 0)} runs done ({runs.get('failed', 0)} failed) on
{fits.get('n_datasets', 0)} datasets; shared preprocessing <code>{_esc(json.dumps(pre))}</code> (K_F values are
only comparable under it); {meta.get('n_bootstrap')} bootstrap resamples; code {_esc(meta.get('code_version'))};
generated {_esc(meta.get('generated'))}. Test loss: <b>{_esc(fits.get('loss_metric', 'last'))}</b>
("best_val": at each run's epoch of lowest validation loss; "last": the last epoch's). Every number on this page
is in <code>fits.json</code>.</p>
<h2>The method's claims on this study</h2>
{verdict_rules('html')}
{claim_html}
<h2>Figures</h2>
<div class="figs">{fig_html}</div>
<h2>Datasets</h2>
<table><tr><th>dataset</th><th>domain</th><th>d_data</th><th>K_F</th><th>closest differently-labelled pairs
(what defines K_F; often label errors or near-duplicates): image A, image B and their absolute difference,
stretched so its largest pixel is white, with each image's identifier and label</th></tr>
{_dataset_rows(out, datasets)}
</table>
<h2>Learning curves: L(N) = a·N<sup>−b</sup> + c</h2>
{rise_html}
<table><tr><th>dataset/model</th><th>b</th><th>95% CI</th><th>1/d_data</th><th>b·d_data</th><th>method</th><th>status</th></tr>
{_curve_rows(fits)}
</table>
<p class="small">The covering law predicts b ≈ 1/d_data (b·d_data ≈ 1); scaling theory for regression
suggests ≈ 4/d_data. Exponent vs 1/d_data across datasets: slope {_fmt(fits['exponent_vs_inv_d'].get('slope'))},
CI {_fmt(fits['exponent_vs_inv_d'].get('slope_ci95'))} ({_esc(fits['exponent_vs_inv_d'].get('status'))}).</p>
<h2>Backtest of the plan: each dataset's largest N, predicted from the other runs</h2>
<h3>From the K_F law across datasets (<code>plan</code>)</h3>
{bt_html}
<h3>From the dataset's own learning curve at its smaller N (<code>plan --pilot</code>)</h3>
{pilot_html}
</body></html>
"""
    path = dest / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
