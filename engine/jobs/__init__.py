"""The background job system: a SQLite job table, the worker loop, heartbeats, cancellation.

    $ECLAB_HOME/jobs.sqlite   jobs, events, workers (WAL mode; every write in BEGIN IMMEDIATE)
    $ECLAB_HOME/runs/<job>/   the run folder engine.runner.execute fills, plus log.txt
    $ECLAB_HOME/worker.log    stdout/stderr of workers started by ensure_worker()

The dashboard and the CLI only insert jobs, set cancel flags and read; the work happens in
`python -m engine worker`, a separate long-lived process. Several workers may share one home:
a job is claimed inside BEGIN IMMEDIATE with a state check, so no two ever run the same job.

Job states: queued -> running -> done | failed | cancelled. A running job whose worker stops
heartbeating (killed, out of memory, machine asleep) is found by any other worker after
ECLAB_STALE_S seconds (default 15; at once when the worker's process is known dead on this host)
and requeued once (its partial run folder is cleared before the rerun), then failed with the reason.

`attempts` counts claims: 1 while a job runs for the first time. SIGTERM/SIGINT requeue the current
job without counting the attempt. Connections are opened per call; none is shared across threads.

With ECLAB_JOBS_URL=postgresql://... the same tables live on a PostgreSQL server instead, for
workers and dashboards on many machines (pg: the translation, row-locked claims, results stored in
the database; docs/MANY_MACHINES.md).

The parts: db (schema, connections, transactions, job rows and ids), queue (submitting with the
cache, outside work, readers), recovery (live workers, stale jobs, leftover folders), context (the
progress bar and the context a running job reports through), worker (the worker loop), cli (the
commands). The process helpers shared with engine.sweep are in engine.procs.
"""
from __future__ import annotations

from ..procs import pid_alive as _pid_alive
from .cli import add_commands, build_spec, headline
from .context import CANCEL_CACHE_S, THROTTLE_S, WARM_AFTER, Progress, WorkerContext
from .db import (ACTIVE, FINAL, HEARTBEAT_S, MAX_ATTEMPTS, STATES, _add_event, _db, connect, db_path, new_job_id,
                 stale_seconds, transaction)
from .queue import (JOB_KINDS, RESULT_FILES, cancel, events_since, get_job, list_jobs, list_results, load_arrays,
                    done_job, load_partial, load_results, record_external, submit)
from .recovery import ensure_worker, recover_stale, worker_alive, workers
from .worker import STOP_GRACE_S, Worker, run_worker


def _runner():
    """engine.runner, imported lazily (it pulls in torch). The package reaches the runner only
    through this attribute (queue.current_runner looks it up at each call), so a test may replace
    it: monkeypatch.setattr(jobs, "_runner", lambda: FakeRunner)."""
    from .. import runner
    return runner


__all__ = ["_add_event", "_db", "_pid_alive", "_runner",  # private names tests use
           "ACTIVE", "CANCEL_CACHE_S", "FINAL", "HEARTBEAT_S", "JOB_KINDS", "MAX_ATTEMPTS", "RESULT_FILES", "STATES",
           "STOP_GRACE_S", "THROTTLE_S", "WARM_AFTER", "Progress", "Worker", "WorkerContext", "add_commands",
           "build_spec", "cancel", "connect", "db_path", "ensure_worker", "events_since", "get_job", "headline",
           "list_jobs", "list_results", "load_arrays", "load_partial", "load_results", "new_job_id", "record_external", "done_job",
           "recover_stale", "run_worker", "stale_seconds", "submit", "transaction", "worker_alive", "workers"]
