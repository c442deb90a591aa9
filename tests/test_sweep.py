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

from dashboard import sweep_figures as SF
from engine import sweep as S
from engine.config import ConfigError

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


def _pg_ok(url: str) -> str | None:
    try:
        import psycopg2
        psycopg2.connect(url, connect_timeout=5).close()
        return None
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {str(err).strip()[:200]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    url = os.environ.get("ECLAB_TEST_PG_URL")
    why = "ECLAB_TEST_PG_URL is unset"
    if url:
        err = _pg_ok(url)
        if not err:
            yield url
            return
        why = f"ECLAB_TEST_PG_URL={url} does not answer ({err})"
    port = _free_port()
    pgdir = f"/tmp/eclab-pg-test-{port}"  # under /tmp itself: the postgres user must reach it
    env = _env(ECLAB_PG_NO_INSTALL="1", ECLAB_PG_PORT=str(port), ECLAB_PG_DIR=pgdir)
    script = ROOT / ".ci" / "postgres.sh"
    try:
        res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"no PostgreSQL server: {why}, and .ci/postgres.sh could not run ({err})")
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines or _pg_ok(lines[-1]):
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(pgdir, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server: {why}, and .ci/postgres.sh could not start one "
                    f"(exit {res.returncode}: {res.stderr.strip()[-300:]})")
    try:
        yield lines[-1]
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(pgdir, ignore_errors=True)


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
            assert 0 <= r["forget_cka"] <= 1.0001 and 0 <= r["retain_acc"] <= 1
            assert 0 <= r["retrain_forget_cka"] <= 1.0001
            assert r["cka_gap_to_retrain"] == pytest.approx(abs(r["forget_cka"] - r["retrain_forget_cka"]))
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


def _v1_study(name: str):
    """A study as format 1 left it: first objective EC's raw forget CKA, no retrain CKA recorded."""
    import optuna
    st = S.create_study(name, overrides=SMALL, n_trials=4)
    st.set_user_attr("objectives", ["forget_cka", "retain_acc"])
    st.set_user_attr("eclab_sweep", 1)
    st.set_user_attr("reference", {"forget_cka": 0.9, "retain_acc": 0.95, "forget_acc": 0.0})
    st.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, values=[0.612, 0.957],
        params={"tau": 0.4}, distributions={"tau": optuna.distributions.FloatDistribution(0.05, 5, log=True)},
        user_attrs={"forget_acc": 0.01, "retrain_forget_acc": 0.0, "run_id": "sw-old-0", "constraint": -0.04},
        system_attrs={"constraints:forget_gap": -0.04}))
    return st


def test_a_format_1_study_is_shown_but_not_continued(tmp_path, monkeypatch, capsys):
    from engine import cli
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
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


# -- the dashboard page ------------------------------------------------------------------------------

RETRAIN_CKA = 0.85  # retrain's inner forget CKA in the hand-made rows


def _rows() -> list[dict]:
    """Hand-made trial rows (TEST FIXTURE: invented numbers). Row 2 has a lower forget CKA than rows 0
    and 1 but is further from retrain's: the old objective would have put it on the front."""
    def row(n, state, cka, retain, forget, feasible, w, tau, **kw):
        params = {f"w_block{i + 1}": v for i, v in enumerate(w)} | {"tau": tau}
        return {"number": n, "state": state, "cka_gap_to_retrain": None if cka is None else abs(cka - RETRAIN_CKA),
                "forget_cka": cka, "retrain_forget_cka": None if cka is None else RETRAIN_CKA,
                "retain_acc": retain, "forget_acc": forget,
                "retrain_forget_acc": 0.0, "constraint": None if forget is None else forget - 0.05,
                "feasible": feasible, "params": params, "weights": w, "tau": tau, "run_id": f"sw-x-{n}",
                "error": kw.get("error"), "seconds": 3.0}
    return [row(0, "COMPLETE", 0.87, 0.97, 0.01, True, [1, 1, 1, 1], 0.7),   # 0.02 above retrain
            row(1, "COMPLETE", 0.84, 0.95, 0.02, True, [2, 2, 0.5, 1], 0.2),  # 0.01 below
            row(2, "COMPLETE", 0.81, 0.94, 0.00, True, [1, 0, 2, 1], 1.5),   # 0.04 below: dominated by 1
            row(3, "COMPLETE", 0.50, 0.99, 0.40, False, [3, 3, 3, 3], 0.05),  # infeasible, off the front
            row(4, "FAIL", None, None, None, None, [0.1, 0, 0, 0], 4.0, error="DivergenceError: loss became nan"),
            row(5, "RUNNING", None, None, None, None, [1, 2, 3, 0], 0.9)]


