"""Figure builders (dashboard/figures.py): pure functions from plain data to Plotly figures."""
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard import compare_figures as CF
from dashboard import delta_figures as D
from dashboard import figures as F
from dashboard import sweep_figures as SF
from engine.config import METHOD_NAMES

LAYERS = ["block1", "block2", "block3", "block4"]


def test_method_colors_stable_distinct_and_plugin_darker():
    names = METHOD_NAMES + ["original"]
    colors = [F.method_color(n) for n in names]
    assert len(set(colors)) == len(colors)
    assert F.method_color("ec") == F.method_color("ec")
    assert F.method_color("ft+ec") != F.method_color("ft")

    def lum(c):
        return sum(int(c[i:i + 2], 16) for i in (1, 3, 5))
    assert lum(F.method_color("ft+ec")) < lum(F.method_color("ft"))
    assert F.method_color("something_new") == F.method_color("something_new")
    assert F.method_color("something_new").startswith("#")


def test_display_names():
    assert F.display_name("neggrad_plus") == "NegGrad+"
    assert F.display_name("ft+ec") == "FT + EC"
    assert F.display_name("mystery") == "mystery"


def test_cka_heatmap_matches_dict_order_and_fixed_scale():
    cka = {"original": {l: 1.0 for l in LAYERS},
           "ft": {"block1": 0.9, "block2": 0.8, "block3": 0.7, "block4": 0.2},
           "ec": {"block1": 0.5, "block3": 0.3}}
    fig = F.cka_heatmap(cka, LAYERS, ["ft", "ec", "original"])
    hm = fig.data[0]
    assert isinstance(hm, go.Heatmap)
    assert hm.zmin == 0 and hm.zmax == 1
    assert list(hm.x) == LAYERS
    assert list(hm.y) == ["FT", "EC", "Original (ref)"]
    assert list(hm.z[0]) == [0.9, 0.8, 0.7, 0.2]
    assert hm.z[1][0] == 0.5 and math.isnan(hm.z[1][1]) and hm.z[1][2] == 0.3
    assert list(hm.z[2]) == [1.0] * 4
    assert fig.layout.yaxis.autorange == "reversed"  # first name on top
    # default order = dict order
    assert list(F.cka_heatmap(cka, LAYERS).data[0].y) == ["Original (ref)", "FT", "EC"]


def test_cka_matrix_heatmap():
    m = [[1.0, 0.5], [0.4, 0.9]]
    hm = F.cka_matrix_heatmap(m, ["a", "b"], "ec").data[0]
    assert [list(r) for r in hm.z] == m
    assert (hm.zmin, hm.zmax) == (0, 1)


def test_pareto_front_hand_case():
    # minimise x (forget CKA), maximise y (retain accuracy)
    x = [0.2, 0.3, 0.1, 0.5, 0.2, None, 0.9]
    y = [0.9, 0.95, 0.8, 0.99, 0.85, 1.0, 0.99]
    # 0: on front; 1: on front; 2: on front (lowest x); 3: on front (highest y, lowest x among y=.99)
    # 4: dominated by 0; 5: missing -> never; 6: dominated by 3
    assert CF.pareto_front(x, y) == [True, True, True, True, False, False, False]
    assert CF.pareto_front([0.5, 0.5], [0.9, 0.9]) == [True, True]  # exact ties both kept
    assert CF.pareto_front([], []) == []


def test_tradeoff_scatter_highlights_front():
    rows = [{"name": "ft", "id": "a/ft", "worst_gap": 0.4, "worst_layer": "block3", "retain_acc": 0.99},
            {"name": "ec", "id": "a/ec", "worst_gap": -0.1, "worst_layer": "block2", "retain_acc": 0.98},
            {"name": "ga", "id": "a/ga", "worst_gap": 0.3, "retain_acc": 0.90}]
    fig = CF.tradeoff_scatter(rows)
    pts = [t for t in fig.data if isinstance(t, go.Scattergl)]
    assert [t.name for t in pts] == ["FT", "EC", "GA"]
    assert pts[0].marker.color == F.method_color("ft")
    assert pts[1].customdata[0][3] == "block2" and "worst inner layer" in pts[1].hovertemplate
    line = [t for t in fig.data if t.name == "Pareto front"][0]
    assert list(line.x) == [-0.1, 0.4] and list(line.y) == [0.98, 0.99]  # by |x|: the distance to retrain
    assert list(pts[2].marker.size) == [9]  # ga is dominated by ec
    assert list(pts[1].marker.size) == [14]
    assert fig.layout.yaxis.tickformat == ".0%"


