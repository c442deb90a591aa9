"""Per-scenario calibration (engine/calibrate.py): the one rule on hand-made scores, the modes, the
cache, no peeking at the test split, and the results.json block."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import calibrate, runner
from engine.calibrate import Candidate, choose, lr_grid, resolve_mode
from engine.compare import format_table
from engine.config import ConfigError, make_config


def _c(lr, ep, forget, retain):
    return Candidate(lr=lr, epochs=ep, forget_acc=forget, retain_acc=retain)


def test_choose_keeps_the_highest_retain_among_settings_that_reach_retrains_forget_accuracy():
    cands = [_c(0.1, 1, 0.60, 0.999),  # gentle: best retain but did not forget
             _c(0.1, 2, 0.04, 0.980),
             _c(0.3, 1, 0.00, 0.990),  # qualifies with the best retain among the qualifying
             _c(0.3, 2, 0.00, 0.950),
             _c(0.9, 1, 0.06, 0.995)]  # 0.06 is outside the 0.05 tolerance
    ch = choose(cands, target=0.0, tolerance=0.05)
    assert ch.reached and ch.index == 2
    assert [c.qualifies for c in cands] == [False, True, True, True, False]
    assert "3 of 5" in ch.reason and "0.990" in ch.reason


def test_choose_is_two_sided_for_random_forgetting():
    # retrain's forget accuracy on a random forget set is high (~its test accuracy): over-forgetting
    # (0.50) is as far off as not forgetting (1.00)
    cands = [_c(0.01, 5, 1.00, 1.00), _c(0.03, 5, 0.90, 0.97), _c(0.1, 5, 0.50, 0.92)]
    ch = choose(cands, target=0.88, tolerance=0.05)
    assert ch.reached and ch.index == 1


def test_choose_marks_none_qualifies_and_keeps_the_closest():
    cands = [_c(0.01, 1, 0.90, 1.0), _c(0.01, 2, 0.64, 0.99), _c(0.03, 2, 0.30, 0.97)]
    ch = choose(cands, target=0.0, tolerance=0.05)
    assert not ch.reached and ch.index == 2
    assert "did not reach logit-level forgetting" in ch.reason
    assert not choose([], 0.0, 0.05).reached


def test_a_setting_that_breaks_the_model_does_not_qualify():
    # lr 0.09 "forgets" by collapsing retain accuracy to 0.40: destroyed, not forgotten
    cands = [_c(0.03, 10, 0.12, 0.99), _c(0.09, 1, 0.02, 0.40), _c(0.09, 2, 0.00, 0.31)]
    ch = choose(cands, target=0.0, tolerance=0.05, floor=0.5)
    assert not ch.reached and ch.index == 0  # the closest working setting, marked
    assert "without collapsing retain accuracy below 0.500 (2 did, by breaking the model)" in ch.reason
    assert choose(cands, target=0.0, tolerance=0.05).index == 1  # with no floor the broken one would win
    ok = choose(cands + [_c(0.03, 12, 0.04, 0.6)], target=0.0, tolerance=0.05, floor=0.5)
    assert ok.reached and ok.index == 3


def test_choose_breaks_ties_towards_fewer_epochs():
    ch = choose([_c(0.1, 3, 0.0, 0.99), _c(0.1, 1, 0.0, 0.99)], 0.0, 0.05)
    assert ch.index == 1


def test_grid_starts_at_the_recipe_and_modes_resolve_by_preset():
    assert lr_grid(0.3, [1 / 3, 3.0]) == [0.3, 0.1, 0.9]
    mode = lambda cfg, kind="compare", m="rl": resolve_mode(cfg, kind, m)[0]  # noqa: E731
    other = {"forget": {"classes": [5]}}
    assert mode(make_config("digits", other)) == "on"  # a scenario the recipe was not tuned on
    assert mode(make_config("teach", {"seed": 1})) == "on"
    assert mode(make_config("digits")) == "off"  # the recipe's own scenario: tuned there under this rule
    assert mode(make_config("digits", other), "run") == "cached"  # a run reuses a comparison's choice
    assert mode(make_config("digits", other), "sweep") == "off"
    assert mode(make_config("digits", {**other, "methods": {"rl": {"lr": 0.5}}})) == "off"  # the user's strength
    assert mode(make_config("digits", {**other, "methods": {"rl": {"lr": 0.5}}}), m="ft") == "on"
    assert mode(make_config("cifar10", other)) == "off"  # published recipes stand
    assert mode(make_config("cifar10", {"calibrate": "on"})) == "on"
    assert mode(make_config("digits", {**other, "calibrate": "off"})) == "off"
    with pytest.raises(ConfigError, match="calibrate"):
        make_config("digits", {"calibrate": "maybe"})
    with pytest.raises(ConfigError, match="calibration.lr_factors"):
        make_config("digits", {"calibration": {"lr_factors": [0.0]}})


def test_the_key_ignores_what_a_user_tunes_on_top_of_ec_but_not_the_recipe_or_scenario():
    base = make_config("digits")
    key = calibrate.calibration_key(base, "ec")
    assert calibrate.calibration_key(make_config("digits", {"ec": {"tau": 0.3}}), "ec") == key
    assert calibrate.calibration_key(make_config("digits", {"methods": {"ec": {"lr": 0.1}}}), "ec") != key
    assert calibrate.calibration_key(make_config("digits", {"forget": {"classes": [5]}}), "ec") != key
    assert calibrate.calibration_key(make_config("digits", {"seed": 1}), "ec") != key


SMALL = {"train": {"epochs": 4}, "ec": {"aux_epochs": 2},
         "eval": {"probe_epochs": 20, "embed_per_class": 10, "umap": False, "epoch_cka": False},
         "methods": {"ft": {"epochs": 2}, "ga": {"epochs": 2}}, "calibrate": "on",
         "calibration": {"lr_factors": [3.0]}}


@pytest.mark.slow
def test_a_comparison_calibrates_caches_and_never_reads_the_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    seen: list[np.ndarray] = []
    real = calibrate.accuracy_on

    def spy(model, ev, idx):
        seen.append(idx.cpu().numpy())
        return real(model, ev, idx)

    monkeypatch.setattr(calibrate, "accuracy_on", spy)
    spec = {"preset": "digits", "overrides": SMALL, "methods": ["ft", "ga"]}
    runner.execute("compare", spec, tmp_path / "a")
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    splits = np.load(tmp_path / "a" / "splits.npz")
    train, test = set(splits["train_idx"].tolist()), set(splits["test_idx"].tolist())
    assert seen and all(set(s.tolist()) <= train and not set(s.tolist()) & test for s in seen)

    for name in ("ft", "ga"):
        cal = res["runs"][name]["calibration"]
        assert cal["used"] and cal["source"] == "searched" and cal["mode"] == "on"
        assert cal["recipe"]["epochs"] == 2 and len(cal["grid"]) <= 4  # 2 lrs x 2 epochs
        assert {(g["lr"], g["epochs"]) for g in cal["grid"]} >= {(cal["choice"]["lr"], cal["choice"]["epochs"])}
        params = res["runs"][name]["params"]
        assert (params["lr"], params["epochs"]) == (cal["choice"]["lr"], cal["choice"]["epochs"])
        assert len(res["runs"][name]["history"]) == cal["choice"]["epochs"]
        chosen = next(g for g in cal["grid"] if (g["lr"], g["epochs"]) == (cal["choice"]["lr"], cal["choice"]["epochs"]))
        # the kept model is the chosen candidate: its forget accuracy on the training split is the
        # one the search scored (same samples: the whole forget split is under eval.max_samples)
        assert res["runs"][name]["metrics"]["forget_acc"] == pytest.approx(chosen["forget_acc"], abs=1e-6)
    assert "setting" in format_table(res)
    assert "retrain" not in {k for k, r in res["runs"].items() if "calibration" in r}

    # a second comparison reuses the choice, and lands on the same model
    seen.clear()
    runner.execute("compare", spec, tmp_path / "b")
    res_b = json.loads((tmp_path / "b" / "results.json").read_text())
    for name in ("ft", "ga"):
        a, b = res["runs"][name], res_b["runs"][name]
        assert b["calibration"]["source"] == "cached" and b["calibration"]["choice"] == a["calibration"]["choice"]
        assert b["metrics"]["forget_acc"] == pytest.approx(a["metrics"]["forget_acc"], abs=1e-6)
        assert b["metrics"]["retain_acc"] == pytest.approx(a["metrics"]["retain_acc"], abs=1e-6)
    assert not seen  # nothing searched, nothing scored

    # a single run of one method reuses the comparison's choice; --calibrate off runs the recipe
    single = {"preset": "digits", "overrides": {**SMALL, "method": "ga", "calibrate": "on"}}
    runner.execute("run", single, tmp_path / "c")
    run_c = json.loads((tmp_path / "c" / "results.json").read_text())["runs"]["ga"]
    assert run_c["calibration"]["source"] == "cached"
    assert run_c["params"]["lr"] == res["runs"]["ga"]["calibration"]["choice"]["lr"]
    off = {"preset": "digits", "overrides": {**SMALL, "method": "ga", "calibrate": "off"}}
    runner.execute("run", off, tmp_path / "d")
    run_d = json.loads((tmp_path / "d" / "results.json").read_text())["runs"]["ga"]
    cal_d = run_d["calibration"]
    assert {k: cal_d[k] for k in ("used", "mode", "recipe", "reason")} == {
        "used": False, "mode": "off", "recipe": {"lr": 0.003, "epochs": 2}, "reason": "recipe as given (calibrate: off)"}
    # the recipe run is still checked against retrain on the forget training split
    assert cal_d["forget_acc"] == pytest.approx(run_d["metrics"]["forget_acc"], abs=1e-6)
    assert cal_d["reached"] == (abs(cal_d["forget_acc"] - cal_d["target"]["forget_acc"]) <= 0.05 + 1e-9)
    assert run_d["params"]["lr"] == 0.003 and run_d["params"]["epochs"] == 2
