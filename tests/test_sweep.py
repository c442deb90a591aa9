"""Sweeps (engine/sweep.py, dashboard/sweep_figures.py, dashboard/views/sweep.py).

Trials are real EC runs on digits with a tiny recipe (SMALL). The base models are built once per
session in a private store and copied into each test's own ECLAB_HOME, so every test starts with
warm caches but writes nothing shared. Worker processes run with one torch thread each (2 cores).

PostgreSQL: ECLAB_TEST_PG_URL (set by .ci/run through .ci/postgres.sh) or, when unset, a private
server this module starts with .ci/postgres.sh (no install attempted); skipped only when neither works.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from engine import sweep as S
from engine.config import ConfigError
from pg_helpers import pg_url  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
# a tiny recipe: a narrow small_cnn (width 8), 3 training epochs, 1 EC epoch, a light evaluation
SMALL = {"model": {"width": 8}, "train": {"epochs": 3}, "ec": {"aux_epochs": 2}, "methods": {"ec": {"epochs": 1}},
         "eval": {"umap": False, "probe_epochs": 10, "epoch_cka": False, "max_samples": 300}}
SMALL_SETS = ["model.width=8", "train.epochs=3", "ec.aux_epochs=2", "methods.ec.epochs=1", "eval.umap=false",
              "eval.probe_epochs=10", "eval.epoch_cka=false", "eval.max_samples=300"]
WORKER_TIMEOUT = 300


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory):
    """A store whose cache holds the SMALL scenario's base models and reference evaluation."""
    home = tmp_path_factory.mktemp("sweep-warm")
    code = ("import json, sys, torch; torch.set_num_threads(1); from engine import runner, store; "
            "spec = {'preset': 'digits', 'overrides': json.loads(sys.argv[1])}; "
            "runner.execute('run', spec, store.run_dir('warm', create=True))")
    spec = json.dumps({**SMALL, "method": "ec"})
    res = subprocess.run([sys.executable, "-c", code, spec], env=_env(ECLAB_HOME=str(home), OMP_NUM_THREADS="1"),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return home / "cache"


@pytest.fixture
def home(tmp_path, monkeypatch, warm_cache):
    h = tmp_path / "home"
    shutil.copytree(warm_cache, h / "cache")
    monkeypatch.setenv("ECLAB_HOME", str(h))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    return h


# -- helpers ---------------------------------------------------------------------------------------

def _run_workers(study: str, storage: str | None, n: int = 2) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "sweep-worker", "--study", study, "--threads", "1"]
    if storage:
        cmd += ["--storage", storage]
    procs = [subprocess.Popen(cmd + ["--sampler-seed", str(i)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(n)]
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=WORKER_TIMEOUT)
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


def _check_study(study: str, storage: str | None, n: int, home: Path, workers: int | None = None) -> list[dict]:
    st, _, _ = S.load_study(study, storage)
    rows = S.trial_rows(st)
    assert sorted(r["number"] for r in rows) == list(range(n)), "trial numbers must be 0..N-1 exactly once"
    for r in rows:
        assert r["state"] in ("COMPLETE", "FAIL"), r
        if r["state"] == "FAIL":
            assert r["error"], f"failed trial {r['number']} has no reason"
        else:
            assert (home / "runs" / r["run_id"] / "results.json").is_file()
            assert 0 <= r["forget_cka_mean"] <= 1.0001 and 0 <= r["retain_acc"] <= 1
            inner = [abs(r["gaps"][p]) for p in st.user_attrs["points"][:-1]]
            assert r["distance"] == pytest.approx(max(inner)) == r["objective"]  # no layer hides in it
            assert set(r["tolerances"]) == set(r["gaps"]) and r["worst_z"] >= r["distance"] - 1e-12
            assert isinstance(r["feasible"], bool)
            assert r["constraint"] == pytest.approx(abs(r["forget_acc"] - r["retrain_forget_acc"]) - S.TOLERANCE)
    run_ids = [r["run_id"] for r in rows]
    assert None not in run_ids and len(set(run_ids)) == n
    assert sum(r["state"] == "COMPLETE" for r in rows) >= 1
    if workers:
        assert len({r["worker"] for r in rows}) == workers, "every worker process should have run trials"
    return rows


# -- two workers, one journal file -------------------------------------------------------------------

@pytest.mark.slow
def test_two_worker_processes_share_a_journal_study(home):
    S.create_study("jw", preset="digits", overrides=SMALL, n_trials=6, seed=0)
    outs = _run_workers("jw", None)
    rows = _check_study("jw", None, 6, home, workers=2)
    assert (home / "sweeps" / "jw.journal").is_file()
    # finished trials are ordinary done jobs of the run store (the dashboard lists them)
    from engine import api
    for r in rows:
        if r["state"] == "COMPLETE":
            assert r["registered"] is True
            job = api.get_job(r["run_id"])
            assert job["state"] == "done" and job["kind"] == "run"
            assert api.load_results(r["run_id"])["config"]["method"] == "ec"
    assert any("budget is used" in o for o in outs)
    # a finished study hands out no more trials
    again = _run_workers("jw", None, n=1)
    assert "ran 0 trial" in again[0]
    assert len(S.trial_rows(S.load_study("jw")[0])) == len(rows)


# -- two workers, one PostgreSQL database ------------------------------------------------------------

@pytest.mark.slow
def test_two_worker_processes_share_a_postgres_study(home, pg_url):
    study = f"pg-{uuid.uuid4().hex[:8]}"
    S.create_study(study, pg_url, preset="digits", overrides=SMALL, n_trials=6, seed=0)
    _run_workers(study, pg_url)
    _check_study(study, pg_url, 6, home, workers=2)
    listed = S.discover_studies(pg_url)
    assert any(s.get("study") == study for s in listed)


# -- failures --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_study_goes_on(home, tmp_path):
    """A temperature of 1e-39 overflows the contrastive logits to inf, so the loss is NaN at the first step
    (DivergenceError); those trials fail with the reason and the remaining trials still run. Through
    `sweep --workers 2` (this process plus one spawned worker)."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"weights": False, "tau": {"grid": [1e-39, 0.7]}, "lambda_cu": {"grid": [1.0, 3.0]}}))
    cmd = [sys.executable, "-m", "engine", "sweep", "--study", "fails", "--sampler", "grid", "--space", str(space),
           "--trials", "4", "--no-reference", "--workers", "2"] + [a for s in SMALL_SETS for a in ("--set", s)]
    res = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _check_study("fails", None, 4, home)
    assert sorted((r["params"]["tau"], r["params"]["lambda_cu"]) for r in rows) == [
        (1e-39, 1.0), (1e-39, 3.0), (0.7, 1.0), (0.7, 3.0)]  # each grid point once
    for r in rows:
        if r["params"]["tau"] < 1e-30:
            assert r["state"] == "FAIL"
            assert r["error"].startswith("DivergenceError: ec: loss became nan"), r["error"]
        else:
            assert r["state"] == "COMPLETE"
    assert "failed trial" in res.stdout and "Pareto front" in res.stdout


def test_stale_running_trials_are_failed_with_a_reason(tmp_path, monkeypatch):
    """A worker killed outright leaves RUNNING trials; the next worker fails them (dead pid on this host,
    or no heartbeat within the grace period) and leaves live ones alone."""
    import optuna
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    st = S.create_study("stale", preset="digits", overrides=SMALL, n_trials=5)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        specs = [(host, dead.pid, time.time()), ("elsewhere", 1, time.time() - 3600), (host, live.pid, time.time())]
        trials = []
        for h, pid, beat in specs:
            t = st.ask()
            for k, v in (("host", h), ("pid", pid), ("heartbeat", beat), ("worker", f"w{pid}")):
                t.set_user_attr(k, v)
            trials.append(t)
        failed = S.recover_stale(st, grace=30)
        assert sorted(failed) == [trials[0].number, trials[1].number]
        got = {t.number: t for t in st.get_trials()}
        assert got[trials[0].number].state == optuna.trial.TrialState.FAIL
        assert "is gone" in got[trials[0].number].user_attrs["error"]
        assert "no heartbeat" in got[trials[1].number].user_attrs["error"]
        assert got[trials[2].number].state == optuna.trial.TrialState.RUNNING
    finally:
        live.kill()
        live.wait()


def test_a_resumed_or_second_process_proposes_new_settings(tmp_path, monkeypatch):
    """Each process builds its sampler from the study's seed; without a seed per trial a resumed or a
    second process restarted the random stream and proposed trial 0's settings again."""
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    S.create_study("resume", preset="digits", overrides=SMALL, n_trials=6, seed=0)
    seen = []
    for _ in range(3):  # three fresh processes' workers, each taking one trial
        w = S.Worker("resume", out=io.StringIO(), sampler_seed=0)
        trial = w._take()
        params, _ = S.suggest(trial, w.attrs()["space"], w.attrs()["points"])
        seen.append(tuple(sorted(params.items())))
    assert len(set(seen)) == 3, seen
    # reproducible: the same study seed gives trial 0 the same settings in another store
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "again"))
    S.create_study("resume", preset="digits", overrides=SMALL, n_trials=6, seed=0)
    w = S.Worker("resume", out=io.StringIO(), sampler_seed=0)
    params, _ = S.suggest(w._take(), w.attrs()["space"], w.attrs()["points"])
    assert tuple(sorted(params.items())) == seen[0]


