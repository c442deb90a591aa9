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
from .report import READINGS, trial_line
from .space import _params_text, params_to_overrides, suggest, swept_run
from .storage import _file_lock, _quiet_optuna, budget_lock, grace_seconds, heartbeat_seconds, sweeps_dir
from .study import OBJECTIVES, SWEEP_FIXED, TOLERANCE, check_version, load_study


# user attr of a trial that failed because its worker stopped (killed, SIGTERM, Ctrl-C), not because of
# its settings: it does not use up the study's budget, so a resumed sweep runs the trials it was asked for
INTERRUPTED = "interrupted"


def budget_used(study) -> int:
    """Trials that count against the budget: every trial but the interrupted failures."""
    from optuna.trial import TrialState
    return sum(1 for t in study.get_trials(deepcopy=False)
               if not (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED)))


def seed_sampler(sampler, seed: int, number: int) -> None:
    """Draw trial `number`'s settings from a seed of its own (the study's seed and the trial number):
    a resumed or second process would otherwise restart its sampler's random stream and propose the
    settings of trial 0 again. Reproducible: the same study seed gives the same seeds per trial."""
    from ..config import stable_hash
    value = int(stable_hash({"sweep-seed": seed, "trial": number}, 8), 16)
    for obj in (sampler, getattr(sampler, "_random_sampler", None)):
        rng = getattr(obj, "_rng", None)
        if rng is not None and hasattr(rng, "rng"):
            rng.rng.seed(value)


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
            storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
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
    """Objectives, per-layer readings and constraint from runner.summarize's output of a single run:
    the worst inner layer's gap to retrain (distance, worst_z), the gaps per point, probe recovery's."""
    runs = summary["runs"]
    ec = runs.get("ec") or next(v for k, v in runs.items() if k not in ("original", "retrain"))
    retrain = runs.get("retrain") or {}
    for name, v in (("the distance to retrain (worst inner layer)", ec.get("distance")),
                    ("retain accuracy", ec.get("retain_acc")), ("forget accuracy", ec.get("forget_acc")),
                    ("the retrained model's forget accuracy", retrain.get("forget_acc"))):
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"{name} was not measured (got {v!r})")
    constraint = abs(float(ec["forget_acc"]) - float(retrain["forget_acc"])) - tolerance
    return {**{k: ec.get(k) for k in READINGS + ("forget_acc", "test_acc")}, "retrain_forget_acc": float(retrain["forget_acc"]),
            "retrain_forget_cka_mean": retrain.get("forget_cka_mean"),
            "constraint": float(constraint), "feasible": constraint <= 0, "unlearn_seconds": ec.get("seconds")}


def objective_values(m: dict, objectives) -> list[float]:
    """The study's objective values of one measured trial (a missing probe reading fails the trial)."""
    vals = [m.get(k) for k in objectives]
    for k, v in zip(objectives, vals):
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"the objective {k} was not measured (got {v!r})")
    return [float(v) for v in vals]


def stored_run(spec: dict) -> tuple[str, dict] | None:
    """(job id, results) of a done run job of exactly this configuration in the run store, or None."""
    try:
        from .. import api
        job_id = api.done_job("run", spec)
        return (job_id, api.load_results(job_id)) if job_id else None
    except Exception as err:  # the job table is an index: without it, the trial runs
        print(f"warning: could not look up earlier runs: {one_line(err)}", file=sys.stderr)
        return None


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
            if "distance" in ref and "gaps" in ref and store.run_dir(ref["run_id"]).joinpath("results.json").exists():
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
        return int(self.study.user_attrs.get("n_trials", 0)) - budget_used(self.study)

    def _take(self):
        """Under the budget lock: fail stale trials, count, create a trial (or None: budget used)."""
        from optuna.trial import TrialState
        with budget_lock(self.storage, self.raw, self.study_name) as locked:
            for n in recover_stale(self.study):
                self.say(f"trial {n}: marked failed (its worker stopped)")
            budget = int(self.study.user_attrs.get("n_trials", 0))
            if budget_used(self.study) >= budget:
                return None
            seed_sampler(self.study.sampler, int(self.study.user_attrs.get("seed") or 0),
                         len(self.study.get_trials(deepcopy=False)))
            trial = self.study.ask()
            if not locked and budget_used(self.study) > budget:  # unlocked storage raced past the budget
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
                done = stored_run(spec)
                if done is not None:  # this exact configuration already ran: read it, do not run it again
                    run_id, results = done
                    summary = runner.summarize(results)
                    trial.set_user_attr("run_id", run_id)
                    trial.set_user_attr("reused", True)
                    self.say(f"trial {trial.number}: these settings already ran as {run_id}; its results are reused")
                else:
                    run_dir = store.run_dir(run_id, create=True)
                    summary = runner.execute("run", spec, run_dir, TrialContext(run_dir, self.stop))
                m = measure(summary, attrs.get("tolerance", TOLERANCE))
                for key, value in m.items():
                    trial.set_user_attr(key, value)
                trial.set_user_attr("constraint", m["constraint"])
                trial.set_constraint("forget_gap", m["constraint"])
                trial.set_user_attr("registered", done is not None or register_run(run_id, spec, run_dir, summary))
                values, state = objective_values(m, attrs.get("objectives") or OBJECTIVES), TrialState.COMPLETE
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
                    if interrupt is not None:
                        trial.set_user_attr(INTERRUPTED, True)
            with contextlib.suppress(Exception):
                trial.set_user_attr("seconds", time.perf_counter() - t0)
        try:
            self.study.tell(trial, values=values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.say(f"trial {trial.number}: another worker had already marked it failed (heartbeat lost)")
        dt = time.perf_counter() - t0
        if state == TrialState.COMPLETE:
            self.say(f"trial {trial.number}: {trial_line(m)}, retain {m['retain_acc']:.3f}, forget acc "
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
