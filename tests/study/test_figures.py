"""The report's figures: 300-dpi PNG + SVG + PDF, captions, log K_F axes, error bars, small multiples."""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest

from intrinsics.study.figures import (
    DEFAULT_COLOUR,
    FIGURES,
    domain_colours,
    draw_figure,
    figure_captions,
    render_figures,
)
from intrinsics.study.report import write_fits, write_report
from intrinsics.study.runner import open_store
from intrinsics.study.tables import study_table

from ._fake import fill_store_from_law


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    fill_store_from_law(out, seed=1)
    fits = write_fits(out, n_bootstrap=60)
    page = write_report(out, fits=fits).read_text()
    with open_store(out) as store:
        table, datasets = study_table(store)
    return out, page, table, datasets, fits


@pytest.fixture
def plt():
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_every_figure_in_three_formats_at_300_dpi(study):
    from PIL import Image

    out, *_ = study
    for name in FIGURES:
        png = out / "figures" / f"{name}.png"
        with Image.open(png) as im:
            dpi = im.info["dpi"]
            width_in = im.size[0] / dpi[0]
        # PNG stores pixels per metre, so 300 dpi reads back as 299.9994.
        assert dpi[0] == pytest.approx(300, abs=0.01) and dpi[1] == pytest.approx(300, abs=0.01), name
        assert 4.5 <= width_in <= 8.5, (name, width_in)  # a column or a page width, not a thumbnail
        ET.parse(out / "figures" / f"{name}.svg")  # well-formed XML
        pdf = (out / "figures" / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-64:], name


def test_page_embeds_the_png_with_a_caption_naming_eps_and_preprocessing(study):
    import base64

    out, page, *_ = study
    figures = re.findall(r'<figure id="fig-([a-z_]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)">'
                         r'<figcaption[^>]*>(.*?)</figcaption></figure>', page, flags=re.DOTALL)
    assert [f[0] for f in figures] == list(FIGURES)
    captions = json.loads((out / "figures" / "captions.json").read_text())
    assert set(captions) == set(FIGURES)
    for name, b64, caption in figures:
        caption = html.unescape(caption)
        assert base64.b64decode(b64) == (out / "figures" / f"{name}.png").read_bytes()
        # fill_store_from_law's spec: 16 px, 1 channel, unit intensity; FGSM at 2/255; d_data by MLE, k = 20.
        assert "16×16 px, 1 channel, intensity unit" in caption, name
        assert captions[name].split(" Images preprocessed")[0] in caption
        assert f"figures/{name}.pdf" in caption
    cap = {f[0]: html.unescape(f[2]) for f in figures}
    assert "ε = 2/255 ≈ 0.00784" in cap["robustness_vs_kf"]
    assert "MLE, k = 20" in cap["loss_vs_d_data"] and "MLE, k = 20" in cap["repr_vs_data"]
    assert "M = 250" in cap["kf_per_dataset"]


def test_eps_is_on_the_robustness_figure_itself(study, plt):
    out, _, table, datasets, fits = study
    ax = draw_figure("robustness_vs_kf", table, datasets, fits).axes[0]
    assert "ε = 2/255" in ax.get_title() and "ε = 2/255" in ax.get_ylabel()
    svg = (out / "figures" / "robustness_vs_kf.svg").read_text()
    assert "ε = 2/255" in svg  # text stays text in the SVG