@pytest.mark.slow
def test_kill_9_then_two_sweeps_at_once_repeat_nothing_and_lose_no_budget(home):
    """kill -9 a worker during a trial, then start two workers at once: every trial has its own settings,
    the killed trial is marked failed without using up the budget, and every budgeted trial completes."""
    S.create_study("k9", preset="digits", overrides=SMALL, n_trials=4, seed=0)
    cmd = [sys.executable, "-m", "engine", "sweep-worker", "--study", "k9", "--sampler-seed", "0"]
    first = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + WORKER_TIMEOUT
        while time.time() < deadline:  # wait until it is inside trial 1 (trial 0 complete)
            trials = S.load_study("k9")[0].get_trials(deepcopy=False)
            states = [t.state.name for t in trials]
            # inside trial 1 once its worker is recorded (host, pid, name: what tells "gone" from "silent")
            if states[:1] == ["COMPLETE"] and any(t.state.name == "RUNNING" and "worker" in t.user_attrs
                                                  for t in trials):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first worker never reached its second trial")
    finally:
        first.kill()  # SIGKILL: no handler runs, the trial stays RUNNING
        first.wait()
    _run_workers("k9", None, n=2)  # the same command twice at once
    rows = S.trial_rows(S.load_study("k9")[0])
    killed = [r for r in rows if r["state"] == "FAIL"]
    assert len(killed) == 1 and "is gone" in killed[0]["error"]
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(done) == 4, [(r["number"], r["state"], r["error"]) for r in rows]  # the kill used no budget slot
    settings = [tuple(sorted(r["params"].items())) for r in rows]
    assert len(set(settings)) == len(rows), "a trial repeated another's settings"
    assert len({r["run_id"] for r in done}) == 4


