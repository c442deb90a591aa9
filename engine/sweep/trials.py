"""Running trials: failing the trials of stopped workers, the trial heartbeat and context, the
reference run, and the sweep worker that takes trials until the study's budget is used. The
process machinery (heartbeat thread, when a worker counts as stopped, error lines, torch threads)
is the job worker's, from engine.procs."""
from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from .. import store
from ..config import deep_merge, make_config
from ..events import Cancelled, JobContext
from ..procs import Beat, one_line, set_threads, why_stopped
from .space import _params_text, params_to_overrides, suggest, swept_run
from .storage import _file_lock, _quiet_optuna, budget_lock, grace_seconds, heartbeat_seconds, sweeps_dir
from .study import OBJECTIVES, SWEEP_FIXED, TOLERANCE, check_version, load_study


def recover_stale(study, grace: float | None = None) -> list[int]:
    """Fail RUNNING trials whose worker is gone (process dead on this host) or silent for `grace`
    seconds, with the reason in user attr "error". Returns the trial numbers failed."""
    optuna = _quiet_optuna()
    from optuna.trial import TrialState
    grace = grace_seconds() if grace is None else grace
    now, host, me = time.time(), socket.gethostname(), os.getpid()
    failed = []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ua = t.user_attrs
        pid, thost = ua.get("pid"), ua.get("host")
        if thost == host and pid == me:
            continue
        beat = ua.get("heartbeat")
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        why = why_stopped(thost, pid, beat, grace, now)  # the rule the job table's recovery applies too
        if why is None:
            continue
        who = f"{ua.get('worker', '?')}"
        reason = (f"interrupted: worker {who} (pid {pid}) is gone" if why == "gone" else
                  f"interrupted: worker {who} sent no heartbeat for {now - float(beat or now):.0f} s "
                  f"(more than {grace:.0f} s)")
        try:
            storage.set_trial_user_attr(t._trial_id, "error", reason)
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    with contextlib.suppress(Exception):
        failed_rdb = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        optuna.storages.fail_stale_trials(study)  # RDB heartbeat backstop (no-op for journals)
        now_running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        failed += [n for n in failed_rdb if n not in now_running and n not in failed]
    return failed


def _trial_heartbeat(study, trial_id: int, raw) -> Beat:
    """The heartbeat of a running trial: its "heartbeat" user attr (and RDB's own heartbeat, where the
    storage keeps one) every ECLAB_SWEEP_HEARTBEAT_S seconds; use it as `with _trial_heartbeat(...):`."""
    rdb = hasattr(raw, "record_heartbeat") and getattr(raw, "heartbeat_interval", None)

    def beat():  # an error (the trial finished meanwhile, a storage hiccup): the next beat retries
        study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
        if rdb:
            raw.record_heartbeat(trial_id)

    if rdb:
        with contextlib.suppress(Exception):
            raw.record_heartbeat(trial_id)
    return Beat(heartbeat_seconds(), beat, "sweep-heartbeat")


class TrialContext(JobContext):
    """Progress of a trial's run into its log.txt; cancelled when the worker is asked to stop."""

    def __init__(self, run_dir: Path, stop: threading.Event):
        self.log_path = Path(run_dir) / "log.txt"
        self.stop = stop
        self._last = None

    def emit(self, event: dict) -> None:
        if event.get("type") not in ("stage", "log"):
            return
        msg = event.get("message", "")
        if msg and msg != self._last:
            self._last = msg
            with contextlib.suppress(OSError), open(self.log_path, "a") as fh:
                fh.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}\n")

    def cancelled(self) -> bool:
        return self.stop.is_set()


def run_spec(attrs: dict, params: dict) -> dict:
    """The job spec of one trial: {"preset", "overrides"} with the trial's EC settings."""
    overrides = attrs.get("overrides") or {}
    over = deep_merge(copy.deepcopy(overrides), params_to_overrides(params, attrs["points"], swept_run(overrides)))
    return {"preset": attrs["preset"], "overrides": deep_merge(over, SWEEP_FIXED)}


