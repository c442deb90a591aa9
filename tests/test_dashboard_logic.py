"""Pure helpers behind the dashboard pages (dashboard/logic.py)."""
import pytest

from dashboard import launch_spec as LS
from dashboard import logic as L
from engine.config import ConfigError
from tests import fixtures_store as FS

LAYERS = FS.LAYERS


def _res(runs: dict) -> dict:
    return {"layers": LAYERS, "runs": runs, "scenario": {"forget": {"classes": [3]}, "class_names": list("0123456789")}}


def _run(fa, cka, probe=None, ra=0.99):
    return {"metrics": {"forget_acc": fa, "retain_acc": ra, "test_acc": 0.9, "mia_efficacy": 0.5},
            "cka_vs_original": {"forget": dict(zip(LAYERS, cka))},
            "probe_forget_acc": dict(zip(LAYERS, probe or cka))}


def test_inner_layers():
    assert L.inner_layers(LAYERS) == ["block1", "block2", "block3"]
    assert L.inner_layers(["only"]) == ["only"]
    assert L.inner_layers([]) == []


def test_run_summary_uses_inner_layers_only():
    res = _res({"ec": _run(0.0, [0.9, 0.6, 0.3, 0.0], [0.8, 0.5, 0.2, 1.0])})
    s = L.run_summary(res, "ec")
    assert s["forget_cka_mean"] == pytest.approx(0.6)  # last layer (0.0) left out
    assert s["probe_mean"] == pytest.approx(0.5)
    assert s["probe_max"] == pytest.approx(0.8)
    assert s["role"] == "method"


def test_headline_rows_order_and_distance():
    res = _res({"ft": _run(0.0, [1, 1, 1, 1]), "original": _run(1.0, [1, 1, 1, 1]),
                "retrain": _run(0.0, [0.7, 0.6, 0.7, 0.1])})
    rows = L.headline_rows(res)
    assert [r["name"] for r in rows] == ["original", "retrain", "ft"]
    assert [r["role"] for r in rows] == ["reference", "reference", "method"]
    assert rows[2]["distance"] == pytest.approx(0.4) and rows[2]["worst_layer"] == "block2"
    assert rows[1]["distance"] == pytest.approx(0.0)
    assert L.distance_text(rows[2]) == "0.400 at block2 (+)" and L.distance_text(rows[1]) == "0 (reference)"
    assert L.distance_text({"distance": None}) == "n/a"


def _hiding_mean():
    """EC's gaps to retrain +0.06, -0.43, +0.37 (block1-3): their mean is 0, its worst layer 0.43 away."""
    return _res({"original": _run(1.0, [1, 1, 1, 1]), "retrain": _run(0.0, [0.5, 0.9, 0.5, 0.3]),
                 "ec": _run(0.0, [0.56, 0.47, 0.87, 0.3]), "ft": _run(0.0, [0.52, 0.91, 0.51, 0.3])})


def test_rows_show_the_worst_layer_where_the_mean_hides_it():
    from dashboard import verdict as V
    from dashboard import widgets as W
    res = _hiding_mean()
    rows = {r["name"]: r for r in V.rows_vs_retrain(res)}
    ec = rows["ec"]
    assert ec["forget_cka_mean"] == pytest.approx(rows["retrain"]["forget_cka_mean"])  # the mean sees nothing
    cells = W.headline_cells(ec)
    assert cells[L.DISTANCE_LABEL] == "0.430 at block2 (−)"
    assert cells[L.GAPS_LABEL] == "block1 +0.060, block2 -0.430, block3 +0.370 | block4 +0.000"
    assert ec["verdict"] == "past retrain, probe below retrain, superficial"  # block2 distorted, block3 kept
    assert W.headline_cells(rows["ft"])[L.DISTANCE_LABEL] == "0.020 at block1 (+)"
    assert rows["ft"]["verdict"] == "close to retrain"  # within the assumed 0.02 at every inner layer
    assert L.teaching_baseline(res) == "ft"  # EC is never the baseline


