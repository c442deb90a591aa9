"""The Sweeps page (dashboard/views/sweep.py) on hand-made studies: a format-3 study is read per layer and
hands a trial's settings to Launch and tune; an older study is listed as recorded; the page stays torch-free."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import sweep as S

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"model": {"width": 8}, "train": {"epochs": 3}, "ec": {"aux_epochs": 2}, "methods": {"ec": {"epochs": 1}},
         "eval": {"umap": False, "probe_epochs": 10, "epoch_cka": False, "max_samples": 300}}
POINTS = ["block1", "block2", "block3", "block4"]
TOL = {p: 0.02 for p in POINTS}


def _reading(gaps: list[float]) -> dict:
    """A trial's per-layer reading as engine.sweep.measure records it (invented numbers)."""
    inner = [abs(g) for g in gaps[:-1]]
    worst = POINTS[inner.index(max(inner))]
    return {"distance": max(inner), "worst_layer": worst, "worst_gap": gaps[POINTS.index(worst)],
            "worst_z": max(inner) / 0.02, "within": max(inner) <= 0.02, "last_gap": gaps[-1],
            "gaps": dict(zip(POINTS, gaps)), "tolerances": TOL, "probe_gaps": {p: 0.0 for p in POINTS},
            "probe_distance": 0.0, "forget_cka_mean": 0.85, "tolerance_measured": True}


# trial: (state, gaps per point, retain, forget acc, weights, tau) -- trial 1's inner mean is 0 but its
# worst layer is 0.09 away: the page must rank it behind trial 0 (0.015 at worst)
TRIALS = [("COMPLETE", [0.01, -0.015, 0.005, -0.3], 0.97, 0.01, [1, 1, 1, 1], 0.7),
          ("COMPLETE", [0.03, 0.06, -0.09, -0.4], 0.98, 0.02, [2, 2, 0.5, 1], 0.2),
          ("COMPLETE", [0.2, 0.1, 0.1, 0.0], 0.99, 0.40, [3, 3, 3, 3], 0.05),  # infeasible
          ("FAIL", None, None, None, [0.1, 0, 0, 0], 4.0)]


def _study(name: str):
    import optuna
    st = S.create_study(name, overrides=SMALL, n_trials=4)
    st.set_user_attr("reference", {**_reading([0.02, -0.05, -0.12, -0.4]), "retain_acc": 0.955, "forget_acc": 0.0,
                                   "feasible": True, "label": "ec"})
    dists = {f"w_{p}": optuna.distributions.FloatDistribution(0, 3) for p in POINTS}
    dists["tau"] = optuna.distributions.FloatDistribution(0.05, 5, log=True)
    for n, (state, gaps, retain, forget, w, tau) in enumerate(TRIALS):
        params = {f"w_{p}": float(v) for p, v in zip(POINTS, w)} | {"tau": tau}
        ua = {"run_id": f"sw-x-{n}", "seconds": 3.0}
        kw = {}
        if state == "COMPLETE":
            m = _reading(gaps)
            ua |= {k: v for k, v in m.items()} | {"retain_acc": retain, "forget_acc": forget,
                                                  "retrain_forget_acc": 0.0, "constraint": forget - 0.05}
            kw = {"values": [m["distance"], retain], "system_attrs": {"constraints:forget_gap": forget - 0.05}}
        else:
            ua["error"] = "DivergenceError: loss became nan"
        st.add_trial(optuna.trial.create_trial(state=getattr(optuna.trial.TrialState, state), params=params,
                                               distributions=dists, user_attrs=ua, **kw))
    return st


def _page():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweep.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_sweep_page_reads_a_study_per_layer_and_hands_over_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    _study("page")
    rows = S.trial_rows(S.load_study("page")[0])
    assert [r["objective"] for r in rows[:3]] == pytest.approx([0.015, 0.09, 0.2])
    assert [r["pareto"] for r in rows] == [True, True, False, False]  # trial 1: more retain, worse worst layer
    at = _page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trials"] == "4 / 4" and metrics["Failed"] == "1" and metrics["Feasible"] == "2"
    info = " ".join(i.value for i in at.info)
    assert "Default EC" in info and "0.120" in info and "block3" in info  # the default's worst layer
    assert "trial 0" in info and "0.015" in info  # the best at the default's retain, by its worst layer
    assert "trial 1" not in info
    df = at.dataframe[-1].value  # the trials table (the per-layer strip comes first)
    assert list(df["distance to retrain"][:3]) == pytest.approx([0.015, 0.09, 0.2])
    assert "block3 -0.090" in df.loc[1, "gaps per layer"]
    assert at.selectbox(key="sw_pick").value == 0
    at.button(key="sw_use").click().run()
    pre = at.session_state["prefill"]
    assert pre["method"] == "ec" and pre["ec"]["weights"] == [1.0, 1.0, 1.0, 1.0] and pre["ec"]["tau"] == 0.7


def test_an_older_study_is_listed_as_recorded_without_ranking(tmp_path, monkeypatch):
    import optuna
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    st = S.create_study("old", overrides=SMALL, n_trials=2)
    st.set_user_attr("objectives", ["cka_gap_to_retrain", "retain_acc"])
    st.set_user_attr("eclab_sweep", 2)
    st.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, values=[0.004, 0.981], params={"tau": 0.4},
        distributions={"tau": optuna.distributions.FloatDistribution(0.05, 5, log=True)},
        user_attrs={"forget_cka": 0.851, "retrain_forget_cka": 0.855, "forget_acc": 0.01, "run_id": "sw-v2-0",
                    "constraint": -0.04}, system_attrs={"constraints:forget_gap": -0.04}))
    at = _page()
    assert any("older sweep (format 2)" in w.value and "mean" in w.value for w in at.warning)
    assert not at.get("plotly_chart")
    assert len(at.dataframe[0].value) == 1


def test_the_sweep_page_imports_no_torch():
    code = ("import sys; import dashboard.sweep_figures, engine.sweep as s; s.discover_studies(); "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "ECLAB_HOME": str(ROOT / ".pytest_cache" / "nohome"),
                              "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_a_trial_run_opens_on_the_analysis_pages(tmp_path, monkeypatch):
    """Issue 22: a sweep's trials could not be opened on Overview, Layers or Embeddings."""
    from engine import api, store
    from tests import fixtures_store as FS
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path))
    monkeypatch.delenv("ECLAB_SWEEP_STORAGE", raising=False)
    _study("open")
    folder = store.run_dir("sw-x-0", create=True)  # trial 0's run, recorded as a done job as sweeps do
    store.atomic_write_json(folder / "results.json", FS.make_results("run", ["ec"]))
    api.record_external("run", {"preset": "digits", "overrides": {"method": "ec"}}, folder)
    at = _page()
    assert at.selectbox(key="sw_pick").value == 0
    at.button(key="sw_show").click().run()
    assert at.session_state["results_job"] == "sw-x-0" and at.session_state["_results_auto"] is False
    at.selectbox(key="sw_pick").set_value(1).run()  # trial 1's run is not in the store: no button
    assert not [b for b in at.button if b.key == "sw_show"]
