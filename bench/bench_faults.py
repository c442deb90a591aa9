"""Fault injection on the job system: is anything lost, run twice or served stale?

    python bench/bench_faults.py [--jobs 24] [--budget 240] [--seed 0] [--only issue21]

On a fresh temporary ECLAB_HOME (base models built once by a first tiny job), two real
`python -m engine worker` processes run --jobs tiny digits runs while, every couple of seconds, a
seeded random fault hits a worker: SIGKILL (then a new worker), SIGTERM (then a new worker), or
SIGSTOP past the stale limit and SIGCONT (another worker takes the job over meanwhile). Then:
damaged cached results (truncated in place, also through the hard links of cache hits) are
resubmitted; every CLI command runs against a corrupt copy of the database and `submit` under a
16-byte file size limit (a full disk as SQLite sees it); a list of invalid submissions is tried.

Printed at the end (never asserted): faults injected by kind, jobs run, bad inputs tried and
refused, and the things that must be zero: jobs lost (never finished, or done without valid
results), jobs run twice (more than one "done", or a done job's files rewritten afterwards), damaged
results served from the cache, CLI errors that were not one readable line, database integrity.

Then the faults of issue 21 (`--only issue21` runs this part alone, after the seeding job): a tiny
digits sweep (tests/test_sweep.py's SMALL recipe, budget 4) killed with SIGKILL during a trial, then
the same `sweep` command started twice at once (distinct configurations, trials that ran a
configuration twice, budget slots spent twice); two studies proposing the same configuration (the
second must reuse the first's run); a torn tail on the live journal followed by `sweep --trials N+1`,
and copies of the journal cut at 5000 bytes or holding random bytes (at the tail, inside, the whole
file) shown with `sweep-show` and the Sweeps page's study list; `submit --calibrate on`, then the
calibration cache rewritten with wrong types before each rerun; checkpoints with NaN/inf weights,
non-string keys, complex64 and int64 tensors and a zip-compressed .pth expanding to 256 MB (cap
ECLAB_MAX_CHECKPOINT_MB=2) through `audit` and `submit --kind audit` (peak memory measured) and
through the dashboard's upload path (refused uploads must be deleted); read-only commands on a full
disk (RLIMIT_FSIZE of 16 bytes); a failing, a cancelled and the killed trial's run folder, then
`engine clean` and `clean --delete`. The last line sums both parts: faults injected, bad inputs
tried, and every count that must be zero.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from jobs_helpers import (check_run_folders, cli, integrity_ok, pause_unlocked, spec, start_worker, stop,  # noqa: E402
                          wait_for, worker_env)

STALE_S = 3

# invalid submissions: (kind, spec); each must be refused at submit
BAD_SETS = [
    "ec.tau=-1", "ec.tau=0", "ec.tau=abc", "ec.weights=1,2", "ec.weights=0,0,0,0", "ec.weights=-1,1,1,1",
    "train.epochs=0", "train.epochs=-3", "train.epochs=1.5", "methods.ft.lr=-0.1", "methods.ft.lr=0",
    "methods.ft.epochs=0", "methods.ft.batch_size=0", "method=nope", "plugin=magic", "beta=-1",
    "forget.classes=[99]", "forget.classes=[-1]", "forget.random=0", "forget.random=1.5", "seed=abc",
    "model.arch=vgg99", "model.width=0", "data.dataset=nosuch", "eval.max_samples=0", "device=tpu",
    "no.such.option=1", "ec.lambda_cu=-1", "ec.lambda_ce=-2", "methods.scrub.gamma=-1",
    # item 5 of issue 11 (another branch): accepted here unless that fix is merged
    "ec.weights=nan,1,1,1", "ec.weights=inf,1,1,1", "methods.cu.lambda_cu=inf", "methods.scrub.gamma=inf",
]
BAD_SPECS = [("run", "not a dict"), ("nosuchkind", {}), ("run", {"preset": "nosuch"}),
             ("run", {"bogus_field": 1}), ("compare", {"methods": ["nosuch"]}), ("compare", {"methods": []}),
             ("embed", {"job": "../etc", "layer": "block2"}), ("embed", {"job": "j-20000101-0000-000000",
                                                                       "layer": "block2"}),
             ("embed", {"layer": "block2"}), ("compare", {"methods": ["retrain"]})]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Faults:
    """Workers of this run (by their own pid) and the faults injected into them."""

    def __init__(self, home: Path, rng: random.Random):
        self.home, self.rng = home, rng
        self.workers: list[subprocess.Popen] = []
        self.counts: dict[str, int] = {}
        self.n = 0

    def spawn(self) -> None:
        self.n += 1
        self.workers.append(start_worker(self.home, log_name=f"w{self.n}", ECLAB_STALE_S=STALE_S))

    def inject(self, api) -> None:
        busy = {w["pid"] for w in api.workers() if w["current_job"]}
        alive = [w for w in self.workers if w.poll() is None]
        targets = [w for w in alive if w.pid in busy] or alive
        if not targets:
            return self.spawn()
        w = self.rng.choice(targets)
        kind = self.rng.choice(["kill", "term", "pause"])
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "pause":  # past the stale limit: another worker requeues and reruns the job meanwhile
            pause_unlocked(w, self.home / "jobs.sqlite")  # never while it holds the write lock
            time.sleep(STALE_S + 1.5 + self.rng.random() * 2)
            w.send_signal(signal.SIGCONT)
            return
        stop(w, signal.SIGKILL if kind == "kill" else signal.SIGTERM, timeout=60)
        self.spawn()

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def stop_all(self) -> None:
        for w in self.workers:
            stop(w, signal.SIGTERM, timeout=30)


def snapshot(home: Path, job_id: str) -> tuple | None:
    f = home / "runs" / job_id / "results.json"
    return (f.stat().st_ino, f.read_bytes()) if f.is_file() else None


def one_readable_line(r: subprocess.CompletedProcess) -> bool:
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    return r.returncode != 0 and "Traceback" not in r.stderr and len(errors) == 1 and "jobs.sqlite" in errors[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--budget", type=float, default=240, help="seconds for the fault phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary home")
    ap.add_argument("--only", choices=["issue21"], help="run only the faults of issue 21 (sweeps, calibration "
                                                         "caches, checkpoints, full disk, clean)")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="eclab-faults-")).resolve()
    os.environ["ECLAB_HOME"] = str(home)
    from engine import api, jobs
    rng = random.Random(args.seed)
    t_start = time.monotonic()
    log(f"home {home}; building the tiny scenario's base models")
    first = api.submit("run", spec("ft"))["id"]
    w = start_worker(home, "--once", log_name="seed")
    w.wait(600)
    assert api.get_job(first)["state"] == "done", "the seeding job failed"

    faults = Faults(home, rng)
    tally = Tally()
    try:
        if args.only != "issue21":
            run(args, home, api, jobs, rng, faults, t_start, tally)
        issue21(home, api, jobs, tally)
        summary(tally, t_start)
        return 0
    finally:  # never leave a worker of this run behind
        faults.stop_all()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def run(args, home: Path, api, jobs, rng: random.Random, faults: Faults, t_start: float, tally: "Tally") -> None:
    from engine.cachecheck import folder_problem
    from engine.config import ConfigError, apply_sets
    # -- phase 1: jobs under kills, SIGTERMs and pauses ----------------------------------------------
    faults.spawn()
    faults.spawn()
    specs = [spec("ft", ft={"lr": round(0.002 * (i + 1), 4), "epochs": 15}) for i in range(args.jobs)]
    ids = [api.submit("run", s)["id"] for s in specs]
    done_seen: dict[str, tuple] = {}
    end = time.monotonic() + args.budget
    while time.monotonic() < end:
        states = {j["id"]: j for j in api.list_jobs(limit=None)}
        for i in ids:
            if states[i]["state"] == "done" and i not in done_seen:
                done_seen[i] = snapshot(home, i)
        if all(states[i]["state"] in jobs.FINAL for i in ids):
            break
        time.sleep(1.0 + rng.random() * 2)
        faults.inject(api)
    log(f"fault phase: {faults.counts} after {time.monotonic() - t_start:.0f} s")
    alive = [w for w in faults.workers if w.poll() is None]
    if not alive:
        faults.spawn()
    wait_for(lambda: all(api.get_job(i)["state"] in jobs.FINAL for i in ids), 300, interval=0.5,
             what="the queue to drain")

    # -- phase 2: damaged cached results, corrupt database, full disk --------------------------------
    done = [i for i in ids if api.get_job(i)["state"] == "done"]
    damaged = rng.sample(done, min(4, len(done)))
    served_damaged, n_damaged = 0, len(damaged)
    for i in list(damaged):
        k = ids.index(i)
        hit = api.submit("run", specs[k])  # a cache hit: a hard link of the same file
        f = home / "runs" / i / "results.json"
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size // 2)
        if rng.random() < 0.5:
            f.unlink()  # deleted by hand: the linked copy of the cache hit remains
        again = api.submit("run", specs[k])
        if again["cached"]:
            served_damaged += 1
        faults.add("damaged results")
        ids.append(again["id"])
        specs.append(specs[k])
        damaged.append(hit["id"])  # its linked copy was damaged too
    wait_for(lambda: all(api.get_job(i)["state"] in jobs.FINAL for i in ids), 300, interval=0.5,
             what="the reruns of damaged results")
    bad_db = home / "corrupt-copy"
    bad_db.mkdir()
    (bad_db / "jobs.sqlite").write_bytes(os.urandom(8192))
    unreadable = 0
    for cmd in (["jobs"], ["jobs", "--json"], ["show", ids[0]], ["cancel", ids[0]], ["submit", "--method", "ft"]):
        if not one_readable_line(cli(bad_db, *cmd, timeout=180)):
            unreadable += 1
        faults.add("corrupt database")
    n_before = len(api.list_jobs(limit=None))
    r = subprocess.run([sys.executable, "-m", "engine", "submit", "--method", "ft", "--set", "seed=7"], cwd=str(ROOT),
                       env=worker_env(home), capture_output=True, text=True, timeout=180,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16)))
    faults.add("full disk")
    unreadable += 0 if one_readable_line(r) else 1
    full_disk_queued = len(api.list_jobs(limit=None)) - n_before

    # -- phase 3: invalid submissions ----------------------------------------------------------------
    accepted = []
    parsed = [x for x in BAD_SETS if _parses(x)]
    tried = len(BAD_SETS) - len(parsed)  # refused already by the --set parser
    for kind, s in [("run", {"preset": "digits", "overrides": apply_sets({}, [x])}) for x in parsed] + BAD_SPECS:
        tried += 1
        try:
            job = api.submit(kind, s)
        except (ConfigError, ValueError):
            continue
        accepted.append(f"{kind} {json.dumps(s)[:80]}")
        if job["state"] in jobs.ACTIVE and not job.get("duplicate_of"):
            api.cancel(job["id"])

    wait_for(lambda: all(j["state"] in jobs.FINAL for j in api.list_jobs(limit=None)), 300, interval=0.5,
             what="everything to finish")
    faults.stop_all()

    # -- the tally ---------------------------------------------------------------------------------
    final = {j["id"]: j for j in api.list_jobs(limit=None)}
    lost, twice, rewritten = [], [], []
    for i in ids:
        j = final[i]
        dones = [e for e in api.events_since(i) if e.get("type") == "job" and e.get("state") == "done"]
        if len(dones) > 1:
            twice.append(i)
        if j["state"] not in jobs.FINAL or (j["state"] == "done" and not j["cached"]
                                            and folder_problem(home / "runs" / i, "run", "results.json")
                                            and i not in damaged):
            lost.append(i)
        if i in done_seen and i not in damaged and done_seen[i] != snapshot(home, i):
            rewritten.append(i)
    by_state: dict[str, int] = {}
    for i in ids:
        by_state[final[i]["state"]] = by_state.get(final[i]["state"], 0) + 1
    ran = sum(1 for i in ids if final[i]["state"] == "done" and not final[i]["cached"])
    attempts = sum(final[i]["attempts"] for i in ids)
    problems = check_run_folders(home)
    print()
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"{time.monotonic() - t_start:.0f} s in all")
    print(f"faults injected: {sum(faults.counts.values())} ({', '.join(f'{k} {v}' for k, v in faults.counts.items())})")
    print(f"jobs: {len(ids)} submitted, {ran} run to done by a worker, states {by_state}, {attempts} attempts "
          f"(a job killed or taken over mid-run counts 2; SIGTERM requeues do not count)")
    print(f"bad inputs tried: {tried}, refused: {tried - len(accepted)}"
          + (f", accepted: {len(accepted)} ({'; '.join(accepted)})" if accepted else ""))
    print(f"lost: {len(lost)} {lost or ''}")
    print(f"run twice: {len(twice)} {twice or ''}; done files rewritten later: {len(rewritten)} {rewritten or ''}")
    print(f"damaged results served from the cache: {served_damaged} of {n_damaged} resubmissions")
    print(f"CLI errors on a corrupt / full database that were not one readable line: {unreadable}; "
          f"jobs queued on the full disk: {full_disk_queued}")
    print(f"database integrity_check: {'ok' if integrity_ok(home) else 'FAILED'}; damaged run-folder files: "
          f"{len(problems)}")
    for kind, n in faults.counts.items():
        tally.fault(kind, n)
    tally.tried += tried
    tally.refused += tried - len(accepted)
    for name, bad in (("lost", lost), ("run twice", twice), ("done files rewritten later", rewritten),
                      ("damaged results served from the cache", served_damaged),
                      ("CLI errors that were not one readable line", unreadable),
                      ("jobs queued on a full disk", full_disk_queued),
                      ("database integrity failures", 0 if integrity_ok(home) else 1),
                      ("damaged run-folder files", problems), ("bad inputs accepted", accepted)):
        tally.must_be_zero(name, bad)


def summary(tally: "Tally", t_start: float) -> None:
    zero = ", ".join(f"{k} {len(v)}" for k, v in tally.zero.items())
    print()
    print(f"SUMMARY ({time.monotonic() - t_start:.0f} s, load average {os.getloadavg()[0]:.1f}): faults injected "
          f"{sum(tally.faults.values())}, bad inputs tried {tally.tried} (refused {tally.refused}); must be zero: {zero}")


def _parses(text: str) -> bool:
    from engine.config import apply_sets
    try:
        apply_sets({}, [text])
        return True
    except Exception:  # noqa: BLE001 - refused by the --set parser itself
        return False


# == issue 21: sweep journals, resumed and concurrent sweeps, calibration caches, checkpoints, full disk ==

BAD_CHOICES = [{"lr": "abc", "epochs": -1}, {"lr": 0.01, "epochs": 1.5}, {"lr": float("nan"), "epochs": 2},
               {"lr": True, "epochs": 2}, "fast"]  # the first is the issue's; the rest as tests/test_faults.py


class Tally:
    """What the issue-21 part injected and tried, and the counts that must be zero (with details)."""

    def __init__(self):
        self.faults: dict[str, int] = {}
        self.tried = self.refused = 0
        # the headline counts first: nothing lost, nothing run twice, no budget slot spent twice
        self.zero: dict[str, list] = {"lost": [], "run twice": [], "budget slots spent twice": []}
        self.figures: list[str] = []

    def fault(self, kind: str, n: int = 1) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + n

    def must_be_zero(self, name: str, bad: list | int = ()) -> None:
        self.zero.setdefault(name, [])
        self.zero[name] += [None] * bad if isinstance(bad, int) else list(bad)

    def bad_input(self, refused: bool, what: str) -> None:
        self.tried += 1
        self.refused += refused
        self.must_be_zero("bad inputs accepted", [] if refused else [what])


# Runs a command and writes its peak resident memory (KB) to argv[1]. A launcher, because a child forked
# straight from this process inherits this process's peak (Linux keeps the larger of the two across exec).
PEAK_LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, st, ru = os.wait4(p.pid, 0); "
                 "open(sys.argv[1], 'w').write(str(ru.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(st))")


def measured(home: Path, args: list[str], timeout: float = 600, **env) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m engine ARGS` and its peak resident memory in MB."""
    fd, name = tempfile.mkstemp(prefix="peak-", dir=home)
    os.close(fd)
    peak = Path(name)
    cmd = [sys.executable, "-c", PEAK_LAUNCHER, str(peak), sys.executable, "-m", "engine", *args]
    try:
        r = subprocess.run(cmd, cwd=str(ROOT), env=worker_env(home, **env), capture_output=True, text=True,
                           timeout=timeout)
        return subprocess.CompletedProcess(args, r.returncode, r.stdout, r.stderr), int(peak.read_text() or 0) / 1024
    finally:
        peak.unlink(missing_ok=True)


