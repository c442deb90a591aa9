"""Pure figure builders: plain dicts and arrays in, Plotly figures out.

Nothing here imports Streamlit or the engine (method labels and colours come from engine/catalog.py
through dashboard/facts.py); every builder can be tested on hand-made inputs.
Conventions shared by all figures:
  * one colour per method everywhere (`method_color`), reference runs in greys;
  * CKA always on a fixed 0..1 colour scale (`zmin=0, zmax=1`), so colours compare across figures;
  * accuracies are fractions in the data and shown as percentages on the axes;
  * scatters with many points use `Scattergl`.
"""
from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import facts
from .facts import METHODS, base_method
from .logic import NOISE
from .logic import as_float as _num

# -- names and colours -------------------------------------------------------------------------

# Methods' labels and colours live in engine/catalog.py; the reference "original" is no method.
REFERENCE_LABELS = {"original": "Original", NOISE: "Original, other seed"}  # the last: the training-noise reference
_BASE_COLORS = {"original": "#8c8c8c", **{name: info.color for name, info in METHODS.items()}}
_FALLBACK = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#ff7f0e"]

# Class colours for embeddings (distinct from the method palette on purpose).
CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31",
                "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"]

CKA_COLORSCALE = "Viridis"
REFERENCE_RUNS = ("original", "retrain", NOISE)  # the last: the training-noise reference
_FONT = dict(family="Inter, Helvetica Neue, Arial, sans-serif", size=13)


def display_name(name: str) -> str:
    return facts.display_name(name, REFERENCE_LABELS)


def _shade(hex_color: str, factor: float) -> str:
    """Darken (factor < 1) or lighten (factor > 1) a hex colour in HLS lightness."""
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    l = max(0.0, min(1.0, l * factor))
    r, g, b = colorsys.hls_to_rgb(h, l, s)
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))


def method_color(name: str) -> str:
    """One stable colour per method label, identical on every page.

    Base methods have fixed colours; a method with the EC plug-in ("ft+ec") gets a darker shade of
    its base colour; unknown names get a colour from a fallback palette chosen by a stable hash."""
    name = str(name or "")
    if name in _BASE_COLORS:
        return _BASE_COLORS[name]
    base = base_method(name)
    if base in _BASE_COLORS and name.endswith("+ec"):
        return _shade(_BASE_COLORS[base], 0.62)
    idx = int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(_FALLBACK)
    return _FALLBACK[idx]


_AXIS = dict(gridcolor="#e8ecf2", linecolor="#c9d1dc", zerolinecolor="#d5dbe4", ticks="", automargin=True,
             title=dict(standoff=8))
# A small white template: the full "plotly_white" costs ~13 ms per figure to validate and copy.
TEMPLATE = go.layout.Template(layout=dict(
    paper_bgcolor="white", plot_bgcolor="white", xaxis=_AXIS, yaxis=_AXIS, hovermode="closest",
    hoverlabel=dict(align="left"), colorway=_FALLBACK,
))


def _layout(fig: go.Figure, title: str | None = None, height: int = 380, **kw) -> go.Figure:
    """Shared layout. The title sits at the very top of the figure and the horizontal legend just
    above the plot area, on its own line below the title, so a long title never runs into it."""
    legend_line = sum(t.type != "heatmap" for t in fig.data) > 1
    top = (TITLE_MARGIN if legend_line else 56) if title else 40
    fig.update_layout(template=TEMPLATE, font=_FONT, height=height,
                      margin=dict(l=60, r=20, t=top, b=50),
                      title=dict(text=title, x=0.0, xanchor="left", xref="container", yref="container",
                                 y=1.0, yanchor="top", pad=dict(t=12, l=4)) if title else None,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0),
                      **kw)
    return fig


TITLE_MARGIN = 84  # px above the plot area: the title line, then the legend line




def _pct(v) -> str:
    f = _num(v)
    return "n/a" if math.isnan(f) else f"{f:.1%}"


# -- overview ----------------------------------------------------------------------------------

LOGIT_BAR = ("Forget accuracy (logits)", "#fdae6b")
# Inner layers from light (input side) to dark (output side): the same order as the network.
LAYER_BLUES = ("#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")