def _inside_with_margin(values, rng, frac=0.04):
    """Every value lies inside the range, at least `frac` of its width from both edges."""
    lo, hi = rng
    m = frac * (hi - lo)
    return all(lo + m <= v <= hi - m for v in values)


def test_tradeoff_scatter_ranges_single_run():
    fig = CF.tradeoff_scatter([{"name": "ec", "id": "a/ec", "worst_gap": -0.069, "retain_acc": 0.985}])
    yr, xr = list(fig.layout.yaxis.range), list(fig.layout.xaxis.range)
    assert 0.85 <= yr[0] < 0.985 and 1.0 < yr[1] <= 1.05  # not -50%..150%
    assert _inside_with_margin([0.985, 1.0], yr)  # the 100% line is inside too
    assert _inside_with_margin([-0.069], xr) and xr[0] == -xr[1]  # symmetric about retrain (0)


def test_tradeoff_scatter_ranges_many_runs_keep_points_off_the_frame():
    xs = [-0.31, -0.26, -0.21, -0.12, 0.08, 0.05, 0.03, 0.2]
    ys = [0.985, 0.993, 0.98, 0.97, 0.96, 0.99, 0.995, 0.997]
    rows = [{"name": f"m{i}", "id": str(i), "worst_gap": x, "retain_acc": y} for i, (x, y) in enumerate(zip(xs, ys))]
    rows.append({"name": "ga", "id": "ga", "worst_gap": 0.11, "retain_acc": 0.902})
    fig = CF.tradeoff_scatter(rows)
    assert _inside_with_margin(ys + [0.902], fig.layout.yaxis.range)
    assert _inside_with_margin(xs + [0.11], fig.layout.xaxis.range)
    assert fig.layout.yaxis.range[1] <= 1.03
    assert fig.layout.legend.itemsizing == "constant"


def test_retain_range_edge_cases():
    yr = CF.retain_range([])
    assert yr[0] < 0 < 1 < yr[1]
    assert _inside_with_margin([0.1, 1.0], CF.retain_range([None, 0.1, float("nan")]))


def test_titles_and_top_legends_do_not_share_a_line():
    fig = F.forgetting_bars([{"name": "ec", "forget_acc": 0.0}], ["block1"])
    assert fig.layout.title.yref == "container" and fig.layout.title.yanchor == "top"
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y > 1  # just above the plot
    assert fig.layout.margin.t >= 80  # room for the title line and the legend line


def _gaps(values, retrain):
    return [{"point": p, "inner": True, "value": v, "retrain": r} for p, v, r in zip(("b1", "b2", "b3"), values, retrain)]


