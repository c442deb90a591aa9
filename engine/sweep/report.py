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


def trial_rows(study) -> list[dict]:
    """One plain dict per trial (what the dashboard and the summary use)."""
    attrs = study.user_attrs
    points = attrs.get("points") or []
    objectives = attrs.get("objectives") or OBJECTIVES  # a format-1 study stored ["forget_cka", "retain_acc"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        cons = t.constraints.get("forget_gap", ua.get("constraint"))
        # the stored values under the names the study's own version gave them; the rest from user attrs
        named = dict(zip(objectives, t.values)) if t.state.name == "COMPLETE" and t.values else {}
        got = {k: named.get(k, ua.get(k)) for k in ("cka_gap_to_retrain", "forget_cka", "retrain_forget_cka",
                                                     "retain_acc")}
        ws = [t.params.get(f"w_{p}") for p in points] if any(f"w_{p}" in t.params for p in points) else None
        rows.append({
            "number": t.number, "state": t.state.name, **got,
            "forget_acc": ua.get("forget_acc"), "retrain_forget_acc": ua.get("retrain_forget_acc"),
            "test_acc": ua.get("test_acc"), "constraint": cons,
            "feasible": (cons is not None and cons <= 0) if t.state.name == "COMPLETE" else None,
            "params": dict(t.params), "weights": ws, "tau": t.params.get("tau"),
            "run_id": ua.get("run_id"), "error": ua.get("error"), "worker": ua.get("worker"),
            "host": ua.get("host"), "seconds": ua.get("seconds"), "registered": ua.get("registered"),
            "start": t.datetime_start.timestamp() if t.datetime_start else None,
            "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
        })
    front = set(pareto_front(rows))
    for r in rows:
        r["pareto"] = r["number"] in front
    return rows


def pareto_front(rows: list[dict], feasible_only: bool = True) -> list[int]:
    """Trial numbers of the non-dominated COMPLETE trials (min cka_gap_to_retrain, max retain_acc), among
    the feasible ones when any is feasible. Rows without a gap (a format-1 study) are on no front."""
    gap = OBJECTIVES[0]
    points = [(r.get(gap), r["retain_acc"]) if r["state"] == "COMPLETE" else (None, None) for r in rows]
    on = results_schema.pareto(points, ("min", "max"), [r["feasible"] for r in rows] if feasible_only else None)
    return [r["number"] for r, o in zip(rows, on) if o]


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
    if attrs.get("eclab_sweep") != FORMAT_VERSION:
        done = [r for r in rows if r["state"] == "COMPLETE"]
        lines.append(f"made by sweep format {attrs.get('eclab_sweep')}, which minimised EC's raw forget CKA (a CKA "
                     f"below retrain's is distortion, not forgetting): its {len(done)} completed trials as recorded, "
                     f"unranked; start a new --study to sweep the distance to retrain")
        return "\n".join(lines + _trial_table(done))
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: -r["retain_acc"])
    if front:
        any_feasible = any(r["feasible"] for r in front)
        lines.append(f"Pareto front of the feasible trials (forget accuracy within {tol} of the retrained model's):"
                     if any_feasible else f"Pareto front of all trials (none is feasible: forget accuracy within "
                                          f"{tol} of the retrained model's):")
        lines += _trial_table(front)
    else:
        lines.append("no completed trial yet")
    if ref:
        lines.append(compare_text(rows, ref))
    return "\n".join(lines)


def _trial_table(rows: list[dict]) -> list[str]:
    """Lines of a trial table: distance to retrain's forget CKA, EC's forget CKA, retain and forget accuracy."""
    lines = [f"  {'trial':>5} {'to retrain':>10} {'forget CKA':>10} {'retain':>7} {'forget acc':>10}  settings"]
    for r in rows:
        lines.append(f"  {r['number']:>5} {_f(r.get('cka_gap_to_retrain')):>10} {_f(r['forget_cka']):>10} "
                     f"{_f(r['retain_acc']):>7} {_f(r['forget_acc']):>10}  {_params_text(r['params'])}  "
                     f"(run {r['run_id']})")
    return lines


def _f(v, p: int = 3) -> str:
    return f"{v:.{p}f}" if isinstance(v, (int, float)) else "-"


def compare_text(rows: list[dict], ref: dict) -> str:
    """'default EC: distance to retrain X (forget CKA a vs retrain b), retain Y; best at retain >= Y:
    distance to retrain Z ...': the trial closest to retrain among those keeping the default's retain."""
    x, y = ref["cka_gap_to_retrain"], ref["retain_acc"]
    head = (f"default {display_name(ref.get('label', 'ec'))}: distance to retrain {x:.3f} (forget CKA {ref['forget_cka']:.3f} vs retrain "
            f"{ref['retrain_forget_cka']:.3f}), retain {y:.3f}"
            + ("" if ref.get("feasible", True) else f" (forget acc {ref['forget_acc']:.3f}: outside the tolerance)"))
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["retain_acc"] >= y - 1e-9]
    if not ok:
        return head + f"; no feasible trial reached retain >= {y:.3f}"
    best = min(ok, key=lambda r: (r["cka_gap_to_retrain"], -r["retain_acc"]))
    z = best["cka_gap_to_retrain"]
    settings = _params_text(best["params"])
    verdict = (f"beats the default: {x - z:.3f} closer to retrain" if z < x - 1e-9 else "does not beat the default")
    return head + (f"; best at retain >= {y:.3f}: distance to retrain {z:.3f}, forget CKA {best['forget_cka']:.3f} "
                   f"({settings}; trial {best['number']}, {verdict})")


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
