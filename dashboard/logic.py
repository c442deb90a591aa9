"""Pure helpers behind the pages: summaries of results.json, job labels, error messages (the Launch
form's spec: dashboard/launch_spec.py).

No Streamlit and no torch here, and the engine only through dashboard/facts.py (the results format
and its one headline, engine/results.py: torch-free), so every function is testable on plain dicts.
"""
from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Mapping, Sequence

from . import facts
from .calibration import not_forgotten

REFERENCE = facts.REFERENCE
RESULT_KINDS = ("compare", "run", "audit")  # jobs whose results.json the analysis pages show
NO_RETRAIN_NOTE = ("no retrained reference supplied: CKA vs the original only. This audit has no gold-standard "
                   "model (a model retrained without the forget set), so CKA to the retrained model, Avg. Gap and "
                   "the distance to the retrain floor are not shown; pass --retrain PATH to add them.")


def as_float(v) -> float:
    """None / missing / text -> nan, so gaps show as gaps instead of zeros (figures and tables)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def lacks_retrain(results: Mapping) -> bool:
    """An audit given no retrained model: its pages compare against the original only."""
    return "retrain" not in ((results or {}).get("runs") or {})
ACTIVE_STATES = ("queued", "running")
SPLITS = ("forget", "retain", "forget_test", "retain_test")
SPLIT_LABELS = {"forget": "forget (train)", "retain": "retain (train)",
                "forget_test": "forget classes (test)", "retain_test": "retain classes (test)"}


# -- numbers -----------------------------------------------------------------------------------

num = facts.num  # a finite float or None


def pct(v, digits: int = 1) -> str:
    f = num(v)
    return "n/a" if f is None else f"{100 * f:.{digits}f}%"


def dec(v, digits: int = 2) -> str:
    f = num(v)
    return "n/a" if f is None else f"{f:.{digits}f}"


mean_over = facts.mean_over
inner_layers = facts.inner_layers  # all supervision points but the last (engine/results.py)


# -- results.json ------------------------------------------------------------------------------

run_names = facts.run_names  # original, retrain, then the methods in stored order


def method_runs(results: Mapping) -> list[str]:
    return [n for n in run_names(results) if n not in REFERENCE]


# The headline of a run and of a results file: engine/results.py. THE distance to retrain is the largest
# |gap| of the forget CKA to the original over the inner layers ("distance", at "worst_layer"); the mean
# over layers ("forget_cka_mean") is only a labelled detail: a mean lets a kept layer cancel a distorted one.
run_summary = facts.run_summary
headline_rows = facts.summary
layer_gaps, gaps_text, tolerances = facts.layer_gaps, facts.gaps_text, facts.tolerances

DISTANCE_LABEL = "Distance to retrain (worst layer)"
GAPS_LABEL = "Gap to retrain per layer"
MEAN_LABEL = "Mean inner forget CKA (detail)"
DISTANCE_HELP = ("At the worst layer: the largest |gap| to retrain over the inner supervision points: the "
                 "run's forget CKA to the original minus the retrained model's, at the layer where they differ "
                 "most. (+) the layer keeps more of the original than retrain (superficial); (−) it is pushed "
                 "further from the original than retrain (distorted). 0 = like retrain, the goal.")
GAPS_HELP = ("Signed gap to retrain at every supervision point (+ keeps more of the original, − pushed past "
             "retrain); the last point, after the bar, is shown apart: logit-level methods change it on purpose.")


def distance_text(worst: Mapping, digits: int = 3) -> str:
    """'0.427 at block4 (−)': a distance to retrain (a run_summary row, or distance() of probe gaps), the
    layer where it is and the sign of the gap there; '0 (reference)' for retrain itself, 'n/a' unknown."""
    if worst.get("name") == "retrain":
        return "0 (reference)"
    d, g = num(worst.get("distance")), num(worst.get("worst_gap"))
    if d is None or g is None:
        return "n/a"
    return f"{d:.{digits}f} at {worst.get('worst_layer')} ({'+' if g >= 0 else '−'})"


def probe_distance_text(row: Mapping) -> str:
    """distance_text of a row's linear-probe recovery (its probe_gaps)."""
    if row.get("name") == "retrain":
        return "0 (reference)"
    return distance_text(facts.distance(row.get("probe_gaps") or []))