def test_forgetting_bars_show_every_inner_layer_and_no_mean():
    # b1 distorted, b3 superficial: a mean over layers would read like retrain (0.5); each bar shows its layer
    rows = [{"name": "original", "forget_acc": 0.99, "gaps": _gaps([1.0, 1.0, 1.0], [0.6, 0.5, 0.4]),
             "probe_gaps": _gaps([1.0, 1.0, 0.98], [0.9, 0.8, 0.7])},
            {"name": "scrub", "forget_acc": 0.0, "gaps": _gaps([0.2, 0.5, 0.8], [0.6, 0.5, 0.4]),
             "probe_gaps": _gaps([0.9, None, 0.95], [0.9, 0.8, 0.7])}]
    fig = F.forgetting_bars(rows, ["b1", "b2", "b3"])
    assert [t.type for t in fig.data] == ["bar"] * 7
    assert [t.name for t in fig.data] == ["Forget accuracy (logits)"] + ["b1", "b1", "b2", "b2", "b3", "b3"]
    logits, cka = fig.data[0], {t.name: t for t in fig.data if t.yaxis == "y" and t.name != fig.data[0].name}
    probe = {t.name: t for t in fig.data if t.yaxis == "y2"}
    assert list(logits.x) == ["Original (ref)", "SCRUB"] and list(logits.y) == [0.99, 0.0]
    assert [cka[p].y[1] for p in ("b1", "b2", "b3")] == [0.2, 0.5, 0.8]
    assert probe["b1"].y[1] == 0.9 and math.isnan(probe["b2"].y[1]) and probe["b3"].y[1] == 0.95
    assert cka["b3"].customdata[1][1] == "0.40" and probe["b2"].customdata[1][0] == "n/a"  # hover: retrain beside
    assert len(set(t.marker.color for t in cka.values())) == 3  # one shade per layer
    assert all(not t.showlegend for t in probe.values())  # one legend entry per layer
    assert fig.layout.barmode == "group" and fig.layout.yaxis2.tickformat == ".0%"
    assert "mean" not in " ".join(str(t.name) for t in fig.data).lower()


def test_layer_shades_run_light_to_dark():
    assert F.layer_shades(0) == [] and len(F.layer_shades(1)) == 1
    shades = F.layer_shades(4)
    assert shades[0] == F.LAYER_BLUES[0] and shades[-1] == F.LAYER_BLUES[-1] and len(set(shades)) == 4


def test_layer_lines_floor_and_chance():
    vals = {"original": {l: 0.99 for l in LAYERS}, "retrain": {l: 0.3 for l in LAYERS},
            "ec": {"block1": 0.5}}
    fig = F.probe_lines(vals, LAYERS, chance=0.1)
    names = [t.name for t in fig.data]
    assert names == ["Original", "Retrain (floor)", "EC"]
    assert fig.data[1].line.dash == "dash"
    assert fig.data[0].line.dash == "dot"
    assert fig.data[2].y[0] == 0.5 and math.isnan(fig.data[2].y[1])
    assert any(s.y0 == 0.1 for s in fig.layout.shapes)
    # the chance label sits at the left end, away from retrain's last point (which drops to chance)
    ann = [a for a in fig.layout.annotations if a.text.startswith("chance")]
    assert len(ann) == 1 and ann[0].text == "chance (10%)"
    assert ann[0].x == 0 and ann[0].xanchor == "left" and ann[0].yanchor == "bottom"


def test_umap_panels_shared_axes_scattergl_forget_marked():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    forget = labels == 1
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) * 3
    fig = F.umap_panels([("Original", a), ("EC", b)], labels, forget, ["0", "1", "2"])
    pts = [t for t in fig.data if t.x is not None and len(t.x) and t.x[0] is not None]
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert len(pts) == 6  # 3 classes x 2 panels
    assert fig.layout.xaxis.range == fig.layout.xaxis2.range
    assert fig.layout.yaxis.range == fig.layout.yaxis2.range
    lo, hi = fig.layout.xaxis.range
    assert lo <= min(a[:, 0].min(), b[:, 0].min()) and hi >= max(a[:, 0].max(), b[:, 0].max())
    cls1 = [t for t in pts if t.legendgroup == "class1"][0]
    assert set(cls1.marker.symbol) == {"x"}
    cls0 = [t for t in pts if t.legendgroup == "class0"][0]
    assert set(cls0.marker.symbol) == {"circle"}


def test_umap_panels_many_classes_uses_colour_scale():
    labels = np.arange(60) % 30
    fig = F.umap_panels([("O", np.zeros((60, 2)))], labels, labels == 0)
    assert len(fig.data) == 2 and fig.data[0].marker.colorscale is not None