def layer_shades(n: int) -> list[str]:
    """n blues from light to dark, spread over LAYER_BLUES (any n >= 1)."""
    if n <= 1:
        return [LAYER_BLUES[2]][:n]
    last = len(LAYER_BLUES) - 1
    return [LAYER_BLUES[round(i * last / (n - 1))] for i in range(n)]


def _at(gaps, point: str) -> tuple[float, float]:
    """(run's value, retrain's value) at one point of a layer_gaps list; NaN where missing."""
    for g in gaps or ():
        if g.get("point") == point:
            return _num(g.get("value")), _num(g.get("retrain"))
    return math.nan, math.nan


def forgetting_bars(rows: Sequence[Mapping], inner: Sequence[str]) -> go.Figure:
    """What is left of the forget set at the logits and at each inner layer, one bar per layer (no
    mean, so no layer hides): top, forget accuracy at the logits beside the forget CKA to the original
    at each inner point; bottom, linear-probe recovery of the forget set at each inner point. A method
    forgotten only superficially has a low logit bar and high layer bars, higher than Retrain's.

    rows: dicts with "name", "forget_acc", and "gaps" / "probe_gaps" (engine.results.layer_gaps lists:
    point, value, retrain); None and missing values allowed."""
    labels = [display_name(r["name"]) + (" (ref)" if r["name"] in REFERENCE_RUNS else "") for r in rows]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14, row_heights=[0.55, 0.45],
                        subplot_titles=("Forget set: accuracy at the logits, CKA to the original at each inner layer",
                                        "Forget set: linear-probe recovery at each inner layer"))
    name, color = LOGIT_BAR
    ys = [_num(r.get("forget_acc")) for r in rows]
    fig.add_trace(go.Bar(x=labels, y=ys, name=name, marker_color=color, legendgroup="logits", offsetgroup="logits",
                         customdata=[[_pct(y)] for y in ys],
                         hovertemplate="%{x}<br>forget accuracy at the logits: %{customdata[0]}<extra></extra>"),
                  row=1, col=1)
    for layer, shade in zip(inner, layer_shades(len(inner))):
        for row, key, what, fmt in ((1, "gaps", "CKA to the original", lambda v: f"{v:.2f}"),
                                    (2, "probe_gaps", "probe recovery", _pct)):
            pairs = [_at(r.get(key), layer) for r in rows]
            fig.add_trace(go.Bar(
                x=labels, y=[v for v, _ in pairs], name=layer, marker_color=shade, legendgroup=layer,
                showlegend=row == 1, offsetgroup=layer,
                customdata=[["n/a" if math.isnan(v) else fmt(v), "n/a" if math.isnan(rv) else fmt(rv)]
                            for v, rv in pairs],
                hovertemplate=f"%{{x}} · {layer}<br>{what}: %{{customdata[0]}} (retrain %{{customdata[1]}})"
                              "<extra></extra>"), row=row, col=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".1f", title="accuracy · CKA", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="recovered", row=2, col=1)
    fig.update_annotations(font=dict(size=13, color="#333"), xanchor="left", x=0.0)
    _layout(fig, "Logit-level vs representation-level forgetting, layer by layer", height=620, barmode="group")
    return fig


# -- layers ------------------------------------------------------------------------------------

def zoomed_floor(values, step: float = 0.05) -> float:
    """The lower end of a zoomed 0..1 scale: the smallest finite value rounded down to `step`
    (at most 1 - step), so differences of 0.92-1.00 get the whole colour range."""
    vals = [_num(v) for v in values]
    vals = [v for v in vals if not math.isnan(v)]
    lo = min(vals, default=0.0)
    return max(0.0, min(1.0 - step, math.floor(lo / step + 1e-9) * step))