def reading_gaps(gaps: Mapping | None, tols: Mapping | None, points: Sequence[str]) -> list[dict]:
    """A {point: signed gap} reading (a sweep trial's "gaps" and "tolerances") in layer_gaps' shape."""
    inner = set(inner_layers(points))
    out = []
    for p in points:
        g, t = num((gaps or {}).get(p)), num((tols or {}).get(p))
        out.append({"point": p, "inner": p in inner, "gap": g, "tol": t,
                    "within": None if g is None or t is None else abs(g) <= t + 1e-12})
    return out


SAME = 1e-3  # gaps whose sizes differ by less than this are read as the same


def layer_strip(gaps: Sequence[Mapping], default_gaps: Sequence[Mapping] | None = None) -> list[dict]:
    """Per supervision point of one run (layer_gaps or reading_gaps), read against retrain and against a
    default run of the same scenario: {"point", "inner", "gap", "tol", "within", "default_gap", "closer"}
    with closer "closer" / "further" / "same" (|gap| against the default's |gap|) or None (unknown)."""
    by_point = {g["point"]: g for g in default_gaps or []}
    out = []
    for g in gaps:
        d = num((by_point.get(g["point"]) or {}).get("gap"))
        a = num(g.get("gap"))
        closer = None
        if a is not None and d is not None:
            diff = abs(a) - abs(d)
            closer = "same" if abs(diff) < SAME else ("closer" if diff < 0 else "further")
        out.append({"point": g["point"], "inner": g["inner"], "gap": a, "tol": num(g.get("tol")),
                    "within": g.get("within"), "default_gap": d, "closer": closer})
    return out


def strip_rows(strip: Sequence[Mapping], this: str, default: str | None = None) -> list[dict]:
    """The rows of a per-layer strip table (one column per supervision point, the last marked): this
    run's gap to retrain, the default's, which is closer, and whether this run is within tolerance."""
    col = {s["point"]: s["point"] + ("" if s["inner"] else " (last)") for s in strip}

    def signed(v):
        return "n/a" if v is None else f"{v:+.3f}"

    def within(s):
        if s["within"] is None or s["tol"] is None:
            return "n/a"
        return ("yes" if s["within"] else "no") + f" (±{s['tol']:.3f})"
    rows = [{"": f"{this}: gap to retrain", **{col[s["point"]]: signed(s["gap"]) for s in strip}}]
    if default is not None:
        rows.append({"": f"{default}: gap to retrain", **{col[s["point"]]: signed(s["default_gap"]) for s in strip}})
        rows.append({"": f"{this} vs {default}", **{col[s["point"]]: s["closer"] or "n/a" for s in strip}})
    rows.append({"": f"{this}: within tolerance", **{col[s["point"]]: within(s) for s in strip}})
    return rows


NOISE = facts.NOISE_RUN  # the training-noise reference (engine/results.py): another seed's original


def seed_band(results: Mapping, split: str = "forget") -> dict[str, float] | None:
    """{layer: CKA of a second original (another seed) to the original} on `split`, or None when the
    comparison did not train one (results.json `seed_band`, engine/noise.py seed_band)."""
    band = ((results.get("seed_band") or {}).get("cka_vs_original") or {}).get(split)
    return dict(band) if isinstance(band, Mapping) and band else None


def seed_band_text(results: Mapping, layers: Sequence[str], split: str = "forget") -> str | None:
    """One sentence on the noise band: what reseeding alone does to CKA, layer by layer."""
    band = seed_band(results, split)
    if not band:
        return None
    vals = " / ".join(dec(band.get(l), 3) for l in layers)
    return (f"Training noise: a second original trained on the same data from another seed has CKA {vals} to the "
            f"original ({', '.join(layers)}; the “Original, other seed” row). Differences smaller than what "
            "reseeding alone changes are not evidence of forgetting or of keeping; retrain's distance from the "
            "original means something where it is larger.")