def test_member_intervals_and_mia_view():
    grid = {"conf": [0.0, 0.25, 0.5, 0.75, 1.0], "member": [0, 0, 1, 1, 1]}
    assert CF.member_intervals(grid) == [(0.5, 1.0)]
    assert CF.member_intervals({"conf": [0, 0.5, 1], "member": [1, 0, 1]}) == [(0.0, 0.0), (1.0, 1.0)]
    assert CF.member_intervals(None) == []
    conf = {"forget": np.array([0.1, 0.2]), "retain": np.array([0.9, 0.95, 1.0]), "test": None}
    fig = CF.mia_view(conf, grid, "ec", 0.93)
    hists = [t for t in fig.data if isinstance(t, go.Histogram)]
    assert [t.name for t in hists] == ["forget (n=2)", "retain (n=3)"]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(r.x0, r.x1) for r in rects] == [(0.5, 1.0)]
    assert "93.0%" in fig.layout.title.text
    lo, hi = fig.layout.xaxis.range
    assert lo < 0 and hi > 1  # the tick labels "0" and "1" are not clipped at the edges


def test_per_class_and_confusion():
    fig = CF.per_class_bars([0.9, 0.0, 0.8], [0.95, 0.97, 0.9], "ec", ["a", "b", "c"], forget_classes=[1])
    assert [t.name for t in fig.data] == ["Original", "EC"]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 1 and rects[0].x0 == 0.5 and rects[0].x1 == 1.5
    fig = CF.confusion_pair([[3, 1], [0, 0]], [[4, 0], [1, 3]], "ec")
    z_orig, z_run = fig.data[0].z, fig.data[1].z
    assert np.allclose(z_orig[0], [1.0, 0.0]) and np.allclose(z_orig[1], [0.25, 0.75])
    assert np.allclose(z_run[0], [0.75, 0.25]) and np.isnan(z_run[1]).all()  # empty row stays empty
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1


def test_training_and_epoch_cka_curves():
    hist = [{"epoch": 1, "losses": {"loss": 1.0, "cu": 2.0}, "forget_acc": 0.5, "retain_acc": 0.9,
             "cka_forget": {"block1": 0.9, "block2": 0.8}},
            {"epoch": 2, "losses": {"loss": 0.5, "cu": 1.0}, "forget_acc": 0.1, "retain_acc": 0.95,
             "cka_forget": {"block1": 0.85, "block2": 0.6}}]
    fig = F.training_curves(hist)
    assert [t.name for t in fig.data] == ["loss (total)", "cu", "forget acc", "retain acc"]
    assert list(fig.data[1].y) == [2.0, 1.0]
    # one horizontal legend above the panels (not a column between them); the total, the terms and the
    # accuracies each in a panel of their own: no right-hand axis runs into the Accuracy panel
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yref == "container"
    assert [a.text for a in fig.layout.annotations] == ["Loss terms", "Total loss", "Accuracy"]
    assert [t.xaxis for t in fig.data] == ["x2", "x", "x3", "x3"]
    assert all(getattr(fig.layout, f"yaxis{i}").side != "right" for i in ("", 2, 3))
    assert fig.data[0].line.color != fig.data[3].line.color  # total loss vs retain accuracy
    assert not any(t.legendgroup for t in fig.data)  # clicking "loss" hides only that line
    losses_only = [{k: v for k, v in h.items() if not k.endswith("_acc")} for h in hist]  # e.g. kept by calibration
    assert "Accuracy" not in [a.text for a in F.training_curves(losses_only).layout.annotations]
    fig = F.epoch_cka_lines(hist, ["block1", "block2"])
    assert [t.name for t in fig.data] == ["block1", "block2"]
    assert list(fig.data[1].y) == [0.8, 0.6]
    assert list(fig.layout.yaxis.range) == [0, 1.05]


@pytest.mark.parametrize("builder", ["cka", "bars"])
def test_figure_html_is_self_contained(builder):
    fig = F.cka_heatmap({"ec": {"a": 0.5}}, ["a"]) if builder == "cka" else F.forgetting_bars([], [])
    html = F.figure_html(fig)
    assert "<html>" in html[:200] and "src=\"https://cdn.plot.ly" not in html and len(html) > 1_000_000