def cka_heatmap(cka: Mapping[str, Mapping[str, float] | None], layers: Sequence[str],
                names: Sequence[str] | None = None, title: str | None = None, zoom: bool = False) -> go.Figure:
    """Methods x layers heatmap of CKA (rows in the order of `names`, default the dict order).

    cka: {run name: {layer: value}} ; a missing run or layer shows as an empty cell. The scale is
    fixed at 0..1, or with `zoom` runs from the lowest value (rounded down to 0.05) to 1."""
    names = list(names) if names is not None else list(cka)
    z = [[_num((cka.get(n) or {}).get(layer)) for layer in layers] for n in names]
    text = [["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    ylabels = [display_name(n) + (" (ref)" if n in REFERENCE_RUNS else "") for n in names]
    zmin = zoomed_floor(v for row in z for v in row) if zoom else 0.0
    ticks = [round(zmin + (1.0 - zmin) * i / 4, 3) for i in range(5)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(layers), y=ylabels, zmin=zmin, zmax=1.0, colorscale=CKA_COLORSCALE,
        text=text, texttemplate="%{text}", hovertemplate="%{y} · %{x}<br>CKA %{z:.3f}<extra></extra>",
        colorbar=dict(title="CKA" + (" (zoomed)" if zoom else ""), tickvals=ticks), xgap=1, ygap=1))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title="supervision point (input → output)", side="bottom")
    return _layout(fig, title, height=max(260, 70 + 34 * len(names)))


def cka_matrix_heatmap(matrix: Sequence[Sequence[float]], layers: Sequence[str], run: str,
                       reference: str = "original") -> go.Figure:
    """Layer x layer CKA between one run (rows) and the reference model (columns)."""
    z = [[_num(v) for v in row] for row in matrix]
    text = [["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(layers), y=list(layers), zmin=0.0, zmax=1.0, colorscale=CKA_COLORSCALE,
        text=text, texttemplate="%{text}",
        hovertemplate=f"{display_name(run)} %{{y}} vs {display_name(reference)} %{{x}}<br>CKA %{{z:.3f}}<extra></extra>",
        colorbar=dict(title="CKA"), xgap=1, ygap=1))
    fig.update_yaxes(autorange="reversed", title=f"{display_name(run)} layer")
    fig.update_xaxes(title=f"{display_name(reference)} layer")
    return _layout(fig, f"{display_name(run)} vs {display_name(reference)}, layer by layer (forget split)",
                   height=420)


BAND_NAME = "Retrain ± tolerance (reference noise)"


def tolerance_band(layers: Sequence[str], centre: Sequence[float], tol: Mapping[str, float],
                   percent: bool = False) -> list[go.Scatter]:
    """Two traces that shade centre ± tol[layer] over the layers: the reference noise around retrain's
    line (how far a second retrained model from another seed lands from the first)."""
    t = [_num(tol.get(layer)) for layer in layers]
    fmt = ".1%" if percent else ".3f"
    upper = go.Scatter(x=list(layers), y=[c + d for c, d in zip(centre, t)], mode="lines", line=dict(width=0),
                       showlegend=False, hoverinfo="skip", legendgroup="band")
    lower = go.Scatter(x=list(layers), y=[c - d for c, d in zip(centre, t)], mode="lines", line=dict(width=0),
                       fill="tonexty", fillcolor="rgba(34,34,34,0.12)", name=BAND_NAME, legendgroup="band",
                       customdata=t, hovertemplate=f"%{{x}}: retrain ± %{{customdata:{fmt}}}<extra>reference noise</extra>")
    return [upper, lower]