@pytest.mark.parametrize("name, axis", [("kf_per_dataset", "x"), ("robustness_vs_kf", "x")])
def test_kf_axes_are_log_scale(study, plt, name, axis):
    _, _, table, datasets, fits = study
    ax = draw_figure(name, table, datasets, fits).axes[0]
    assert (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    assert "K_F" in ax.get_xlabel()


def test_kf_error_bars_are_the_stored_intervals(study, plt):
    _, _, table, datasets, fits = study
    ax = draw_figure("kf_per_dataset", table, datasets, fits).axes[0]
    # One horizontal bar per dataset, from its K_F_ci95 (fill_store_from_law: [0.95 K_F, 1.02 K_F]).
    ends = sorted(tuple(sorted(round(x, 9) for x in seg[:, 0])) for coll in ax.collections
                  for seg in coll.get_segments())
    want = sorted((round(d["K_F_ci95"][0], 9), round(d["K_F_ci95"][1], 9)) for d in datasets)
    assert ends == want


def test_d_data_error_bars_on_the_dimension_figures(study, plt):
    _, _, table, datasets, fits = study
    for name in ("loss_vs_d_data", "repr_vs_data"):
        ax = draw_figure(name, table, datasets, fits).axes[0]
        spans = {round(float(seg[1, 0] - seg[0, 0]), 9) for coll in ax.collections if hasattr(coll, "get_segments")
                 for seg in coll.get_segments() if seg[0, 1] == seg[1, 1]}
        assert 0.6 in spans, name  # d_data ± 0.3 in fill_store_from_law


def test_learning_curves_one_panel_per_dataset_with_fitted_curve(study, plt):
    _, _, table, datasets, fits = study
    fig = draw_figure("learning_curves", table, datasets, fits)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len({r["dataset"] for r in table}) == 6
    for ax in panels:
        name = ax.get_title().split("\n")[0]
        assert ax.get_xscale() == "log"
        assert len(ax.get_xticks()) <= 4
        (pts,) = ax.collections  # the seeds, one point per run
        assert len(pts.get_offsets()) == sum(r["dataset"] == name for r in table)
        (line,) = ax.get_lines()  # the fitted a·N^-b + c
        f = fits["learning_curves"][f"{name}/m"]
        n = line.get_xdata()[-1]
        assert line.get_ydata()[-1] == pytest.approx(f["a"] * n ** -f["b"] + f["c"])


def test_learning_curve_tick_labels_do_not_overlap(study, plt):
    _, _, table, datasets, fits = study
    fig = draw_figure("learning_curves", table, datasets, fits)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            for a, b in itertools.pairwise(boxes):
                assert not a.overlaps(b), (ax.get_title(), [t.get_text() for t in axis.get_ticklabels()])


def test_domain_colours_are_okabe_ito_and_shared_by_every_figure(study, plt):
    _, _, table, datasets, fits = study
    styles = domain_colours(["medical", "natural", "synthetic-k1", "zz", "a", "b", "c"])
    assert styles["natural"][0] == "#0072B2" and styles["medical"][0] == "#D55E00"
    assert len({styles[d][0] for d in ("synthetic-k1", "a", "b", "c")}) == 4
    assert styles["zz"][0] == DEFAULT_COLOUR  # more free names than colours: the default grey
    from matplotlib.colors import to_hex

    for name in ("loss_vs_d_data", "robustness_vs_kf", "repr_vs_data", "kf_law"):
        ax = draw_figure(name, table, datasets, fits).axes[0]
        leg = {t.get_text().split(":")[0]: h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
        for dom in ("natural", "medical"):
            h = leg[dom]
            colour = h.get_color() if hasattr(h, "get_color") and not hasattr(h, "get_facecolor") else h.get_facecolor()[0]
            assert to_hex(colour).upper() == styles[dom][0], (name, dom)


@pytest.mark.parametrize("case", ["empty", "nan", "one_dataset"])
def test_figures_survive_missing_data(tmp_path, case, plt):
    table = [{"dataset": "a", "domain": "odd-domain", "model": "m", "N": n, "seed": 0, "test_loss": 0.5 / n ** 0.3,
              "d_data": 5.0, "K_F": 1.0, "robustness_drop": 0.1, "fgsm_eps": 0.03, "d_repr": 4.0, "run_key": f"a/{n}"}
             for n in (10, 20, 40)]
    datasets = [{"dataset": "a", "domain": "odd-domain", "d_data": 5.0, "d_data_ci95": [4.5, 5.5], "K_F": 1.0,
                 "K_F_ci95": [0.9, 1.1]}]
    fits: dict = {"learning_curves": {"a/m": {"a": 0.5, "b": 0.3, "c": 0.0}}}
    if case == "empty":
        table, datasets, fits = [], [], {}
    elif case == "nan":
        for r in table:
            r.update(test_loss=math.nan, d_data=None, K_F=math.nan, d_repr=math.nan, robustness_drop=None)
        datasets[0].update(K_F=math.nan, K_F_ci95=[None, None], d_data_ci95=[math.nan, 1.0])
        fits = {"learning_curves": {"a/m": {"a": math.nan, "b": None, "c": 0.0}}, "kf_law": {"coefficients": {}},
                "meta": {"preprocessing": None, "measure": None}}
    figs = render_figures(tmp_path, table, datasets, fits)
    assert list(figs) == list(FIGURES)
    for name in FIGURES:
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    caps = figure_captions(table, datasets, fits)
    assert set(caps) == set(FIGURES)
    assert ("ε = 0.03" in caps["robustness_vs_kf"]) == (case != "empty")
    if case == "one_dataset":
        fig = draw_figure("learning_curves", table, datasets, fits)
        assert len([ax for ax in fig.axes if ax.get_visible()]) == 1


def test_unknown_figure_name_is_refused():
    with pytest.raises(KeyError, match="unknown figure 'nope'.*kf_law"):
        draw_figure("nope", [], [], {})