def one_line_naming(r: subprocess.CompletedProcess, *needles: str) -> bool:
    """Refused (exit status != 0) with no traceback and exactly one error line that holds every needle."""
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    return (r.returncode != 0 and "Traceback" not in r.stderr and len(errors) == 1
            and all(n in errors[0] for n in needles))


def sweep_cmd(study: str, trials: int, *extra: str) -> list[str]:
    from test_sweep import SMALL_SETS  # the sweep tests' tiny recipe
    return ["sweep", "--study", study, "--trials", str(trials), "--no-reference", *extra,
            *[a for s in SMALL_SETS for a in ("--set", s)]]


def sweep_procs(home: Path, cmds: list[list[str]], name: str, timeout: float = 1500) -> list[subprocess.CompletedProcess]:
    """Start the commands at once (real processes), wait for all; logs under home/<name>-<i>.log."""
    procs = []
    for i, cmd in enumerate(cmds):
        log_f = open(home / f"{name}-{i}.log", "wb")
        procs.append((subprocess.Popen([sys.executable, "-m", "engine", *cmd], cwd=str(ROOT), env=worker_env(home),
                                       stdout=log_f, stderr=subprocess.STDOUT), log_f))
    out = []
    for i, (p, log_f) in enumerate(procs):
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(p, signal.SIGKILL)
        log_f.close()
        out.append(subprocess.CompletedProcess(cmds[i], p.returncode, (home / f"{name}-{i}.log").read_text(errors="replace"), ""))
    return out