def test_tolerance_band_around_retrain_on_layer_and_gap_lines():
    layers = ["block1", "block2", "block3"]
    tol = {"block1": 0.02, "block2": 0.05, "block3": 0.01}
    fig = F.layer_lines({"retrain": {"block1": 0.9, "block2": 0.7, "block3": 0.5}, "ec": {"block1": 0.88}}, layers,
                        percent=False, band=tol)
    upper, lower = fig.data[0], fig.data[1]
    assert list(upper.y) == pytest.approx([0.92, 0.75, 0.51]) and list(lower.y) == pytest.approx([0.88, 0.65, 0.49])
    assert lower.fill == "tonexty" and lower.name == F.BAND_NAME and not upper.showlegend
    assert [t.name for t in fig.data[2:]] == ["Retrain (floor)", "EC"]
    assert len(F.layer_lines({"ec": {"block1": 0.88}}, layers, band=tol).data) == 1  # no retrain line: no band
    fig = D.delta_lines({"ec": {"block1": -0.01, "block2": -0.02, "block3": 0.0}}, layers, percent=False, band=tol)
    assert list(fig.data[1].y) == pytest.approx([-0.02, -0.05, -0.01]) and fig.data[1].name == F.BAND_NAME
    assert fig.layout.yaxis.range[1] >= 0.05  # the band fits the zoomed scale


# -- the Sweeps page (format 3: the worst inner layer) ------------------------------------------------

POINTS = ["block1", "block2", "block3", "block4"]


def _trial(n, gaps, retain, feasible=True, state="COMPLETE", tol=0.02):
    """A format-3 trial row (TEST FIXTURE: invented numbers): its reading from the signed gaps per point."""
    inner = {p: g for p, g in zip(POINTS[:3], gaps)}
    worst = max(inner, key=lambda p: abs(inner[p]))
    return {"number": n, "state": state, "distance": abs(inner[worst]), "objective": abs(inner[worst]),
            "worst_layer": worst, "worst_gap": inner[worst], "worst_z": abs(inner[worst]) / tol,
            "within": all(abs(g) <= tol for g in inner.values()), "last_gap": gaps[3],
            "gaps": dict(zip(POINTS, gaps)), "tolerances": {p: tol for p in POINTS}, "tolerance_measured": True,
            "forget_cka_mean": 0.8, "retain_acc": retain, "forget_acc": 0.0, "retrain_forget_acc": 0.0,
            "feasible": feasible, "params": {"w_block1": 1.0, "tau": 0.7}, "weights": [1, 1, 1, 1], "run_id": f"r{n}"}


def test_sweep_rows_are_ranked_and_shown_by_the_worst_layer():
    # trial 0: the mean over layers is 0 (a kept +0.06 cancels a distorted -0.43 and +0.37): far at block2
    rows = [_trial(0, [0.06, -0.43, 0.37, 0.0], 0.99), _trial(1, [0.01, -0.02, 0.015, -0.3], 0.98),
            _trial(2, [0.05, 0.05, 0.05, 0.0], 0.97), _trial(3, [0.0, 0.0, 0.0, 0.0], 0.5, feasible=False)]
    ref = {**_trial(-1, [0.1, -0.05, 0.0, -0.2], 0.975), "number": None}
    assert SF.best_row(rows, ref)["number"] == 1  # the closest at its worst layer with retain >= the default's
    fig = SF.pareto_scatter(rows, ref)
    assert [t.name for t in fig.data] == ["feasible (3)", "infeasible (1)", "Pareto front (2)", "default EC"]
    assert list(fig.data[2].x) == pytest.approx([0.02, 0.43]) and list(fig.data[3].x) == [0.1]
    assert "worst" in fig.layout.xaxis.title.text and "block1 +0.100" in fig.data[3].text[0]
    assert "distance to retrain 0.430 at block2 (−)" in fig.data[0].text[0]
    df = SF.trials_table(rows, POINTS)
    first = df.iloc[0]
    assert first["distance to retrain"] == pytest.approx(0.43) and first["worst layer"] == "block2 (−)"
    assert first["gaps per layer"] == "block1 +0.060, block2 -0.430, block3 +0.370 | block4 +0.000"
    assert bool(df.iloc[1]["within tolerance"]) and not bool(first["within tolerance"])
    hm = SF.gaps_heatmap(rows, POINTS, ref).data[0]
    assert list(hm.y) == ["default EC", "trial 3", "trial 1", "trial 2", "trial 0"]  # best first
    assert hm.zmid == 0 and list(hm.z[-1]) == pytest.approx([0.06, -0.43, 0.37, 0.0])
    fig = SF.pareto_scatter(rows, ref, objective="worst_z")
    assert "tolerances" in fig.layout.xaxis.title.text