def tolerance_text(results: Mapping) -> str:
    """One sentence on the reference noise, the tolerance of every gap to retrain: per layer, how far a
    second retrained model (another seed) lands from the first, or the assumed tolerance when none was
    measured."""
    tols, measured = tolerances(results)
    if not measured:
        return (f"Tolerance (reference noise): assumed {facts.ASSUMED_TOLERANCE['cka']:.2f} per layer, no second "
                "retrain measured.")
    seed = (results.get("retrain_band") or {}).get("seed")
    vals = " / ".join(dec(v, 3) for v in tols.values())
    return ("Tolerance (reference noise): a second retrained model, trained from another seed"
            + (f" ({seed})" if seed is not None else "") + f", lands {vals} from the first ({', '.join(tols)}; at "
            "least 0.01): two honest retrainings differ that much, so a gap to retrain within it is like retrain.")


def per_layer(results: Mapping, field: str, split: str | None = None,
              names: Sequence[str] | None = None) -> dict[str, dict]:
    """{run: {layer: v}} for a per-layer field ("cka_vs_original" with a split, "probe_forget_acc")."""
    runs = results.get("runs") or {}
    out = {}
    for n in names if names is not None else run_names(results):
        d = (runs.get(n) or {}).get(field)
        if split is not None:
            d = (d or {}).get(split)
        out[n] = d or {}
    return out


def available_splits(results: Mapping) -> list[str]:
    seen = set()
    for run in (results.get("runs") or {}).values():
        for field in ("cka_vs_original", "cka_vs_retrain"):
            seen.update((run.get(field) or {}).keys())
    return [s for s in SPLITS if s in seen]


def forget_classes(results: Mapping) -> list[int]:
    f = (results.get("scenario") or {}).get("forget") or {}
    return [int(c) for c in (f.get("classes") or [])]


def scenario_line(results: Mapping) -> str:
    s = results.get("scenario") or {}
    parts = [str(s.get("dataset", "?")), str(s.get("arch", "?")),
             "forget " + forget_label(s),
             f"seed {s.get('seed', '?')}", str(s.get("device", "?"))]
    return " · ".join(parts)


def base_models_elsewhere(results: Mapping) -> str | None:
    """A warning when a base model (original, retrain) came from the cache trained with another torch
    thread count or CPU kernel set than the comparison itself ran with: both move the readings, so
    such a comparison mixes two settings. None when they agree or either side was not recorded."""
    now = {k: (results.get("scenario") or {}).get(k) for k in facts.COMPUTED_WITH}
    made = results.get("base_trained_with") or {}
    if not now["threads"] or not isinstance(made, Mapping):
        return None
    odd = {name: w for name, w in made.items()
           if isinstance(w, Mapping) and w.get("threads")
           and any(w.get(k) is not None and now[k] is not None and w.get(k) != now[k] for k in now)}
    if not odd:
        return None
    return ("; ".join(f"the {name} model came from the cache, trained with {facts.computed_text(w)}"
                      for name, w in odd.items())
            + f"; this comparison ran with {facts.computed_text(now)}. Both move the readings (floating-point "
            "order), so it mixes two settings: compare it only with runs made the same way, or delete those models from "
            "$ECLAB_HOME/cache (orig-*, retrain-*) and rerun to train them here.")


def row_scenario(r: Mapping) -> str:
    """A Compare row's scenario in words: 'digits · small_cnn · forget class 3 · seed 0'."""
    return f"{r.get('dataset')} · {r.get('arch')} · forget {r.get('forget')} · seed {r.get('seed')}"