def trials_of(study: str):
    from engine import sweep as S
    st = S.load_study(study)[0]
    return st, st.get_trials(deepcopy=False)


def settings(t) -> tuple:
    return tuple(sorted(t.params.items()))


def sweep_part(home: Path, tally: Tally) -> dict:
    """kill -9 a sweep mid-trial, then the same command twice at once; a configuration already in the store
    is reused; a torn, cut and random-bytes journal."""
    from engine import sweep as S
    from engine.sweep.storage import journal_path
    from test_faults import TORN
    info: dict = {}
    # -- kill -9 during trial 1, then the same command twice at once -----------------------------------
    log_f = open(home / "sweep-first.log", "wb")
    first = subprocess.Popen([sys.executable, "-m", "engine", *sweep_cmd("k9", 4)], cwd=str(ROOT),
                             env=worker_env(home), stdout=log_f, stderr=subprocess.STDOUT)
    log_f.close()
    killed_at = None
    try:
        def inside_second_trial():
            try:
                ts = trials_of("k9")[1]
            except Exception:  # noqa: BLE001 - the study is not created yet
                return first.poll() is not None
            done = [t for t in ts if t.state.name == "COMPLETE"]
            running = [t for t in ts if t.state.name == "RUNNING"]
            return (done and running) or first.poll() is not None
        wait_for(inside_second_trial, 1500, interval=0.3, what="the first sweep's second trial")
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
        first.wait()
    if killed_at is None:
        log("the first sweep ended before it could be killed: no kill -9 injected")
    else:
        tally.fault("kill -9 of a sweep mid-trial")
    log("sweep k9: killed during a trial; starting the same command twice at once")
    runs = sweep_procs(home, [sweep_cmd("k9", 4), sweep_cmd("k9", 4)], "sweep-twice")
    tally.fault("two sweep processes at once on one study")
    st, ts = trials_of("k9")
    info["k9"] = tally_sweep(st, ts, tally, "kill -9 + two at once")
    tally.must_be_zero("sweep commands that failed", [f"rc {r.returncode}" for r in runs if r.returncode != 0])
    tally.must_be_zero("tracebacks", [r.args for r in runs if "Traceback" in r.stdout])
    info["killed_run"] = next((t.user_attrs.get("run_id") for t in ts if t.state.name == "FAIL"
                               and "is gone" in str(t.user_attrs.get("error"))), None)

    # -- a configuration already in the store is reused, not recomputed --------------------------------
    space = home / "grid-space.json"
    space.write_text(json.dumps({"weights": False, "tau": {"grid": [0.7]}}))
    for study in ("reuse-a", "reuse-b"):
        sweep_procs(home, [sweep_cmd(study, 1, "--sampler", "grid", "--space", str(space))], study)
    a, b = trials_of("reuse-a")[1], trials_of("reuse-b")[1]
    same = [t.user_attrs.get("run_id") for t in a + b if t.state.name == "COMPLETE"]
    recomputed = 0 if (len(same) == 2 and same[0] == same[1] and b[0].user_attrs.get("reused")) else 1
    tally.must_be_zero("configurations computed twice", recomputed)
    tally.figures.append(f"a second study proposing a configuration already in the store: "
                         f"{'reused its run ' + same[0] if not recomputed else 'ran it again ' + str(same)}")

    # -- a torn tail on the real study, then the issue's `sweep --trials N+1` -----------------------------
    path = journal_path("k9")
    before = {(t.number, t.state.name) for t in ts}
    n_budget = int(st.user_attrs["n_trials"]) + 1
    with open(path, "ab") as fh:
        fh.write(TORN)
    tally.fault("torn journal tail")
    r = sweep_procs(home, [sweep_cmd("k9", n_budget)], "sweep-torn")[0]
    show = cli(home, "sweep-show", "--study", "k9", timeout=300)
    st, ts = trials_of("k9")
    after = {(t.number, t.state.name) for t in ts}
    tally.must_be_zero("journal records lost", sorted(before - after))
    tally.must_be_zero("sweep budget updates lost", 0 if int(st.user_attrs["n_trials"]) == n_budget else 1)
    tally.must_be_zero("studies locked by a damaged journal", [c for c, x in (("sweep", r), ("sweep-show", show))
                                                               if x.returncode != 0 or "Expecting" in x.stdout + x.stderr])
    complete = sum(t.state.name == "COMPLETE" for t in ts)
    tally.must_be_zero("sweep budget slots lost", max(0, n_budget - complete))
    info["torn_aside"] = len(list(path.parent.glob("k9.journal.torn-*")))
    info["after_torn"] = f"{complete} complete of a budget of {n_budget}, {info['torn_aside']} torn tail(s) set aside"

    # -- copies of the journal: cut at 5000 bytes, random bytes at the tail, inside, the whole file -------
    data = path.read_bytes()
    rng = random.Random(21)
    junk = bytes(rng.randrange(256) for _ in range(512))
    at = data.index(b"\n") + 1
    cases = {"cut": data[:min(5000, len(data) - 10)], "randtail": data + junk.replace(b"\n", b""),
             "randmid": data[:at] + junk + b"\n" + data[at:], "randall": junk * 8}
    lines = []
    for name, content in cases.items():
        copy = path.with_name(f"{name}.journal")
        copy.write_bytes(content)
        tally.fault({"cut": "journal cut at 5000 bytes"}.get(name, "journal with random bytes"))
        r = cli(home, "sweep-show", "--study", "k9", "--storage", str(copy), timeout=300)
        tally.must_be_zero("tracebacks", [f"sweep-show on {name}"] if "Traceback" in r.stderr else [])
        if name in ("cut", "randtail"):  # a tail cut short: the intact records are kept, the study opens
            intact = content[:content.rfind(b"\n") + 1]
            kept = copy.read_bytes()
            lost = 0 if kept.startswith(intact) else intact.count(b"\n") - kept[:len(intact)].count(b"\n")
            tally.must_be_zero("journal records lost", lost)
            tally.must_be_zero("studies locked by a damaged journal", [name] if r.returncode != 0 else [])
            n_intact = intact.count(b"\n")
            lines.append(f"{name}: rc {r.returncode}, {n_intact} intact records kept: {lost == 0}")
        else:  # damage before intact records: refused in one line naming the journal and the fix, unchanged
            ok = one_line_naming(r, str(copy), f"mv {copy}") and copy.read_bytes() == content
            row = [s for s in S.discover_studies() if s["storage"] == str(copy)]
            page_ok = bool(row) and row[0]["study"] is None and f"mv {copy}" in row[0].get("error", "")
            tally.must_be_zero("damaged journals not refused in one line naming it and the fix",
                               [] if ok else [f"{name}: {r.stderr.strip()[-200:]}"])
            tally.must_be_zero("damaged journals the Sweeps page does not name with the fix", [] if page_ok else [name])
            lines.append(f"{name}: refused in one line: {ok}, Sweeps page names it and the fix: {page_ok}")
    tally.figures.append("journal copies: " + "; ".join(lines))
    return info


