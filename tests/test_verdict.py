"""Retrain as the zero point (dashboard/verdict.py, delta_figures.py) and run settings
(dashboard/runinfo.py): pure functions on hand-made results."""
import pytest

from dashboard import delta_figures as D
from dashboard import compare_figures as CF
from dashboard import figures as F
from dashboard import runinfo as R
from dashboard import verdict as V
from tests import fixtures_store as FS

LAYERS = FS.LAYERS


def _run(fa, cka, probe=None, ra=0.99, **extra):
    return {"metrics": {"forget_acc": fa, "retain_acc": ra, "test_acc": 0.9, "mia_efficacy": 0.5},
            "cka_vs_original": {"forget": dict(zip(LAYERS, cka))},
            "probe_forget_acc": dict(zip(LAYERS, probe or cka)), **extra}


def _res(runs, retrain_cka=(0.99, 0.99, 0.98, 0.5), band_cka=None):
    """Hand-made results; with band_cka, a second retrained model (another seed) whose distance from
    retrain is each point's tolerance (else the assumed 0.02)."""
    runs = {"original": _run(1.0, [1, 1, 1, 1], ra=0.997), "retrain": _run(0.0, list(retrain_cka)), **runs}
    out = {"layers": LAYERS, "runs": runs, "config": {"preset": "digits", "seed": 0}}
    if band_cka is not None:
        out["retrain_band"] = {"seed": 1, "cka_vs_original": {"forget": dict(zip(LAYERS, band_cka))}}
    return out


def test_layer_state_is_meaningful_for_any_retrain_value():
    # retrain far from the original: half the gap (0.25) must remain to count as "kept"
    assert V.layer_state(0.80, 0.50) == "kept"
    assert V.layer_state(0.70, 0.50) == "near"
    assert V.layer_state(0.47, 0.50) == "past"
    # retrain at 0.99: no run can be "kept" (the layer barely separates the two models) ...
    assert V.layer_state(1.00, 0.99) == "near"
    # ... but one pushed to 0.94 is past retrain: distorted, not forgotten
    assert V.layer_state(0.94, 0.99) == "past"
    assert V.layer_state(None, 0.99) is None


def test_layer_state_reads_each_point_against_its_tolerance():
    assert V.layer_state(0.94, 0.99, tol=0.02) == "past"
    assert V.layer_state(0.94, 0.99, tol=0.06) == "near"  # a noisy layer: two retrainings differ by 0.06
    assert V.layer_state(0.60, 0.50, tol=0.02) == "near"  # above retrain, less than half the gap: not kept
    assert V.layer_state(0.90, 0.50, tol=0.45) == "near"  # kept needs more than the tolerance too
    # measured tolerances: block1 0.05 (noisy), block2 0.01 (the floor), block3 0.02
    res = _res({"ec": _run(0.0, [0.95, 0.97, 0.98, 0.3])}, band_cka=(0.94, 0.995, 0.96, 0.5))
    assert V.layer_states(res, "ec") == {"block1": "near", "block2": "past", "block3": "near"}
    row = {r["name"]: r for r in V.rows_vs_retrain(res)}["ec"]
    assert [g["tol"] for g in row["gaps"]] == pytest.approx([0.05, 0.01, 0.02, 0.01])
    assert row["flags"] == ["past retrain"] and row["within"] is False
    assert row["distance"] == pytest.approx(0.04) and row["worst_layer"] == "block1"  # within its 0.05


def test_rows_vs_retrain_signed_deltas_and_flags():
    res = _res({"ec": _run(0.0, [0.94, 0.93, 0.95, 0.3], probe=[0.8, 0.8, 0.8, 0.1]),
                "ft": _run(0.0, [0.99, 0.985, 0.975, 0.5]),
                "ga": _run(0.30, [0.99, 0.99, 0.98, 0.5], ra=0.84)})
    rows = {r["name"]: r for r in V.rows_vs_retrain(res)}
    assert rows["retrain"]["distance"] == 0 and rows["retrain"]["verdict"] == "reference"
    ec = rows["ec"]
    assert ec["distance"] == pytest.approx(0.06) and ec["worst_layer"] == "block2"  # 0.93 vs 0.99
    assert ec["worst_gap"] < 0 and set(ec["layer_states"].values()) == {"past"}
    assert "past retrain" in ec["flags"] and "probe below retrain" in ec["flags"] and not ec["damaging"]
    assert rows["ft"]["flags"] == [] and rows["ft"]["verdict"] == "close to retrain"
    ga = rows["ga"]
    assert ga["flags"][:2] == ["retain damaged", "forget off retrain"] and ga["damaging"]
    assert ga["retain_drop"] == pytest.approx(0.997 - 0.84)


