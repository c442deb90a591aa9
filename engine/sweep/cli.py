"""The sweep commands: `python -m engine sweep | sweep-worker | sweep-show`."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

from .. import store
from ..config import ConfigError
from ..events import Cancelled
from ..procs import set_threads, signal_handlers
from .report import summary_text, trial_rows
from .space import load_space, param_names
from .storage import SweepError, redact, resolve_storage
from .study import OBJECTIVE_CHOICES, SAMPLERS, create_study, default_study_name, load_study
from .trials import Worker, recover_stale, reference, warm_bases


def _spawn_worker(study: str, storage: str, threads: int | None, seed: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "engine", "sweep-worker", "--study", study]
    if threads:
        cmd += ["--threads", str(threads)]
    if seed is not None:
        cmd += ["--sampler-seed", str(seed)]
    env = dict(os.environ)
    env["ECLAB_SWEEP_STORAGE"] = storage  # a database password stays out of the process list
    env["PYTHONPATH"] = os.pathsep.join([str(store.PROJECT_ROOT)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return subprocess.Popen(cmd, env=env, cwd=str(store.PROJECT_ROOT))


def _stop_on_sigterm(worker: Worker):
    """SIGTERM: finish nothing new, cancel the running trial at its next step (it is marked failed).
    The old handler is back after the `with`; outside the main thread nothing is installed."""
    return signal_handlers({signal.SIGTERM: lambda signum, frame: worker.stop.set()})


def cmd_sweep(args) -> int:
    from ..compare import scenario_overrides
    if args.trials < 0:
        raise ConfigError("trials", "must be >= 0")
    if args.workers < 1:
        raise ConfigError("workers", "must be >= 1")
    overrides = scenario_overrides(args)
    space = load_space(args.space)
    name = args.study or default_study_name(args.preset, overrides, space, args.sampler, args.objective)
    try:
        st = create_study(name, args.storage, preset=args.preset, overrides=overrides, space=space,
                          sampler=args.sampler, n_trials=args.trials, seed=args.sampler_seed,
                          objective=args.objective)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    storage = resolve_storage(args.storage, name)
    attrs = st.user_attrs
    print(f"[sweep] study {name} in {redact(storage)}: budget {attrs['n_trials']} trials, sampler {args.sampler}, "
          f"{args.workers} worker(s); parameters {', '.join(param_names(attrs['space'], attrs['points']))}",
          file=sys.stderr, flush=True)
    print(f"[sweep] more machines can join: python -m engine sweep-worker --study {name} --storage {redact(storage)}",
          file=sys.stderr, flush=True)
    threads = args.threads or 1
    set_threads(threads)
    worker = Worker(name, storage, threads=threads, sampler_seed=args.sampler_seed)
    procs: list[subprocess.Popen] = []
    ref = None
    try:
        with _stop_on_sigterm(worker):
            warm_bases(attrs)
            worker.warmed = True
            if not args.no_reference:
                ref = reference(attrs)
                worker.study.set_user_attr("reference", ref)
            procs = [_spawn_worker(name, storage, threads, args.sampler_seed + 1 + i) for i in range(args.workers - 1)]
            worker.run()
            for p in procs:
                p.wait()
    except (KeyboardInterrupt, Cancelled):
        for p in procs:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=60)
        print("interrupted: the study keeps its finished trials; rerun the same command to continue", file=sys.stderr)
        return 130
    print(summary_text(worker.study, ref))
    return 0 if all(p.returncode == 0 for p in procs) else 1


def cmd_worker(args) -> int:
    try:
        worker = Worker(args.study, args.storage, threads=args.threads, sampler_seed=args.sampler_seed)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    worker.say(f"joined study {args.study} ({redact(worker.storage)}), budget {worker.attrs().get('n_trials')} trials")
    try:
        with _stop_on_sigterm(worker):
            worker.run()
    except (KeyboardInterrupt, Cancelled):
        worker.say(f"stopped: ran {worker.ran} trial(s); the interrupted one is marked failed")
        return 130
    if worker.stop.is_set():
        worker.say(f"stopped (SIGTERM) after {worker.ran} trial(s)")
        return 0
    worker.say(f"done: ran {worker.ran} trial(s); the study's budget is used")
    return 0


def cmd_show(args) -> int:
    try:
        st, storage, _ = load_study(args.study, args.storage)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for n in recover_stale(st):  # a trial whose worker died shows as failed, not as running forever
        print(f"trial {n}: marked failed (its worker stopped)", file=sys.stderr)
    if args.json:
        print(json.dumps({"study": args.study, "attrs": st.user_attrs, "trials": trial_rows(st)}, indent=1,
                         default=str))
    else:
        print(summary_text(st))
    return 0


def add_commands(sub) -> None:
    from ..compare import add_scenario_flags
    p = sub.add_parser("sweep", help="multi-objective Optuna sweep of EC's layer weights and tau",
                       description="Search EC's per-layer weights and temperature (and, with --space, more) for "
                                   "a model that forgets like the retrained one at every inner layer (the worst "
                                   "layer's gap to retrain, either side) and keeps retain accuracy, with forget "
                                   "accuracy within 0.05 of the retrained model's. Each trial is a normal run in "
                                   "$ECLAB_HOME/runs.")
    add_scenario_flags(p)
    p.add_argument("--trials", type=int, default=24, metavar="N", help="the study's trial budget (default 24)")
    p.add_argument("--study", help="study name (default: derived from the settings, so a rerun continues it)")
    p.add_argument("--storage", help="journal file path or database URL (default: $ECLAB_SWEEP_STORAGE, else "
                                     "$ECLAB_HOME/sweeps/<study>.journal)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="tpe (default), nsga2 or grid")
    p.add_argument("--objective", choices=list(OBJECTIVE_CHOICES), default="distance",
                   help="what to minimise: distance (default: the largest inner-layer |gap| of forget CKA to "
                        "retrain's), tolerance (the same gap in units of two retrainings' spread per layer) or "
                        "probe (the largest inner-layer |gap| of linear-probe recovery to retrain's)")
    p.add_argument("--space", metavar="FILE",
                   help="JSON search space file (format: engine/sweep/__init__.py docstring, docs/SWEEPS.md)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="worker processes on this machine (default 1; trials are small: use one per core)")
    p.add_argument("--threads", type=int, metavar="T", help="torch threads per worker (default 1)")
    p.add_argument("--sampler-seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--no-reference", action="store_true", help="skip the default-settings reference run")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("sweep-worker", help="join a sweep study and run its trials until the budget is used")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help="as for sweep (default: $ECLAB_SWEEP_STORAGE, else the study's journal file)")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="torch threads (default 1)")
    p.add_argument("--sampler-seed", type=int, help="sampler seed (default: random)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("sweep-show", help="print a sweep study's Pareto front and failures")
    p.add_argument("--study", required=True)
    p.add_argument("--storage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