def tally_sweep(st, ts, tally: Tally, label: str) -> str:
    """Distinct configurations, trials that ran a configuration again, budget slots spent twice."""
    from engine.sweep.trials import INTERRUPTED
    budget = int(st.user_attrs["n_trials"])
    complete = [t for t in ts if t.state.name == "COMPLETE"]
    killed = [t for t in ts if t.state.name == "FAIL" and str(t.user_attrs.get("error", "")).startswith("interrupted")]
    other_fail = [t for t in ts if t.state.name == "FAIL" and t not in killed]
    tried = [settings(t) for t in ts if t.params]
    computed: dict[tuple, int] = {}
    for t in complete:
        if not t.user_attrs.get("reused"):
            computed[settings(t)] = computed.get(settings(t), 0) + 1
    ran_twice = sum(n - 1 for n in computed.values())
    spent_twice = (len(complete) - len({settings(t) for t in complete})
                   + sum(1 for t in killed if not t.user_attrs.get(INTERRUPTED)))
    tally.must_be_zero("repeated sweep settings", len(tried) - len(set(tried)))
    tally.must_be_zero("trials that ran a configuration twice", ran_twice)
    tally.must_be_zero("budget slots spent twice", spent_twice)
    tally.must_be_zero("sweep budget slots lost", max(0, budget - len(complete) - len(other_fail)))
    return (f"{label}: {len(ts)} trials ({len(complete)} complete, {len(killed)} killed, {len(other_fail)} failed) for "
            f"a budget of {budget}; {len(set(tried))} distinct configurations of {len(tried)} proposed; "
            f"ran twice {ran_twice}; budget slots spent twice {spent_twice}")