def scenarios(rows: Sequence[Mapping], first_job: str | None = None) -> dict[str, str]:
    """{scenario key: label} of Compare rows, each label its own; the scenario of job `first_job` (the
    one the pages show) first, then by how many runs each has."""
    keys = Counter(r.get("scenario_key") for r in rows)
    lead = next((r.get("scenario_key") for r in rows if first_job and r.get("job") == first_job), None)
    order = sorted(keys, key=lambda k: (k != lead, -keys[k]))
    named = {r.get("scenario_key"): row_scenario(r) for r in rows}
    return dict(zip(order, distinct_labels([named[k] for k in order], [""] * len(order))))


def _forget_label(f) -> str:
    """{"classes": [3]} -> 'class 3'; [3, 5] -> 'classes 3,5'; {"random": 0.1} -> 'random 10%'."""
    f = f or {}
    if f.get("classes") is not None:
        cs = list(f["classes"])
        return ("class " if len(cs) == 1 else "classes ") + ",".join(map(str, cs))
    if f.get("random") is not None:
        return f"random {float(f['random']):.0%}"
    return "?"


def forget_label(scenario: Mapping | None) -> str:
    """The forget request of a results scenario, in words ('class 3'), from the request itself when
    it is there (the engine's own "forget_label" says 'classes 3' for one class)."""
    s = scenario or {}
    if s.get("forget"):
        return _forget_label(s["forget"])
    return str(s.get("forget_label") or "?")


def teaching_baseline(results: Mapping, tolerance: float = 0.05) -> str | None:
    """The baseline that best shows superficial forgetting: among the plain baselines (not EC, not
    an EC plug-in, not the references), those whose forget accuracy is within `tolerance` of the
    closest one to retrain's; of these, the one whose worst inner layer keeps most of the original (the
    largest positive worst_gap: the most superficial). A baseline whose
    calibration found no setting reaching logit-level forgetting is passed over while another is left."""
    rows = {r["name"]: r for r in headline_rows(results)}
    target = (rows.get("retrain") or {}).get("forget_acc")
    cands = [r for n, r in rows.items()
             if n not in REFERENCE and n != "ec" and not n.endswith("+ec") and r["forget_acc"] is not None]
    runs = results.get("runs") or {}
    cands = [r for r in cands if not not_forgotten(runs.get(r["name"]))] or cands
    if not cands:
        return None
    if target is None:
        target = 0.0
    gaps = {r["name"]: abs(r["forget_acc"] - target) for r in cands}
    best_gap = min(gaps.values())
    close = [r for r in cands if gaps[r["name"]] <= best_gap + tolerance]
    return max(close, key=lambda r: (r["worst_gap"] if r["worst_gap"] is not None else -1.0, -gaps[r["name"]]))["name"]


def excess(values: Mapping | None, floor: Mapping | None, layers: Sequence[str]) -> dict:
    """{layer: values[layer] - floor[layer]} where both are known."""
    out = {}
    for layer in layers:
        v, f = num((values or {}).get(layer)), num((floor or {}).get(layer))
        if v is not None and f is not None:
            out[layer] = v - f
    return out


def forget_phrase(scenario: Mapping) -> str:
    """'class 3', 'classes 3 and 5', 'a random 10% of the training set'."""
    f = (scenario or {}).get("forget") or {}
    names = (scenario or {}).get("class_names") or []

    def cname(c):
        return f"{c} ({names[c]})" if 0 <= c < len(names) and str(names[c]) != str(c) else str(c)
    if f.get("classes"):
        cs = [cname(int(c)) for c in f["classes"]]
        return "class " + cs[0] if len(cs) == 1 else "classes " + ", ".join(cs[:-1]) + " and " + cs[-1]
    if f.get("random") is not None:
        return f"a random {float(f['random']):.0%} of the training set"
    return "the forget set"


