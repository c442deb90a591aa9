"""The job commands: `python -m engine submit | jobs | cancel | show | clean | worker`."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .. import attempts, store
from .. import results as results_schema
from ..audit import add_model_flags
from ..audit import spec_from_args as audit_spec
from ..compare import add_set_flag, scenario_overrides
from ..config import ConfigError
from .context import _fmt, accuracy_text
from .db import ACTIVE, STATES, _stamp
from .queue import JOB_KINDS, cancel, events_since, get_job, list_jobs, load_results, submit
from .recovery import ensure_worker, worker_alive
from .worker import run_worker


def add_commands(sub) -> None:
    p = sub.add_parser("submit", help="queue a job (run, compare, base, embed, audit)",
                       description="Queue a job for the background worker and print its id.")
    p.add_argument("--kind", default="run", choices=list(JOB_KINDS))
    p.add_argument("--preset", default="digits")
    p.add_argument("--method", help="method of a single run (ec, ft, ga, ...)")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--forget-classes", metavar="C[,C...]", help="classes to forget, e.g. 3 or 3,5")
    grp.add_argument("--forget-random", type=float, metavar="P", help="share of training samples to forget")
    p.add_argument("--seed", type=int)
    p.add_argument("--methods", metavar="M[,M...]", help="methods of a compare job (default: all)")
    p.add_argument("--calibrate", choices=["auto", "on", "off"],
                   help="per-scenario calibration of each method's lr x epochs (as for compare; default auto)")
    add_set_flag(p)
    p.add_argument("--job", help="embed: the job whose results to embed")
    p.add_argument("--layer", help="embed: the supervision point")
    add_model_flags(p)
    p.add_argument("--start-worker", action="store_true", help="start a background worker if none is running")
    p.add_argument("--no-cache", action="store_true",
                   help="run it again even if the same configuration already finished (bypass the cache)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--state", action="append", choices=list(STATES))
    p.set_defaults(func=_cmd_jobs)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("id")
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("show", help="a job's details, last events and headline metrics")
    p.add_argument("id")
    p.add_argument("--events", type=int, default=10, help="how many of the last events to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("clean", help="list (or --delete) run folders without results: failed, cancelled, killed",
                       description="A failed or cancelled job, or a killed sweep trial, leaves a run folder with only "
                                   "config.json and log.txt (the log says what went wrong). This lists them; "
                                   "--delete removes them. Folders of queued, running or finished jobs are never "
                                   f"touched, nor one without a job that changed in the last {IDLE_S // 60} minutes "
                                   "(a sweep trial may be running in it).")
    p.add_argument("--delete", action="store_true", help="delete the folders listed")
    p.set_defaults(func=_cmd_clean)

    p = sub.add_parser("worker", help="run queued jobs (the background worker)")
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between queue polls")
    p.set_defaults(func=_cmd_worker)


def build_spec(args) -> dict:
    """The job spec of `submit`'s flags: {"preset", "overrides"} (+ "methods"), or {"job", "layer"} for embed."""
    if args.kind == "embed":
        if not args.job or not args.layer:
            raise ConfigError("job", "an embed job needs --job ID and --layer NAME")
        return {"job": args.job, "layer": args.layer}
    overrides = scenario_overrides(args)  # the same flags and --set parsing as `compare`
    if args.method:
        overrides["method"] = args.method
    spec: dict = {"preset": args.preset, "overrides": overrides}
    if args.kind == "audit":
        return audit_spec(args, overrides)
    if args.methods:
        if args.kind != "compare":
            raise ConfigError("methods", "--methods is for --kind compare; use --method for a single run")
        spec["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    return spec


def _cmd_submit(args) -> int:
    try:
        spec = build_spec(args)
        job = submit(args.kind, spec, use_cache=not args.no_cache)
    except ConfigError:
        raise  # engine.cli prints "error: invalid option <option>: <message>" and exits 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(job, indent=1, default=str))
    else:
        print(job["id"])
        if job.get("cached"):
            print(f"cache hit: same configuration as job {job['cached_from']}", file=sys.stderr)
        elif job.get("duplicate_of"):
            print(f"already {job['state']}: the same configuration is job {job['id']}", file=sys.stderr)
    if args.start_worker and job["state"] in ACTIVE:
        if ensure_worker():
            print(f"started a background worker (log: {store.home() / 'worker.log'})", file=sys.stderr)
    elif job["state"] == "queued" and not worker_alive():
        print("note: no worker is running; start one with `python -m engine worker`", file=sys.stderr)
    return 0


def _age(t: float | None, now: float | None = None) -> str:
    if not t:
        return "-"
    s = max(0.0, (now or time.time()) - t)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.0f}{unit}"
    return f"{s:.0f}s"