def wait_final(api, jobs, ids, timeout: float = 900) -> None:
    wait_for(lambda: all(api.get_job(i)["state"] in jobs.FINAL for i in ids), timeout, interval=0.5,
             what="the jobs to finish")


def calibration_part(home: Path, api, jobs, tally: Tally) -> dict:
    """`submit --calibrate on` (item 8) through the CLI, then the calibration cache given wrong types (item 3)."""
    from engine import calibrate
    from jobs_helpers import tiny
    from test_jobs import _set_args  # a nested override dict as --set values
    over = tiny("ga")
    sets = [a for x in _set_args({k: v for k, v in over.items() if k != "method"}) for a in ("--set", x)]
    r = cli(home, "submit", "--method", "ga", "--calibrate", "on", *sets, "--json", timeout=300)
    accepted = r.returncode == 0 and r.stdout.strip().startswith("{")
    tally.must_be_zero("valid inputs refused (submit --calibrate on)", [] if accepted else [r.stderr.strip()[-200:]])
    if not accepted:
        return {"calibration": "submit --calibrate on refused"}
    first = json.loads(r.stdout)["id"]
    wait_final(api, jobs, [first])
    spec = api.get_job(first)["spec"]
    caches = sorted(home.glob("cache/calib-*/calibration.json"), key=lambda p: p.stat().st_mtime)
    if api.get_job(first)["state"] != "done" or not caches:
        tally.must_be_zero("calibration runs that failed on a bad cache", [f"first run {first}: {api.get_job(first).get('error')}"])
        return {"calibration": "the first calibrated run failed"}
    key = caches[-1].parent.name
    good = calibrate.load_cached(key)
    failed, kept_bad, ids = [], 0, [first]
    for choice in BAD_CHOICES:
        calibrate.save_cached(key, {**good, "choice": choice})
        tally.fault("calibration cache with wrong types")
        job = api.submit("run", spec, use_cache=False)["id"]
        ids.append(job)
        wait_final(api, jobs, [job])
        j = api.get_job(job)
        if j["state"] != "done":
            failed.append(f"{choice!r}: {j['state']} {str(j.get('error'))[:120]}")
        now = calibrate.load_cached(key)  # searched again and saved valid, or still the bad one
        kept_bad += now is None or calibrate.cached_problem(now) is not None
    aside = len(list((home / "cache" / key).glob(".calibration.json.bad-*")))
    tally.must_be_zero("calibration runs that failed on a bad cache", failed)
    tally.must_be_zero("bad calibration caches kept", kept_bad)
    tally.must_be_zero("lost", [i for i in ids if api.get_job(i)["state"] not in jobs.FINAL])
    return {"calibration": f"{len(BAD_CHOICES)} bad caches: {len(BAD_CHOICES) - len(failed)} runs done, {aside} caches "
                           f"set aside, searched again and valid after each: {kept_bad == 0}"}