def test_launch_strip_reads_each_layer_against_the_default_and_the_tolerance():
    res = _hiding_mean()
    res["retrain_band"] = {"cka_vs_original": {"forget": dict(zip(LAYERS, [0.53, 0.89, 0.45, 0.3]))}}
    default = _res({**res["runs"], "ec": _run(0.0, [0.60, 0.80, 0.52, 0.25])})  # same scenario, default EC
    strip = L.layer_strip(L.layer_gaps(res, "ec"), L.layer_gaps(default, "ec"))
    assert [s["closer"] for s in strip] == ["closer", "further", "further", "closer"]
    assert [s["within"] for s in strip] == [False, False, False, True]
    assert [s["tol"] for s in strip] == pytest.approx([0.03, 0.01, 0.05, 0.01])
    rows = L.strip_rows(strip, "This run", "Default EC")
    assert [r[""] for r in rows] == ["This run: gap to retrain", "Default EC: gap to retrain", "This run vs Default EC",
                                     "This run: within tolerance"]
    assert rows[0]["block2"] == "-0.430" and rows[1]["block2"] == "-0.100" and rows[2]["block2"] == "further"
    assert rows[3]["block1"] == "no (±0.030)" and rows[3]["block4 (last)"] == "yes (±0.010)"
    alone = L.strip_rows(L.layer_strip(L.layer_gaps(res, "ec")), "This run")  # no default run yet
    assert [r[""] for r in alone] == ["This run: gap to retrain", "This run: within tolerance"]
    assert L.layer_strip(L.layer_gaps(res, "ec"), L.layer_gaps(res, "ec"))[0]["closer"] == "same"


def test_tolerance_text_measured_or_assumed():
    res = _hiding_mean()
    assert L.tolerance_text(res) == ("Tolerance (reference noise): assumed 0.02 per layer, no second retrain "
                                     "measured.")
    res["retrain_band"] = {"seed": 5, "cka_vs_original": {"forget": dict(zip(LAYERS, [0.53, 0.89, 0.45, 0.3]))}}
    assert "another seed (5), lands 0.030 / 0.010 / 0.050 / 0.010 from the first" in L.tolerance_text(res)


def test_reading_gaps_of_a_sweep_trial():
    g = L.reading_gaps({"block1": 0.01, "block2": -0.05, "block4": 0.2}, {"block1": 0.02, "block2": 0.02}, LAYERS)
    assert [x["within"] for x in g] == [True, False, None, None] and [x["inner"] for x in g] == [True] * 3 + [False]
    assert L.gaps_text(g) == "block1 +0.010, block2 -0.050, block3 n/a | block4 +0.200"


def test_teaching_baseline_prefers_close_forget_acc_then_high_cka():
    res = _res({
        "original": _run(1.0, [1, 1, 1, 1]), "retrain": _run(0.0, [0.8, 0.6, 0.4, 0.2]),
        "ga": _run(0.30, [0.99, 0.99, 0.99, 0.9]),  # highest CKA but far from retrain's forget acc
        "ft": _run(0.02, [0.9, 0.8, 0.7, 0.5]),
        "rl": _run(0.04, [0.95, 0.9, 0.85, 0.5]),  # within tolerance of the closest (ft), higher CKA
        "ec": _run(0.0, [0.99, 0.99, 0.99, 0.99]),  # EC is never the baseline
        "ft+ec": _run(0.0, [0.99, 0.99, 0.99, 0.99]),
    })
    assert L.teaching_baseline(res) == "rl"
    assert L.teaching_baseline(res, tolerance=0.0) == "ft"
    assert L.teaching_baseline(_res({"original": _run(1, [1] * 4), "ec": _run(0, [1] * 4)})) is None


def test_teaching_baseline_on_fixture_is_scrub():
    res = FS.make_results("compare", FS.METHODS)
    assert L.teaching_baseline(res) == "scrub"


def test_excess():
    ex = L.excess({"a": 0.9, "b": 0.8, "c": None}, {"a": 0.85, "b": 0.3, "c": 0.1}, ["a", "b", "c"])
    assert ex == pytest.approx({"a": 0.05, "b": 0.5})


def test_forget_phrase():
    assert L.forget_phrase({"forget": {"classes": [3]}}) == "class 3"
    assert L.forget_phrase({"forget": {"classes": [3, 5]}, "class_names": ["a"] * 3 + ["cat"] + ["b", "dog"]}) == \
        "classes 3 (cat) and 5 (dog)"
    assert L.forget_phrase({"forget": {"random": 0.1}}) == "a random 10% of the training set"


def test_parse_classes():
    assert LS.parse_classes([3, "12", "5 · dog", " 7"]) == [3, 12, 5, 7]
    with pytest.raises(ConfigError) as e:
        LS.parse_classes(["cat"])
    assert e.value.option == "forget.classes"


