"""The Grid page's pure side (dashboard/views/grid.py): a scenario grid (engine/grid.py `grid_table`)
as a methods x scenarios matrix of readings against retrain, the per-method counts, EC's readings per
scenario, the grid picker's labels and the links from a cell to its comparison.

A cell reads the same rows and verdicts as every other page: verdict.rows_vs_retrain of the cell's
results.json when the page could read it, else verdict.flags on the engine's run_summary rows of the
cell (the same rule, from the per-layer gaps). No Streamlit, no torch, no engine import: every
function works on plain dicts.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from . import logic, verdict
from .figures import display_name
from .logic import REFERENCE, num

ACTIVE = logic.ACTIVE_STATES  # a cell (a compare job) still to finish
SCENARIO_HELP = ("A scenario is forget:seed: 3:0 forgets class 3 with seed 0, 3+5:0 classes 3 and 5, r0.1:0 a "
                 "random 10% of the training set.")


def counts() -> list[tuple[str, str, str]]:
    """The per-method counts of engine/grid.py grid_table: (key, column, what it counts), by the
    engine's one rule (engine/results.py FORGET_TOL, RETAIN_TOL; the verdicts' too)."""
    return [("forgets", "Forgets in", f"forget accuracy within {verdict.FORGET_TOL * 100:g} points of retrain's"),
            ("keeps_retain", "Keeps retain in",
             f"retain accuracy at most {verdict.RETAIN_TOL * 100:g} points below the original's"),
            ("like_retrain", "Like retrain in", "within the tolerance of retrain at every inner layer")]


def active(table: Mapping | None) -> bool:
    """Whether any cell of the grid is still queued or running (the page then polls)."""
    if not table:
        return False
    return table.get("state") in ACTIVE or any(c.get("state") in ACTIVE for c in table.get("cells") or [])


def scenario_text(s: str) -> str:
    """'3+5:0' -> 'forget classes 3, 5 · seed 0'; 'r0.1:2' -> 'forget a random 10% · seed 2'."""
    forget, _, seed = str(s).partition(":")
    if forget.startswith("r"):
        share = num(forget[1:])
        what = f"a random {share:.0%}" if share is not None else forget
    else:
        parts = [p for p in forget.split("+") if p]
        what = ("class " if len(parts) == 1 else "classes ") + ", ".join(parts)
    return f"forget {what}" + (f" · seed {seed}" if seed else "")


def grid_label(g: Mapping) -> str:
    """The picker's label of one grid: 'digits · 3:0, 0:1, 8:2 · done · 2026-12-04 17:20'."""
    scen = [str(s) for s in g.get("scenarios") or []]
    shown = ", ".join(scen[:5]) + (f", … ({len(scen)})" if len(scen) > 5 else "")
    state = str(g.get("state") or "?")
    p = num(g.get("progress"))
    if state in ACTIVE and p is not None:
        state += f" {100 * p:.0f}%"
    return f"{g.get('preset', '?')} · {shown} · {state} · {logic.fmt_time(g.get('created'))}"


def grid_labels(grids: Sequence[Mapping]) -> dict[str, str]:
    """{grid id: label}, every label distinct (the id added where two would read the same)."""
    labels = logic.distinct_labels([grid_label(g) for g in grids], [str(g["id"]) for g in grids])
    return {g["id"]: lab for g, lab in zip(grids, labels)}


def comparison_href(job_id: str, page: str = "overview") -> str:
    """The address of a cell's comparison on an analysis page (relative to the Grid page's): the
    pages show the job named by ?results= (widgets.results_picker)."""
    return f"{page}?results={quote(str(job_id), safe='')}"


# -- rows of one cell -----------------------------------------------------------------------------

def _layer_states(gaps: Sequence[Mapping] | None) -> dict[str, str]:
    """verdict.layer_state at every inner point of run_summary gaps ({point, inner, value, retrain, gap, tol})."""
    out = {}
    for g in gaps or []:
        if not g.get("inner"):
            continue
        v, gap, r = num(g.get("value")), num(g.get("gap")), num(g.get("retrain"))
        if r is None and v is not None and gap is not None:
            r = v - gap
        s = verdict.layer_state(v, r, num(g.get("tol")) or verdict.ASSUMED_TOLERANCE)
        if s is not None:
            out[g["point"]] = s
    return out


def engine_rows(cell: Mapping) -> dict[str, dict]:
    """The engine's rows of a done cell ({run: run_summary}) with the pages' flags, damaging and verdict
    added (verdict.flags from the per-layer gaps; a calibration block is not in these rows)."""
    rows = {}
    for name, r in (cell.get("rows") or {}).items():
        role = r.get("role") or ("reference" if name in REFERENCE else "method")
        rows[name] = {**r, "name": name, "role": role}
    orig, ret = rows.get("original"), rows.get("retrain")
    for r in rows.values():
        r["flags"] = verdict.flags(r, orig, ret, _layer_states(r.get("gaps")))
        r["damaging"] = verdict.damaging(r["flags"])
        r["verdict"] = verdict.verdict(r["flags"], r["role"])
    return rows