def _cmd_jobs(args) -> int:
    jobs = list_jobs(limit=args.limit, states=args.state)
    if args.json:
        print(json.dumps(store.json_safe(jobs), indent=1, default=str, allow_nan=False))
        return 0
    if not jobs:
        print("no jobs")
        return 0
    now = time.time()
    rows = [("ID", "KIND", "STATE", "PROG", "STAGE", "AGE", "ERROR")]
    for j in jobs:
        state = j["state"] + (" (cache)" if j["cached"] else "") + (" (cancelling)" if j["cancel_requested"]
                                                                     and j["state"] == "running" else "")
        err = (j["error"] or "")
        rows.append((j["id"], j["kind"], state, f"{100 * (j['progress'] or 0):.0f}%", (j["stage"] or "")[:28],
                     _age(j["created"], now), err[:60] + ("..." if len(err) > 60 else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not worker_alive() and any(j["state"] in ACTIVE for j in jobs):
        print("note: no worker is running; start one with `python -m engine worker`")
    return 0


def _find_job(job_id: str) -> tuple[dict | None, int]:
    """The job, or (None, exit status) once the reason is printed: 2 for an invalid id, 1 for none."""
    try:
        job = get_job(job_id)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return None, 2
    if job is None:
        print(f"error: no job {job_id}", file=sys.stderr)
        return None, 1
    return job, 0


def _cmd_cancel(args) -> int:
    job, rc = _find_job(args.id)
    if job is None:
        return rc
    if not cancel(args.id):
        print(f"job {args.id} is already {job['state']}")
        return 1
    print(f"job {args.id}: " + ("cancelled" if job["state"] == "queued" else "cancel requested"))
    return 0


def headline(results: dict) -> list[dict]:
    """One row per run of a results dict: the numbers `show` prints. distance_to_retrain is THE distance
    (engine/results.py: the largest |gap| of forget CKA to the original over the inner points), at
    worst_layer; gaps holds every point's signed gap (the last one apart, as on the pages)."""
    return [{"run": r["name"], "forget_acc": r["forget_acc"], "retain_acc": r["retain_acc"], "test_acc": r["test_acc"],
             "mia_efficacy": r["mia"], "distance_to_retrain": r["distance"], "worst_layer": r["worst_layer"],
             "gaps": results_schema.gaps_text(r["gaps"]), "seconds": r["seconds"]}
            for r in results_schema.summary(results)]


def _cmd_show(args) -> int:
    job, rc = _find_job(args.id)
    if job is None:
        return rc
    events = events_since(args.id)[-args.events:] if args.events > 0 else []
    results = None
    if job["state"] == "done":
        try:
            results = load_results(args.id)
        except store.CheckpointError as err:
            print(f"warning: {err}", file=sys.stderr)
    if args.json:
        print(json.dumps(store.json_safe({"job": job, "events": events,
                                          "headline": headline(results) if results else None}),
                         indent=1, default=str, allow_nan=False))
        return 0
    now = time.time()
    print(f"job       {job['id']}")
    print(f"kind      {job['kind']}")
    print(f"state     {job['state']}" + (" (cancel requested)" if job["cancel_requested"]
                                         and job["state"] == "running" else ""))
    print(f"progress  {100 * (job['progress'] or 0):.0f}%  {job['stage'] or ''}".rstrip())
    print(f"created   {_stamp(job['created'])} ({_age(job['created'], now)} ago)")
    if job["started"]:
        print(f"started   {_stamp(job['started'])}")
    if job["finished"]:
        dur = f" ({job['finished'] - job['started']:.1f} s)" if job["started"] else ""
        print(f"finished  {_stamp(job['finished'])}{dur}")
    if job["worker"]:
        print(f"worker    {job['worker']} (attempts {job['attempts']})")
    if job["cached_from"]:
        print(f"cache hit same configuration as job {job['cached_from']}")
    if job["error"]:
        print(f"error     {job['error']}")
    print(f"folder    {job['run_dir']}")
    spec = job["spec"] or {}
    cfg = spec.get("config") if isinstance(spec, dict) else None
    if isinstance(cfg, dict):
        forget = cfg.get("forget") or {}
        print(f"config    preset={cfg.get('preset')} method={cfg.get('method')} seed={cfg.get('seed')} "
              f"forget={forget.get('classes') if forget.get('classes') is not None else forget.get('random')}")
    if events:
        print("events:")
        for ev in events:
            ev = dict(ev)
            seq, t = ev.pop("seq"), ev.pop("time")
            print(f"  {seq:>4} {_stamp(t)[11:]}  {_event_text(ev)}")
    if results:
        print("results:")
        rows = headline(results)
        cols = ["run", "forget_acc", "retain_acc", "test_acc", "mia_efficacy", "distance_to_retrain", "worst_layer",
                "gaps"]
        table = [cols] + [[r["run"]] + [_fmt(r[c]) if r[c] is not None else "-" for c in cols[1:]] for r in rows]
        widths = [max(len(str(r[i])) for r in table) for i in range(len(cols))]
        for r in table:
            print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _event_text(ev: dict) -> str:
    kind = ev.get("type")
    if kind == "epoch":
        return f"epoch {ev.get('run', '')} {ev.get('epoch')}/{ev.get('epochs')}" + accuracy_text(ev)
    if kind == "stage":
        return f"stage {ev.get('stage')}: {ev.get('name', '')} {ev.get('message', '')}".rstrip()
    if kind == "step":
        return f"step {ev.get('run', '')} epoch {ev.get('epoch')} {ev.get('step')}/{ev.get('steps')} loss={_fmt(ev.get('loss'))}"
    if kind == "job":
        return f"{ev.get('state')}: {ev.get('error') or ev.get('message', '')}"
    return str(ev.get("message", ev))


IDLE_S = 3600  # a folder with no job (a sweep trial's) counts as left over after an hour without a change


def leftover_runs(now: float | None = None) -> list[tuple[Path, str]]:
    """(folder, why) of every run folder without results that no queued, running or finished job owns."""
    now = time.time() if now is None else now
    out = []
    for folder in store.runs_without_results():
        try:
            job = get_job(folder.name)
        except ValueError:  # not a job id: a folder someone made by hand
            job = None
        if job is not None:
            if job["state"] in ("failed", "cancelled"):
                out.append((folder, f"job {job['state']}" + (f": {job['error'][:60]}" if job["error"] else "")))
            continue
        changed = max((f.stat().st_mtime for f in folder.rglob("*")), default=folder.stat().st_mtime)
        if now - changed > IDLE_S:
            out.append((folder, f"no job (a killed or failed sweep trial?), unchanged for {_age(changed, now)}"))
    return out


def _cmd_clean(args) -> int:
    found = leftover_runs()
    for folder, why in found:
        print(f"{folder}  {why}  ({', '.join(sorted(f.name for f in folder.iterdir())) or 'empty'})")
        if args.delete:
            attempts.remove(folder)
    verb = "deleted" if args.delete else "found (delete them with `python -m engine clean --delete`)"
    print(f"{len(found)} run folder(s) without results {verb}" if found else "no run folders without results")
    return 0


def _cmd_worker(args) -> int:
    return run_worker(once=args.once, poll=args.poll)