def layer_lines(values: Mapping[str, Mapping[str, float] | None], layers: Sequence[str],
                title: str | None = None, y_title: str = "", percent: bool = True,
                chance: float | None = None, floor: str | None = "retrain",
                y_range: tuple[float, float] = (0.0, 1.05), band: Mapping[str, float] | None = None) -> go.Figure:
    """One line per run over the layers (probe recovery, per-layer CKA ...).

    The `floor` run (retrain: the model that never saw the forget set) is drawn dashed black, the
    original dotted grey; `band` ({layer: tolerance}) shades the floor's line ± the tolerance (the
    reference noise); `chance` adds a horizontal chance line."""
    fig = go.Figure()
    if band and values.get(floor):
        fig.add_traces(tolerance_band(layers, [_num(values[floor].get(layer)) for layer in layers], band, percent))
    for name, per_layer in values.items():
        per_layer = per_layer or {}
        ys = [_num(per_layer.get(layer)) for layer in layers]
        style = dict(color=method_color(name), width=2)
        label = display_name(name)
        if name == floor:
            style.update(dash="dash", width=3)
            label += " (floor)"
        elif name == "original":
            style.update(dash="dot")
        elif name == NOISE:  # training noise: what reseeding alone does
            style.update(color="#9a9a9a", dash="dashdot", width=2)
            label += " (training noise)"
        fmt = ".1%" if percent else ".3f"
        fig.add_trace(go.Scatter(x=list(layers), y=ys, mode="lines+markers", name=label, line=style,
                                 hovertemplate=f"{label} · %{{x}}: %{{y:{fmt}}}<extra></extra>"))
    if chance is not None:
        # Labelled at the left end, above the line: the right end is where the retrained model's
        # probe drops to chance, and a label there covers its last point.
        fig.add_hline(y=chance, line=dict(color="#999", width=1, dash="dot"),
                      annotation_text=f"chance ({chance:.0%})" if percent else "chance",
                      annotation_position="top left", annotation_font=dict(size=11, color="#777"))
    fig.update_yaxes(range=list(y_range), tickformat=".0%" if percent else ".1f", title=y_title)
    fig.update_xaxes(title="supervision point (input → output)")
    # The legend goes below the axis: these charts often sit in a half-width column, where more
    # lines than fit one legend line wrap upwards into the title (and side-by-side charts would
    # then get plot areas of different heights).
    fig = _layout(fig, title, height=470)
    # room for a legend of four rows, so side-by-side charts keep plot areas of the same height
    fig.update_layout(margin=dict(t=56 if title else 40, b=160),
                      legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0.0))
    return fig


def probe_lines(probe: Mapping[str, Mapping[str, float] | None], layers: Sequence[str],
                chance: float | None = None) -> go.Figure:
    return layer_lines(probe, layers, "Linear-probe recovery of forget-class test samples",
                       "probe accuracy", percent=True, chance=chance)


# -- training curves (live and stored history) ------------------------------------------------

TOTAL_LOSS = "loss"  # the training loop's name for the total loss of a step
# 20 distinct colours (Tableau 20 order, strong then light), so 11 loss terms never share one.
SERIES_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac", "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63",
                 "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e"]


def series_colors(n: int) -> list[str]:
    """n distinct colours (cycling only beyond 20)."""
    return [SERIES_COLORS[i % len(SERIES_COLORS)] for i in range(n)]


TOTAL_COLOR = "#6a3d9a"  # the total loss: no loss term's colour, and not retain accuracy's near-black
ACCURACIES = (("forget_acc", "forget acc", "#d62839"), ("retain_acc", "retain acc", "#222"))


def has_accuracy(history: Sequence[Mapping]) -> bool:
    """Whether any epoch of the history measured forget or retain accuracy (a model calibration kept,
    or a history without per-epoch probes, has losses only)."""
    return any(h.get(k) is not None for h in history for k, _, _ in ACCURACIES)


