"""How the pages read a run's calibration block (dashboard/calibration.py and its use in
dashboard/verdict.py and logic.py): pure functions on hand-made results."""
from dashboard import calibration as C
from dashboard import compare_figures as CF
from dashboard import logic as L
from dashboard import verdict as V
from tests import fixtures_store as FS

LAYERS = FS.LAYERS


def _cal(**over):
    cal = {"used": True, "mode": "on", "source": "searched", "recipe": {"lr": 0.3, "epochs": 10},
           "choice": {"lr": 0.1, "epochs": 4}, "target": {"forget_acc": 0.0, "tolerance": 0.05},
           "grid": [{"lr": 0.1, "epochs": 1, "forget_acc": 0.62, "retain_acc": 0.99, "qualifies": False},
                    {"lr": 0.1, "epochs": 4, "forget_acc": 0.03, "retain_acc": 0.985, "qualifies": True},
                    {"lr": 0.9, "epochs": 3, "forget_acc": 0.0, "retain_acc": 0.41, "qualifies": False,
                     "stopped": "retain collapsed"}],
           "reached": True, "reason": "highest retain accuracy (0.985) among 1 of 3 settings within 0.05 of "
                                      "retrain's forget accuracy", "seconds": 12.3}
    return {**cal, **over}


def _run(fa, cka, ra=0.99, **extra):
    return {"metrics": {"forget_acc": fa, "retain_acc": ra, "test_acc": 0.9, "mia_efficacy": 0.5},
            "cka_vs_original": {"forget": dict(zip(LAYERS, cka))},
            "probe_forget_acc": dict(zip(LAYERS, cka)), **extra}


def _res(runs):
    runs = {"original": _run(1.0, [1, 1, 1, 1], ra=0.997), "retrain": _run(0.0, [0.9, 0.8, 0.6, 0.3]), **runs}
    return {"layers": LAYERS, "runs": runs, "config": {"preset": "digits", "seed": 0}, "kind": "compare"}


def test_calibration_text_for_every_case():
    assert C.calibration_text({"calibration": _cal()}) == "calibrated: lr 0.1, 4 ep (recipe lr 0.3, 10 ep)"
    assert C.calibration_text({"calibration": {"used": False, "mode": "off", "reason": "calibration off",
                                               "recipe": {"lr": 0.3, "epochs": 10}}}) == "recipe as given"
    assert C.calibration_text({}) == "" and C.calibration_text(None) == ""  # reference rows, old results
    assert C.calibration_text({"calibration": "damaged"}) == ""
    same = _cal(choice={"lr": 0.3, "epochs": 10})
    assert C.calibration_text({"calibration": same}) == "calibrated: lr 0.3, 10 ep (= recipe)"


def test_not_forgotten_when_a_checked_run_missed():
    assert C.not_forgotten({"calibration": _cal(reached=False)})
    assert not C.not_forgotten({"calibration": _cal()})
    assert not C.not_forgotten({"calibration": _cal(reached=None)})  # no verdict recorded: not marked
    # a recipe run is checked against retrain too, and marked when it misses
    recipe = {"used": False, "mode": "off", "reached": False, "forget_acc": 0.64,
              "target": {"forget_acc": 0.0, "tolerance": 0.05}, "recipe": {"lr": 0.3, "epochs": 10}}
    assert C.not_forgotten({"calibration": recipe})
    assert C.calibration_text({"calibration": recipe}) == "recipe as given, NOT forgotten"
    assert C.missed({"calibration": recipe}) == ("the setting as given left forget accuracy at 64.0%, not within "
                                                 "0.05 of retrain's forget accuracy (0.0%) on the forget training split")
    assert not C.not_forgotten({"calibration": {**recipe, "reached": True}})
    assert not C.not_forgotten({}) and not C.not_forgotten(None)