def checkpoint_part(home: Path, tally: Tally) -> dict:
    """Bad checkpoints through `audit` and `submit --kind audit` (real processes, peak memory measured),
    then the dashboard's upload path (save_upload, submit_isolated, discard_uploads)."""
    import torch
    from engine import api, checkpoints
    from engine.config import ConfigError
    from test_faults import _bad_checkpoints, _rezip, _state
    tmp = home / "checkpoints"
    tmp.mkdir()
    good = tmp / "good.pth"
    torch.save(_state(), good)
    bad = {name: p for name, (p, _) in _bad_checkpoints(tmp).items()}
    bomb_mb = 256
    bad["bomb"] = _rezip(tmp, bomb_mb << 18)  # 256 MB of float zeros, about 0.3 MB on disk
    n_jobs = len(api.list_jobs(limit=None))
    rss, lines = {}, []
    for name, path in bad.items():
        for cmd in (["audit", "--out", str(tmp / f"out-{name}")], ["submit", "--kind", "audit"]):
            r, peak = measured(home, [*cmd, "--original", str(good), "--unlearned", f"x={path}"], timeout=600,
                               ECLAB_MAX_CHECKPOINT_MB=2)
            tally.bad_input(r.returncode != 0, f"{cmd[0]} {name}")
            rss[(name, cmd[0])] = peak
            tally.must_be_zero("bad checkpoints not refused in one line naming the file",
                               [] if one_line_naming(r, str(path)) else [f"{cmd[0]} {name}: {r.stderr.strip()[-200:]}"])
            tally.must_be_zero("tracebacks", [f"{cmd[0]} {name}"] if "Traceback" in r.stderr else [])
    tally.must_be_zero("jobs queued from bad checkpoints", len(api.list_jobs(limit=None)) - n_jobs)
    small = max(v for (n, _), v in rss.items() if n != "bomb")
    excess = max(rss[("bomb", c)] for c in ("audit", "submit")) - small
    tally.must_be_zero("compressed checkpoints expanded in memory", 1 if excess > bomb_mb / 4 else 0)
    lines.append(f"peak memory of a refused audit: small bad files up to {small:.0f} MB, the {bomb_mb} MB zip bomb "
                 f"{rss[('bomb', 'audit')]:.0f} MB (audit) / {rss[('bomb', 'submit')]:.0f} MB (submit)")

    # the dashboard's upload path, with ECLAB_MAX_CHECKPOINT_MB=2 as for the CLI
    old_env, old_cap = os.environ.get("ECLAB_MAX_CHECKPOINT_MB"), checkpoints.MAX_CHECKPOINT_MB
    os.environ["ECLAB_MAX_CHECKPOINT_MB"], checkpoints.MAX_CHECKPOINT_MB = "2", 2
    try:
        for name, path in bad.items():
            stored: list[str] = []
            try:  # what dashboard/audit_form.py does on "Queue audit"
                spec = {"preset": "digits", "original": "", "unlearned": {}}
                stored.append(api.save_upload("good.pth", good.read_bytes()))
                spec["original"] = stored[-1]
                stored.append(api.save_upload(path.name, path.read_bytes()))
                spec["unlearned"]["x"] = stored[-1]
                job = api.submit_isolated(spec)
                tally.bad_input(False, f"upload {name}")
                api.cancel(job["id"])
            except (ConfigError, ValueError, RuntimeError):
                api.discard_uploads(stored)
                tally.bad_input(True, f"upload {name}")
            tally.fault("refused upload")
    finally:
        checkpoints.MAX_CHECKPOINT_MB = old_cap
        if old_env is None:
            os.environ.pop("ECLAB_MAX_CHECKPOINT_MB")
        else:
            os.environ["ECLAB_MAX_CHECKPOINT_MB"] = old_env
    left = sorted(p.name for p in (home / "uploads").iterdir()) if (home / "uploads").exists() else []
    tally.must_be_zero("refused uploads left on disk", left)
    return {"checkpoints": "; ".join(lines)}