def all_run_rows(items: Sequence[tuple[Mapping, Mapping]], rows_of=None) -> list[dict]:
    """One row per run across (job, results) pairs, for the Compare table. `rows_of(results)` makes
    the rows of one results file (default: run_summary of each run)."""
    rows = []
    for job, res in items:
        if not res:
            continue
        s = res.get("scenario") or {}
        for r in (rows_of(res) if rows_of else [run_summary(res, n) for n in run_names(res)]):
            name = r["name"]
            r.update({
                "id": f"{job.get('id')}/{name}", "job": job.get("id"), "kind": job.get("kind"),
                "dataset": s.get("dataset"), "arch": s.get("arch"),
                "forget": forget_label(s),
                "seed": s.get("seed"), "finished": fmt_time(job.get("finished_at")),
            })
            rows.append(r)
    return rows


# -- jobs ---------------------------------------------------------------------------------------

def spec_config(spec: Mapping | None) -> dict:
    """The config dict inside a job spec (normalised specs hold it under "config")."""
    spec = spec or {}
    return spec.get("config") or {}


def job_label(job: Mapping) -> str:
    """Short human label: 'run ft+ec · digits', 'compare 11 methods · digits', 'embed block2 of 12'."""
    kind = job.get("kind", "?")
    spec = job.get("spec") or {}
    if kind == "embed":
        return f"embed {spec.get('layer', '?')} of job {spec.get('job', '?')}"
    cfg = spec_config(spec)
    ov = spec.get("overrides") or {}
    preset = cfg.get("preset") or spec.get("preset") or ov.get("preset") or "digits"
    if kind == "compare":
        methods = spec.get("methods")
        what = f"{len(methods)} methods" if methods else "all methods"
        return f"compare {what} · {preset}"
    if kind == "audit":
        return f"audit {', '.join(spec.get('unlearned') or {}) or '?'} · {preset}"
    method = cfg.get("method") or ov.get("method") or "ec"
    plugin = cfg.get("plugin") or ov.get("plugin") or "none"
    label = f"{method}+ec" if plugin == "ec" else method
    return f"{kind} {label} · {preset}"


def _short_forget(f: Mapping | None) -> str:
    f = f or {}
    if f.get("classes"):
        return "forget " + ",".join(map(str, f["classes"]))
    if f.get("random") is not None:
        return f"forget {float(f['random']):.0%} random"
    return ""


def _timestamp(t) -> _dt.datetime | None:
    if t is None or t == "":
        return None
    if isinstance(t, (int, float)):
        return _dt.datetime.fromtimestamp(float(t))
    try:
        return _dt.datetime.fromisoformat(str(t)).astimezone().replace(tzinfo=None)
    except ValueError:
        return None


def distinct_labels(labels: Sequence[str], details: Sequence[str]) -> list[str]:
    """Labels a picker can tell apart (Streamlit finds a picked option by its label, so two equal labels
    open the same job): a repeated label gets its detail (a run's settings), one still repeated a count
    in list order ('#1', '#2')."""
    counts = Counter(labels)
    out = [f"{lab} · {d}" if counts[lab] > 1 and d else lab for lab, d in zip(labels, details)]
    counts, seen, unique = Counter(out), Counter(), []
    for lab in out:
        seen[lab] += 1
        unique.append(lab if counts[lab] == 1 else f"{lab} #{seen[lab]}")
    return unique


def results_label(job: Mapping, finished=None, now: _dt.datetime | None = None) -> str:
    """Short label of a finished run / compare job for narrow pickers (the id goes elsewhere):
    'digits · forget 3 · compare · 09:41'; a run shows its method ('ft+ec') instead of 'compare'.
    The time is the finish time: 'HH:MM' today, 'MM-DD HH:MM' before."""
    spec = job.get("spec") or {}
    cfg = spec_config(spec)
    ov = spec.get("overrides") or {}
    data = cfg.get("preset") or spec.get("preset") or ov.get("preset") \
        or (cfg.get("data") or {}).get("dataset") or "?"
    parts = [str(data)]
    forget = _short_forget(cfg.get("forget") or ov.get("forget"))
    if forget:
        parts.append(forget)
    if job.get("kind") in ("compare", "audit"):
        parts.append(job["kind"])
    else:
        method = cfg.get("method") or ov.get("method") or "ec"
        plugin = cfg.get("plugin") or ov.get("plugin") or "none"
        parts.append(f"{method}+ec" if plugin == "ec" else str(method))
    when = _timestamp(finished)
    if when is not None:
        now = now or _dt.datetime.now()
        parts.append(when.strftime("%H:%M") if when.date() == now.date() else when.strftime("%m-%d %H:%M"))
    return " · ".join(parts)