def training_curves(history: Sequence[Mapping], title: str | None = None) -> go.Figure:
    """Loss terms, the total loss (its own panel when there are terms: it can be 100x larger, or
    negative) and forget / retain accuracy by epoch (only when measured), side by side: no panel
    has an axis on its right to run into its neighbour.

    history: [{"epoch", "losses": {name: v}, "forget_acc", "retain_acc"}] (the "history" of a run or
    the accumulated "epoch" events of a running job)."""
    epochs = [h.get("epoch") for h in history]
    loss_names: list[str] = []
    for h in history:
        for k in (h.get("losses") or {}):
            if k not in loss_names:
                loss_names.append(k)
    total_apart = TOTAL_LOSS in loss_names and len(loss_names) > 1
    accuracy = has_accuracy(history)
    panels = ["Loss terms" if total_apart else "Loss"] + (["Total loss"] if total_apart else []) \
        + (["Accuracy"] if accuracy else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, horizontal_spacing=0.09)
    others = [k for k in loss_names if not (total_apart and k == TOTAL_LOSS)]
    colors = dict(zip(others, series_colors(len(others))))
    for k in loss_names:
        apart = total_apart and k == TOTAL_LOSS
        line = dict(color=TOTAL_COLOR, width=3) if apart else dict(color=colors.get(k, TOTAL_COLOR), width=2)
        fig.add_trace(go.Scatter(x=epochs, y=[_num((h.get("losses") or {}).get(k)) for h in history],
                                 mode="lines+markers", name=f"{k} (total)" if apart else k, line=line),
                      row=1, col=2 if apart else 1)
    if accuracy:
        for key, label, color in ACCURACIES:
            fig.add_trace(go.Scatter(x=epochs, y=[_num(h.get(key)) for h in history], mode="lines+markers",
                                     name=label, line=dict(color=color, dash="dash" if key == "forget_acc" else "solid")),
                          row=1, col=len(panels))
        fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=len(panels))
    fig.update_xaxes(title="epoch", dtick=1 if len(epochs) <= 20 else None)
    # The legend goes on one line above the panels (below the title, if any), clear of the subplot
    # titles: a legend on the right takes width from the panels and ends up between them in a column.
    height = 380
    top = (TITLE_MARGIN - 14) if title else 6
    legend_rows = 1 if len(loss_names) + 2 <= 5 else 2  # about five entries fit a line in a narrow column
    _layout(fig, title, height=height)
    fig.update_layout(margin=dict(t=top + 42 + 22 * legend_rows),
                      legend=dict(orientation="h", yref="container", y=1 - top / height, yanchor="top",
                                  xref="container", x=0.0, xanchor="left"))
    return fig


