"""The Compare page's figures: the trade-off scatter and its Pareto front, per-class accuracy,
confusion matrices and the membership-inference view. Same conventions as dashboard/figures.py,
whose colours, names and layout they use.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import facts
from .figures import (REFERENCE_RUNS, class_label, _layout, _legend_right, _num, _shade, display_name,
                      method_color)


def pareto_front(x: Sequence[float | None], y: Sequence[float | None]) -> list[bool]:
    """Pareto-optimal points when x is minimised and y maximised (engine/results.py `pareto`).

    A point is on the front unless another point is at least as good in both and strictly better
    in one. Points with a missing coordinate are never on the front. Exact duplicates are both
    kept."""
    return facts.pareto(list(zip(x, y)), ("min", "max"))


def _variant_label(r: Mapping) -> str:
    return display_name(r["name"]) + (f" · {r['settings']}" if r.get("settings") else "")


def _clamp(v: float, lo: float, hi: float) -> float:
    return v if math.isnan(v) else min(hi, max(lo, v))


def tradeoff_scatter(rows: Sequence[Mapping], x_key: str = "worst_gap", y_key: str = "retain_acc") -> go.Figure:
    """Retain accuracy vs the distance to retrain for the runs of ONE scenario (the caller picks it: a
    front across data sets compares nothing); the Pareto front is highlighted and joined.

    rows: dicts with "name" (method label), "id" (shown on hover), x_key (a signed gap to retrain: by
    default the worst inner layer's, so |x| is THE distance to retrain) and y_key; optional "settings"
    (short form, on hover; a method's settings are shades of its colour under one legend entry, so a
    sweep's trials do not fill the legend), "worst_layer" (on hover) and "damaging" (True: drawn as an
    x, never on the front, as the sweeps do). The axes fit the runs that count: a damaging run beyond
    them is drawn on the edge of their span, inside the frame's padding (fit_axis), its true values on
    hover. The front minimises |x|; retrain is the dashed line at 0."""
    xs = [_num(r.get(x_key)) for r in rows]
    ys = [_num(r.get(y_key)) for r in rows]
    ok = [not r.get("damaging") for r in rows]
    front_x = [abs(x) for x in xs]
    front = pareto_front([x if k else None for x, k in zip(front_x, ok)], [y if k else None for y, k in zip(ys, ok)])
    counted = [i for i, k in enumerate(ok) if k] or list(range(len(rows)))
    shown_y, yr = fit_axis(ys, retain_span([ys[i] for i in counted]), RETAIN_PAD)
    lim = max([abs(xs[i]) for i in counted if not math.isnan(xs[i])] + [0.02])  # symmetric about retrain (0)
    shown_x, xr = fit_axis(xs, (-lim, lim), GAP_PAD)
    fig = go.Figure()
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["name"], []).append(i)
    for name, idx in groups.items():
        variants = list(dict.fromkeys(rows[i].get("settings") or "" for i in idx))
        shades = [method_color(name) if n == 0 else _shade(method_color(name), (0.6, 1.35, 0.8, 1.2)[(n - 1) % 4])
                  for n in range(len(variants))]
        label = (_variant_label(rows[idx[0]]) if len(variants) == 1
                 else f"{display_name(name)} ({len(variants)} settings)")
        fig.add_trace(go.Scattergl(
            x=[shown_x[i] for i in idx], y=[shown_y[i] for i in idx], mode="markers", name=label,
            marker=dict(color=shades[0] if len(shades) == 1 else
                        [shades[variants.index(rows[i].get("settings") or "")] for i in idx],
                        size=[14 if front[i] else 9 for i in idx],
                        line=dict(color=["#000" if front[i] else "rgba(0,0,0,0)" for i in idx], width=2),
                        symbol=["diamond" if name in REFERENCE_RUNS else ("x" if not ok[i] else "circle")
                                for i in idx]),
            customdata=[[_variant_label(rows[i]), str(rows[i].get("id", "")),
                         "Pareto front" if front[i] else ("damaging: kept off the front" if not ok[i] else ""),
                         rows[i].get("worst_layer") or "?", f"{xs[i]:+.3f}", f"{ys[i]:.1%}"] for i in idx],
            hovertemplate="%{customdata[0]} · %{customdata[1]}<br>gap to retrain %{customdata[4]} at "
                          "%{customdata[3]} (worst inner layer)<br>retain acc %{customdata[5]}<br>%{customdata[2]}"
                          "<extra></extra>"))
    fidx = sorted((i for i, f in enumerate(front) if f), key=lambda i: front_x[i])
    if fidx:
        fig.add_trace(go.Scatter(x=[xs[i] for i in fidx], y=[ys[i] for i in fidx], mode="lines",
                                 name="Pareto front", line=dict(color="#000", width=1.5, dash="dot"),
                                 hoverinfo="skip"))
    fig.add_vline(x=0, line=dict(color="#222", width=2, dash="dash"), annotation_text="retrain",
                  annotation_position="top")
    fig.update_xaxes(title="distance to retrain: forget CKA gap at the worst inner layer, signed "
                           "(0 = like retrain; below 0 = pushed past it, distorted)", range=xr, tickformat="+.2f")
    fig.update_yaxes(title="retain accuracy", tickformat=".0%", range=yr)
    fig = _legend_right(_layout(fig, "Trade-off: retain accuracy vs distance to retrain (worst layer)", height=440))
    fig.update_layout(legend=dict(itemsizing="constant"))  # front points are larger; legend symbols are not
    return fig


RETAIN_PAD = 0.08  # of the span on each side: at 440 px about 20 px, more than a front marker's radius (7 px + line)
GAP_PAD = 0.075  # the gap axis is wider than it is tall: the same room or more


def fit_axis(values: Sequence[float], span: tuple[float, float], pad_frac: float) -> tuple[list[float], list[float]]:
    """(where each value is drawn, the axis range): a value outside `span` is drawn on its edge (its true
    value on hover), and the range adds `pad_frac` of the span on both sides, so every marker, the
    clamped ones too, has room inside the frame instead of being cut by it."""
    lo, hi = span
    pad = pad_frac * (hi - lo)
    return [_clamp(float(v), lo, hi) for v in values], [lo - pad, hi + pad]


def retain_span(ys: Sequence[float | None]) -> tuple[float, float]:
    """The retain accuracies the trade-off scatter's axis spans: from the lowest (at most 95%) up to
    100%, so a single run does not get an axis from -50% to 150%."""
    fy = [float(v) for v in ys if v is not None and not math.isnan(float(v))]
    return (min(min(fy), 0.95), max(max(fy), 1.0)) if fy else (0.0, 1.0)


def retain_range(ys: Sequence[float | None]) -> list[float]:
    """The retain-accuracy axis range of the trade-off scatter (retain_span, padded)."""
    return fit_axis([], retain_span(ys), RETAIN_PAD)[1]


def per_class_bars(run_acc: Sequence[float], orig_acc: Sequence[float] | None, run: str,
                   class_names: Sequence[str] | None = None,
                   forget_classes: Sequence[int] = ()) -> go.Figure:
    """Test accuracy per class: the original beside one run; forget classes shaded."""
    n = len(run_acc)
    xs = list(range(n))
    ticks = [class_label(class_names, c) for c in xs]
    fig = go.Figure()
    if orig_acc is not None:
        fig.add_trace(go.Bar(x=xs, y=[_num(v) for v in orig_acc], name="Original",
                             marker_color=method_color("original")))
    fig.add_trace(go.Bar(x=xs, y=[_num(v) for v in run_acc], name=display_name(run),
                         marker_color=method_color(run)))
    for c in forget_classes or ():
        if 0 <= int(c) < n:
            fig.add_vrect(x0=int(c) - 0.5, x1=int(c) + 0.5, fillcolor="#d62839", opacity=0.10, line_width=0,
                          annotation_text="forget", annotation_position="top left")
    # labels slanted up to their tick: slanted down from it, the last class's name ran off the plot and was dropped
    fig.update_xaxes(tickvals=xs, ticktext=ticks, title="class", tickangle=-30, automargin=True)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.08], title="test accuracy")
    return _layout(fig, "Per-class test accuracy", height=360, barmode="group")


def _row_normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=float)
    s = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, m / np.where(s == 0, 1, s), np.nan)


def confusion_pair(conf_run, conf_orig, run: str, class_names: Sequence[str] | None = None) -> go.Figure:
    """Row-normalised confusion matrices (share of each true class), original left, run right."""
    mats = [("Original", conf_orig), (display_name(run), conf_run)]
    mats = [(t, _row_normalise(m)) for t, m in mats if m is not None]
    fig = make_subplots(rows=1, cols=len(mats), subplot_titles=[t for t, _ in mats], horizontal_spacing=0.08)
    for col, (t, m) in enumerate(mats, start=1):
        n = m.shape[0]
        ticks = [class_label(class_names, c) for c in range(n)]
        fig.add_trace(go.Heatmap(z=m, x=ticks, y=ticks, zmin=0, zmax=1, colorscale="Blues",
                                 showscale=col == len(mats), colorbar=dict(title="share", tickformat=".0%"),
                                 hovertemplate="true %{y} → predicted %{x}: %{z:.1%}<extra>" + t + "</extra>"),
                      row=1, col=col)
        # the rows line up across the panels: class names on the left one only, not over the left matrix
        fig.update_yaxes(autorange="reversed", row=1, col=col, title="true class" if col == 1 else None,
                         type="category", showticklabels=col == 1)
        fig.update_xaxes(title="predicted class", row=1, col=col, type="category")
    return _layout(fig, "Confusion matrices on the test set (rows sum to 100%)", height=420)


MIA_SPLITS = (("forget", "#d62839"), ("retain", "#222222"), ("test", "#4e79a7"))
MIA_X_RANGE = (-0.02, 1.02)  # a little room at both ends, so the tick labels 0 and 1 are not clipped


def mia_view(conf: Mapping[str, np.ndarray | None], decision_grid: Mapping | None = None,
             run: str = "", efficacy: float | None = None) -> go.Figure:
    """Distributions of the true-label confidence on forget, retain and test samples, with the
    attack's decision over the confidence axis shaded ("member" regions)."""
    fig = go.Figure()
    bins = dict(start=0.0, end=1.0, size=0.025)
    for split, color in MIA_SPLITS:
        v = conf.get(split)
        if v is None or len(v) == 0:
            continue
        fig.add_trace(go.Histogram(x=np.asarray(v, dtype=float), name=f"{split} (n={len(v)})", xbins=bins,
                                   histnorm="percent", marker_color=color, opacity=0.55,
                                   hovertemplate=split + ": %{y:.1f}% of samples at confidence %{x}<extra></extra>"))
    for x0, x1 in member_intervals(decision_grid):
        fig.add_vrect(x0=x0, x1=x1, fillcolor="#f2b134", opacity=0.18, line_width=0, layer="below")
    if member_intervals(decision_grid):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="attack says “member”",
                                 marker=dict(symbol="square", size=12, color="rgba(242,177,52,0.45)")))
    title = "Membership inference: true-label confidence"
    if run:
        title += f" · {display_name(run)}"
    if efficacy is not None and not math.isnan(_num(efficacy)):
        title += f" (MIA efficacy {_num(efficacy):.1%})"
    fig.update_xaxes(range=list(MIA_X_RANGE), title="softmax confidence of the true label")
    fig.update_yaxes(title="share of the split's samples", ticksuffix="%")
    return _layout(fig, title, height=380, barmode="overlay")


def member_intervals(decision_grid: Mapping | None) -> list[tuple[float, float]]:
    """Contiguous confidence intervals where the attack predicts "member"."""
    if not decision_grid:
        return []
    xs = list(decision_grid.get("conf") or [])
    ms = list(decision_grid.get("member") or [])
    out: list[tuple[float, float]] = []
    start = None
    for i, (x, m) in enumerate(zip(xs, ms)):
        if m and start is None:
            start = x
        if start is not None and (not m or i == len(xs) - 1):
            end = x if m else xs[i - 1]
            out.append((float(start), float(end)))
            start = None
    return out
