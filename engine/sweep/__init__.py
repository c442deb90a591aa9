"""Hyperparameter sweeps of EC on Optuna: `python -m engine sweep` and `python -m engine sweep-worker`.

A sweep is a multi-objective Optuna study over EC's per-layer weights (one per supervision point of the
architecture) and its contrastive temperature tau, optionally also lambda_cu, lambda_ce, EC's learning
rate and epochs. Each trial is an ordinary single EC run (`runner.execute("run", ...)`) into
$ECLAB_HOME/runs/<run id>, so the dashboard and `python -m engine show` read it like any run.
The swept run is EC by default; `--set method=ft --set plugin=ec` sweeps the EC plug-in on another
method instead (the same knobs, lr and epochs of methods.ft, and "beta", the plug-in's weight).

Objectives (per trial):
    cka_gap_to_retrain  minimise: |EC's forget CKA - the retrained model's forget CKA|, where forget CKA
                        is the mean forget-split CKA to the original over the intermediate supervision
                        points (engine/results.py inner_cka: all points but the last). Retrain is the gold
                        standard: closer is better in either direction (a CKA below retrain's is
                        distortion, not more forgetting).
    retain_acc          maximise: accuracy on the retain split
Constraint:      |forget_acc - retrained model's forget_acc| <= 0.05 ("tolerance" study attr). Stored
                 with Trial.set_constraint("forget_gap", gap - tolerance) -- the Optuna 5 replacement of
                 the deprecated `constraints_func=` of TPESampler / NSGAIISampler, which reads the same
                 value -- and as the trial user attr "constraint" (feasible when <= 0).

Trials (and the reference run) evaluate without the UMAP embedding and without per-epoch CKA
(SWEEP_EVAL_DEFAULTS: eval.umap=false, eval.epoch_cka=false; --set eval.umap=true brings them back):
neither changes an objective, and they cost about half of a digits trial. They also run with
calibrate=off (SWEEP_FIXED, not overridable): under `auto` a single run may reuse a comparison's
calibrated lr/epochs, and a trial must run at exactly the settings the sweep chose. A study's
"overrides" attr holds the scenario overrides with these included.

Format versions (study attr eclab_sweep): 1 minimised EC's raw forget CKA, 2 the gap of the mean over
layers to retrain's, 3 (this one) the worst inner layer's. `sweep` and `sweep-worker` refuse to continue a study of another version (start a new
--study name); `sweep-show` and the dashboard still list its trials as recorded.

Parallelism: a trial is one small run, so workers default to ONE torch thread each and a machine is
used by running one worker per core (--workers K). On the 2-core development machine, a digits trial
took 7.5 s with one thread and 50-70 s with two threads while other processes competed for the cores.

Commands:
    python -m engine sweep --preset digits [scenario flags] --trials N [--study NAME] [--storage URL]
                           [--sampler tpe|nsga2|grid] [--space FILE] [--workers K] [--threads T]
        creates (or continues) the study, runs the default EC settings once as the reference (cached
        per configuration), runs trials in this process plus K-1 `sweep-worker` subprocesses until the
        budget is used, then prints the Pareto front and the comparison with the defaults.
    python -m engine sweep-worker --study NAME [--storage URL] [--threads T]
        joins an existing study (from this or another machine) and runs trials until its budget is used.
    python -m engine sweep-show --study NAME [--storage URL] [--json]
        prints the summary of a study (also while it runs); like a worker, it first marks trials of dead
        workers failed.

Space file (--space FILE, JSON). Keys are the parameters searched; a missing key keeps the scenario's
value (its config default or --set). Default space: {"weights": {"low": 0, "high": 3},
"tau": {"low": 0.05, "high": 5, "log": true}}.

    {
      "weights":   {"low": 0.0, "high": 3.0},              one parameter per supervision point,
                                                           named w_<point> (w_block1 ... w_block4)
      "tau":       {"low": 0.05, "high": 5.0, "log": true},      ec.tau
      "lambda_cu": {"low": 0.5, "high": 10.0, "log": true},      ec.lambda_cu
      "lambda_ce": {"low": 0.5, "high": 4.0},                    ec.lambda_ce
      "lr":        {"low": 0.001, "high": 0.1, "log": true},     methods.<method>.lr (methods.ec.lr)
      "epochs":    {"low": 1, "high": 10},                       methods.<method>.epochs (integers)
      "beta":      {"low": 0.1, "high": 3.0},                    beta (only with plugin=ec)
      "comment":   "free text, ignored"
    }

Each range holds "low" and "high" (low <= high), and optionally "log" (bool; needs low > 0),
"step" (float > 0; not with log) and "grid" (a list of values inside [low, high] for --sampler grid).
A range may be given as {"grid": [...]} alone (low/high then come from the list), and a key may be
set to false (or null) to leave that parameter out (e.g. "weights": false keeps all weights at 1.0).
Without "grid", the grid sampler uses low, middle and high (geometric middle with log; for epochs
every integer when there are at most 5). Unknown keys raise SpaceError naming the key.

Storage (--storage):
    default            $ECLAB_SWEEP_STORAGE when set, else the Optuna JournalStorage file
                       $ECLAB_HOME/sweeps/<study>.journal (JournalFileBackend: any number of
                       processes on one machine, or on machines sharing a POSIX file system)
    a path             a journal file at that path
    URL with "://"     RDBStorage (postgresql://user:pass@host/db -- run through psycopg2 when no
                       driver is named --, sqlite:///file.db, ...), with
                       heartbeat_interval 10 s and grace_period 30 s: Optuna fails trials whose heartbeat
                       stopped; several machines can share one PostgreSQL database.

Trial budget: the study user attr "n_trials". A worker takes a trial only while the number of
trials (COMPLETE + FAIL + RUNNING) is below it; that count and the creation of the trial happen under
one lock (a file lock <journal>.budget-lock beside the journal or SQLite file; a PostgreSQL advisory
lock), so workers never overshoot and trial numbers run 0..n_trials-1 without gaps or duplicates.
The grid sampler numbers grid points by trial number in an order shuffled by the study's seed, which
every worker uses, so no point runs twice.

Failures: any exception of a trial (DivergenceError on a NaN loss, out of memory, invalid config...)
marks it FAIL with the reason in the user attr "error"; the worker goes on. SIGTERM / Ctrl-C mark the
current trial FAIL ("interrupted") and stop the worker. A worker killed outright leaves a RUNNING trial:
every worker, before taking a trial, fails RUNNING trials whose worker process is gone (same host) or
whose heartbeat (user attr "heartbeat", written every ECLAB_SWEEP_HEARTBEAT_S = 10 s) is older than
ECLAB_SWEEP_GRACE_S = 30 s. Optuna 5's JournalStorage has no heartbeat of its own; with RDBStorage,
Optuna's heartbeat is recorded too and optuna.storages.fail_stale_trials runs as a backstop.

Trial user attrs: run_id, host, pid, worker, home, heartbeat, started, seconds (whole trial),
distance, worst_layer, worst_gap, worst_z, within, last_gap, probe_distance, forget_cka_mean,
gaps, tolerances, probe_gaps, tolerance_measured, retain_acc, forget_acc, test_acc,
retrain_forget_acc, retrain_forget_cka_mean, constraint, feasible, unlearn_seconds, registered (a done job row was written
through engine.api.record_external), error (failed trials).
Study user attrs: eclab_sweep (format version), n_trials, preset, overrides, space, sampler,
sampler_options, seed, tolerance, points, objectives, created, reference (the default EC run).

The parts: space (the space file, the grid, trial parameters -> config overrides), storage (study
names, journal or database, the budget lock), study (creating, continuing and opening a study),
trials (the sweep worker, stale trials, the reference run), report (trial rows, the Pareto front,
summaries, the studies on disk), cli (the commands). The process helpers (heartbeat thread, when a
worker counts as stopped, signal handlers, torch threads) are the job worker's, in engine.procs.
"""
from __future__ import annotations