def test_overview_sentence_per_layer_and_retrain_at_099():
    res = _res({"ec": _run(0.0, [0.94, 0.93, 0.95, 0.3]), "ft": _run(0.0, [0.99, 0.985, 0.975, 0.5]),
                "rl": _run(0.5, [1, 1, 1, 1])})
    text = V.overview_sentence(V.rows_vs_retrain(res), ["block1", "block2", "block3"])
    assert text.startswith("**2 of 3** methods bring forget accuracy within 5 points of retrain's (0.0%)")
    assert "**0** keep more than half" in text  # impossible when retrain stays at 0.99
    assert "**1** are pushed past retrain" in text and ": EC" in text
    assert "**1** stay within the tolerance of retrain at every inner layer" in text and ": FT" in text
    assert V.uninformative_layers(res) == ["block1", "block2", "block3"]
    far = _res({"scrub": _run(0.0, [0.99, 0.98, 0.94, 0.7])}, retrain_cka=(0.93, 0.78, 0.52, 0.3))
    text = V.overview_sentence(V.rows_vs_retrain(far), ["block1", "block2", "block3"])
    assert "**1** keep more than half" in text and "SCRUB" in text


def test_one_reference_pair_per_scenario():
    rows = [{"name": "original", "role": "reference", "scenario_key": "a"},
            {"name": "ec", "role": "method", "scenario_key": "a"},
            {"name": "original", "role": "reference", "scenario_key": "a"},
            {"name": "original", "role": "reference", "scenario_key": "b"}]
    assert [r["scenario_key"] for r in V.one_reference_pair(rows)] == ["a", "a", "b"]


def test_short_settings_and_defaults():
    from engine.config import make_config
    cfg = make_config("digits", {"method": "ec", "ec": {"weights": [0, 2.5, 2.5, 1], "tau": 0.3}}).model_dump()
    assert R.config_settings(cfg) == "w 0/2.5/2.5/1 tau 0.3"
    cfg = make_config("digits", {"method": "ec", "ec": {"lambda_cu": 5}, "methods": {"ec": {"lr": 0.1}}}).model_dump()
    assert R.config_settings(cfg) == "w 1/1/1/1 tau 0.7 λ 5/1 lr 0.1"
    cfg = make_config("digits", {"method": "ft", "plugin": "ec", "beta": 2}).model_dump()
    assert R.config_settings(cfg) == "w 1/1/1/1 tau 0.7 β 2"
    assert R.config_settings(make_config("digits", {"method": "ft"}).model_dump()) == "defaults"
    res = FS.make_results("compare", ["ec", "ft"])
    res["runs"]["ec"]["params"] = {"epochs": 10, "lr": 0.03}  # the digits recipe: not repeated in the label
    assert R.run_settings(res, "ec") == "w 1/1/1/1 tau 0.7" and R.run_settings(res, "retrain") == ""
    res["runs"]["ec"]["params"] = {"epochs": 5, "lr": 0.03, "ec": {"tau": 0.05, "lambda_cu": 3.0, "lambda_ce": 1.0},
                                   "layer_weights": [1, 0, 0, 1]}
    assert R.run_settings(res, "ec") == "w 1/0/0/1 tau 0.05 ep 5"


def test_scenario_history_tags_this_previous_and_default():
    from engine.config import make_config
    base = make_config("digits").model_dump()

    def item(jid, t, weights=None, seed=0):
        res = FS.make_results("run", ["ec"])
        res["config"] = {**base, "seed": seed}
        if weights:
            res["runs"]["ec"]["params"] = {"ec": {"weights": weights, "tau": 0.7, "lambda_cu": 3, "lambda_ce": 1}}
        else:
            res["runs"]["ec"]["params"] = {}
        return {"id": jid, "kind": "run", "finished_at": t}, res
    items = [item("j3", 30, [0, 1, 1, 1]), item("j2", 20, [2, 1, 1, 1]), item("j1", 10), item("jx", 25, seed=1)]
    hist = R.scenario_history(items, base, "ec")
    assert [h["job"] for h in hist] == ["j3", "j2", "j1"]  # other seed left out, newest first
    tagged = R.tag_history(hist, "j3", "w 1/1/1/1 tau 0.7")
    assert [(h["job"], h["tag"]) for h in tagged] == [("j3", "this run"), ("j2", "previous run"),
                                                     ("j1", "default settings")]
    assert tagged[0]["settings"] == "w 0/1/1/1 tau 0.7"


