"""Pure builders for the Sweeps page: plain trial rows in, Plotly figures / tables / hand-offs out.

No Streamlit; the engine only through dashboard/facts.py (the Pareto front, the deep merge).
A trial row is the dict engine.sweep.trial_rows() makes (format 3):
    {"number", "state" ("COMPLETE"|"FAIL"|"RUNNING"|...), "distance" (the largest |gap| to retrain over the
     inner points), "worst_layer", "worst_gap" (signed), "worst_z", "within", "last_gap", "gaps" {point:
     signed gap}, "tolerances" {point: tol}, "probe_gaps", "probe_distance", "forget_cka_mean",
     "objective" (the value of the study's first objective, attrs["objectives"][0]: "distance",
     "worst_z" or "probe_distance"), "retain_acc", "forget_acc", "retrain_forget_acc", "constraint",
     "feasible" (bool|None), "pareto" (bool, optional), "params": {"w_<point>": .., "tau": .., ...},
     "weights": [..]|None, "tau", "run_id", "error", "seconds", ...}
A reference is the study's "reference" user attr: the same measurements of the default EC settings
plus "weights", "tau". A format-2 study's rows carry "cka_gap_to_retrain", "forget_cka" and
"retrain_forget_cka" (the gap of the mean over layers) instead: shown as recorded, never ranked.

Trials are ranked by their objective, by default the distance to retrain at the worst inner layer:
retrain is the gold standard, so closer is better on either side (below retrain's CKA is distortion,
not forgetting), and no layer can hide in a mean.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from . import facts
from .delta_figures import delta_heatmap
from .logic import as_float as _num, distance_text, gaps_text, reading_gaps

FEASIBLE = "#1f77b4"
INFEASIBLE = "#bdbdbd"
FRONT = "#d62728"
DEFAULT = "#2ca02c"
OBJECTIVE = "objective"  # a trial row's value of the study's first objective
OBJECTIVE_AXIS = {
    "distance": "distance to retrain (worst layer): largest |gap| in forget CKA over the inner layers (lower = closer)",
    "worst_z": "worst inner layer's gap to retrain in tolerances, |z| (lower = closer)",
    "probe_distance": "probe recovery's distance to retrain, worst inner layer (lower = closer)",
}
OLD_FORMAT = "old format: mean over layers"


def complete(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rows if r.get("state") == "COMPLETE" and not math.isnan(_num(r.get(OBJECTIVE)))
            and not math.isnan(_num(r.get("retain_acc")))]


def pareto_mask(rows: Sequence[Mapping], feasible_only: bool = True) -> list[bool]:
    """Per row: on the front of COMPLETE trials (min distance to retrain, max retain accuracy), among the
    feasible ones when any is feasible. Uses row["pareto"] as given when every row has it."""
    if rows and all("pareto" in r for r in rows):
        return [bool(r["pareto"]) for r in rows]
    points = [(r.get(OBJECTIVE), r.get("retain_acc")) if r.get("state") == "COMPLETE" else (None, None) for r in rows]
    return facts.pareto(points, ("min", "max"), [r.get("feasible") for r in rows] if feasible_only else None)


def gaps_line(r: Mapping, points: Sequence[str]) -> str:
    """'block1 +0.028, block2 +0.062, block3 -0.091 | block4 -0.427': a trial's (or the reference's)
    signed gaps to retrain per point ('' when it has none)."""
    return gaps_text(reading_gaps(r.get("gaps"), r.get("tolerances"), points)) if r.get("gaps") else ""


def reading_line(r: Mapping, points: Sequence[str]) -> str:
    """'distance to retrain 0.427 at block4 (−); gaps block1 +0.028, ... | block4 -0.427': a trial's
    (or the reference's) per-layer reading."""
    line = f"distance to retrain {distance_text(r)}"
    return line + (f"; gaps {gaps_line(r, points)}" if r.get("gaps") else "")


def _hover(r: Mapping) -> str:
    parts = [f"trial {r.get('number')}"]
    ws = r.get("weights")
    if ws:
        parts.append("weights [" + ", ".join(f"{_num(w):.2f}" for w in ws) + "]")
    for k, v in (r.get("params") or {}).items():
        if not k.startswith("w_"):
            parts.append(f"{k} {_num(v):.4g}")
    if r.get("gaps"):
        parts.append(reading_line(r, list(r["gaps"])))
    fa = _num(r.get("forget_acc"))
    if not math.isnan(fa):
        parts.append(f"forget acc {fa:.1%}")
    return "<br>".join(parts)


def pareto_scatter(rows: Sequence[Mapping], reference: Mapping | None = None, objective: str = "distance",
                   title: str = "Sweep: retain accuracy vs distance to retrain") -> go.Figure:
    """Completed trials, feasible (blue) and infeasible (grey, forget accuracy off the retrained
    model's), against the study's first objective (`objective`, by default the distance to retrain at
    the worst inner layer); the Pareto front joined by a line, and the default EC settings as a star."""
    done = complete(rows)
    front = pareto_mask(list(done), feasible_only=True) if not all("pareto" in r for r in done) else \
        [bool(r["pareto"]) for r in done]
    fig = go.Figure()
    groups = (("feasible", FEASIBLE, [r for r in done if r.get("feasible")]),
              ("infeasible", INFEASIBLE, [r for r in done if not r.get("feasible")]))
    for name, color, rs in groups:
        fig.add_trace(go.Scatter(
            x=[_num(r[OBJECTIVE]) for r in rs], y=[_num(r["retain_acc"]) for r in rs], mode="markers",
            name=f"{name} ({len(rs)})", marker=dict(color=color, size=9, line=dict(color="#555", width=0.5)),
            text=[_hover(r) for r in rs], customdata=[r.get("number") for r in rs],
            hovertemplate="%{text}<br>" + objective + " %{x:.3f}<br>retain %{y:.1%}<extra></extra>"))
    fr = sorted((r for r, f in zip(done, front) if f), key=lambda r: _num(r[OBJECTIVE]))
    if fr:
        fig.add_trace(go.Scatter(
            x=[_num(r[OBJECTIVE]) for r in fr], y=[_num(r["retain_acc"]) for r in fr], mode="lines+markers",
            name=f"Pareto front ({len(fr)})", line=dict(color=FRONT, width=1.5, dash="dot", shape="hv"),
            marker=dict(color="rgba(0,0,0,0)", size=14, line=dict(color=FRONT, width=2)),
            text=[_hover(r) for r in fr], customdata=[r.get("number") for r in fr],
            hovertemplate="%{text}<br>" + objective + " %{x:.3f}<br>retain %{y:.1%}<extra>Pareto front</extra>"))
    if reference and not math.isnan(_num(reference.get(objective))):
        fig.add_trace(go.Scatter(
            x=[_num(reference[objective])], y=[_num(reference.get("retain_acc"))], mode="markers",
            name="default EC", marker=dict(symbol="star", size=16, color=DEFAULT, line=dict(color="#000", width=1)),
            text=["<br>".join(["default EC settings", reading_line(reference, list(reference.get("gaps") or {}))])],
            hovertemplate="%{text}<br>" + objective + " %{x:.3f}<br>retain %{y:.1%}<extra></extra>"))
    fig.update_xaxes(title=OBJECTIVE_AXIS.get(objective, objective), rangemode="tozero")
    fig.update_yaxes(title="retain accuracy", tickformat=".1%")
    # The title at the very top, the legend on its own line just above the plot (never on the title).
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", xref="container", yref="container", y=1.0,
                                 yanchor="top", pad=dict(t=12, l=4)),
                      height=440, template="plotly_white",
                      margin=dict(l=60, r=20, t=84, b=50), hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0))
    return fig


