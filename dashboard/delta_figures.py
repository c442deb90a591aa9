"""Retrain-centred figures: every value is drawn as its signed difference to the retrained model,
on a diverging scale centred at 0 (retrain), zoomed to the data.

Above 0 (orange): the run still holds more of the original than retrain does (not forgotten).
Below 0 (purple): the run was pushed further from the original than retrain is (distorted, not
forgotten). 0 (white / the dashed line): like the model that never saw the forget set.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from .figures import NOISE, REFERENCE_RUNS, _layout, _num, display_name, method_color, tolerance_band

# purple (below retrain) - white (retrain) - orange (above retrain)
DELTA_COLORSCALE = [[0.0, "#5e3c99"], [0.25, "#b2abd2"], [0.5, "#f7f7f7"], [0.75, "#fdb863"], [1.0, "#e66101"]]
RETRAIN_LINE = dict(color="#222222", width=3, dash="dash")


def symmetric_limit(values, min_limit: float = 0.02) -> float:
    """Half-width of a scale centred at 0 that holds every finite value, zoomed to the data: the
    largest |value| rounded up to two decimals, at least `min_limit`."""
    vals = [abs(_num(v)) for v in values]
    vals = [v for v in vals if not math.isnan(v)]
    m = max(vals, default=0.0)
    return max(min_limit, math.ceil(m * 100 - 1e-9) / 100)


def _row_label(name: str) -> str:
    return display_name(name) + (" (ref)" if name in REFERENCE_RUNS else "")


def delta_heatmap(deltas: Mapping[str, Mapping[str, float] | None], layers: Sequence[str],
                  names: Sequence[str] | None = None, title: str | None = None, what: str = "CKA") -> go.Figure:
    """Runs x layers heatmap of (run - retrain), centred at 0, zoomed to the largest difference."""
    names = list(names) if names is not None else list(deltas)
    z = [[_num((deltas.get(n) or {}).get(layer)) for layer in layers] for n in names]
    lim = symmetric_limit(v for row in z for v in row)
    text = [["" if math.isnan(v) else f"{v:+.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(layers), y=[_row_label(n) for n in names], zmin=-lim, zmax=lim, zmid=0.0,
        colorscale=DELTA_COLORSCALE, text=text, texttemplate="%{text}", xgap=1, ygap=1,
        hovertemplate="%{y} · %{x}<br>" + what + " minus retrain's: %{z:+.3f}<extra></extra>",
        colorbar=dict(title=f"{what} − retrain", tickvals=[-lim, 0, lim],
                      ticktext=[f"{-lim:+.2f} past retrain", "0 = retrain", f"{lim:+.2f} kept"])))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title="supervision point (input → output)", side="bottom")
    return _layout(fig, title, height=max(260, 70 + 34 * len(names)))


def delta_lines(deltas: Mapping[str, Mapping[str, float] | None], layers: Sequence[str],
                title: str | None = None, y_title: str = "", percent: bool = True,
                band: Mapping[str, float] | None = None) -> go.Figure:
    """One line per run of (run - retrain) over the layers; retrain is the dashed line at 0, shaded
    ± band[layer] (its tolerance, the reference noise) when given."""
    fig = go.Figure()
    fmt = "+.1%" if percent else "+.3f"
    ys_all = []
    if band:
        fig.add_traces(tolerance_band(layers, [0.0] * len(layers), band, percent))
        ys_all += [_num(band.get(layer)) for layer in layers]
    fig.add_trace(go.Scatter(x=list(layers), y=[0.0] * len(layers), mode="lines", name="Retrain (0)",
                             line=RETRAIN_LINE, hoverinfo="skip"))
    for name, per_layer in deltas.items():
        if name == "retrain":
            continue
        ys = [_num((per_layer or {}).get(layer)) for layer in layers]
        ys_all += ys
        style = dict(color=method_color(name), width=2, dash="dot" if name == "original" else "solid")
        if name == NOISE:  # training noise, grey dash-dot as on the Teach page's lines, never a method's colour
            style.update(color="#9a9a9a", dash="dashdot")
        fig.add_trace(go.Scatter(x=list(layers), y=ys, mode="lines+markers", name=display_name(name), line=style,
                                 hovertemplate=f"{display_name(name)} · %{{x}}: %{{y:{fmt}}} vs retrain<extra></extra>"))
    lim = symmetric_limit(ys_all) * 1.1
    fig.update_yaxes(range=[-lim, lim], tickformat="+.0%" if percent else "+.2f", title=y_title,
                     zeroline=True, zerolinecolor="#222", zerolinewidth=1)
    fig.update_xaxes(title="supervision point (input → output)")
    return _layout(fig, title, height=380)


RETRAIN_MEASURES = (
    ("forget_delta", "Forget accuracy − retrain", "#9ecae1"),
    ("worst_gap", "Forget CKA − retrain, worst inner layer", "#3182bd"),
    ("probe_worst_gap", "Probe recovery − retrain, worst inner layer", "#08306b"),
)


def retrain_bars(rows: Sequence[Mapping]) -> go.Figure:
    """Grouped bars of each run's signed difference to retrain (0 = retrain, the dashed line):
    above 0 the run keeps more of the forget set than retrain, below 0 it was pushed past it.
    rows: dicts with "name" and the keys of RETRAIN_MEASURES (fractions, None allowed)."""
    fig = go.Figure()
    labels = [_row_label(r["name"]) for r in rows]
    vals = []
    for key, label, color in RETRAIN_MEASURES:
        ys = [_num(r.get(key)) for r in rows]
        vals += ys
        fig.add_trace(go.Bar(x=labels, y=ys, name=label, marker_color=color,
                             hovertemplate="%{x}<br>" + label + ": %{y:+.3f}<extra></extra>"))
    lim = symmetric_limit(vals, 0.05) * 1.1
    fig.add_hline(y=0, line=RETRAIN_LINE, annotation_text="Retrain = 0", annotation_position="top left",
                  annotation_font=dict(size=11, color="#222"))
    fig.update_yaxes(range=[-lim, lim], tickformat="+.2f", title="difference to retrain")
    fig.update_xaxes(title=None)
    return _layout(fig, "Difference to the retrained model (0 = retrain; closer to 0 is better)", height=420,
                   barmode="group")