def test_delta_heatmap_centred_at_zero_and_zoomed():
    deltas = V.to_retrain({"retrain": {"block1": 0.99, "block2": 0.98}, "ec": {"block1": 0.94, "block2": 0.97},
                           "ft": {"block1": 1.0, "block2": 0.98}}, ["block1", "block2"])
    assert deltas["retrain"] == {"block1": 0.0, "block2": 0.0}
    fig = D.delta_heatmap(deltas, ["block1", "block2"], ["retrain", "ec", "ft"])
    hm = fig.data[0]
    assert hm.zmid == 0 and hm.zmin == -hm.zmax and hm.zmax == pytest.approx(0.05)  # zoomed, not 0..1
    assert list(hm.z[0]) == [0.0, 0.0] and hm.text[1][0] == "-0.05"
    assert D.symmetric_limit([0.0]) == 0.02 and D.symmetric_limit([0.123, -0.2]) == pytest.approx(0.2)


def test_delta_lines_and_bars_draw_retrain_at_zero():
    fig = D.delta_lines({"retrain": {"a": 0.0}, "ec": {"a": -0.1}}, ["a"], percent=False)
    assert fig.data[0].name == "Retrain (0)" and list(fig.data[0].y) == [0.0]
    assert [t.name for t in fig.data] == ["Retrain (0)", "EC"]
    lo, hi = fig.layout.yaxis.range
    assert lo == -hi and hi < 0.5
    fig = D.retrain_bars([{"name": "retrain", "forget_delta": 0.0, "worst_gap": 0.0, "probe_worst_gap": 0.0},
                          {"name": "ec", "forget_delta": 0.0, "worst_gap": -0.05, "probe_worst_gap": 0.04}])
    assert [list(t.y) for t in fig.data] == [[0.0, 0.0], [0.0, -0.05], [0.0, 0.04]]
    assert any(s.y0 == 0 and s.y1 == 0 for s in fig.layout.shapes)
    assert fig.layout.annotations[0].text == "Retrain = 0"


def test_tradeoff_centred_keeps_damaging_runs_off_the_front_and_names_settings():
    rows = [{"name": "ec", "id": "a/ec", "worst_gap": -0.05, "retain_acc": 0.99, "settings": "w 1/1/1/1 tau 0.7"},
            {"name": "ec", "id": "b/ec", "worst_gap": 0.01, "retain_acc": 0.995, "settings": "w 0/2.5/2.5/1 tau 0.3"},
            {"name": "ga", "id": "a/ga", "worst_gap": 0.0, "retain_acc": 1.0, "damaging": True},
            {"name": "ft", "id": "a/ft", "worst_gap": -0.02, "retain_acc": 0.98}]
    fig = CF.tradeoff_scatter(rows)
    pts = [t for t in fig.data if t.type == "scattergl"]
    # one legend entry per method (a sweep's trials do not fill the legend); each setting its own shade
    assert [t.name for t in pts] == ["EC (2 settings)", "GA", "FT"]
    assert pts[0].marker.color[0] != pts[0].marker.color[1]
    assert [c[0] for c in pts[0].customdata] == ["EC · w 1/1/1/1 tau 0.7", "EC · w 0/2.5/2.5/1 tau 0.3"]
    assert list(pts[1].marker.symbol) == ["x"] and list(pts[1].marker.size) == [9]  # damaging: off the front
    front = [t for t in fig.data if t.name == "Pareto front"][0]
    assert list(front.x) == [0.01]  # |x| minimised: closest to retrain with the most retain accuracy
    lo, hi = fig.layout.xaxis.range
    assert lo == -hi and "retrain" in fig.layout.xaxis.title.text


def test_training_curves_total_on_its_own_axis_distinct_colours():
    losses = {"loss": -120.0, **{f"cu/b{i}": 1.0 + i for i in range(5)}, **{f"ce/b{i}": 0.1 * i for i in range(5)}}
    fig = F.training_curves([{"epoch": 1, "losses": losses, "forget_acc": 0.1, "retain_acc": 0.9}])
    total = fig.data[0]
    assert total.name == "loss (total)" and total.yaxis == "y2"
    terms = [t for t in fig.data[1:11]]
    assert all(t.yaxis == "y" for t in terms)
    assert len({t.line.color for t in fig.data[:11]}) == 11


def test_cka_heatmap_zoomed_scale():
    fig = F.cka_heatmap({"ft": {"a": 0.93, "b": 0.99}}, ["a", "b"], zoom=True)
    assert fig.data[0].zmin == pytest.approx(0.9) and fig.data[0].zmax == 1
    assert F.zoomed_floor([1.0, 1.0]) == pytest.approx(0.95) and F.zoomed_floor([]) == 0.0