# -- the space file ----------------------------------------------------------------------------------

def test_space_validation_names_the_offending_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        S.validate_space({"tau": {"low": 0.1, "high": 1}, "temperature": {"low": 0.1, "high": 1}})
    assert e.value.option == "space.temperature" and "unknown parameter 'temperature'" in str(e.value)
    for bad, option in [({"tau": {"low": 0.1, "hi": 1}}, "space.tau.hi"),
                        ({"tau": {"low": 2, "high": 1}}, "space.tau"),
                        ({"tau": {"low": 0, "high": 1, "log": True}}, "space.tau.low"),
                        ({"lambda_cu": {"low": 0, "high": 1, "log": True}}, "space.lambda_cu.log"),
                        ({"epochs": {"low": 1.5, "high": 3}}, "space.epochs.low"),
                        ({"lr": {"low": 0.01, "high": 20}}, "space.lr.high"),
                        ({"tau": {"grid": [0.5, 200]}}, "space.tau.high"),
                        ({"tau": {"low": 0.1, "high": 1, "grid": [5]}}, "space.tau.grid"),
                        ({"weights": False}, "space"),
                        ([1, 2], "space")]:
        with pytest.raises(ConfigError) as e:
            S.validate_space(bad)
        assert e.value.option == option, (bad, str(e.value))
    norm = S.validate_space({"weights": {"low": 0, "high": 2}, "epochs": {"low": 1, "high": 4}, "comment": "x",
                             "lambda_ce": None})
    assert norm == {"weights": {"low": 0.0, "high": 2.0, "log": False}, "epochs": {"low": 1, "high": 4, "log": False}}
    assert S.validate_space(None) == S.validate_space(S.DEFAULT_SPACE)
    points = ["block1", "block2", "block3", "block4"]
    assert S.grid_space(norm, points)["epochs"] == [1, 2, 3, 4]
    assert S.grid_space(S.validate_space(None), points)["tau"] == [0.05, 0.5, 5.0]
    assert S.params_to_overrides({"w_block1": 0.5, "w_block3": 2.0, "tau": 0.3, "lr": 0.02, "epochs": 3}, points) == {
        "method": "ec", "plugin": "none", "ec": {"weights": [0.5, 1.0, 2.0, 1.0], "tau": 0.3},
        "methods": {"ec": {"lr": 0.02, "epochs": 3}}}
    f = tmp_path / "space.json"
    f.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        S.load_space(f)