def cell_rows(cell: Mapping, results: Mapping | None = None) -> dict[str, dict]:
    """{run name: row} of one cell, as every page reads it: rows_vs_retrain of its results.json when
    given, else engine_rows. Empty for a cell that is not done."""
    if cell.get("state") != "done":
        return {}
    if results:
        return {r["name"]: r for r in verdict.rows_vs_retrain(results)}
    return engine_rows(cell)


# -- the matrix ------------------------------------------------------------------------------------

def run_order(table: Mapping, rows_by_cell: Sequence[Mapping[str, Mapping]]) -> list[str]:
    """The matrix's rows: original and retrain, then the grid's methods in its order (every run found
    in a done cell when the grid names none), then any other run a cell holds."""
    seen = [n for rows in rows_by_cell for n in rows]
    named = [str(m) for m in table.get("methods") or []]
    methods = named + [n for n in dict.fromkeys(seen) if n not in REFERENCE and n not in named]
    return [n for n in REFERENCE if n in seen or not seen] + methods


def signed(v) -> str:
    """'+0.062' / '−0.166' (a true minus sign, as distance_text writes it); 'n/a' unknown."""
    f = num(v)
    return "n/a" if f is None else ("+" if f >= 0 else "−") + f"{abs(f):.3f}"


def reading(row: Mapping | None) -> dict | None:
    """One run of one cell as the matrix shows it: forget / retain accuracy, the signed gap at the worst
    inner layer and that layer, within the tolerance at every inner layer or not, the verdict."""
    if not row:
        return None
    ref = row.get("name") == "retrain"
    layer = "0 (reference)" if ref else (
        "n/a" if num(row.get("worst_gap")) is None else f"{signed(row.get('worst_gap'))} at {row.get('worst_layer') or '?'}")
    within = True if ref else row.get("within")
    return {"name": row.get("name"), "role": row.get("role"), "forget_acc": num(row.get("forget_acc")),
            "retain_acc": num(row.get("retain_acc")), "worst_gap": num(row.get("worst_gap")),
            "worst_layer": row.get("worst_layer"), "distance": num(row.get("distance")), "within": within,
            "accuracy": f"{logic.pct(row.get('forget_acc'))} / {logic.pct(row.get('retain_acc'))}",
            "layer": layer, "tolerance": "n/a" if within is None else ("within tolerance" if within else "beyond tolerance"),
            "verdict": row.get("verdict") or "", "damaging": bool(row.get("damaging"))}


def cell_state_text(cell: Mapping) -> str:
    """What a cell that is not done shows: 'queued', 'running 40%', 'failed: …', 'cancelled'."""
    state = str(cell.get("state") or "?")
    p = num(cell.get("progress"))
    if state == "running" and p is not None:
        return f"running {100 * p:.0f}%"
    if state == "failed":
        return "failed: " + str(cell.get("error") or "no message")
    return state


def matrix(table: Mapping, results: Mapping[str, Mapping] | None = None) -> dict:
    """{"scenarios": [...], "cells": [cell per scenario], "rows": [{"name", "role", "readings": [reading
    or None per scenario]}]}; `results` maps a done cell's job id to its results.json (cells without
    one read the engine's rows)."""
    cells = list(table.get("cells") or [])
    results = results or {}
    per_cell = [cell_rows(c, results.get(c.get("job_id"))) for c in cells]
    rows = []
    for name in run_order(table, per_cell):
        rows.append({"name": name, "role": "reference" if name in REFERENCE else "method",
                     "readings": [reading(rc.get(name)) for rc in per_cell]})
    return {"scenarios": [str(c.get("scenario")) for c in cells], "cells": cells, "rows": rows}


def per_method_rows(table: Mapping, order: Sequence[str], label: Callable[[str], str] = display_name) -> list[dict]:
    """The per-method counts (engine grid_table's per_method) as table rows, in the matrix's order:
    'n of N' scenarios in which the method forgets, keeps retain, stays like retrain."""
    per = table.get("per_method") or {}
    out = []
    for m in [n for n in order if n in per] + [n for n in per if n not in order]:
        c = per[m] or {}
        of = c.get("of")
        out.append({"Method": label(m), **{head: f"{c.get(k, 0)} of {of if of is not None else '?'}"
                                            for k, head, _ in counts()}})
    return out


def ec_rows(table: Mapping, m: Mapping) -> list[dict]:
    """EC's readings per scenario: the engine's `ec` block (distance to retrain, its layer and sign,
    within) with the cell's forget / retain accuracy and verdict from the matrix."""
    ec = table.get("ec") or {}
    row = next((r for r in m["rows"] if r["name"] == "ec"), None)
    out = []
    for i, (s, cell) in enumerate(zip(m["scenarios"], m["cells"])):
        e = ec.get(s)
        r = row["readings"][i] if row else None
        if e is None and r is None:
            out.append({"Scenario": s, "Forget request": scenario_text(s), "State": cell_state_text(cell)})
            continue
        e = e or {}
        within = e.get("within", (r or {}).get("within"))
        out.append({"Scenario": s, "Forget request": scenario_text(s), "State": cell_state_text(cell),
                    "Forget acc": None if r is None or r["forget_acc"] is None else 100 * r["forget_acc"],
                    "Retain acc": None if r is None or r["retain_acc"] is None else 100 * r["retain_acc"],
                    logic.DISTANCE_LABEL: logic.distance_text({"name": "ec", **e}) if e else (r or {}).get("layer", "n/a"),
                    "Within tolerance": "n/a" if within is None else ("yes" if within else "no"),
                    "Verdict": (r or {}).get("verdict", "")})
    return out