def param_columns(rows: Sequence[Mapping]) -> list[str]:
    """Swept parameter names in a stable order: layer weights first (as sampled), then the rest."""
    names: list[str] = []
    for r in rows:
        for k in (r.get("params") or {}):
            if k not in names:
                names.append(k)
    ws = [n for n in names if n.startswith("w_")]
    order = ["tau", "lambda_cu", "lambda_ce", "lr", "epochs"]
    rest = sorted((n for n in names if not n.startswith("w_")), key=lambda n: (order.index(n) if n in order else 99, n))
    return ws + rest


def parcoords(rows: Sequence[Mapping], objective: str = "distance") -> go.Figure:
    """Parallel coordinates of the swept settings against both objectives (completed trials),
    coloured by the first objective (by default the distance to retrain; darker = closer to retrain)."""
    done = complete(rows)
    cols = param_columns(done)
    dims = []
    for c in cols:
        vals = [_num((r.get("params") or {}).get(c)) for r in done]
        label = c[2:] if c.startswith("w_") else c
        label = f"weight {label}" if c.startswith("w_") else label
        dims.append(dict(label=label, values=vals))
    gaps = [_num(r[OBJECTIVE]) for r in done]
    dims.append(dict(label=objective, values=gaps))
    dims.append(dict(label="retain acc", values=[_num(r["retain_acc"]) for r in done], tickformat=".1%"))
    dims.append(dict(label="feasible", values=[1 if r.get("feasible") else 0 for r in done],
                     tickvals=[0, 1], ticktext=["no", "yes"], range=[-0.1, 1.1]))
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line=dict(color=gaps, colorscale="Viridis", reversescale=False, showscale=True,
                  colorbar=dict(title=objective)) if done else dict(color=[])))
    fig.update_layout(title=dict(text="Settings against the objectives", x=0.0, xanchor="left"), height=420,
                      template="plotly_white", margin=dict(l=60, r=40, t=110, b=40))
    return fig


def _pct(v) -> float | None:
    return None if v is None else 100 * _num(v)