BASE = {"preset": "digits", "method": "ec", "plugin": False, "beta": 1.0, "arch": "small_cnn",
        "weights": [1.0, 0.5, 0.0, 2.0], "tau": 0.5, "lambda_cu": 3.0, "lambda_ce": 1.0, "epochs": 4, "lr": 0.03,
        "forget_mode": "classes", "classes": [3, 5], "random": 0.1, "seed": 7, "device": "auto"}


def test_build_run_spec_ec_validates():
    spec = LS.build_run_spec(BASE)
    assert spec == {"preset": "digits", "overrides": {
        "method": "ec", "seed": 7, "model": {"arch": "small_cnn"}, "forget": {"classes": [3, 5]},
        "methods": {"ec": {"epochs": 4, "lr": 0.03}},
        "ec": {"weights": [1.0, 0.5, 0.0, 2.0], "tau": 0.5, "lambda_cu": 3.0, "lambda_ce": 1.0}}}
    cfg = LS.check_spec(spec)
    assert cfg.layer_weights == [1.0, 0.5, 0.0, 2.0] and cfg.ec.tau == 0.5 and cfg.methods.ec.epochs == 4


def test_build_run_spec_plugin_cu_random_retrain():
    spec = LS.build_run_spec({**BASE, "method": "ft", "plugin": True, "beta": 2.0, "forget_mode": "random",
                             "random": 0.2, "device": "cpu"})
    ov = spec["overrides"]
    assert ov["plugin"] == "ec" and ov["beta"] == 2.0 and ov["forget"] == {"random": 0.2} and ov["device"] == "cpu"
    assert LS.check_spec(spec).run_label == "ft+ec"
    cu = LS.build_run_spec({**BASE, "method": "cu"})["overrides"]
    assert cu["methods"]["cu"] == {"epochs": 4, "lr": 0.03, "tau": 0.5, "lambda_cu": 3.0, "lambda_ce": 1.0}
    assert "ec" not in cu
    rt = LS.build_run_spec({**BASE, "method": "retrain"})["overrides"]
    assert "methods" not in rt and "ec" not in rt


@pytest.mark.parametrize("change, option", [
    ({"weights": [0.0, 0.0, 0.0, 0.0]}, "ec.weights"),
    ({"classes": [12]}, "forget.classes"),
    ({"classes": []}, "forget.classes"),
    ({"weights": [1.0, 1.0]}, "ec.weights"),
])
def test_invalid_forms_name_the_option(change, option):
    with pytest.raises(ConfigError) as e:
        LS.check_spec(LS.build_run_spec({**BASE, **change}))
    assert e.value.option == option
    text = L.error_text(e.value)
    assert f"`{option}`" in text


def test_error_text_mentions_control():
    err = ConfigError("ec.weights", "are all zero: give at least one supervision point a weight > 0")
    assert L.error_text(err) == ("Invalid option: `ec.weights` are all zero: give at least one supervision point a "
                                 "weight > 0. (Set by the layer-weight sliders.)")
    assert L.error_text(ValueError("plain")) == "plain"


def test_with_value_and_nearest():
    assert LS.with_value([0.1, 1.0], 0.5) == [0.1, 0.5, 1.0]
    assert LS.with_value([0.1, 1.0], 1.0) == [0.1, 1.0]
    assert LS.nearest(LS.TEMPERATURES, 0.65) == 0.7


def test_job_label_and_epoch_history():
    assert L.job_label({"kind": "run", "spec": {"config": {"preset": "digits", "method": "ft", "plugin": "ec"}}}) == \
        "run ft+ec · digits"
    assert L.job_label({"kind": "compare", "spec": {"config": {"preset": "mnist"}, "methods": ["ec", "ft"]}}) == \
        "compare 2 methods · mnist"
    assert L.job_label({"kind": "embed", "spec": {"job": "j1", "layer": "block2"}}) == "embed block2 of job j1"
    evs = [{"type": "epoch", "run": "original", "epoch": 1}, {"type": "stage"},
           {"type": "epoch", "run": "ec", "epoch": 1, "losses": {"loss": 2}},
           {"type": "epoch", "run": "ec", "epoch": 2}, {"type": "epoch", "run": "ec", "epoch": 1, "losses": {"loss": 1}}]
    run, hist = L.epoch_history(evs)
    assert run == "ec" and [h["epoch"] for h in hist] == [1, 2] and hist[0]["losses"] == {"loss": 1}
    assert L.epoch_history([]) == (None, [])