def test_sweep_figures_on_hand_made_trials():
    rows = _rows()
    assert SF.pareto_mask(rows) == [True, True, False, False, False, False]
    ref = {"cka_gap_to_retrain": 0.07, "forget_cka": 0.92, "retrain_forget_cka": RETRAIN_CKA, "retain_acc": 0.955,
           "forget_acc": 0.0}
    fig = SF.pareto_scatter(rows, ref)
    names = [t.name for t in fig.data]
    assert names == ["feasible (3)", "infeasible (1)", "Pareto front (2)", "default EC"]
    assert list(fig.data[2].x) == pytest.approx([0.01, 0.02])  # front sorted by the distance to retrain
    assert list(fig.data[2].customdata) == [1, 0]
    assert list(fig.data[3].x) == [0.07] and "vs retrain 0.850" in fig.data[3].text[0]
    assert "closer to retrain" in fig.layout.xaxis.title.text and "|EC − retrain|" in fig.layout.xaxis.title.text
    assert list(fig.data[1].customdata) == [3]
    pc = SF.parcoords(rows)
    labels = [d.label for d in pc.data[0].dimensions]
    assert labels == ["weight block1", "weight block2", "weight block3", "weight block4", "tau",
                      "distance to retrain", "retain acc", "feasible"]
    assert len(pc.data[0].dimensions[0].values) == 4  # completed trials only
    assert list(pc.data[0].line.color) == pytest.approx([0.02, 0.01, 0.04, 0.35])
    df = SF.trials_table(rows)
    assert list(df["trial"]) == [0, 1, 2, 3, 4, 5]
    assert df.loc[4, "error"].startswith("DivergenceError") and df.loc[1, "retain %"] == pytest.approx(95.0)
    assert {"w_block1", "tau", "run", "Pareto", "forget CKA", "retrain forget CKA"} <= set(df.columns)
    assert df.loc[2, "distance to retrain"] == pytest.approx(0.04) and df.loc[2, "forget CKA"] == 0.81
    best = SF.best_row(rows, ref)
    assert best["number"] == 0  # the only feasible trial with retain >= 0.955
    assert SF.best_row(rows, {"retain_acc": 0.999})["number"] == 1  # none reaches it: closest feasible trial
    attrs = {"preset": "digits", "points": ["block1", "block2", "block3", "block4"],
             "overrides": {"train": {"epochs": 3}, "ec": {"aux_epochs": 2}}}
    pre = SF.prefill(rows[1], attrs, "st")
    assert pre["method"] == "ec" and pre["ec"] == {"weights": [2.0, 2.0, 0.5, 1.0], "tau": 0.2}
    assert pre["overrides"]["ec"] == {"aux_epochs": 2, "weights": [2.0, 2.0, 0.5, 1.0], "tau": 0.2}
    assert pre["overrides"]["train"] == {"epochs": 3} and pre["preset"] == "digits"
    assert SF.counts(rows) == {"COMPLETE": 4, "FAIL": 1, "RUNNING": 1}
    # empty inputs still give figures
    assert len(SF.pareto_scatter([]).data) == 2 and SF.trials_table([]).empty
    # engine's own front agrees with the page's on the same rows
    assert sorted(S.pareto_front([dict(r) for r in rows])) == [0, 1]


def test_sweep_page_renders_a_study_and_hands_over_settings(tmp_path, monkeypatch):
    import optuna
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    st = S.create_study("page", overrides=SMALL, n_trials=6)
    st.set_user_attr("reference", {"cka_gap_to_retrain": 0.07, "forget_cka": 0.92, "retrain_forget_cka": RETRAIN_CKA,
                                   "retain_acc": 0.955, "forget_acc": 0.0, "feasible": True})
    dists = {f"w_block{i}": optuna.distributions.FloatDistribution(0, 3) for i in range(1, 5)}
    dists["tau"] = optuna.distributions.FloatDistribution(0.05, 5, log=True)
    for r in _rows():
        state = getattr(optuna.trial.TrialState, r["state"])
        ua = {k: r[k] for k in ("forget_cka", "retrain_forget_cka", "forget_acc", "retrain_forget_acc", "run_id",
                                "error", "seconds") if r[k] is not None}
        if r["state"] == "COMPLETE":
            ua["constraint"] = r["constraint"]
        st.add_trial(optuna.trial.create_trial(
            state=state, params=r["params"], distributions=dists, user_attrs=ua,
            values=[r["cka_gap_to_retrain"], r["retain_acc"]] if r["state"] == "COMPLETE" else None,
            system_attrs={"constraints:forget_gap": r["constraint"]} if r["state"] == "COMPLETE" else {}))
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweep.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trials"] == "6 / 6" and metrics["Failed"] == "1" and metrics["Feasible"] == "3"
    assert len(at.get("plotly_chart")) == 2
    info = " ".join(i.value for i in at.info)
    assert "Default EC: distance to retrain **0.070** (forget CKA 0.920 vs retrain 0.850), retain **95.5%**" in info
    assert "trial 0, distance to retrain **0.020** (forget CKA 0.870)" in info
    assert at.selectbox(key="sw_pick").value == 0  # the best trial at the default's retain accuracy
    at.button(key="sw_use").click().run()
    pre = at.session_state["prefill"]
    assert pre["method"] == "ec" and pre["ec"]["weights"] == [1.0, 1.0, 1.0, 1.0] and pre["ec"]["tau"] == 0.7
    assert pre["overrides"]["train"] == {"epochs": 3}