# -- the matrix as HTML ----------------------------------------------------------------------------

CSS = """
.eclab-grid-wrap { overflow-x: auto; }
table.eclab-grid { border-collapse: collapse; font-size: 0.8rem; width: 100%; }
table.eclab-grid th, table.eclab-grid td { border: 1px solid #e6e6ea; padding: 0; vertical-align: top; }
table.eclab-grid th { background: #f7f7f9; font-weight: 600; padding: 0.3rem 0.45rem; text-align: left; }
table.eclab-grid th.run { white-space: nowrap; }
table.eclab-grid td a.cell { display: block; padding: 0.25rem 0.45rem; color: inherit; text-decoration: none; }
table.eclab-grid td a.cell:hover { outline: 2px solid #1c83e1; outline-offset: -2px; }
table.eclab-grid .num { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.eclab-grid .word { color: #31333f; }
table.eclab-grid .muted { color: #808495; }
table.eclab-grid .failed { color: #bd4043; }
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def cell_colour(r: Mapping | None, colours: Mapping[str, str]) -> str | None:
    """The cell's background (widgets.STRIP_COLOURS): 'yes' for a run within the tolerance of retrain at
    every inner layer and not damaging (retain kept, forget accuracy near retrain's), 'no' otherwise; none
    for the reference rows and unknown readings."""
    if not r or r.get("role") == "reference" or r.get("within") is None:
        return None
    return colours.get("yes" if r["within"] and not r.get("damaging") else "no")


def overrides_text(over: Mapping | None, prefix: str = "") -> str:
    """{'model': {'width': 8}, 'train': {'epochs': 1}} -> 'model.width=8, train.epochs=1'."""
    parts = []
    for k, v in (over or {}).items():
        if isinstance(v, Mapping):
            inner = overrides_text(v, f"{prefix}{k}.")
            if inner:
                parts.append(inner)
        else:
            parts.append(f"{prefix}{k}={v}")
    return ", ".join(parts)


def matrix_html(m: Mapping, label: Callable[[str], str] = display_name, colours: Mapping[str, str] | None = None,
                href: Callable[[str], str] = comparison_href) -> str:
    """The matrix as an HTML table: a row per run, a column per scenario; every done cell is a link to
    its comparison (href(job id)) with forget / retain accuracy, the signed gap at the worst inner layer
    and its layer, within the tolerance or not, and the verdict; cells not done show their state."""
    colours = colours or {}
    head = "".join(
        f'<th title="{_e(scenario_text(s))}">'
        + (f'<a class="scn" href="{_e(href(c["job_id"]))}">{_e(s)}</a>' if c.get("state") == "done" and c.get("job_id")
           else _e(s)) + "</th>"
        for s, c in zip(m["scenarios"], m["cells"]))
    body = []
    for row in m["rows"]:
        tds = []
        for s, cell, r in zip(m["scenarios"], m["cells"], row["readings"]):
            if cell.get("state") != "done":
                cls = "failed" if cell.get("state") == "failed" else "muted"
                tds.append(f'<td><div class="cell {cls}" style="padding:0.25rem 0.45rem">{_e(cell_state_text(cell))}</div></td>')
                continue
            if r is None:
                tds.append('<td><div class="muted" style="padding:0.25rem 0.45rem">not run</div></td>')
                continue
            bg = cell_colour(r, colours)
            style = f' style="background-color:{_e(bg)}"' if bg else ""
            tol = "" if r["role"] == "reference" else f'<div class="word">{_e(r["tolerance"])}</div>'
            title = f"{label(row['name'])} on {s}: open this comparison (job {cell.get('job_id')})"
            tds.append(
                f'<td{style}><a class="cell" href="{_e(href(cell["job_id"]))}" title="{_e(title)}" '
                f'data-job="{_e(cell["job_id"])}" data-run="{_e(row["name"])}" data-scenario="{_e(s)}">'
                f'<div class="num acc">{_e(r["accuracy"])}</div><div class="num gap">{_e(r["layer"])}</div>'
                f'{tol}<div class="word verdict">{_e(r["verdict"])}</div></a></td>')
        body.append(f'<tr><th class="run">{_e(label(row["name"]))}</th>{"".join(tds)}</tr>')
    return (f"<style>{CSS}</style><div class=\"eclab-grid-wrap\"><table class=\"eclab-grid\">"
            f"<thead><tr><th>Run \\ scenario</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