def test_sweep_cli_rejects_an_unknown_space_parameter(tmp_path):
    f = tmp_path / "space.json"
    f.write_text(json.dumps({"tau": {"low": 0.1, "high": 1}, "gamma": {"low": 0, "high": 1}}))
    res = subprocess.run([sys.executable, "-m", "engine", "sweep", "--space", str(f), "--trials", "1"],
                         env=_env(ECLAB_HOME=str(tmp_path / "h")), cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    assert "space.gamma" in res.stderr and "unknown parameter 'gamma'" in res.stderr
    assert not (tmp_path / "h" / "sweeps").exists() or not list((tmp_path / "h" / "sweeps").glob("*.journal"))


def test_existing_study_with_other_settings_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    S.create_study("same", overrides=SMALL, n_trials=3)
    st = S.create_study("same", overrides=SMALL, n_trials=7)  # continuing: the budget changes
    assert st.user_attrs["n_trials"] == 7
    with pytest.raises(S.SweepError, match="different space"):
        S.create_study("same", overrides=SMALL, space={"tau": {"low": 0.1, "high": 1}})
    with pytest.raises(ConfigError, match="study"):
        S.create_study("bad name!", overrides=SMALL)
    with pytest.raises(S.SweepError, match="no sweep study"):
        S.load_study("missing")
    with pytest.raises(ConfigError, match="calibrate must be off"):
        S.create_study("calib", overrides={**SMALL, "calibrate": "on"})


def test_trials_and_the_reference_run_with_calibration_off(tmp_path, monkeypatch):
    """calibrate=auto could give a trial a cached lr/epochs instead of the ones the sweep chose."""
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    attrs = S.create_study("cal", overrides=SMALL, n_trials=1).user_attrs
    assert attrs["overrides"]["calibrate"] == "off"
    spec = S.run_spec({**attrs, "overrides": {}}, {"tau": 0.3, "epochs": 2})  # even without it stored
    assert spec["overrides"]["calibrate"] == "off" and spec["overrides"]["methods"]["ec"]["epochs"] == 2


def _old_study(name: str, version: int, first: str, value: float, attrs: dict):
    """A study as an older format left it: its first objective `first` (format 1: EC's raw forget CKA;
    2: the gap of the MEAN inner forget CKA to retrain's), one completed trial with `attrs`."""
    import optuna
    st = S.create_study(name, overrides=SMALL, n_trials=4)
    st.set_user_attr("objectives", [first, "retain_acc"])
    st.set_user_attr("eclab_sweep", version)
    st.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, values=[value, attrs.pop("retain")],
        params={"tau": 0.4}, distributions={"tau": optuna.distributions.FloatDistribution(0.05, 5, log=True)},
        user_attrs={"forget_acc": 0.01, "retrain_forget_acc": 0.0, "constraint": -0.04, **attrs},
        system_attrs={"constraints:forget_gap": -0.04}))
    return st


def _v1_study(name: str):
    st = _old_study(name, 1, "forget_cka", 0.612, {"retain": 0.957, "run_id": "sw-old-0"})
    st.set_user_attr("reference", {"forget_cka": 0.9, "retain_acc": 0.95, "forget_acc": 0.0})
    return st


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """An empty run store, studies in its journal files (no database from the environment)."""
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    return tmp_path


def test_a_format_1_study_is_shown_but_not_continued(empty_home, capsys):
    from engine import cli
    _v1_study("old")
    with pytest.raises(S.SweepError, match=r"format 1 .*start a new --study name"):
        S.create_study("old", overrides=SMALL, n_trials=8)
    with pytest.raises(S.SweepError, match="cannot continue it"):
        S.Worker("old")
    assert cli.main(["sweep-worker", "--study", "old"]) == 2
    assert "start a new --study name" in capsys.readouterr().err
    assert cli.main(["sweep", "--study", "old", "--trials", "8", "--no-reference"]
                    + [a for x in SMALL_SETS for a in ("--set", x)]) == 2
    assert "cannot continue it" in capsys.readouterr().err
    assert len(S.load_study("old")[0].trials) == 1  # nothing was added
    assert cli.main(["sweep-show", "--study", "old"]) == 0
    out = capsys.readouterr().out
    assert "made by sweep format 1" in out and "0.612" in out and "0.957" in out and "sw-old-0" in out
    assert "Pareto front" not in out
    row = S.trial_rows(S.load_study("old")[0])[0]  # its stored values under the names format 1 gave them
    assert (row["forget_cka"], row["retain_acc"], row["cka_gap_to_retrain"], row["pareto"]) == (0.612, 0.957, None,
                                                                                                 False)
    # a command without --study derives a name of this format, not the old one's
    assert S.default_study_name("digits", {}, S.DEFAULT_SPACE, "tpe") != "digits-ec-" + S.stable_hash(
        {"p": "digits", "o": {}, "s": S.DEFAULT_SPACE, "x": "tpe"}, 8)