def test_grid_rows_mark_the_kept_setting_and_early_stops():
    rows = C.grid_rows({"calibration": _cal()})
    assert [(r["lr"], r["epochs"], r["qualifies"], r["chosen"]) for r in rows] == [
        (0.1, 1.0, False, False), (0.1, 4.0, True, True), (0.9, 3.0, False, False)]
    assert rows[2]["stopped"] == "retain collapsed" and rows[0]["stopped"] == ""
    assert C.grid_rows({"calibration": _cal(grid="?")}) == [] and C.grid_rows({}) == []


def test_detail_says_which_setting_and_how_it_was_found():
    assert C.detail({"calibration": _cal()}).startswith(
        "Calibrated setting lr 0.1, 4 ep (recipe lr 0.3, 10 ep), searched 3 settings in 12.3 s: highest retain")
    assert "reused from an earlier comparison" in C.detail({"calibration": _cal(source="cached")})
    missed = C.detail({"calibration": _cal(reached=False, reason="")})
    assert missed.endswith("This run did not reach logit-level forgetting: no setting tried came within 0.05 of "
                           "retrain's forget accuracy (0.0%) on the forget training split.")
    off = {"used": False, "mode": "off", "reason": "calibrate off", "recipe": {"lr": 0.3, "epochs": 10}}
    assert C.detail({"calibration": off}) == "Recipe as given (lr 0.3, 10 ep): calibrate off."
    assert C.detail({}).startswith("Not calibrated")


def test_auto_mode_per_preset():
    assert [C.resolved_mode("auto", p) for p in ("digits", "teach", "mnist", "fashion-mnist")] == ["on"] * 4
    assert [C.resolved_mode("auto", p) for p in ("cifar10", "cifar100", "cifar10-vit")] == ["off"] * 3
    assert C.resolved_mode("on", "cifar10") == "on" and C.resolved_mode("off", "digits") == "off"
    assert C.mode_label("auto", "cifar10") == "auto (off for cifar10)" and C.mode_label("on", "digits") == "on"
    assert C.mode_label("auto", "teach") == "auto (calibrated if known)"


def test_a_run_that_did_not_reach_forgetting_is_flagged_and_kept_off_every_claim():
    # "ft" would be close to retrain by its numbers, but its calibration reached nothing
    res = _res({"ft": _run(0.04, [0.9, 0.8, 0.6, 0.3], calibration=_cal(reached=False)),
                "rl": _run(0.0, [0.95, 0.9, 0.8, 0.4], calibration=_cal())})
    rows = {r["name"]: r for r in V.rows_vs_retrain(res)}
    ft = rows["ft"]
    assert ft["flags"] == [C.NOT_REACHED] and ft["damaging"] and C.NOT_REACHED in ft["verdict"]
    assert ft["setting"] == "calibrated: lr 0.1, 4 ep (recipe lr 0.3, 10 ep)"
    assert not rows["rl"]["damaging"] and rows["retrain"]["setting"] == "" and rows["retrain"]["calibration"] is None
    sentence = V.overview_sentence(list(rows.values()), LAYERS[:3])
    assert sentence.startswith("**1 of 2** methods")  # ft is not counted as forgetting
    shown = list(rows.values())
    front = CF.pareto_front([None if r["damaging"] else r["distance"] for r in shown],
                           [r["retain_acc"] for r in shown])
    assert not front[[r["name"] for r in shown].index("ft")]
    assert L.teaching_baseline(res) == "rl"  # ft would win on forget accuracy and CKA otherwise
    res["runs"]["rl"]["calibration"] = _cal(reached=False)
    assert L.teaching_baseline(res) in ("ft", "rl")  # every baseline missed: the walk still has one


def test_fixture_comparison_carries_calibration_blocks():
    res = FS.make_results("compare", FS.METHODS)
    assert [n for n in FS.METHODS if C.not_forgotten(res["runs"][n])] == [FS.NOT_REACHED]
    assert all(C.calibration_text(res["runs"][n]).startswith("calibrated: lr 0.01, 5 ep") for n in FS.METHODS)
    assert "calibration" not in res["runs"]["original"] and "calibration" not in res["runs"]["retrain"]
    assert "calibration" not in FS.make_results("run", ["ec"])["runs"]["ec"]  # a single run: old shape
