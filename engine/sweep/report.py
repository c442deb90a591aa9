"""Reading a study: trial rows, the Pareto front, the summary and the comparison with the default EC
settings, and the studies found in the run store (what `sweep-show` and the Sweeps page show)."""
from __future__ import annotations

import os
from pathlib import Path

from .. import results as results_schema
from ..catalog import display_name
from ..procs import one_line
from .space import _params_text
from .storage import _quiet_optuna, is_url, open_storage, redact, sweeps_dir
from .study import FORMAT_VERSION, OBJECTIVES, TOLERANCE


# what a trial records per format: format 3 the worst inner layer's gap to retrain and the gaps per point;
# format 2 the gap of the mean over layers (shown as recorded, labelled, never ranked against format 3)
READINGS = ("distance", "worst_layer", "worst_gap", "worst_z", "within", "last_gap", "probe_distance",
            "forget_cka_mean", "gaps", "tolerances", "probe_gaps", "tolerance_measured", "retain_acc")
OLD_READINGS = ("cka_gap_to_retrain", "forget_cka", "retrain_forget_cka")


def trial_rows(study) -> list[dict]:
    """One plain dict per trial (what the dashboard and the summary use): its readings (READINGS; a
    format-2 study's OLD_READINGS), "objective" (the value of the study's first objective), state,
    constraint, feasibility, parameters and bookkeeping."""
    attrs = study.user_attrs
    points = attrs.get("points") or []
    objectives = attrs.get("objectives") or OBJECTIVES
    current = attrs.get("eclab_sweep") == FORMAT_VERSION  # an older format's objective is not comparable
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        cons = t.constraints.get("forget_gap", ua.get("constraint"))
        # the stored values under the names the study's own version gave them; the rest from user attrs
        named = dict(zip(objectives, t.values)) if t.state.name == "COMPLETE" and t.values else {}
        got = {k: named.get(k, ua.get(k)) for k in READINGS + OLD_READINGS}
        ws = [t.params.get(f"w_{p}") for p in points] if any(f"w_{p}" in t.params for p in points) else None
        rows.append({
            "number": t.number, "state": t.state.name, **got, "objective": named.get(objectives[0]) if current else None,
            "forget_acc": ua.get("forget_acc"), "retrain_forget_acc": ua.get("retrain_forget_acc"),
            "test_acc": ua.get("test_acc"), "constraint": cons,
            "feasible": (cons is not None and cons <= 0) if t.state.name == "COMPLETE" else None,
            "params": dict(t.params), "weights": ws, "tau": t.params.get("tau"),
            "run_id": ua.get("run_id"), "error": ua.get("error"), "worker": ua.get("worker"),
            "host": ua.get("host"), "seconds": ua.get("seconds"), "registered": ua.get("registered"),
            "start": t.datetime_start.timestamp() if t.datetime_start else None,
            "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
        })
    front = set(pareto_front(rows)) if current else set()
    for r in rows:
        r["pareto"] = r["number"] in front
    return rows


def pareto_front(rows: list[dict], feasible_only: bool = True) -> list[int]:
    """Trial numbers of the non-dominated COMPLETE trials (min objective, max retain_acc), among the
    feasible ones when any is feasible. Rows without an objective (an older format) are on no front."""
    points = [(r.get("objective"), r["retain_acc"]) if r["state"] == "COMPLETE" else (None, None) for r in rows]
    on = results_schema.pareto(points, ("min", "max"), [r["feasible"] for r in rows] if feasible_only else None)
    return [r["number"] for r, o in zip(rows, on) if o]


OBJECTIVE_TEXT = {"distance": "distance to retrain (worst inner layer)",
                  "worst_z": "worst inner layer's gap to retrain in tolerances",
                  "probe_distance": "probe recovery's distance to retrain (worst inner layer)"}


def gaps_line(gaps: dict | None, points: list[str]) -> str:
    """'block1 +0.028, block2 +0.062, block3 -0.091 | block4 -0.427' from a {point: gap} reading."""
    inner = set(results_schema.inner_layers(points))
    return results_schema.gaps_text([{"point": p, "inner": p in inner, "gap": results_schema.num((gaps or {}).get(p))}
                                     for p in points])


def trial_line(m: dict) -> str:
    """'distance to retrain 0.427 at block4 (gaps block1 +0.028, ... | block4 -0.427; within tolerance:
    no)': one trial's (or the reference's) per-layer reading."""
    points = list(m.get("gaps") or {})
    within = {True: "yes", False: "no"}.get(m.get("within"), "?")
    tol = "" if m.get("tolerance_measured") else ", assumed"
    return (f"distance to retrain {_f(m.get('distance'))} at {m.get('worst_layer')} (gaps "
            f"{gaps_line(m.get('gaps'), points)}; every inner layer within tolerance{tol}: {within})")