def measure(summary: dict, tolerance: float = TOLERANCE) -> dict:
    """Objectives and constraint from runner.summarize's output of a single EC run."""
    runs = summary["runs"]
    ec = runs.get("ec") or next(v for k, v in runs.items() if k not in ("original", "retrain"))
    cka, retain, forget = ec.get("forget_cka_mid"), ec.get("retain_acc"), ec.get("forget_acc")
    retrain = runs.get("retrain") or {}
    ref_cka, ref_forget = retrain.get("forget_cka_mid"), retrain.get("forget_acc")
    for name, v in (("forget CKA", cka), ("retain accuracy", retain), ("forget accuracy", forget),
                    ("the retrained model's forget CKA", ref_cka),
                    ("the retrained model's forget accuracy", ref_forget)):
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"{name} was not measured (got {v!r})")
    constraint = abs(float(forget) - float(ref_forget)) - tolerance
    return {"cka_gap_to_retrain": abs(float(cka) - float(ref_cka)), "forget_cka": float(cka),
            "retrain_forget_cka": float(ref_cka), "retain_acc": float(retain), "forget_acc": float(forget),
            "test_acc": ec.get("test_acc"), "retrain_forget_acc": float(ref_forget),
            "constraint": float(constraint), "feasible": constraint <= 0, "unlearn_seconds": ec.get("seconds")}


def register_run(run_id: str, spec: dict, run_dir: Path, summary: dict) -> bool:
    """Make a finished trial run discoverable as a done job (engine.jobs), when the job module offers
    a way to record work that ran outside the queue. Returns whether a job row was written."""
    fn = None
    for mod in ("engine.api", "engine.jobs"):
        try:
            fn = getattr(importlib.import_module(mod), "record_external", None)
        except ModuleNotFoundError:
            fn = None
        if fn is not None:
            break
    if fn is None:
        return False
    try:
        from ..runner import prepare
        norm, _ = prepare("run", spec)
        fn("run", norm, run_dir, summary)
        return True
    except Exception as err:  # never lose a finished trial over the job table
        print(f"warning: could not record run {run_id} as a job: {one_line(err)}", file=sys.stderr)
        return False