def test_old_format_sweep_rows_are_listed_as_recorded_and_labelled():
    rows = [{"number": 0, "state": "COMPLETE", "cka_gap_to_retrain": 0.02, "forget_cka": 0.87,
             "retrain_forget_cka": 0.85, "retain_acc": 0.97, "forget_acc": 0.01, "params": {"tau": 0.7}}]
    df = SF.old_trials_table(rows)
    assert df.iloc[0][f"gap to retrain ({SF.OLD_FORMAT})"] == 0.02 and SF.OLD_FORMAT == "old format: mean over layers"
    assert df.iloc[0]["retain %"] == pytest.approx(97.0) and df.iloc[0]["tau"] == 0.7
    assert SF.complete(rows) == []  # no objective: never ranked, on no front


def test_tradeoff_axes_fit_the_runs_that_count():
    """Issue 22: a damaging run kept off the front no longer stretches the axes; it sits on the edge of
    the counted runs' span, inside the frame (on the frame itself its marker was cut), true values on hover."""
    rows = [{"name": "ec", "id": "a/ec", "worst_gap": -0.05, "retain_acc": 0.99},
            {"name": "ft", "id": "a/ft", "worst_gap": 0.04, "retain_acc": 0.98},
            {"name": "ga", "id": "a/ga", "worst_gap": -0.9, "retain_acc": 0.31, "damaging": True}]
    fig = CF.tradeoff_scatter(rows)
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert xr[1] < 0.1 and yr[0] > 0.8
    ga = next(t for t in fig.data if t.name == "GA")
    assert ga.x[0] == pytest.approx(-0.05) and ga.y[0] == pytest.approx(0.95)  # the span's edges
    assert _inside_with_margin([ga.x[0]], xr) and _inside_with_margin([ga.y[0]], yr)
    assert list(ga.customdata[0][4:]) == ["-0.900", "31.0%"]


def test_fit_axis_leaves_room_for_a_marker_at_the_edge():
    """GA's marker was cut at the bottom of the 95-100% retain axis: every drawn point, one at the
    span's edge and one clamped onto it, lies inside the range by more than a marker's radius."""
    span = CF.retain_span([0.95, 0.99, 1.0])
    shown, yr = CF.fit_axis([0.95, 1.0, 0.31], span, CF.RETAIN_PAD)
    assert span == (0.95, 1.0) and shown == [0.95, 1.0, 0.95]
    assert _inside_with_margin(shown, yr) and CF.retain_range([0.95, 0.99, 1.0]) == yr
    fig = CF.tradeoff_scatter([{"name": "ec", "id": "a", "worst_gap": 0.01, "retain_acc": 0.99},
                               {"name": "ga", "id": "b", "worst_gap": 0.3, "retain_acc": 0.31, "damaging": True}])
    assert list(fig.layout.yaxis.range) == yr
    px_per_unit = (fig.layout.height - fig.layout.margin.t - fig.layout.margin.b) / (yr[1] - yr[0])
    assert (min(shown) - yr[0]) * px_per_unit > 14 / 2 + 2  # a front marker: size 14, outline 2
    shown_x, xr = CF.fit_axis([0.3, -0.02], (-0.02, 0.02), CF.GAP_PAD)
    assert shown_x == [0.02, -0.02] and _inside_with_margin(shown_x, xr)