def summary_text(study, ref: dict | None = None) -> str:
    rows = trial_rows(study)
    attrs = study.user_attrs
    ref = ref or attrs.get("reference")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines = [f"study {study.study_name}: {len(rows)}/{attrs.get('n_trials')} trials ("
             + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) + ")"]
    fails = [r for r in rows if r["state"] == "FAIL"]
    for r in fails[:5]:
        lines.append(f"  failed trial {r['number']}: {r['error'] or 'no reason recorded'}")
    if len(fails) > 5:
        lines.append(f"  ... and {len(fails) - 5} more failed trials")
    tol = attrs.get("tolerance", TOLERANCE)
    points = attrs.get("points") or []
    done = [r for r in rows if r["state"] == "COMPLETE"]
    if attrs.get("eclab_sweep") != FORMAT_VERSION:
        lines.append(f"made by sweep format {attrs.get('eclab_sweep')}, which ranked trials by "
                     f"{'a mean over layers' if attrs.get('eclab_sweep') == 2 else 'raw forget CKA'} (a layer "
                     f"that kept the class could cancel one distorted past retrain): its {len(done)} completed "
                     f"trials as recorded, unranked; start a new --study to sweep the worst layer")
        return "\n".join(lines + _old_trial_table(done))
    objective = (attrs.get("objectives") or OBJECTIVES)[0]
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: -r["retain_acc"])
    if front:
        any_feasible = any(r["feasible"] for r in front)
        lines.append(f"Pareto front ({OBJECTIVE_TEXT.get(objective, objective)} vs retain accuracy) of the "
                     + (f"feasible trials (forget accuracy within {tol} of the retrained model's):" if any_feasible
                        else f"trials (none is feasible: forget accuracy within {tol} of the retrained model's):"))
        lines += _trial_table(front, points)
    else:
        lines.append("no completed trial yet")
    if ref:
        lines.append(compare_text(rows, ref, objective))
    return "\n".join(lines)


def _trial_table(rows: list[dict], points: list[str]) -> list[str]:
    """Lines of a trial table: the worst inner layer, the gaps per point, retain and forget accuracy."""
    lines = [f"  {'trial':>5} {'distance':>8} {'worst':>8} {'in tol':>6} {'retain':>7} {'forget':>7}  "
             f"gaps to retrain per layer ({', '.join(points)}) / settings"]
    for r in rows:
        within = {True: "yes", False: "no"}.get(r.get("within"), "-")
        lines.append(f"  {r['number']:>5} {_f(r.get('distance')):>8} {str(r.get('worst_layer') or '-'):>8} "
                     f"{within:>6} {_f(r['retain_acc']):>7} {_f(r['forget_acc']):>7}  "
                     f"{gaps_line(r.get('gaps'), points)}")
        lines.append(f"  {'':>5} {'':>8} {'':>8} {'':>6} {'':>7} {'':>7}  {_params_text(r['params'])}  (run {r['run_id']})")
    return lines


def _old_trial_table(rows: list[dict]) -> list[str]:
    """A format-1/2 study's trials as recorded: the gap of the mean over layers, labelled."""
    lines = [f"  {'trial':>5} {'mean-gap':>8} {'mean CKA':>8} {'retain':>7} {'forget':>7}  settings "
             f"(old format: mean over layers)"]
    for r in rows:
        lines.append(f"  {r['number']:>5} {_f(r.get('cka_gap_to_retrain')):>8} {_f(r.get('forget_cka')):>8} "
                     f"{_f(r['retain_acc']):>7} {_f(r['forget_acc']):>7}  {_params_text(r['params'])}  (run {r['run_id']})")
    return lines


def _f(v, p: int = 3) -> str:
    return f"{v:.{p}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def compare_text(rows: list[dict], ref: dict, objective: str = "distance") -> str:
    """'default EC: distance to retrain X at L (gaps ...), retain Y; best at retain >= Y: distance Z at
    L' (gaps ...) ...': the trial with the smallest objective among the feasible ones keeping the
    default's retain accuracy, compared with the default on the same objective (the worst layer)."""
    x, y = ref.get(objective), ref["retain_acc"]
    head = (f"default {display_name(ref.get('label', 'ec'))}: {trial_line(ref)}, retain {y:.3f}"
            + ("" if ref.get("feasible", True) else f" (forget acc {ref['forget_acc']:.3f}: outside the tolerance)"))
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["retain_acc"] >= y - 1e-9
          and r.get("objective") is not None]
    if not ok:
        return head + f"; no feasible trial reached retain >= {y:.3f}"
    best = min(ok, key=lambda r: (r["objective"], -r["retain_acc"]))
    z = best["objective"]
    name = OBJECTIVE_TEXT.get(objective, objective)
    verdict = ("does not beat the default" if x is None or z >= x - 1e-9 else
               f"beats the default: {x - z:.3f} smaller {name}")
    return head + (f"; best at retain >= {y:.3f}: {trial_line(best)} ({_params_text(best['params'])}; trial "
                   f"{best['number']}, {verdict})")


def discover_studies(extra_storage: str | None = None) -> list[dict]:
    """Sweep studies in $ECLAB_HOME/sweeps/*.journal and in $ECLAB_SWEEP_STORAGE (or extra_storage):
    [{"study", "storage", "label", "n_trials", "preset", "created"}], newest first. An unreadable storage is
    listed with "error" (and study None)."""
    out = []
    sources = [str(p) for p in sorted(sweeps_dir().glob("*.journal"))]
    url = extra_storage or os.environ.get("ECLAB_SWEEP_STORAGE")
    if url and url not in sources:
        sources.append(url if is_url(url) else str(Path(url).expanduser().resolve()))
    for src in sources:
        try:
            raw = open_storage(src)
            for s in raw.get_all_studies():
                if not s.user_attrs.get("eclab_sweep"):
                    continue
                where = "database" if is_url(src) else "journal"
                out.append({"study": s.study_name, "storage": src, "label": f"{s.study_name} ({where})",
                            "n_trials": s.user_attrs.get("n_trials"), "preset": s.user_attrs.get("preset"),
                            "created": s.user_attrs.get("created") or 0})
        except Exception as err:
            out.append({"study": None, "storage": src, "label": redact(src), "error": one_line(err), "created": 0})
    return sorted(out, key=lambda s: -float(s["created"]))  # newest first


def study_table(study: str, storage: str) -> dict:
    """Everything the dashboard shows of one study: {"attrs", "rows"} (plain data)."""
    _quiet_optuna()
    import optuna
    st = optuna.load_study(study_name=study, storage=open_storage(storage))
    return {"attrs": dict(st.user_attrs), "rows": trial_rows(st)}