def test_config_from_results_run_handoff_roundtrip():
    res = FS.make_results("run", ["ft+ec"], plugin_run="ft+ec")
    h = LS.config_from_results_run(res, "ft+ec")
    cfg = LS.prefill_config(h)
    assert cfg.method == "ft" and cfg.plugin == "ec"
    assert LS.config_from_results_run(res, "original") is None


def test_all_run_rows():
    res = FS.make_results("compare", ["ec", "ft"])
    rows = L.all_run_rows([({"id": "j1", "kind": "compare", "finished": 0}, res)])
    assert [r["id"] for r in rows] == ["j1/original", "j1/retrain", "j1/ec", "j1/ft"]
    assert rows[2]["dataset"] == "digits" and rows[2]["forget"] == "class 3"


def test_forget_label_says_class_for_one_class():
    assert L.forget_label({"forget": {"classes": [3]}, "forget_label": "classes 3"}) == "class 3"
    assert L.forget_label({"forget": {"classes": [3, 5]}}) == "classes 3,5"
    assert L.forget_label({"forget": {"random": 0.1}}) == "random 10%"
    assert L.forget_label({"forget_label": "classes 2"}) == "classes 2"  # only the engine's label
    assert L.forget_label({}) == "?"
    assert "forget class 3" in L.scenario_line(FS.make_results("compare", ["ec"]))


def test_results_label_is_short_and_has_no_job_id():
    import datetime as dt
    now = dt.datetime(2026, 11, 29, 18, 0)
    today = dt.datetime(2026, 11, 29, 9, 41).timestamp()
    job = {"id": "j-20261129-0941-abcdef", "kind": "compare",
           "spec": {"config": {"preset": "digits", "data": {"dataset": "digits"}, "forget": {"classes": [3]}}}}
    label = L.results_label(job, today, now=now)
    assert label == "digits · forget 3 · compare · 09:41"
    assert job["id"] not in label and len(label) <= 36
    run = {"id": "j2", "kind": "run", "spec": {"config": {"preset": "mnist", "method": "ft", "plugin": "ec",
                                                         "forget": {"random": 0.1}}}}
    yesterday = dt.datetime(2026, 11, 28, 23, 5).timestamp()
    assert L.results_label(run, yesterday, now=now) == "mnist · forget 10% random · ft+ec · 11-28 23:05"
    assert L.results_label({"kind": "run", "spec": {}}, None) == "? · ec"


def test_fmt_time():
    assert L.fmt_time(None) == ""
    assert len(L.fmt_time(0.0)) == 19


def test_extra_overrides_keep_what_the_form_does_not_show():
    from engine.config import make_config
    cfg = make_config("digits", {"method": "ft", "train": {"epochs": 3}, "model": {"width": 8},
                                 "methods": {"ft": {"epochs": 9, "momentum": 0.5}, "ga": {"lr": 0.001}},
                                 "ec": {"tau": 0.2, "aux_epochs": 2}, "seed": 5, "forget": {"classes": [1]}})
    extra = LS.extra_overrides(cfg, make_config("digits").model_dump())
    assert extra == {"train": {"epochs": 3}, "model": {"width": 8},
                     "methods": {"ft": {"momentum": 0.5}, "ga": {"lr": 0.001}}, "ec": {"aux_epochs": 2}}
    spec = LS.build_run_spec({**BASE, "method": "ft"}, extra)
    c = LS.check_spec(spec)
    assert (c.train.epochs, c.model.width, c.methods.ft.momentum, c.methods.ft.epochs) == (3, 8, 0.5, 4)
    assert c.ec.aux_epochs == 2 and c.methods.ga.lr == 0.001
    assert sorted(LS.dotted({"a": {"b": 1}, "c": 2})) == ["a.b=1", "c=2"]


def test_build_run_spec_carries_calibrate_at_the_top_of_the_overrides():
    from engine.config import make_config
    spec = LS.build_run_spec({**BASE, "calibrate": "off"})
    assert spec["overrides"]["calibrate"] == "off" and LS.check_spec(spec).calibrate == "off"
    assert "calibrate" not in LS.build_run_spec(BASE)["overrides"]  # a caller without the field: the default
    cfg = make_config("digits", {"method": "ft", "calibrate": "on"})
    assert LS.extra_overrides(cfg, make_config("digits").model_dump()) == {}  # the form's own option