def test_live_flags_retain_any_epoch_forget_only_at_the_end():
    orig, ret = {"retain_acc": 0.997}, {"forget_acc": 0.0}
    assert V.live_flags({"epoch": 1, "epochs": 5, "retain_acc": 0.84, "forget_acc": 0.6}, orig, ret) == ["retain damaged"]
    assert V.live_flags({"epoch": 2, "epochs": 5, "retain_acc": 0.99, "forget_acc": 0.6}, orig, ret) == []
    assert V.live_flags({"epoch": 5, "epochs": 5, "retain_acc": 0.99, "forget_acc": 0.6}, orig, ret) == [
        "forget off retrain"]
    assert V.live_flags({"epoch": 5, "epochs": 5, "retain_acc": 0.99, "forget_acc": 0.0}, None, None) == []
    from engine.config import make_config
    res = FS.make_results("compare", ["ec"])
    refs = V.scenario_references([({"id": "a"}, res)], res["config"])
    assert refs[0]["retain_acc"] == FS.PROFILES["original"][1] and refs[1]["forget_acc"] == 0.0
    other = make_config("digits", {"seed": 3}).model_dump()
    assert V.scenario_references([({"id": "a"}, res)], other) is None


def test_stage_checklist_from_events_and_partial_results():
    from dashboard import progress as PR
    evs = [{"type": "stage", "stage": "data", "time": 0.0}, {"type": "stage", "stage": "original", "time": 1.0},
           {"type": "stage", "stage": "retrain", "time": 3.0}]
    c = PR.checklist(evs, 10, None, "running", now=5.0)
    assert [i["status"] for i in c["items"]] == ["done", "done", "running"] + ["pending"] * 6
    assert c["eta"] == pytest.approx((13 - 2) + 2 + 3 + 45 + 15 + 13 + 20)  # ... methods, second original and
    # second retrain, embedding
    part = {"runs": {"original": {}, "retrain": {}, "ft": {}, "ga": {}}, "pending": ["rl", "ec"]}
    evs += [{"type": "stage", "stage": "eval", "name": "original", "time": 6.0},
            {"type": "stage", "stage": "method", "name": "rl", "time": 9.0}]
    c = PR.checklist(evs, 4, part, "running", now=10.0)
    method = c["items"][5]
    assert method["status"] == "running" and method["detail"] == "2/4 done (ft, ga); next: rl"
    assert [i["status"] for i in c["items"]][:5] == ["done"] * 5  # aux was skipped (cached): done
    assert c["eta"] == pytest.approx(2 * 4.5 + 15 + 13 + 20)
    assert PR.checklist(evs, 4, part, "running", preset="cifar10")["eta"] is None
    text = PR.checklist_markdown(c)
    assert "**Unlearn and evaluate each method**" in text and "About **55 s** left" in text


def test_short_settings_name_a_calibration_mode_other_than_auto():
    from engine.config import make_config
    assert R.config_settings(make_config("digits", {"method": "ec", "calibrate": "off"}).model_dump()) \
        == "w 1/1/1/1 tau 0.7 calibrate off"
    assert R.config_settings(make_config("digits", {"method": "ec"}).model_dump()) == "w 1/1/1/1 tau 0.7"


@pytest.mark.parametrize("ra", [0.997 - 0.015, 0.977, 0.997 - 0.03, 0.997 - 0.06])
def test_pages_and_grids_read_retain_and_forget_by_one_rule(ra):
    """A run 3 points below the original's retain accuracy was 'keeps retain: no' in a grid's count and
    no warning on the pages (two thresholds); the verdict and the grid's flags now agree at any drop."""
    from engine.grid import run_flags
    from engine.results import summary
    res = _res({"ft": _run(0.04, [0.99, 0.985, 0.975, 0.5], ra=ra)})  # 0.977: exactly 2 points (0.0200...03)
    page = {r["name"]: r for r in V.rows_vs_retrain(res)}["ft"]
    grid = run_flags({r["name"]: r for r in summary(res)}, "ft")
    assert ("retain damaged" not in page["flags"]) == grid["keeps_retain"] == (0.997 - ra <= 0.02 + 1e-9)
    assert ("forget off retrain" not in page["flags"]) == grid["forgets"] is True


def test_the_verdict_says_a_missed_forget_target_once():
    from dashboard import calibration as C
    both = ["forget off retrain", C.NOT_REACHED, "superficial"]
    assert V.verdict(both) == f"{C.NOT_REACHED}, superficial"  # the flags themselves keep both
    assert V.verdict(["forget off retrain", "superficial"]) == "forget off retrain, superficial"
    assert V.verdict([]) == "close to retrain" and V.verdict(both, "reference") == "reference"