def fmt_time(t) -> str:
    """Job timestamps may be epoch seconds or ISO strings; show local 'YYYY-MM-DD HH:MM:SS'."""
    if t is None or t == "":
        return ""
    if isinstance(t, (int, float)):
        return _dt.datetime.fromtimestamp(float(t)).strftime("%Y-%m-%d %H:%M:%S")
    try:
        return _dt.datetime.fromisoformat(str(t)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(t)


def elapsed(job: Mapping) -> str:
    def ts(v):
        if v is None:
            return None
        if isinstance(v, (int, float)):
            return float(v)
        try:
            return _dt.datetime.fromisoformat(str(v)).timestamp()
        except ValueError:
            return None
    start = ts(job.get("started_at", job.get("started")))
    end = ts(job.get("finished_at", job.get("finished"))) or _dt.datetime.now().timestamp()
    if start is None:
        return ""
    s = max(0, int(end - start))
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def epoch_history(events: Sequence[Mapping]) -> tuple[str | None, list[dict]]:
    """From a job's events: the run whose epochs were reported last and its epoch history."""
    epochs = [e for e in events if e.get("type") == "epoch"]
    if not epochs:
        return None, []
    run = epochs[-1].get("run")
    hist = [e for e in epochs if e.get("run") == run]
    by_epoch = {}
    for e in hist:
        by_epoch[e.get("epoch")] = e
    return run, [by_epoch[k] for k in sorted(by_epoch, key=lambda x: (x is None, x))]


def last_stage(events: Sequence[Mapping]) -> Mapping | None:
    return next((e for e in reversed(events) if e.get("type") == "stage"), None)


# -- error messages ------------------------------------------------------------------------------

# Form control that sets each option, for error messages that say where to fix it.
OPTION_CONTROLS = {
    "ec.weights": "the layer-weight sliders", "ec.tau": "Temperature", "ec.lambda_cu": "λ_CU",
    "ec.lambda_ce": "λ_CE", "forget.classes": "Forget classes", "forget.random": "Random share",
    "method": "Method", "plugin": "EC plug-in", "beta": "β", "seed": "Seed", "model.arch": "Architecture",
    "preset": "Data set / preset", "calibrate": "Calibration",
}


def error_text(err: Exception) -> str:
    """'Invalid option: `ec.weights` are all zero: give at least one ... (Set by the layer-weight sliders.)'."""
    from dashboard.text import code, md
    option = getattr(err, "option", "") or ""
    msg = md(str(err))  # it may quote what the user typed: plain text, never markup
    if option and msg.startswith(option + ":"):
        msg = msg[len(option) + 1:].strip()
    elif option and msg.startswith(option + " "):
        msg = msg[len(option) + 1:].strip()  # "ec.weights are all zero" -> "are all zero"
    if not option:
        return msg
    sep = ": " if msg[:1].isupper() else " "
    text = f"Invalid option: {code(option)}{sep}{msg}".rstrip(".") + "."
    control = OPTION_CONTROLS.get(option) or _method_control(option)
    if control:
        text += f" (Set by {control}.)"
    return text


def _method_control(option: str) -> str | None:
    """'methods.ec.epochs' -> 'Unlearning epochs' (the form's per-method controls)."""
    if option.startswith("methods."):
        return {"epochs": "Unlearning epochs", "lr": "Learning rate"}.get(option.rsplit(".", 1)[-1])
    return None