def trials_table(rows: Sequence[Mapping], points: Sequence[str] = ()) -> pd.DataFrame:
    """One row per trial (accuracies in percent): the distance to retrain at the worst inner layer, the
    signed gaps per point (`points`), then the settings."""
    cols = param_columns(rows)
    out = []
    for r in sorted(rows, key=lambda r: r.get("number", 0)):
        d = {"trial": r.get("number"), "state": r.get("state"), "feasible": r.get("feasible"),
             "Pareto": bool(r.get("pareto")), "distance to retrain": r.get("distance"),
             "worst layer": (f"{r.get('worst_layer')} ({'+' if _num(r.get('worst_gap')) >= 0 else '−'})"
                             if r.get("worst_layer") else None),
             "within tolerance": r.get("within"), "gaps per layer": gaps_line(r, points),
             "probe distance": r.get("probe_distance"), "mean inner forget CKA": r.get("forget_cka_mean"),
             "retain %": _pct(r.get("retain_acc")), "forget acc %": _pct(r.get("forget_acc")),
             "retrain forget %": _pct(r.get("retrain_forget_acc"))}
        for c in cols:
            d[c] = (r.get("params") or {}).get(c)
        d.update({"seconds": r.get("seconds"), "run": r.get("run_id"), "error": r.get("error")})
        out.append(d)
    columns = ["trial", "state", "feasible", "Pareto", "distance to retrain", "worst layer", "within tolerance",
               "gaps per layer", "probe distance", "mean inner forget CKA", "retain %", "forget acc %",
               "retrain forget %", *cols, "seconds", "run", "error"]
    return pd.DataFrame(out, columns=columns)


def old_trials_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """A format-1/2 study's trials as recorded: the gap of the mean over layers, labelled as such."""
    cols = param_columns(rows)
    gap, cka = f"gap to retrain ({OLD_FORMAT})", f"forget CKA ({OLD_FORMAT})"
    out = [{"trial": r.get("number"), "state": r.get("state"), gap: r.get("cka_gap_to_retrain"),
            cka: r.get("forget_cka"), "retrain forget CKA": r.get("retrain_forget_cka"),
            "retain %": _pct(r.get("retain_acc")), "forget acc %": _pct(r.get("forget_acc")),
            **{c: (r.get("params") or {}).get(c) for c in cols}, "run": r.get("run_id")}
           for r in sorted(rows, key=lambda r: r.get("number", 0))]
    return pd.DataFrame(out, columns=["trial", "state", gap, cka, "retrain forget CKA", "retain %", "forget acc %",
                                      *cols, "run"])


def gaps_heatmap(rows: Sequence[Mapping], points: Sequence[str], reference: Mapping | None = None) -> go.Figure:
    """Completed trials x supervision points: each trial's signed gap to retrain, on a diverging scale
    centred at 0 (retrain), trials by their objective (best first), the default EC on top."""
    done = sorted(complete(rows), key=lambda r: _num(r[OBJECTIVE]))
    gaps = {f"trial {r['number']}": r.get("gaps") or {} for r in done}
    if reference and reference.get("gaps"):
        gaps = {"default EC": reference["gaps"], **gaps}
    return delta_heatmap(gaps, points, title="Gap to retrain per layer, every completed trial (best first)",
                         what="forget CKA")


def best_row(rows: Sequence[Mapping], reference: Mapping | None = None) -> Mapping | None:
    """The trial to suggest: among feasible completed trials with retain accuracy at least the default's,
    the one with the smallest objective (the closest to retrain at its worst layer); else the closest
    feasible trial; else the closest completed one."""
    done = complete(rows)
    feas = [r for r in done if r.get("feasible")]
    if reference is not None and feas:
        y = _num(reference.get("retain_acc"))
        ok = [r for r in feas if _num(r["retain_acc"]) >= y - 1e-9]
        if ok:
            return min(ok, key=lambda r: (_num(r[OBJECTIVE]), -_num(r["retain_acc"])))
    pool = feas or done
    return min(pool, key=lambda r: (_num(r[OBJECTIVE]), -_num(r["retain_acc"]))) if pool else None


def prefill(row: Mapping, attrs: Mapping, study: str | None = None) -> dict:
    """The Launch page hand-off for a trial's settings:
    {"method": "ec" (or the plugged method), "ec": {"weights", "tau", ...}, "preset", "overrides" (the study's scenario plus these
    settings), "source"}. The Launch page reads "preset" + "overrides"."""
    params = dict(row.get("params") or {})
    points = list(attrs.get("points") or [])
    run = facts.swept_run(attrs.get("overrides"))
    over = facts.params_to_overrides(params, points, run)  # the sweep's own mapping (engine/sweep/space.py)
    if "weights" not in over.get("ec", {}) and row.get("weights"):
        over.setdefault("ec", {})["weights"] = [float(w) for w in row["weights"]]
    ec = dict(over.get("ec") or {})
    overrides = facts.deep_merge(copy.deepcopy(dict(attrs.get("overrides") or {})), over)
    src = f"sweep {study} trial {row.get('number')}" if study else f"sweep trial {row.get('number')}"
    return {"method": over["method"], "ec": ec, "preset": attrs.get("preset", "digits"), "overrides": overrides,
            "source": src}


def counts(rows: Sequence[Mapping]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.get("state", "?")] = out.get(r.get("state", "?"), 0) + 1
    return out