def test_seed_band_reads_the_noise_reference_or_nothing():
    res = {"seed_band": {"seed": 3, "cka_vs_original": {"forget": {"block1": 0.991, "block2": 0.95}}}}
    assert L.seed_band(res) == {"block1": 0.991, "block2": 0.95}
    assert L.seed_band(res, "retain") is None and L.seed_band({}) is None
    assert L.seed_band({"seed_band": {"cka_vs_original": {"forget": "broken"}}}) is None
    line = L.seed_band_text(res, ["block1", "block2"])
    assert "CKA 0.991 / 0.950 to the original (block1, block2" in line
    assert L.seed_band_text({}, ["block1"]) is None


# -- the progress bar's stage and epoch (dashboard/progress.py) ------------------------------------

def test_every_stage_the_engine_writes_reads_in_words():
    """The bar showed the job's raw stage ("90% · original_seed2"); each stage the engine emits has words."""
    import re
    from pathlib import Path
    from dashboard import progress as PR
    from engine.results import NOISE_RUN, RETRAIN_NOISE_RUN
    engine = Path(__file__).resolve().parent.parent / "engine"
    literal = {m for f in engine.rglob("*.py") for m in re.findall(r'"stage": "(\w+)"', f.read_text())}
    assert literal >= {"data", "aux", "eval", "method", "calibrate", "embed"}
    assert literal | {"original", "retrain", NOISE_RUN, RETRAIN_NOISE_RUN} <= set(PR.STAGE_WORDS)
    # as the worker writes them: "stage", or "stage: name" when the name differs (engine/jobs/context.py)
    written = ["data: digits", "original", "retrain", "aux", "eval: original", "eval: retrain", "calibrate: scrub",
               "method: ft+ec", "eval: relearn", NOISE_RUN, RETRAIN_NOISE_RUN, "embed: umap"]
    assert [PR.stage_label(s) for s in written] == [
        "loading the data (digits)", "training the original model", "training the retrained model (the gold standard)",
        "pretraining EC's auxiliary modules", "evaluating the original model", "evaluating the retrained model",
        "calibrating the learning rate of SCRUB", "unlearning with FT + EC", "evaluating the relearning test",
        "second original (another seed): the training-noise reference",
        "second retrain (another seed): the tolerance reference", "embedding the penultimate features (UMAP)"]
    assert PR.stage_label("original: retrain", "audit") == "loading the retrained model"  # an audit trains nothing
    assert PR.stage_label("method: mine", "audit") == "loading mine"
    assert PR.stage_label("3 of 8 comparisons done") == "3 of 8 comparisons done"  # not a stage: as it is
    assert PR.stage_label(None) == ""


def test_progress_message_only_when_it_adds_something():
    from dashboard import progress as PR
    label = PR.stage_label("embed: umap")
    assert PR.message_news("embedding (UMAP)", label) == ""  # every word already in the label
    assert PR.message_news("training original_seed2: epoch 3/12", "second original epoch 3 of 12") == ""
    assert PR.message_news("method 5 of 10", PR.stage_label("method: salun")) == "method 5 of 10"
    assert PR.message_news(None, label) == "" and PR.message_news("  ", label) == ""


def test_epoch_count_belongs_to_the_stage_shown():
    from dashboard import progress as PR
    evs = [{"type": "stage", "stage": "original", "name": "original", "fraction": 1.0, "message": "cached"},
           {"type": "stage", "stage": "retrain", "name": "retrain", "fraction": 0.0},
           {"type": "step", "run": "retrain", "epoch": 1, "epochs": 12, "step": 3, "steps": 8}]
    assert PR.epoch_text(evs) == "epoch 1 of 12"
    evs += [{"type": "epoch", "run": "retrain", "epoch": 1, "epochs": 12},
            {"type": "stage", "stage": "retrain", "name": "retrain", "fraction": 1 / 12},  # announced per epoch
            {"type": "step", "run": "retrain", "epoch": 2, "epochs": 12, "step": 1, "steps": 8}]
    assert PR.epoch_text(evs) == "epoch 2 of 12"
    evs.append({"type": "stage", "stage": "eval", "name": "retrain", "fraction": 0.5})
    assert PR.epoch_text(evs) == ""  # retrain's count is not its evaluation's
    evs.append({"type": "stage", "stage": "aux", "name": "aux", "fraction": 0.3, "epoch": 3, "epochs": 10})
    assert PR.epoch_text(evs) == "epoch 3 of 10"
    assert PR.epoch_text([{"type": "stage", "stage": "method", "name": "ft"},
                          {"type": "step", "run": "ft", "epoch": 1, "step": 2}]) == ""  # no total: no count
    assert PR.epoch_text([]) == ""