from ..config import stable_hash
from .cli import add_commands, cmd_show, cmd_sweep, cmd_worker
from .report import compare_text, discover_studies, pareto_front, study_table, summary_text, trial_rows
from .space import (
    DEFAULT_SPACE,
    GE_PARAMS,
    INT_PARAMS,
    LIMITS,
    SPACE_PARAMS,
    TARGETS,
    SpaceError,
    grid_size,
    grid_space,
    load_space,
    param_names,
    params_to_overrides,
    suggest,
    swept_run,
    validate_space,
)
from .storage import (
    SweepError,
    budget_lock,
    check_study_name,
    db_url,
    grace_seconds,
    heartbeat_seconds,
    is_url,
    journal_path,
    open_storage,
    redact,
    resolve_storage,
    sweeps_dir,
)
from .study import (
    DIRECTIONS,
    FORMAT_VERSION,
    OBJECTIVE_CHOICES,
    OBJECTIVES,
    SAMPLERS,
    SWEEP_EVAL_DEFAULTS,
    SWEEP_FIXED,
    TOLERANCE,
    check_version,
    create_study,
    default_study_name,
    load_study,
    make_sampler,
)
from .trials import TrialContext, Worker, measure, recover_stale, reference, register_run, run_spec, warm_bases

# every name engine/sweep.py offered before it became a package
__all__ = ["add_commands", "budget_lock", "check_study_name", "check_version", "cmd_show", "cmd_sweep",
           "cmd_worker", "compare_text", "create_study", "db_url", "DEFAULT_SPACE", "default_study_name",
           "DIRECTIONS", "discover_studies", "FORMAT_VERSION", "OBJECTIVE_CHOICES", "GE_PARAMS", "grace_seconds", "grid_size",
           "grid_space", "heartbeat_seconds", "INT_PARAMS", "is_url", "journal_path", "LIMITS", "load_space",
           "load_study", "make_sampler", "measure", "OBJECTIVES", "open_storage", "param_names",
           "params_to_overrides", "pareto_front", "recover_stale", "redact", "reference", "register_run",
           "resolve_storage", "run_spec", "SAMPLERS", "SPACE_PARAMS", "SpaceError", "stable_hash", "study_table",
           "suggest", "summary_text", "swept_run", "SWEEP_EVAL_DEFAULTS", "SWEEP_FIXED", "SweepError", "sweeps_dir", "TARGETS",
           "TOLERANCE", "trial_rows", "TrialContext", "validate_space", "warm_bases", "Worker"]
