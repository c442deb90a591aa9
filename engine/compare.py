"""`python -m engine compare`: a full comparison in this process, with live progress and a table."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import results as results_schema
from .catalog import default_compare, method_names, preset_notes
from .config import ConfigError, apply_sets, option_table
from .events import JobContext


def parse_classes(text: str) -> list[int]:
    """`--forget-classes 3,5` -> [3, 5]; ConfigError naming forget.classes for "" or "a"."""
    parts = [c.strip() for c in str(text).split(",") if c.strip()]
    if not parts:  # never the default class in silence
        raise ConfigError("forget.classes", "is empty: name at least one class, e.g. --forget-classes 3 or 3,5")
    try:
        return [int(c) for c in parts]
    except ValueError:
        raise ConfigError("forget.classes", f"give class ids separated by commas, e.g. 3,5 (got {text!r})") from None


def add_set_flag(p: argparse.ArgumentParser) -> None:
    """The one `--set` of every command: repeatable, each taking one or more KEY=VALUE."""
    p.add_argument("--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override any option, e.g. --set ec.tau=0.5 ec.weights=1,1,0.5,1 (see `options`)")


def scenario_overrides(args) -> dict:
    """Overrides from the scenario flags shared by compare / submit / sweep: the flags first, then
    every --set on top (so `compare` and `submit` read the same command line the same way)."""
    over: dict = {}
    if getattr(args, "forget_classes", None) is not None:
        over["forget"] = {"classes": parse_classes(args.forget_classes)}
    if getattr(args, "forget_random", None) is not None:
        over["forget"] = {"random": args.forget_random}
    if getattr(args, "seed", None) is not None:
        over["seed"] = args.seed
    if getattr(args, "device", None):
        over["device"] = args.device
    if getattr(args, "data_dir", None):
        over.setdefault("data", {})["data_dir"] = args.data_dir
    if getattr(args, "download", False):
        over.setdefault("data", {})["download"] = True
    if getattr(args, "calibrate", None):
        over["calibrate"] = args.calibrate
    return apply_sets(over, getattr(args, "sets", None) or [])


def add_scenario_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="digits",
                   help="; ".join(f"{name}: {note}" for name, note in preset_notes().items()) + " (default digits)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--forget-classes", metavar="C[,C...]", help="class-wise forgetting, e.g. 3 or 3,5 (default 3)")
    g.add_argument("--forget-random", type=float, metavar="P", help="forget a random share P of training samples")
    p.add_argument("--seed", type=int, help="split / initialisation seed (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default auto: CUDA, then MPS, then CPU")
    p.add_argument("--data-dir", help="where downloadable data sets live ($ECLAB_DATA, ~/.cache/eclab/data)")
    p.add_argument("--download", action="store_true", help="download the data set if it is missing")
    p.add_argument("--calibrate", choices=["auto", "on", "off"],
                   help="per-scenario calibration of each method's lr x epochs under one rule: on searches (and caches) "
                        "the setting; off / auto (the default, for now) keep the recipes")
    add_set_flag(p)


class PrintingContext(JobContext):
    """Prints stage changes and epoch summaries as one line each."""

    def __init__(self, stream=None):
        # sys.stderr looked up now, not at import: in-process callers (tests) may have replaced it since
        self.stream, self.t0, self._last = stream or sys.stderr, time.perf_counter(), None

    def emit(self, event: dict) -> None:
        kind = event.get("type")
        t = time.perf_counter() - self.t0
        if kind == "stage":
            msg = event.get("message", "")
            if msg != self._last:
                self._last = msg
                print(f"[{t:6.1f}s] {msg}", file=self.stream, flush=True)
        elif kind == "epoch" and event.get("run") not in ("original", "retrain", "relearn"):
            fa, ra = event.get("forget_acc"), event.get("retain_acc")
            accs = f" forget {fa:.3f} retain {ra:.3f}" if fa is not None and ra is not None else ""
            print(f"[{t:6.1f}s]   {event['run']}: epoch {event['epoch']}/{event['epochs']} "
                  f"loss {event['losses']['loss']:.3f}{accs}", file=self.stream, flush=True)


def format_table(results: dict) -> str:
    """The comparison as text: logit-level numbers, then THE distance to retrain (the worst inner
    layer's |gap| of forget CKA to the original, engine/results.py) and each point's signed gap."""
    layers = results["layers"]
    inner = results_schema.inner_layers(layers)
    rows = results_schema.summary(results)
    tol, measured = results_schema.tolerances(results)
    fmt = lambda v, w, p=3: f"{v:>{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"  # noqa: E731
    sfmt = lambda v, w: f"{v:>+{w}.3f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"  # noqa: E731
    pw = max(8, max((len(p) for p in layers), default=0) + 1)
    head = (f"{'run':<16}{'forget':>8}{'retain':>8}{'test':>8}{'MIA':>7}{'gap':>7}{'to retrain':>11}{'worst':>{pw}}"
            + "".join(f"{p:>{pw}}" for p in layers) + f"{'probe':>7}{'sec':>7}  setting")
    lines = [head, "-" * len(head)]
    runs = results["runs"]
    for r in rows:
        run = runs[r["name"]]
        lines.append(f"{r['name']:<16}{fmt(r['forget_acc'], 8)}{fmt(r['retain_acc'], 8)}{fmt(r['test_acc'], 8)}"
                     f"{fmt(r['mia'], 7)}{fmt(r['avg_gap'], 7)}{fmt(r['distance'], 11)}"
                     f"{(r['worst_layer'] or '-'):>{pw}}" + "".join(sfmt(g["gap"], pw) for g in r["gaps"])
                     + f"{fmt(r['probe_distance'], 7)}{fmt(run.get('seconds'), 7, 1)}  {setting_text(run)}")
    lines.append(f"to retrain: the largest |gap| over {', '.join(inner)} (the worst inner layer); per point the signed "
                 f"gap of the forget CKA to the original to retrain's (+ keeps more of the original than retraining, "
                 f"- further from it: distorted), the last point shown for reference; tolerance per point "
                 + ("(two retrainings' spread): " if measured else "(ASSUMED, no second retrain measured): ")
                 + ", ".join(f"{p} {tol[p]:.3f}" for p in layers)
                 + "; probe: the largest inner |gap| of linear-probe recovery to retrain's")
    misses = [name for name, run in runs.items() if (run.get("calibration") or {}).get("reached") is False]
    if misses:
        lines.append(f"DID NOT REACH logit-level forgetting (forget accuracy on the forget training split not within "
                     f"the tolerance of retrain's): {', '.join(misses)}")
    return "\n".join(lines)


def setting_text(run: dict) -> str:
    """'lr 0.1 x 4 ep (calibrated)' / 'lr 0.3 x 10 ep (recipe)' / '' for the reference rows."""
    cal = run.get("calibration")
    if not cal:
        return ""
    if cal.get("used") and cal.get("choice"):
        c = cal["choice"]
        mark = "calibrated" if cal.get("reached") else "calibrated, NOT forgotten"
        return f"lr {c['lr']:.3g} x {c['epochs']} ep ({mark}, {cal.get('source', 'searched')})"
    r = cal.get("recipe") or {}
    mark = "recipe" if cal.get("reached") is not False else "recipe, NOT forgotten"
    return f"lr {r.get('lr', 0):.3g} x {r.get('epochs')} ep ({mark})"


def cmd_compare(args) -> int:
    from .runner import execute, parse_methods, prepare
    spec = {"preset": args.preset, "overrides": scenario_overrides(args)}
    if args.methods:
        spec["methods"] = parse_methods(args.methods)
    norm, _ = prepare("compare", spec)  # validates before any work starts
    out = Path(args.out)
    t0 = time.perf_counter()
    execute("compare", norm, out, PrintingContext())
    results = json.loads((out / "results.json").read_text())
    print(format_table(results))
    print(f"wrote {out / 'results.json'} in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_options(args) -> int:
    for name, default, cons in option_table():
        print(f"{name:<34} {json.dumps(default):<14} {cons}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("compare", help="run EC and the baselines on one scenario, write DIR/results.json")
    add_scenario_flags(p)
    p.add_argument("--methods", help=f"comma list of {','.join(m for m in method_names() if m != 'retrain')} "
                                     f"(default: {','.join(default_compare())})")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("options", help="list every option with its default and allowed range")
    p.set_defaults(func=cmd_options)