def failed_runs_part(home: Path, api, jobs, killed_run: str | None) -> tuple[list[str], str, str]:
    """A run that fails (divergence), a running job cancelled; the killed sweep trial's folder aged past
    the hour `clean` waits (simulated with utime). Returns the folders clean should find, the done jobs."""
    from jobs_helpers import LONG, tiny
    over = tiny("ec")
    over["ec"]["tau"] = 1e-39  # the contrastive logits overflow: the loss is NaN at the first step
    failing = api.submit("run", {"preset": "digits", "overrides": over})["id"]
    long = api.submit("run", spec("ft", **LONG))["id"]
    wait_for(lambda: api.get_job(long)["state"] != "queued", 900, interval=0.3, what="the long job to start")
    time.sleep(2)
    api.cancel(long)
    wait_final(api, jobs, [failing, long])
    expected = [str(home / "runs" / i) for i in (failing, long)]
    if killed_run:
        folder = home / "runs" / killed_run
        old = time.time() - 7200
        for f in [*folder.rglob("*"), folder] if folder.exists() else []:
            os.utime(f, (old, old))
        expected.append(str(folder))
    return expected, failing, long


def full_disk_part(home: Path, api, tally: Tally, job_id: str) -> str:
    """Read-only commands with writes limited to 16 bytes per file (a full disk as SQLite sees it)."""
    from test_faults import _full_disk
    failed = []
    for cmd in (["jobs"], ["jobs", "--json"], ["show", job_id], ["show", job_id, "--json"],
                ["sweep-show", "--study", "k9"], ["clean"]):
        r = _full_disk(home, *cmd)
        tally.fault("read-only command on a full disk")
        if r.returncode != 0 or "Traceback" in r.stderr:
            failed.append(f"{' '.join(cmd[:1])}: {r.stderr.strip().splitlines()[-1][:160] if r.stderr.strip() else r.returncode}")
    n = len(api.list_jobs(limit=None))
    r = _full_disk(home, "submit", "--method", "ft", "--set", "seed=11")
    tally.fault("submit on a full disk")
    tally.must_be_zero("read-only commands that failed on a full disk", failed)
    tally.must_be_zero("CLI errors that were not one readable line", [] if one_readable_line(r) else ["submit on a full disk"])
    tally.must_be_zero("jobs queued on a full disk", len(api.list_jobs(limit=None)) - n)
    return f"full disk: {6 - len(failed)} of 6 read-only commands worked; submit refused in one line: {one_readable_line(r)}"