RETRAIN_CKA = 0.85  # retrain's forget CKA at every point in the hand-made results
POINTS = ["block1", "block2", "block3", "block4"]


def _summary(gaps, retain: float = 0.9, band=None) -> dict:
    """runner.summarize of hand-made single-run results whose EC run has the given signed gaps to
    retrain per point (None: not measured); `band`: the second retrain's offsets (invented numbers)."""
    from engine.runner import summarize
    cka = lambda offs: {"forget": {p: None if o is None else RETRAIN_CKA + o for p, o in zip(POINTS, offs)}}  # noqa: E731
    res = {"kind": "run", "layers": POINTS, "runs": {
        "original": {"metrics": {"forget_acc": 1.0, "retain_acc": 1.0}, "cka_vs_original": {"forget": {p: 1.0 for p in POINTS}}},
        "retrain": {"metrics": {"forget_acc": 0.0, "retain_acc": 0.99}, "cka_vs_original": cka([0] * 4),
                    "probe_forget_acc": {p: 0.5 for p in POINTS}},
        "ec": {"metrics": {"forget_acc": 0.02, "retain_acc": retain, "test_acc": 0.8}, "cka_vs_original": cka(gaps),
               "probe_forget_acc": {"block1": 0.6, "block2": 0.45, "block3": 0.5, "block4": 0.1}}}}
    if band is not None:
        res["retrain_band"] = {"seed": 5, "cka_vs_original": cka(band)}
    return summarize(res)


def test_the_objective_is_the_worst_inner_layer_on_opposite_sign_gaps():
    """The issue's 'distance 0.000' trial: +0.028, +0.062, -0.091 at the inner points, -0.427 at the last.
    The old objective (|mean|) read 0.000; the worst layer reads 0.091, and the tolerance-scaled one more."""
    gaps = [0.028, 0.062, -0.09, -0.427]
    m = S.measure(_summary(gaps, band=[0.02, 0.005, 0.03, 0.1]))
    assert abs(sum(gaps[:3]) / 3) == pytest.approx(0.0, abs=1e-12)  # what the mean saw
    assert m["distance"] == pytest.approx(0.09) and m["worst_layer"] == "block3" and m["worst_gap"] == pytest.approx(-0.09)
    assert m["last_gap"] == pytest.approx(-0.427)  # shown apart, not in the objective
    assert m["tolerances"] == pytest.approx({"block1": 0.02, "block2": 0.01, "block3": 0.03, "block4": 0.1})
    assert m["worst_z"] == pytest.approx(0.062 / 0.01) and m["within"] is False and m["tolerance_measured"] is True
    assert m["probe_distance"] == pytest.approx(0.1) and m["probe_gaps"]["block1"] == pytest.approx(0.1)
    for objective, key in S.OBJECTIVE_CHOICES.items():
        values = S.trials.objective_values(m, S.study.objectives_for(objective))
        assert values[0] == m[key] and values[1] == 0.9
        assert values[0] >= max(abs(g) for g in gaps[:3]) - 1e-12  # never below an inner layer's gap
    assert m["constraint"] == pytest.approx(0.02 - S.TOLERANCE)
    with pytest.raises(ValueError, match="distance to retrain"):
        S.measure(_summary([None] * 4))
    with pytest.raises(ConfigError):
        S.study.objectives_for("mean")