def sample_grid(images, class_names: Sequence[str], forget: Sequence[int] = (), gap: int = 2) -> go.Figure:
    """Example images, one row per class (images: (classes, per_class, h, w) grey values in [0, 1]), the
    forget classes' rows framed in red and named on the left."""
    imgs = np.asarray(images, dtype=float)
    n, k, h, w = imgs.shape
    mosaic = np.ones((n * (h + gap) - gap, k * (w + gap) - gap))
    for c in range(n):
        for j in range(k):
            mosaic[c * (h + gap):c * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = imgs[c, j]
    grey = (255 * np.clip(mosaic, 0, 1)).astype(np.uint8)
    fig = go.Figure(go.Image(z=np.stack([grey] * 3, axis=-1), hoverinfo="skip"))
    for c in forget:
        if 0 <= int(c) < n:
            y0 = int(c) * (h + gap) - 1
            fig.add_shape(type="rect", x0=-1.5, x1=k * (w + gap) - gap + 0.5, y0=y0 - 0.5, y1=y0 + h + 1.5,
                          line=dict(color="#d62839", width=3))
    centres = [c * (h + gap) + h / 2 for c in range(n)]
    fig.update_yaxes(tickvals=centres, showgrid=False, zeroline=False, automargin=True,
                     ticktext=[f"<b>{class_label(class_names, c)} (forget)</b>" if c in set(map(int, forget))
                               else class_label(class_names, c) for c in range(n)])
    fig.update_xaxes(visible=False)
    return _layout(fig, None, height=40 + 26 * n).update_layout(margin=dict(l=10, r=10, t=10, b=10))


def _legend_right(fig: go.Figure) -> go.Figure:
    """A vertical legend outside the plot on the right: long legends never cover titles."""
    fig.update_layout(legend=dict(orientation="v", y=1.0, yanchor="top", x=1.02, xanchor="left"))
    if fig.layout.title.text:  # no legend line above the plot: only the title needs room
        fig.update_layout(margin=dict(t=56))
    return fig


def epoch_cka_lines(history: Sequence[Mapping], layers: Sequence[str], title: str | None = None) -> go.Figure:
    """Forget-split CKA to the original per layer, by epoch (one line per layer)."""
    fig = go.Figure()
    epochs = [h.get("epoch") for h in history]
    n = max(1, len(layers) - 1)
    for i, layer in enumerate(layers):
        color = _shade("#3182bd", 0.55 + 0.9 * i / n)
        fig.add_trace(go.Scatter(x=epochs, y=[_num((h.get("cka_forget") or {}).get(layer)) for h in history],
                                 mode="lines+markers", name=layer, line=dict(color=color, width=2)))
    fig.update_yaxes(range=[0, 1.05], title="forget CKA to original")
    fig.update_xaxes(title="epoch", dtick=1 if len(epochs) <= 20 else None)
    return _legend_right(_layout(fig, title or "Per-layer CKA to the original by epoch", height=340))


# -- embeddings --------------------------------------------------------------------------------

def class_label(class_names: Sequence[str] | None, c: int) -> str:
    if class_names and 0 <= c < len(class_names):
        name = str(class_names[c])
        return name if name == str(c) else f"{c} · {name}"
    return str(c)


def _padded_range(values: np.ndarray) -> list[float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [-1.0, 1.0]
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo or 1.0)
    return [lo - pad, hi + pad]


def umap_panels(panels: Sequence[tuple[str, np.ndarray | None]], labels: np.ndarray, is_forget: np.ndarray,
                class_names: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Side-by-side 2-D embeddings on shared axes (Scattergl), coloured by class, forget samples
    drawn as crosses. panels: [(title, coords (n, 2) or None)]."""
    panels = [(t, np.asarray(c, dtype=float)) for t, c in panels if c is not None]
    labels = np.asarray(labels).astype(int)
    is_forget = np.asarray(is_forget).astype(bool)
    ncols = max(1, len(panels))
    fig = make_subplots(rows=1, cols=ncols, subplot_titles=[t for t, _ in panels] or [""],
                        shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.04)
    classes = sorted(set(labels.tolist()))
    per_class = len(classes) <= len(CLASS_COLORS)
    for col, (_, xy) in enumerate(panels, start=1):
        if per_class:
            for c in classes:
                m = labels == c
                fig.add_trace(go.Scattergl(
                    x=xy[m, 0], y=xy[m, 1], mode="markers", name=class_label(class_names, c),
                    legendgroup=f"class{c}", showlegend=col == 1,
                    marker=dict(color=CLASS_COLORS[classes.index(c) % len(CLASS_COLORS)],
                                symbol=np.where(is_forget[m], "x", "circle").tolist(),
                                size=np.where(is_forget[m], 9, 6).tolist(),
                                opacity=0.85, line=dict(width=0)),
                    customdata=np.where(is_forget[m], "forget", "retain"),
                    hovertemplate=class_label(class_names, c) + " · %{customdata}<extra></extra>"),
                    row=1, col=col)
        else:
            for forget, sym, size in ((False, "circle", 5), (True, "x", 8)):
                m = is_forget == forget
                fig.add_trace(go.Scattergl(
                    x=xy[m, 0], y=xy[m, 1], mode="markers", name="forget" if forget else "retain",
                    legendgroup="forget" if forget else "retain", showlegend=col == 1,
                    marker=dict(color=labels[m], colorscale="Turbo", cmin=min(classes), cmax=max(classes),
                                symbol=sym, size=size, opacity=0.8),
                    hovertemplate="class %{marker.color}<extra></extra>"), row=1, col=col)
    if per_class and is_forget.any():
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name="× = forget sample",
                                   marker=dict(symbol="x", color="#333", size=9)), row=1, col=1)
    if panels:
        allxy = np.concatenate([xy for _, xy in panels])
        xr, yr = _padded_range(allxy[:, 0]), _padded_range(allxy[:, 1])
        fig.update_xaxes(range=xr, showticklabels=False, title="UMAP 1", zeroline=False)
        fig.update_yaxes(range=yr, showticklabels=False, zeroline=False)
        fig.update_yaxes(title="UMAP 2", row=1, col=1)
    fig = _layout(fig, title, height=480)
    fig.update_layout(legend=dict(orientation="v", y=1.0, yanchor="top", x=1.01, xanchor="left"),
                      margin=dict(r=150))
    return fig


def figure_html(fig: go.Figure) -> str:
    """A self-contained HTML file (plotly.js embedded: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)