def clean_part(home: Path, api, tally: Tally, expected: list[str]) -> str:
    from jobs_helpers import check_run_folders
    done = [j["id"] for j in api.list_jobs(limit=None) if j["state"] == "done"]
    had = {j: (home / "runs" / j / "results.json").is_file() for j in done}
    present = [e for e in expected if Path(e).exists()]
    r = cli(home, "clean", timeout=300)
    tally.fault("run folders of failed, cancelled and killed runs", len(present))
    unlisted = [e for e in present if e not in r.stdout]
    d = cli(home, "clean", "--delete", timeout=300)
    left = [e for e in present if Path(e).exists()]
    gone = [j for j in done if had[j] and not (home / "runs" / j / "results.json").is_file()]
    tally.must_be_zero("failed runs' folders clean did not list", unlisted)
    tally.must_be_zero("failed runs' folders left after clean --delete", left)
    tally.must_be_zero("done runs deleted by clean", gone)
    tally.must_be_zero("tracebacks", [x.args[3:] for x in (r, d) if "Traceback" in x.stderr])
    tally.must_be_zero("damaged run-folder files", check_run_folders(home))
    return (f"clean: {len(present)} folders of failed / cancelled / killed runs ({len(expected) - len(present)} left none), "
            f"{len(present) - len(unlisted)} listed, {len(present) - len(left)} deleted; done runs deleted: {len(gone)}")


def issue21(home: Path, api, jobs, tally: Tally) -> None:
    t0 = time.monotonic()
    info = sweep_part(home, tally)
    log(f"sweeps done after {time.monotonic() - t0:.0f} s: {info['k9']}")
    worker = start_worker(home, log_name="i21")
    try:
        info.update(calibration_part(home, api, jobs, tally))
        log(f"calibration done after {time.monotonic() - t0:.0f} s: {info['calibration']}")
        expected, failing, long = failed_runs_part(home, api, jobs, info.get("killed_run"))
    finally:
        stop(worker, signal.SIGTERM, timeout=60)
    logs = (home / "test-i21.log").read_text(errors="replace")
    tally.must_be_zero("calibration TypeErrors in the worker log", logs.count("TypeError: '<' not supported"))
    info.update(checkpoint_part(home, tally))
    log(f"checkpoints done after {time.monotonic() - t0:.0f} s")
    disk = full_disk_part(home, api, tally, failing)
    clean = clean_part(home, api, tally, expected)
    print()
    print(f"issue 21 part: {time.monotonic() - t0:.0f} s")
    for line in (info["k9"], f"after a torn tail and `sweep --trials N+1`: {info['after_torn']}", *tally.figures,
                 info["calibration"], info["checkpoints"], disk, clean,
                 f"failing run: {api.get_job(failing)['state']} ({str(api.get_job(failing).get('error'))[:80]}); "
                 f"cancelled run: {api.get_job(long)['state']}"):
        print("  " + line)
    for name, bad in tally.zero.items():
        if bad:
            print(f"  NONZERO {name}: {len(bad)} {[b for b in bad if b is not None][:6]}")


if __name__ == "__main__":
    raise SystemExit(main())