def test_distance_to_retrain_counts_both_ways():
    """0.05 below retrain's CKA is as far as 0.05 above; far below (format 1's favourite) is worst."""
    offsets = [0.03, -0.05, 0.05, -0.25]  # trial i: EC's CKA at block2 = retrain's + offsets[i]
    ms = [S.measure(_summary([0.0, d, 0.0, 0.0], retain=0.95)) for d in offsets]
    assert [m["distance"] for m in ms] == pytest.approx([0.03, 0.05, 0.05, 0.25])
    rows = [{"number": i, "state": "COMPLETE", "params": {"tau": 0.5}, "objective": m["distance"], **m}
            for i, m in enumerate(ms)]
    assert S.pareto_front(rows) == [0]
    text = S.compare_text(rows, ms[3])  # the default far below retrain: every trial beats it
    assert "trial 0, beats the default: 0.220 smaller distance to retrain (worst inner layer)" in text
    assert "default EC: distance to retrain 0.250 at block2 (gaps block1 +0.000, block2 -0.250, block3 +0.000 | " \
           "block4 +0.000; every inner layer within tolerance, assumed: no)" in text
    assert "does not beat the default" in S.compare_text(rows, dict(ms[3], distance=0.01))
    assert "no feasible trial reached" in S.compare_text(rows, dict(ms[3], retain_acc=0.999))


def _v2_study(name: str):
    return _old_study(name, 2, "cka_gap_to_retrain", 0.004, {"retain": 0.981, "forget_cka": 0.851,
                                                            "retrain_forget_cka": 0.855, "run_id": "sw-v2-0"})


def test_a_format_2_study_is_shown_as_recorded_but_not_continued(empty_home, capsys):
    from engine import cli
    _v2_study("mean")
    with pytest.raises(S.SweepError, match=r"format 2 .*worst inner layer.*start a new --study name"):
        S.create_study("mean", overrides=SMALL, n_trials=8)
    assert cli.main(["sweep-worker", "--study", "mean"]) == 2
    assert "start a new --study name" in capsys.readouterr().err
    assert len(S.load_study("mean")[0].trials) == 1  # nothing was added
    assert cli.main(["sweep-show", "--study", "mean"]) == 0
    out = capsys.readouterr().out
    assert "made by sweep format 2, which ranked trials by a mean over layers" in out
    assert "0.004" in out and "old format: mean over layers" in out and "Pareto front" not in out
    (row,) = S.trial_rows(S.load_study("mean")[0])
    assert (row["cka_gap_to_retrain"], row["distance"], row["objective"], row["pareto"]) == (0.004, None, None, False)


def test_a_sweep_of_the_ec_plug_in_on_another_method(home):
    """`--set method=ft --set plugin=ec`: the trials are ft+ec runs, lr and epochs go to methods.ft, beta
    (the plug-in's weight) is a parameter; a method that reads no EC setting without the plug-in, or
    beta without it, is refused before any trial."""
    over = {**SMALL, "methods": {**SMALL["methods"], "ft": {"epochs": 1}}, "method": "ft", "plugin": "ec"}
    space = {"tau": {"low": 0.1, "high": 1.0}, "beta": {"low": 0.5, "high": 2.0}, "lr": {"low": 0.01, "high": 0.1}}
    st = S.create_study("plugged", overrides=over, space=space, n_trials=1)
    spec = S.run_spec(st.user_attrs, {"tau": 0.3, "beta": 1.5, "lr": 0.05, "w_block2": 2.0})
    o = spec["overrides"]
    assert (o["method"], o["plugin"], o["beta"], o["methods"]["ft"]["lr"], o["ec"]["tau"]) == ("ft", "ec", 1.5, 0.05, 0.3)
    assert o["ec"]["weights"] == [1.0, 2.0, 1.0, 1.0] and "lr" not in o["methods"].get("ec", {})
    assert S.Worker("plugged", out=io.StringIO()).run() == 1
    (row,) = S.trial_rows(S.load_study("plugged")[0])
    assert row["state"] == "COMPLETE", row.get("error")
    res = json.loads((home / "runs" / row["run_id"] / "results.json").read_text())
    (label,) = [k for k in res["runs"] if k not in ("original", "retrain")]
    assert label == "ft+ec" and res["runs"][label]["params"]["beta"] == pytest.approx(row["params"]["beta"])
    for bad, option in (({"method": "cu"}, "method"), ({"method": "ec", "plugin": "ec"}, "plugin")):
        with pytest.raises(ConfigError) as err:
            S.create_study(f"bad-{option}", overrides={**SMALL, **bad}, n_trials=1)
        assert err.value.option == option
    with pytest.raises(ConfigError) as err:
        S.create_study("bad-beta", overrides=SMALL, space={"beta": {"low": 0.5, "high": 2}}, n_trials=1)
    assert err.value.option == "space.beta"