def warm_bases(attrs: dict, out=sys.stderr) -> None:
    """Build (or find) the scenario's cached base models once per machine: concurrent workers wait on a
    file lock instead of training the same models side by side."""
    from .. import runner
    spec = run_spec(attrs, {})
    folder = sweeps_dir()
    with _file_lock(folder / ".bases.lock"):
        tmp = Path(tempfile.mkdtemp(prefix=".warm-", dir=folder))
        try:
            t0 = time.perf_counter()
            runner.execute("base", spec, tmp)
            dt = time.perf_counter() - t0
            if dt > 5:
                print(f"[sweep] built the base models in {dt:.0f} s (cached for later trials)", file=out, flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def reference(attrs: dict, out=sys.stderr) -> dict:
    """The default EC settings on the study's scenario: one ordinary run, cached per configuration in
    $ECLAB_HOME/sweeps/reference-<hash>.json."""
    from .. import runner
    spec = run_spec(attrs, {})  # the study's scenario at EC's default settings
    norm, config_hash = runner.prepare("run", spec)
    path = sweeps_dir() / f"reference-{config_hash}.json"
    if path.exists():
        with contextlib.suppress(store.CheckpointError):
            ref = store.load_json(path)
            if OBJECTIVES[0] in ref and store.run_dir(ref["run_id"]).joinpath("results.json").exists():
                return ref
    run_id = store.check_id(f"swref-{config_hash}")
    run_dir = store.run_dir(run_id, create=True)
    label = make_config(spec["preset"], spec["overrides"]).label_of()
    print(f"[sweep] running the default {label} settings once as the reference", file=out, flush=True)
    summary = runner.execute("run", spec, run_dir, TrialContext(run_dir, threading.Event()))
    ref = {**measure(summary, attrs.get("tolerance", TOLERANCE)), "run_id": run_id, "hash": config_hash, "label": label,
           "weights": make_config(spec["preset"], spec["overrides"]).layer_weights,
           "tau": norm["config"]["ec"]["tau"]}
    ref["registered"] = register_run(run_id, spec, run_dir, summary)
    store.atomic_write_json(path, ref)
    return ref


class Worker:
    """Takes trials of one study until its budget is used (or it is stopped)."""

    def __init__(self, study: str, storage: str | None = None, threads: int | None = None,
                 sampler_seed: int | None = None, out=sys.stderr, name: str | None = None):
        self.study, self.storage, self.raw = load_study(study, storage, sampler_seed)
        check_version(self.study.user_attrs, study, self.storage)
        self.study_name = study
        self.threads = threads
        self.out = out
        self.name = name or f"{socket.gethostname()[:24]}-{os.getpid()}"
        self.stop = threading.Event()
        self.ran = 0
        self.warmed = False  # base models known to be cached on this machine

    def say(self, text: str) -> None:
        with contextlib.suppress(Exception):
            print(f"[{time.strftime('%H:%M:%S')} {self.name}] {text}", file=self.out, flush=True)

    def attrs(self) -> dict:
        return self.study.user_attrs

    def remaining(self) -> int:
        """Trials left in the budget (a snapshot; _take decides under the lock)."""
        return int(self.study.user_attrs.get("n_trials", 0)) - len(self.study.get_trials(deepcopy=False))

    def _take(self):
        """Under the budget lock: fail stale trials, count, create a trial (or None: budget used)."""
        from optuna.trial import TrialState
        with budget_lock(self.storage, self.raw, self.study_name) as locked:
            for n in recover_stale(self.study):
                self.say(f"trial {n}: marked failed (its worker stopped)")
            budget = int(self.study.user_attrs.get("n_trials", 0))
            used = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                      TrialState.RUNNING, TrialState.PRUNED)))
            if used >= budget:
                return None
            trial = self.study.ask()
            if not locked and trial.number >= budget:  # unlocked storage raced past the budget
                self.study.tell(trial, state=TrialState.FAIL)
                return None
            now = time.time()
            for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("worker", self.name),
                               ("home", str(store.home())), ("started", now), ("heartbeat", now)):
                trial.set_user_attr(key, value)
            return trial

    def run(self, max_trials: int | None = None) -> int:
        """Run trials until the budget is used; returns how many this worker ran."""
        attrs = self.attrs()
        set_threads(self.threads)
        while not self.stop.is_set() and (max_trials is None or self.ran < max_trials):
            if not self.warmed:
                if self.remaining() <= 0:  # nothing to do: do not load the models at all
                    break
                warm_bases(attrs, self.out)
                self.warmed = True
            trial = self._take()
            if trial is None:
                break
            self.ran += 1
            self.run_trial(trial, attrs)
        return self.ran

    def run_trial(self, trial, attrs: dict) -> None:
        import optuna
        from optuna.trial import TrialState

        from .. import runner
        run_id = store.check_id(f"sw-{self.study_name[:40]}-{trial.number}-{os.urandom(2).hex()}")
        trial.set_user_attr("run_id", run_id)
        t0 = time.perf_counter()
        state, values, error, interrupt, m = TrialState.FAIL, None, None, None, {}
        with _trial_heartbeat(self.study, trial._trial_id, self.raw):
            try:
                params, _ = suggest(trial, attrs["space"], attrs["points"], swept_run(attrs.get("overrides")))
                spec = run_spec(attrs, params)
                make_config(spec["preset"], spec["overrides"])  # invalid settings fail here, named
                run_dir = store.run_dir(run_id, create=True)
                summary = runner.execute("run", spec, run_dir, TrialContext(run_dir, self.stop))
                m = measure(summary, attrs.get("tolerance", TOLERANCE))
                for key, value in m.items():
                    trial.set_user_attr(key, value)
                trial.set_user_attr("constraint", m["constraint"])
                trial.set_constraint("forget_gap", m["constraint"])
                trial.set_user_attr("registered", register_run(run_id, spec, run_dir, summary))
                values, state = [m[k] for k in OBJECTIVES], TrialState.COMPLETE
            except Cancelled as err:
                error, interrupt = "interrupted: the worker was stopped (SIGTERM)", err
            except KeyboardInterrupt as err:
                error, interrupt = "interrupted: Ctrl-C (worker stopped)", err
            except Exception as err:  # DivergenceError, out of memory, invalid settings, ...
                error = one_line(err)
                if "out of memory" in str(err).lower():
                    _free_accelerator_memory()
            if error:
                with contextlib.suppress(Exception):
                    trial.set_user_attr("error", error)
            with contextlib.suppress(Exception):
                trial.set_user_attr("seconds", time.perf_counter() - t0)
        try:
            self.study.tell(trial, values=values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.say(f"trial {trial.number}: another worker had already marked it failed (heartbeat lost)")
        dt = time.perf_counter() - t0
        if state == TrialState.COMPLETE:
            self.say(f"trial {trial.number}: distance to retrain {values[0]:.3f} (forget CKA {m['forget_cka']:.3f} "
                     f"vs retrain {m['retrain_forget_cka']:.3f}), retain {values[1]:.3f}, forget acc "
                     f"{m['forget_acc']:.3f} ({'feasible' if m['feasible'] else 'infeasible'}) "
                     f"in {dt:.1f} s  [{_params_text(trial.params)}]")
        else:
            self.say(f"trial {trial.number}: FAILED in {dt:.1f} s: {error}")
        if interrupt is not None:
            raise interrupt


def _free_accelerator_memory() -> None:
    """After an out-of-memory failure, hand cached GPU memory back before the next trial."""
    with contextlib.suppress(Exception):
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
