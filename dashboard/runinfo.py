"""What was tuned: a run's settings in a short form, the scenario it belongs to, and the history of
settings vs results of one scenario. Pure functions on results.json / job dicts (no Streamlit).

The short form names what a researcher tunes: EC's layer weights and temperature
("w 0/2.5/2.5/1 tau 0.3"), the loss weights, the EC plug-in's beta, and the method's learning rate
and epochs, each only where it differs from the preset's default (so the default EC reads
"w 1/1/1/1 tau 0.7" and two tuned runs never share a label).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence

from . import facts
from .facts import base_method, reads_ec
from .logic import REFERENCE, num


@functools.lru_cache(maxsize=16)
def _preset_defaults(preset: str) -> str:
    """The preset's default config as JSON (cached; pydantic only, no torch)."""
    try:
        return json.dumps(facts.make_config(preset).model_dump())
    except Exception:  # an unknown preset ("custom" files, old stores): compare with nothing
        return "{}"


def defaults(preset: str | None) -> dict:
    return json.loads(_preset_defaults(str(preset or "digits")))


def _g(v) -> str:
    """Three significant digits: a sweep's 0.734521 reads 0.735."""
    f = num(v)
    return "?" if f is None else f"{f:.3g}"


def _close(a, b) -> bool:
    a, b = num(a), num(b)
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def short_settings(method: str, uses_ec: bool, ec: Mapping | None, hp: Mapping | None, beta=None,
                   preset: str | None = "digits", n_points: int | None = None, seed=None) -> str:
    """'w 0/2.5/2.5/1 tau 0.3' (+ ' λ 5/1', ' β 2', ' lr 0.03', ' ep 10', ' seed 1' where not the default)."""
    d = defaults(preset)
    parts = []
    if uses_ec:
        ec = ec or {}
        dec = d.get("ec") or {}
        w = ec.get("weights")
        if w is None:
            w = ec.get("layer_weights") or [1.0] * (n_points or 4)
        parts.append("w " + "/".join(_g(x) for x in w))
        parts.append(f"tau {_g(ec.get('tau'))}")
        if not (_close(ec.get("lambda_cu"), dec.get("lambda_cu")) and _close(ec.get("lambda_ce"), dec.get("lambda_ce"))):
            parts.append(f"λ {_g(ec.get('lambda_cu'))}/{_g(ec.get('lambda_ce'))}")
        if beta is not None and not _close(beta, d.get("beta")):
            parts.append(f"β {_g(beta)}")
    dm = ((d.get("methods") or {}).get(method) or {})
    for key, tag in (("lr", "lr"), ("epochs", "ep")):
        v = (hp or {}).get(key)
        if v is not None and not _close(v, dm.get(key)):
            parts.append(f"{tag} {_g(v)}")
    if seed is not None and not _close(seed, d.get("seed", 0)):
        parts.append(f"seed {int(seed)}")
    return " ".join(parts) or "defaults"


def _n_points(arch) -> int | None:
    return len(facts.SUPERVISION_POINTS.get(arch) or []) or None


def config_settings(cfg: Mapping | None) -> str:
    """The short form of a full config dict (a job spec's "config", or results.json's)."""
    cfg = cfg or {}
    method = cfg.get("method") or "ec"
    uses_ec = reads_ec(method, cfg.get("plugin") == "ec")
    ec = dict(cfg.get("ec") or {})
    hp = (cfg.get("methods") or {}).get(method) or {}
    n = len(ec.get("weights") or []) or _n_points((cfg.get("model") or {}).get("arch"))
    out = short_settings(method, uses_ec, ec, hp, cfg.get("beta") if cfg.get("plugin") == "ec" else None,
                         cfg.get("preset"), n, cfg.get("seed"))
    if cfg.get("calibrate") in ("on", "off"):  # "auto" (and its absence in older specs) is the default
        out += f" calibrate {cfg['calibrate']}"
    return out


def job_settings(job: Mapping) -> str:
    """The short form of a run job's settings ('' for compare / embed jobs: they run the defaults)."""
    if job.get("kind") != "run":
        return ""
    return config_settings(((job.get("spec") or {}).get("config")) or {})


def run_settings(results: Mapping, name: str) -> str:
    """The short form of one run of a results file ('' for the reference rows)."""
    if name in REFERENCE:
        return ""
    cfg = results.get("config") or {}
    run = (results.get("runs") or {}).get(name) or {}
    params = run.get("params") or {}
    method = run.get("method") or base_method(name)
    uses_ec = reads_ec(method, name.endswith("+ec"))
    ec = dict(params.get("ec") or cfg.get("ec") or {})
    if params.get("layer_weights") and not ec.get("weights"):
        ec["weights"] = params["layer_weights"]
    hp = {k: params[k] for k in ("lr", "epochs") if k in params} or ((cfg.get("methods") or {}).get(method) or {})
    beta = params.get("beta", cfg.get("beta")) if name.endswith("+ec") else None
    return short_settings(method, uses_ec, ec, hp, beta, cfg.get("preset") or (results.get("scenario") or {}).get("preset"),
                          len(results.get("layers") or []) or None, cfg.get("seed"))


# -- scenarios and history --------------------------------------------------------------------------

SCENARIO_FIELDS = ("preset", "data", "forget", "seed", "model", "train")


def scenario_key(cfg: Mapping | None) -> str:
    """Runs with the same key share the original and the retrained model (same data, forget request,
    seed, model and training recipe), so their numbers compare directly."""
    cfg = cfg or {}
    return json.dumps({k: cfg.get(k) for k in SCENARIO_FIELDS}, sort_keys=True, default=str)


def scenario_history(items: Sequence[tuple[Mapping, Mapping]], cfg: Mapping, label: str) -> list[dict]:
    """Every run called `label` (e.g. 'ec') in the (job, results) pairs of the same scenario as
    `cfg`, newest first: {"job", "kind", "finished", "settings", "results", "name"}."""
    key = scenario_key(cfg)
    out = []
    for job, res in items:
        if scenario_key(res.get("config")) != key or label not in (res.get("runs") or {}):
            continue
        out.append({"job": job.get("id"), "kind": job.get("kind"), "finished": job.get("finished_at", job.get("finished")),
                    "settings": run_settings(res, label), "results": res, "name": label})
    return sorted(out, key=lambda h: -(num(h["finished"]) or 0.0))


def tag_history(history: Sequence[Mapping], job_id: str, default_settings: str) -> list[dict]:
    """Marks 'this run', the 'previous run' (the newest one finished before it) and the newest run
    with the default settings ('default EC') in a scenario history; returns the tagged entries
    (this, previous, default first, then the rest, newest first)."""
    this = next((h for h in history if h["job"] == job_id), None)
    t0 = num(this["finished"]) if this else None
    prev = next((h for h in history if h["job"] != job_id and (t0 is None or (num(h["finished"]) or 0) <= t0)), None)
    dflt = next((h for h in history if h["job"] != job_id and h["settings"] == default_settings), None)
    tags = {}
    for h, tag in ((this, "this run"), (prev, "previous run"), (dflt, "default settings")):
        if h is not None:
            tags.setdefault(h["job"], []).append(tag)
    first = [h for h in (this, prev, dflt) if h is not None]
    seen, out = set(), []
    for h in first + list(history):
        if h["job"] in seen:
            continue
        seen.add(h["job"])
        out.append({**h, "tag": ", ".join(tags.get(h["job"], []))})
    return out
