"""Scenario grids: one comparison per scenario (forget classes x seed) of a preset, queued as jobs.

A claim about unlearning holds only if it holds across forget classes and seeds. A grid is one object
in the job table (the `grids` table, beside the jobs, so it follows them to PostgreSQL): an id, the
spec {preset, scenarios, methods, overrides}, one cell per scenario naming its compare job, and a
cancelled flag. Each cell is an ordinary compare job (engine.jobs.submit: the job cache and the
duplicate check apply; the runner caches each scenario's base models), taken by any number of
workers, on one machine or many.

Scenarios (the syntax bench/bench_claims.py always used): "3:0" forgets class 3 at seed 0, "3+5:0"
classes 3 and 5, "r0.1:0" a random 10% of the training samples.

    submit_grid(preset, scenarios, methods, overrides) -> grid   validate all, queue, record
    get_grid(id) / list_grids() / cancel_grid(id)                the grid and its cells' job states
    grid_table(id)    per done cell the runs' headline rows (engine.results.run_summary), the flags
                      forgets / keeps_retain / like_retrain per method, counts per method, EC's reading
    grid_csv(table)   one row per (scenario, method); write_results(id): $ECLAB_HOME/grids/<id>/

The verdicts (moved here from bench_claims, which reads them from here): a method *forgets* in a
scenario when its forget accuracy is within FORGET_TOL (0.05, the sweeps' and calibration's rule, the
pages' 'forget off retrain' beyond it) of retrain's; it *keeps retain* when its retain accuracy is at
most RETAIN_TOL (0.02, the pages' 'retain damaged' beyond it) below the original's (both rules are
engine/results.py's forgets and keeps_retain); it is *like retrain* when its forget CKA to the original
is within the tolerance (two retrainings' spread) of retrain's at every inner layer (run_summary's
"within"). Nothing here imports torch; the commands are in engine/gridcli.py.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import re
import secrets
import time
from pathlib import Path

from . import store
from .config import ConfigError, deep_merge
from .results import (FORGET_TOL, REFERENCE, RETAIN_TOL, computed_text, forgets, gaps_text, keeps_retain, num,
                      run_names, run_summary)

SYNTAX = ("CLASS[+CLASS...]:SEED or rSHARE:SEED, comma-separated, e.g. 3:0,0:1 (class 3 seed 0, class 0 seed 1), "
          "3+5:0 (classes 3 and 5), r0.1:0 (a random 10% of the training samples)")
GRID_STATES = ("queued", "running", "done", "failed", "cancelled", "partial")
FLAGS = ("forgets", "keeps_retain", "like_retrain")
_ACTIVE, _FINAL = ("queued", "running"), ("done", "failed", "cancelled")
_CALIBRATION_KEYS = ("used", "reached", "source", "choice", "recipe")  # of a run's calibration block
_CLASSES = re.compile(r"\d+(\+\d+)*")
_SEED = re.compile(r"-?\d+")


# -- scenarios ------------------------------------------------------------------------------------
def _bad(item: str, why: str) -> ConfigError:
    return ConfigError("scenarios", f"{item!r} {why}; write {SYNTAX}")


def parse_scenario(item: str) -> str:
    """One scenario label, normalised ('03:0' -> '3:0', 'r.1:0' -> 'r0.1:0'); ConfigError naming it."""
    text = str(item).strip()
    what, sep, seed = text.rpartition(":")
    if not sep or not what or not _SEED.fullmatch(seed.strip()):
        raise _bad(text, "has no :SEED" if not sep else "is not a scenario")
    what, seed_n = what.strip(), int(seed)
    if what.startswith("r"):
        try:
            share = float(what[1:])
        except ValueError:
            raise _bad(text, "has no random share after 'r'") from None
        if not 0.0 < share < 1.0:
            raise _bad(text, "needs a random share between 0 and 1 (exclusive)")
        return f"r{share:g}:{seed_n}"
    if not _CLASSES.fullmatch(what):
        raise _bad(text, "is not a scenario")
    classes = [int(c) for c in what.split("+")]
    if len(set(classes)) != len(classes):
        raise _bad(text, "names a class twice")
    return "+".join(map(str, classes)) + f":{seed_n}"


def parse_scenarios(text) -> list[str]:
    """'3:0,0:1,3+5:0,r0.1:0' (or a list of such items) -> normalised labels, in order; ConfigError
    naming the bad item and the syntax, or a scenario listed twice, or none at all."""
    items = str(text).split(",") if isinstance(text, str) else list(text or [])
    items = [str(i).strip() for i in items if str(i).strip()]
    if not items:
        raise ConfigError("scenarios", f"is empty: name at least one scenario, {SYNTAX}")
    out: list[str] = []
    for item in items:
        label = parse_scenario(item)
        if label in out:
            raise ConfigError("scenarios", f"{item!r} is listed twice (as {label})")
        out.append(label)
    return out


def scenario_overrides(label: str) -> dict:
    """The config overrides of one scenario: {"seed": S, "forget": {"classes": [...]}} or
    {"seed": S, "forget": {"random": P}}."""
    label = parse_scenario(label)
    what, _, seed = label.rpartition(":")
    forget = {"random": float(what[1:])} if what.startswith("r") else {"classes": [int(c) for c in what.split("+")]}
    return {"seed": int(seed), "forget": forget}


def scenario_text(label: str) -> str:
    """'class 3, seed 0' / 'classes 3+5, seed 0' / 'random 10%, seed 0'."""
    over = scenario_overrides(label)
    f = over["forget"]
    what = (f"random {100 * f['random']:g}%" if "random" in f else
            f"class{'es' if len(f['classes']) > 1 else ''} {'+'.join(map(str, f['classes']))}")
    return f"{what}, seed {over['seed']}"


# -- submitting -----------------------------------------------------------------------------------
def new_grid_id(now: float | None = None) -> str:
    stamp = _dt.datetime.fromtimestamp(time.time() if now is None else now).strftime("%Y%m%d-%H%M")
    return store.check_id(f"g-{stamp}-{secrets.token_hex(3)}")


def _methods_arg(methods) -> list[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = methods.split(",")
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        raise ConfigError("methods", "give method names, e.g. ['ec', 'ft'] or 'ec,ft'")
    return [m.strip() for m in methods if m.strip()]


def cell_spec(preset: str, label: str, methods: list[str] | None, overrides: dict | None) -> dict:
    """The compare job spec of one scenario: the grid's overrides with the scenario's on top."""
    spec = {"preset": preset, "overrides": deep_merge(overrides or {}, scenario_overrides(label))}
    if methods is not None:
        spec["methods"] = list(methods)
    return spec


def submit_grid(preset: str, scenarios, methods=None, overrides: dict | None = None, use_cache: bool = True) -> dict:
    """Validate every cell first (nothing is queued on a bad value: ConfigError naming the option
    and, where it is one scenario's, the scenario), then queue one compare job per scenario with
    engine.jobs.submit (use_cache=False: run every cell again even where the same configuration is
    done, as `submit --no-cache`) and record the grid. Returns get_grid's dict."""
    from . import jobs
    from .jobs import queue
    if not isinstance(preset, str) or not preset.strip():
        raise ConfigError("preset", "name a preset, e.g. teach or digits")
    labels = parse_scenarios(scenarios)
    methods = _methods_arg(methods)
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError("overrides", "give a dict of options, e.g. {'eval': {'umap': False}}")
    clash = [k for k in ("seed", "forget") if k in (overrides or {})]
    if clash:
        raise ConfigError(clash[0], "is set by each scenario of a grid (CLASS:SEED); leave it out of the overrides")
    runner = queue.current_runner()
    common = {"preset": preset, "overrides": dict(overrides or {})}
    # the preset, methods and overrides first, so an error there does not name a scenario
    runner.prepare("compare", {**common, "methods": methods} if methods is not None else common)
    specs, resolved = [], None
    for label in labels:
        spec = cell_spec(preset, label, methods, overrides)
        try:
            norm, _ = runner.prepare("compare", spec)
        except ConfigError as err:
            raise ConfigError(err.option, f"{err} (scenario {label})") from None
        except ValueError as err:
            raise ValueError(f"{err} (scenario {label})") from None
        if resolved is None and isinstance(norm, dict) and isinstance(norm.get("methods"), list):
            resolved = norm["methods"]
        specs.append(spec)
    cells = [{"scenario": label, "job_id": jobs.submit("compare", spec, use_cache=use_cache)["id"]}
             for label, spec in zip(labels, specs)]
    now = time.time()
    record = {"preset": preset, "scenarios": labels, "methods": resolved if resolved is not None else methods,
              "overrides": overrides or {}}
    with jobs._db() as con, jobs.transaction(con):
        for _ in range(50):
            grid_id = new_grid_id(now)
            if con.execute("SELECT 1 FROM grids WHERE id = ?", (grid_id,)).fetchone() is None:
                break
        else:
            raise RuntimeError("could not find a free grid id")
        con.execute("INSERT INTO grids (id, created, spec, cells, cancelled) VALUES (?, ?, ?, ?, 0)",
                    (grid_id, now, json.dumps(record), json.dumps(cells)))
    return get_grid(grid_id)


# -- reading --------------------------------------------------------------------------------------
def _job_states(con, ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    ids = list(dict.fromkeys(ids))
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        for r in con.execute(f"SELECT id, state, progress, error, cached_from FROM jobs WHERE id IN "
                             f"({','.join('?' * len(part))})", part):
            out[r["id"]] = {"state": r["state"], "progress": r["progress"], "error": r["error"],
                            "cached_from": r["cached_from"]}
    return out


def grid_state(cell_states: list[str], cancelled: bool) -> str:
    """queued (every cell queued) | running (some still to run) | done (every cell done) | failed (none
    done, the rest failed) | partial (some done, others failed or cancelled) | cancelled (cancel_grid)."""
    if cancelled:
        return "cancelled"
    if cell_states and all(s == "done" for s in cell_states):
        return "done"
    if any(s in _ACTIVE for s in cell_states):
        return "queued" if all(s == "queued" for s in cell_states) else "running"
    if any(s == "done" for s in cell_states):
        return "partial"
    return "cancelled" if cell_states and all(s == "cancelled" for s in cell_states) else "failed"


def _grid(row, states: dict[str, dict]) -> dict:
    spec = json.loads(row["spec"])
    cells = []
    for c in json.loads(row["cells"]):
        job = states.get(c["job_id"]) or {"state": "failed", "progress": 0.0, "error": "the job is gone from the "
                                          "job table", "cached_from": None}
        cells.append({"scenario": c["scenario"], "job_id": c["job_id"], "state": job["state"],
                      "progress": 1.0 if job["state"] in _FINAL else float(job["progress"] or 0.0),
                      "error": job["error"], "cached": job["cached_from"] is not None})
    return {"id": row["id"], "created": row["created"], "preset": spec.get("preset"),
            "scenarios": spec.get("scenarios") or [c["scenario"] for c in cells], "methods": spec.get("methods"),
            "overrides": spec.get("overrides") or {},
            "state": grid_state([c["state"] for c in cells], bool(row["cancelled"])),
            "progress": sum(c["progress"] for c in cells) / len(cells) if cells else 0.0, "cells": cells}


def get_grid(grid_id: str) -> dict | None:
    from . import jobs
    store.check_id(grid_id)
    with jobs._db() as con:
        row = con.execute("SELECT * FROM grids WHERE id = ?", (grid_id,)).fetchone()
        if row is None:
            return None
        return _grid(row, _job_states(con, [c["job_id"] for c in json.loads(row["cells"])]))


def list_grids(limit: int = 50) -> list[dict]:
    """Grids, newest first."""
    from . import jobs
    with jobs._db() as con:
        rows = con.execute("SELECT * FROM grids ORDER BY created DESC, id DESC LIMIT ?", (int(limit),)).fetchall()
        states = _job_states(con, [c["job_id"] for r in rows for c in json.loads(r["cells"])])
    return [_grid(r, states) for r in rows]


def cancel_grid(grid_id: str) -> int:
    """Mark the grid cancelled and cancel its queued or running cells (engine.jobs.cancel: a queued
    job at once, a running one within a few steps). Returns how many cells were cancelled (0, and
    the grid left as it is, when every cell is final). A cell shared with another grid (the same
    configuration, a duplicate) is cancelled for both. ValueError: no such grid."""
    from . import jobs
    store.check_id(grid_id)
    with jobs._db() as con, jobs.transaction(con):
        row = con.execute("SELECT cells FROM grids WHERE id = ?", (grid_id,)).fetchone()
        if row is None:
            raise ValueError(f"no grid {grid_id}")
        cells = json.loads(row["cells"])
        states = _job_states(con, [c["job_id"] for c in cells])
        if not any((states.get(c["job_id"]) or {}).get("state") in _ACTIVE for c in cells):
            return 0  # every cell is final: nothing to cancel, the grid keeps its state
        con.execute("UPDATE grids SET cancelled = 1 WHERE id = ?", (grid_id,))
    return sum(bool(jobs.cancel(c["job_id"])) for c in cells)


# -- the table ------------------------------------------------------------------------------------
def run_flags(rows: dict[str, dict], name: str) -> dict[str, bool]:
    """forgets / keeps_retain / like_retrain of one run, from the headline rows of its comparison."""
    r, orig, ret = rows[name], rows.get("original") or {}, rows.get("retrain") or {}
    return {"forgets": forgets(r.get("forget_acc"), ret.get("forget_acc")) is True,
            "keeps_retain": keeps_retain(r.get("retain_acc"), orig.get("retain_acc")) is True,
            "like_retrain": r.get("within") is True}


def ec_reading(row: dict | None) -> dict | None:
    if not row:
        return None
    return {k: row.get(k) for k in ("distance", "worst_layer", "worst_gap", "within")}


def grid_table(grid_id: str) -> dict | None:
    """get_grid plus, per done cell, "rows" {run: run_summary (original and retrain included)} with each
    run's "calibration" (its block's used, reached, source, choice, recipe; None without one), "flags"
    {method: {forgets, keeps_retain, like_retrain}}
    and "ec" (EC's reading); a done cell whose results cannot be read gets "results_error". Top level:
    "per_method" {method: {forgets, keeps_retain, like_retrain: counts, "of": done cells with the method}},
    "ec" {scenario: EC's distance, worst_layer, worst_gap, within} and "methods" (the column order)."""
    from . import jobs
    grid = get_grid(grid_id)
    if grid is None:
        return None
    order = list(grid["methods"] or [])
    per_method: dict[str, dict] = {}
    ec: dict[str, dict | None] = {}
    for cell in grid["cells"]:
        if cell["state"] != "done":
            continue
        try:
            results = jobs.load_results(cell["job_id"])
        except store.CheckpointError as err:
            cell["results_error"] = str(err)
            continue
        if results is None:
            cell["results_error"] = f"job {cell['job_id']} has no results.json"
            continue
        runs = results.get("runs") or {}
        rows = {}
        for name in run_names(results):
            row = run_summary(results, name)
            cal = (runs.get(name) or {}).get("calibration") or None
            row["calibration"] = {k: cal[k] for k in _CALIBRATION_KEYS if k in cal} if cal else None
            rows[name] = row
        cell["rows"] = rows
        sc = results.get("scenario") or {}
        cell["threads"] = sc.get("threads")  # torch threads and the CPU's kernel set move the readings
        cell["cpu_kernels"] = sc.get("cpu_kernels")
        cell["flags"] = {n: run_flags(rows, n) for n in rows if n not in REFERENCE}
        cell["ec"] = ec_reading(rows.get("ec"))
        ec[cell["scenario"]] = cell["ec"]
        for name, flags in cell["flags"].items():
            if name not in order:
                order.append(name)
            count = per_method.setdefault(name, {**dict.fromkeys(FLAGS, 0), "of": 0})
            count["of"] += 1
            for f in FLAGS:
                count[f] += bool(flags[f])
    grid["methods"] = order
    grid["per_method"] = {n: per_method[n] for n in order if n in per_method}
    grid["ec"] = ec
    return grid


CSV_COLUMNS = ("grid", "scenario", "job_id", "state", "method", "forget_acc", "retain_acc", "test_acc",
               "distance", "worst_layer", "worst_gap", "within", "forgets", "keeps_retain", "like_retrain",
               "calibrated", "gaps", "threads", "cpu_kernels")


def grid_csv(table: dict) -> str:
    """One row per (scenario, method) of a grid_table: the numbers, the flags, the signed gaps per
    point (a cell not done has its state and empty numbers)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for cell in table["cells"]:
        rows, flags = cell.get("rows") or {}, cell.get("flags") or {}
        names = list(table.get("methods") or []) + [n for n in flags if n not in (table.get("methods") or [])]
        for name in names:
            r, f = rows.get(name) or {}, flags.get(name) or {}
            cal = (r.get("calibration") or {}).get("used")

            def fmt(v):
                v = num(v)
                return "" if v is None else f"{v:.4f}"
            w.writerow([table["id"], cell["scenario"], cell["job_id"], cell["state"], name, fmt(r.get("forget_acc")),
                        fmt(r.get("retain_acc")), fmt(r.get("test_acc")), fmt(r.get("distance")),
                        r.get("worst_layer") or "", fmt(r.get("worst_gap")), _yes(r.get("within")),
                        _yes(f.get("forgets")), _yes(f.get("keeps_retain")), _yes(f.get("like_retrain")),
                        _yes(cal), gaps_text(r["gaps"]) if r.get("gaps") else "", cell.get("threads") or "",
                        cell.get("cpu_kernels") or ""])
    return buf.getvalue()


def _yes(v) -> str:
    return "" if v is None else ("yes" if v else "no")


def grid_dir(grid_id: str) -> Path:
    return store.home() / "grids" / store.check_id(grid_id)


def write_results(grid_id: str) -> Path:
    """$ECLAB_HOME/grids/<id>/results.json (grid_table, strict JSON) and results.csv (grid_csv), each
    written atomically; returns the path of results.json."""
    table = grid_table(grid_id)
    if table is None:
        raise ValueError(f"no grid {grid_id}")
    folder = grid_dir(grid_id)
    store.atomic_write_bytes(folder / "results.csv", grid_csv(table).encode())
    return store.atomic_write_bytes(folder / "results.json",
                                    json.dumps(store.json_safe(table), indent=1, allow_nan=False).encode())


def format_table(table: dict) -> str:
    """Scenario x method as text: forget / retain accuracy / signed gap to retrain at the worst inner
    layer (* did not forget at the logits, c calibrated setting), then per method the counts, then EC's
    reading per scenario."""
    methods = list(table.get("methods") or [])
    width = 19
    lines = [f"grid {table['id']} ({table['preset']}): {table['state']}, "
             f"{sum(c['state'] == 'done' for c in table['cells'])} of {len(table['cells'])} cells done",
             "cell: forget acc / retain acc / signed gap to retrain at the worst inner layer "
             f"(* forget accuracy not within {FORGET_TOL} of retrain's; c calibrated setting)",
             f"{'scenario':<12}" + "".join(f"{m[:width - 2]:>{width}}" for m in methods)]
    for cell in table["cells"]:
        rows = cell.get("rows")
        if rows is None:
            lines.append(f"{cell['scenario']:<12}  {cell['state']}"
                         + (f": {cell['error']}" if cell.get("error") else "")
                         + (f" ({cell['results_error']})" if cell.get("results_error") else ""))
            continue
        out = []
        for m in methods:
            r = rows.get(m)
            if r is None or num(r.get("forget_acc")) is None or num(r.get("retain_acc")) is None:
                out.append(f"{'-':>{width}}")
                continue
            gap = num(r.get("worst_gap"))
            calibrated = (r.get("calibration") or {}).get("used")
            mark = ("" if cell["flags"][m]["forgets"] else "*") + ("c" if calibrated else "")
            out.append(f"{r['forget_acc']:.2f}/{r['retain_acc']:.2f}/{'n/a' if gap is None else f'{gap:+.2f}'}{mark}"
                       .rjust(width))
        lines.append(f"{cell['scenario']:<12}" + "".join(out))
    per = table.get("per_method") or {}
    if per:
        lines.append(f"\n{'method':<16}{'forgets':>9}{'keeps retain':>14}{'like retrain':>14}{'of':>5}")
        for m, c in per.items():
            lines.append(f"{m:<16}{c['forgets']:>9}{c['keeps_retain']:>14}{c['like_retrain']:>14}{c['of']:>5}")
        lines.append(f"(forgets: forget accuracy within {FORGET_TOL} of retrain's; keeps retain: at most {RETAIN_TOL} "
                     f"below the original's; like retrain: within the tolerance of retrain at every inner layer)")
    if mixed := mixed_settings(table):
        lines.append(mixed)
    ec = {s: r for s, r in (table.get("ec") or {}).items() if r}
    if ec:
        lines.append("\nEC per scenario: distance to retrain (worst inner layer, signed gap), "
                     "within tolerance everywhere")
        for s, r in ec.items():
            d, g = num(r.get("distance")), num(r.get("worst_gap"))
            lines.append(f"  {s:<10} {'n/a' if d is None else f'{d:.3f}'} ({r.get('worst_layer') or '-'} "
                         f"{'n/a' if g is None else f'{g:+.3f}'}) {_yes(r.get('within')) or 'n/a'}")
    return "\n".join(lines)


def mixed_settings(table: dict) -> str | None:
    """A warning when the cells were computed with different torch thread counts or CPU kernel sets
    (a cell can be a job cache hit from another worker or machine): another count or kernel set sums in
    another order, and the readings move (by up to 0.056 in the distance to retrain on teach), so such
    cells are not strictly comparable."""
    per: dict[str, list[str]] = {}
    for c in table["cells"]:
        if how := computed_text(c):
            per.setdefault(how, []).append(c["scenario"])
    if len(per) < 2:
        return None
    return ("cells computed with different torch thread counts or CPU kernel sets (" + "; ".join(
        f"{how}: {', '.join(s)}" for how, s in sorted(per.items())) + "): they move the readings (up to 0.056 "
            "in the distance on teach); rerun with --no-cache and one --threads value on one kind of machine to "
            "compare them strictly")


def _sign(r: dict) -> str:
    """+ where the worst inner layer keeps more of the original than retrain, − where it is pushed past."""
    return "+" if (num(r.get("worst_gap")) or 0) > 0 else "−"


def _dist(r: dict) -> str:
    """'0.156 (block3 −)': a run's distance to retrain, where, and the sign of the gap there."""
    d = num(r.get("distance"))
    return "n/a" if d is None else f"{d:.3f} ({r.get('worst_layer') or '-'} {_sign(r)})"


def format_markdown(table: dict) -> str:
    """One markdown row per done scenario (the README's scenario tables): the tolerance at each inner
    point, EC's distance with its forget / retain accuracy, the forgetting baseline closest to retrain
    (its retain accuracy named when it did not keep retain), how many baselines forget and the range
    of their distances, and the runs within the tolerance of retrain at every inner layer."""
    from .catalog import display_name
    out = []
    for cell in table["cells"]:
        rows, flags = cell.get("rows"), cell.get("flags") or {}
        if rows is None:
            out.append(f"| {scenario_text(cell['scenario'])} | {cell['state']} | | | | |")
            continue
        ref = rows.get("retrain") or {}
        tol = " / ".join("n/a" if num(g.get("tol")) is None else f"{g['tol']:.3f}"
                         for g in ref.get("gaps") or [] if g.get("inner"))
        ec = rows.get("ec")
        ec_text = (f"{_dist(ec)}, {num(ec.get('forget_acc')) or 0:.3f} / {num(ec.get('retain_acc')) or 0:.3f}"
                   if ec else "not run")
        base = [n for n in flags if "ec" not in n.split("+")]
        forgetting = sorted((n for n in base if flags[n]["forgets"] and num(rows[n].get("distance")) is not None),
                            key=lambda n: rows[n]["distance"])
        if forgetting:
            best = rows[forgetting[0]]
            kept = "" if flags[forgetting[0]]["keeps_retain"] else f", retain {best['retain_acc']:.3f}"
            closest = f"{best['distance']:.3f} ({display_name(forgetting[0])}, {_sign(best)}{kept})"
            spread = (f"{len(forgetting)} of {len(base)}: {rows[forgetting[0]]['distance']:.3f}-"
                      f"{rows[forgetting[-1]]['distance']:.3f}")
        else:
            closest, spread = "none forgets", f"0 of {len(base)}"
        within = [display_name(n) for n in flags if flags[n]["like_retrain"]]
        out.append(f"| {scenario_text(cell['scenario'])} | {tol or 'n/a'} | {ec_text} | {closest} | {spread} | "
                   f"{', '.join(within) or 'no run'} |")
    head = ("| scenario | tolerance per inner point | EC: distance, forget / retain | closest forgetting baseline | "
            "baselines forgetting: distances | within tolerance everywhere |\n| --- | --- | --- | --- | --- | --- |")
    return head + "\n" + "\n".join(out)


def add_commands(sub) -> None:
    from .gridcli import add_commands as add
    add(sub)