def test_sweep_page_imports_no_torch():
    code = ("import sys; import dashboard.sweep_figures, engine.sweep as s; s.discover_studies(); "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], env=_env(ECLAB_HOME=str(ROOT / ".pytest_cache" / "nohome")),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_the_old_study_page_lists_trials_without_ranking(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    _v1_study("oldpage")
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweep.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("older sweep (format 1)" in w.value for w in at.warning)
    assert not at.get("plotly_chart")
    df = at.dataframe[0].value
    assert list(df["forget CKA"]) == [0.612] and df["distance to retrain"].isna().all()


def _summary(ec_cka: float, retrain_cka: float | None = RETRAIN_CKA, retain: float = 0.9) -> dict:
    """What runner.summarize returns for a single EC run (invented numbers)."""
    return {"runs": {"original": {"forget_cka_mid": 1.0, "forget_acc": 1.0, "retain_acc": 1.0},
                     "retrain": {"forget_acc": 0.0, "forget_cka_mid": retrain_cka, "retain_acc": 0.99},
                     "ec": {"forget_cka_mid": ec_cka, "retain_acc": retain, "forget_acc": 0.02, "test_acc": 0.8}}}


def test_measure_takes_the_distance_to_retrain_from_the_summary():
    m = S.measure(_summary(0.7))
    assert m["cka_gap_to_retrain"] == pytest.approx(RETRAIN_CKA - 0.7)
    assert (m["forget_cka"], m["retrain_forget_cka"]) == (0.7, RETRAIN_CKA)  # both readings kept
    assert [m[k] for k in S.OBJECTIVES] == [m["cka_gap_to_retrain"], 0.9]
    assert m["constraint"] == pytest.approx(0.02 - S.TOLERANCE)
    for bad in (None, float("nan")):
        with pytest.raises(ValueError, match="retrained model's forget CKA"):
            S.measure(_summary(0.7, retrain_cka=bad))
    with pytest.raises(ValueError, match="forget CKA"):
        S.measure(_summary(None))


def test_distance_to_retrain_counts_both_ways():
    """0.05 below retrain's CKA is as far as 0.05 above; far below (the old objective's favourite) is worst."""
    offsets = [0.03, -0.05, 0.05, -0.25]  # trial i: EC's CKA = retrain's + offsets[i]
    ms = [S.measure(_summary(RETRAIN_CKA + d, retain=0.95)) for d in offsets]
    assert [m["cka_gap_to_retrain"] for m in ms] == pytest.approx([0.03, 0.05, 0.05, 0.25])
    rows = [{"number": i, "state": "COMPLETE", "params": {"tau": 0.5}, **m} for i, m in enumerate(ms)]
    order = [r["number"] for r in sorted(rows, key=lambda r: r[S.OBJECTIVES[0]])]
    assert order[0] == 0 and set(order[1:3]) == {1, 2} and order[3] == 3
    assert S.pareto_front(rows) == [0] and SF.pareto_mask(rows) == [True, False, False, False]
    assert SF.best_row(rows)["number"] == 0
    text = S.compare_text(rows, ms[3])  # the default far below retrain: every trial beats it
    assert "trial 0, beats the default: 0.220 closer to retrain" in text


def test_summary_compares_with_the_default():
    rows = [dict(r, pareto=p) for r, p in zip(_rows(), [True, True, False, False, False, False])]
    ref = {"cka_gap_to_retrain": 0.10, "forget_cka": 0.95, "retrain_forget_cka": RETRAIN_CKA, "retain_acc": 0.96,
           "forget_acc": 0.0}
    text = S.compare_text(rows, ref)
    assert text.startswith("default EC: distance to retrain 0.100 (forget CKA 0.950 vs retrain 0.850), retain 0.960; "
                           "best at retain >= 0.960: distance to retrain 0.020, forget CKA 0.870")
    assert "trial 0" in text and "beats the default: 0.080 closer to retrain" in text
    assert "does not beat the default" in S.compare_text(rows, dict(ref, cka_gap_to_retrain=0.01))
    assert "no feasible trial reached" in S.compare_text(rows, dict(ref, retain_acc=0.999))


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
