"""An audit's files: ``images.csv``, ``pairs.csv``, ``audit.json``, ``knn_graph.npz`` and ``audit.html``.

``knn_graph.npz`` is the exact k-nearest-neighbour graph as a scipy CSR matrix (N × N, k stored entries
per row, ascending distances, exact duplicates as explicit zeros), the layout cleanlab's
``Datalab.find_issues(knn_graph=...)`` takes, so a cleanlab user can reuse an exact graph.
``audit.html`` is one self-contained page (thumbnails embedded) that a browser opens from anywhere.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..data.render import save_pair
from ..jsonio import write_json
from .audit import PAIR_KINDS, DatasetAudit

__all__ = ["write_audit", "knn_csr"]

_TITLES = {
    "label_conflict": "Label conflicts: differently-labelled images that are identical, nearly so, or the "
                      "closest such pairs (they set K_F)",
    "exact_duplicate": "Exact duplicates (same label)",
    "near_duplicate": "Near-duplicates (same label, closer than the threshold)",
    "leak": "Leaks: test images identical or nearly identical to a training image",
}

_CSS = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}
.small{font-size:.85em;color:#555}.grid{display:flex;flex-wrap:wrap;gap:14px}
.pair{border:1px solid #ddd;padding:6px;max-width:380px}.pair img{image-rendering:pixelated;display:block;height:96px}
code{background:#f4f4f4;padding:0 .2em;word-break:break-all}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.9em}"""


def knn_csr(result: Any) -> Any:
    """The audit's exact neighbour graph as cleanlab's ``knn_graph`` (scipy CSR, N × N)."""
    from scipy.sparse import csr_matrix

    ind, dist = result.knn_indices, result.knn_distances
    n, k = ind.shape
    return csr_matrix((dist.ravel(), ind.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: "" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c])
                        for c in columns})


def _thumb(a: np.ndarray, b: np.ndarray) -> tuple[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pair.png"
        stretch = save_pair(a, b, path, height=96)
        return base64.b64encode(path.read_bytes()).decode("ascii"), stretch


def _cell(a_img: np.ndarray, b_img: np.ndarray, caption: str) -> str:
    """One picture and its caption (HTML whose values are already escaped); the alt text is its words."""
    import re

    b64, stretch = _thumb(a_img, b_img)
    words = html.unescape(re.sub(r"<[^>]+>", "", caption))
    return (f'<div class="pair"><img alt="{html.escape(words)}" src="data:image/png;base64,{b64}">'
            f'<span class="small">{caption}, |A−B| ×{stretch:.3g}</span></div>')


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.4g}"


def _prep(p: dict[str, Any]) -> str:
    size = p.get("size") or ["?", "?"]
    parts = [f"{size[0]}×{size[1]}", f"{p.get('channels')} channel(s)", f"intensity {p.get('intensity')}"]
    if p.get("excluded"):
        parts.append(f"{p['excluded']['n']} images excluded")
    return ", ".join(parts)


def write_audit(audit: DatasetAudit, images: np.ndarray, out_dir: str | os.PathLike[str], *,
                test_images: np.ndarray | None = None, n_show: int = 24, version: str | None = None) -> Path:
    """Write the audit's files into ``out_dir``; returns the path of ``audit.html``.

    ``images`` (and ``test_images``) are the audited (N, C, H, W) arrays, for the thumbnails.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = audit.result
    keys = list(r.keys)
    _write_csv(out / "images.csv", r.image_rows(),
               ["rank", "id", "label", "sharpness", "nn_other_id", "nn_other_label", "nn_other_distance",
                "nn_same_distance", "disagreement", "index"] + keys)
    pair_rows = r.pair_rows()
    pair_keys = [f"{k}_{side}" for k in dict.fromkeys(keys + list(r.test_keys)) for side in ("a", "b")]
    _write_csv(out / "pairs.csv", pair_rows,
               ["kind", "id_a", "id_b", "label_a", "label_b", "distance", "a", "b"] + pair_keys)
    from scipy.sparse import save_npz

    buf = io.BytesIO()
    save_npz(buf, knn_csr(r))
    (out / "knn_graph.npz").write_bytes(buf.getvalue())
    summary = audit.to_dict(version=version)
    write_json(out / "audit.json", summary)

    sections = []
    counts = r.counts()
    for kind in PAIR_KINDS:
        rows = [p for p in pair_rows if p["kind"] == kind]
        if not rows and kind == "leak" and r.test_ids is None:
            continue
        cells = []
        for p in rows[:n_show]:
            b_img = test_images[p["b"]] if kind == "leak" else images[p["b"]]
            side = " (test)" if kind == "leak" else ""
            cells.append(_cell(images[p["a"]], b_img,
                               f'A <code>{_esc(p["id_a"])}</code> ({_esc(p["label_a"])}) · B{side} '
                               f'<code>{_esc(p["id_b"])}</code> ({_esc(p["label_b"])}) · distance {p["distance"]:.4g}'))
        more = f" — the first {n_show} shown; all in <code>pairs.csv</code>" if len(rows) > n_show else ""
        sections.append(f'<h2 id="{kind}">{_esc(_TITLES[kind])}: {counts[kind]}{more}</h2>'
                        + (f'<div class="grid">{"".join(cells)}</div>' if cells else '<p class="small">none found</p>'))
    if r.labels is not None and r.nn_other.max() >= 0:
        cells = []
        for i in r.suspects(n_show):
            j = int(r.nn_other[i])
            cells.append(_cell(images[i], images[j],
                               f'#{int(r.rank[i])} A <code>{_esc(r.ids[i])}</code> ({_esc(r.labels[i])}), '
                               f'{r.disagreement[i]:.0%} of its {r.knn_indices.shape[1]} neighbours labelled otherwise · '
                               f'B, its nearest other-labelled image: <code>{_esc(r.ids[j])}</code> ({_esc(r.labels[j])})'))
        sections.insert(0, f'<h2 id="suspects">Most suspect labels (the top {len(cells)} of '
                           f'<code>images.csv</code>)</h2><div class="grid">{"".join(cells)}</div>')
    ds = audit.dataset
    s = summary
    kf = s["K_F"] or {}
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>intrinsics audit: {_esc(ds.get('source'))}</title>
<style>{_CSS}</style></head><body>
<h1>Audit of {_esc(ds.get('source'))}</h1>
<p class="small">{ds.get('N')} images of shape {_esc(ds.get('shape'))}, classes {_esc(', '.join(ds.get('classes') or []) or 'none')};
preprocessing {_esc(_prep(ds.get('preprocessing') or {}))} (in full in <code>audit.json</code>).
d_data {s['d_data']['value']:.3g} ({_esc(s['d_data']['estimator'])}); K_F exact {_fmt(kf.get('exact'))}.
Near-duplicate threshold {r.threshold:.4g} ({_esc(r.threshold_rule)}). Each picture shows image A, image B and
their absolute difference, stretched so its largest pixel is white. Every figure here is in
<code>audit.json</code>, <code>images.csv</code> and <code>pairs.csv</code>.</p>
<table><tr>{"".join(f"<th>{_esc(k)}</th>" for k in PAIR_KINDS)}</tr>
<tr>{"".join(f'<td><a href="#{k}">{counts[k]}</a></td>' for k in PAIR_KINDS)}</tr></table>
{"".join(sections)}
</body></html>
"""
    path = out / "audit.html"
    path.write_text(page, encoding="utf-8")
    return path
