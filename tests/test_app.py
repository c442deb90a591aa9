"""The dashboard pages under streamlit.testing.v1.AppTest, against fixture run stores.

Every test gets its own ECLAB_HOME (a copy of a store built once per module) and sets
ECLAB_NO_AUTOSTART=1, so no worker process is ever started; jobs the pages queue stay queued.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import app as dashboard_app, launch_spec, logic, text
from tests import fixtures_store as FS

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
PAGES = [Path(f).stem for f, _, _ in dashboard_app.PAGES]  # every page the app's navigation lists
NO_CHART = {"launch", "sweep", "grid"}  # a form, a page whose charts need a sweep (tests below), a table of grids
ANALYSIS = [p for p in PAGES if p not in NO_CHART]
TIMEOUT = 60  # the first submit imports the runner (and torch) in this process


def _build(tmp_path_factory, variant):
    home = tmp_path_factory.mktemp(f"store-{variant}")
    old = os.environ.get("ECLAB_HOME")
    os.environ["ECLAB_HOME"] = str(home)
    try:
        ids = FS.build_store(home, variant)
    finally:
        if old is None:
            os.environ.pop("ECLAB_HOME", None)
        else:
            os.environ["ECLAB_HOME"] = old
    return home, ids


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return {v: _build(tmp_path_factory, v) for v in ("full", "empty", "computing", "failed")}


@pytest.fixture
def store(built, tmp_path, monkeypatch):
    """store(variant) -> (home, ids): a private copy of a built store, made the current ECLAB_HOME."""
    def use(variant="full"):
        src, ids = built[variant]
        home = tmp_path / variant
        shutil.copytree(src, home)
        monkeypatch.setenv("ECLAB_HOME", str(home))
        return home, ids
    monkeypatch.setenv("ECLAB_NO_AUTOSTART", "1")
    return use


def app(page="overview", query=None, state=None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    if query:
        at.query_params.update(query)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    if page != "overview" or query or state:
        at.switch_page(f"views/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def api():
    from engine import api as mod
    return mod


# -- valid store --------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_full_store(store, page):
    store("full")
    at = app(page)
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    if page not in NO_CHART:
        assert len(at.get("plotly_chart")) >= 1


def test_overview_headline_rows_and_numbers(store):
    store("full")
    at = app("overview")
    df = at.dataframe[0].value
    assert list(df["Run"])[:2] == ["Original (reference)", "Retrain (reference)"]
    assert set(df["Row"][:2]) == {"reference"} and set(df["Row"][2:]) == {"method"}
    assert len(df) == 2 + len(FS.METHODS)
    ec = df[df["Run"] == "EC"].iloc[0]
    cka = FS.PROFILES["ec"][4]
    assert ec[logic.MEAN_LABEL] == pytest.approx(sum(cka[:3]) / 3, abs=1e-6)  # a labelled detail
    assert ec["Forget acc"] == pytest.approx(100 * FS.PROFILES["ec"][0])  # shown in %
    assert ec["Retain acc"] == pytest.approx(100 * FS.PROFILES["ec"][1])
    assert ec["Probe distance to retrain (worst layer)"] == "0.070 at block2 (−)"  # probe 0.55 vs retrain 0.62
    assert "Superficial forgetting" in texts(at)
    assert [m.value for m in at.metric][:3] == ["digits", "small_cnn", "class 3"]
    # the thread count and the CPU's kernel set move the readings
    assert any("· 2 torch threads, AVX2 kernels ·" in c.value for c in at.caption)


def test_overview_says_when_cached_base_models_were_trained_another_way(store):
    from engine import store as engine_store
    home, ids = store("full")
    assert not any("came from the cache" in w.value for w in app().warning)  # not recorded: no claim
    path = home / "runs" / ids["compare"] / "results.json"
    res = engine_store.load_json(path)
    same = {"threads": 2, "cpu_kernels": "AVX2"}  # as the fixture's scenario ran
    res["base_trained_with"] = {"original": same, "retrain": same}
    engine_store.atomic_write_json(path, res)
    st.cache_data.clear()  # a done job's results are cached: they never change outside a test
    assert not any("came from the cache" in w.value for w in app().warning)
    res["base_trained_with"]["retrain"] = {"threads": 1, "cpu_kernels": "AVX512"}
    engine_store.atomic_write_json(path, res)
    st.cache_data.clear()
    [w] = [w.value for w in app().warning if "came from the cache" in w.value]
    assert "The retrain model came from the cache, trained with 1 torch thread, AVX512 kernels" in w
    assert "original model" not in w and "2 torch threads, AVX2 kernels" in w


def test_sidebar_results_picker_labels_are_short(store):
    _, ids = store("full")
    at = app("overview")
    pick = at.sidebar.selectbox(key="results_job")
    assert pick.value == ids["compare"]
    labels = list(pick.options)
    assert labels[0].startswith("digits · forget 3 · ")
    # at most 36 characters; a job of another day adds its date ("12-04 "), as the fixture's jobs have after midnight
    assert all(len(lab) <= 42 and not any(i in lab for i in ids.values()) for lab in labels), labels
    assert any(ids["compare"] in c.value for c in at.sidebar.caption)  # the id is in the caption


def test_failed_job_error_is_shown(store):
    _, ids = store("full")
    at = app("overview")
    assert FS.FAILED_ERROR in texts(at)
    at = app("launch", query={"job": ids["failed"]})
    assert any(FS.FAILED_ERROR in e.value for e in at.error)


def test_newer_comparison_in_progress_is_announced(store):
    store("full")
    job = api().submit("compare", {"preset": "digits", "methods": ["ec", "ft"]})
    at = app("layers")
    assert f"A newer comparison (job `{job['id']}`) is queued" in texts(at)
    assert len(at.get("plotly_chart")) == 4  # the older finished comparison is still shown


def test_missing_optional_arrays(store):
    home, ids = store("full")
    (home / "runs" / ids["compare"] / "arrays.npz").unlink()
    at = app("embeddings")
    assert "no embedding sample" in texts(at)
    at = app("compare")
    assert not at.exception and "membership-inference view unavailable" in texts(at)
    at = app("overview")
    assert not at.exception


def test_corrupt_results_is_reported_not_raised(store):
    home, ids = store("full")
    (home / "runs" / ids["compare"] / "results.json").write_text("{not json")
    at = app("layers")
    assert not at.exception
    assert any("corrupt" in e.value for e in at.error)


# -- empty, computing and failed stores -------------------------------------------------------------

@pytest.mark.parametrize("page", ANALYSIS)
def test_empty_store_offers_the_default_comparison(store, page):
    store("empty")
    at = app(page)
    assert "No results yet" in texts(at)
    assert at.button(key="queue_default").label == "Queue the default comparisons"


def test_queue_default_comparison_from_empty_store(store):
    store("empty")
    at = app("overview")
    at.button(key="queue_default").click().run()
    assert not at.exception
    jobs = api().list_jobs()  # newest first: teach is queued first, so it runs first
    assert [(j["kind"], j["state"], j["spec"]["config"]["preset"]) for j in jobs] == [
        ("compare", "queued", "digits"), ("compare", "queued", "teach")]
    assert api().first_start_jobs() == [jobs[1]["id"], jobs[0]["id"]]
    assert "Computing the default comparison" in texts(at)


def test_computing_state_shows_progress(store):
    store("computing")
    at = app("overview")
    assert "Computing the default comparison" in texts(at)
    bar = at.get("progress")[0]
    assert bar.value == 42 or bar.value == pytest.approx(0.42)
    assert "running · 42% · unlearning with FT" in bar.proto.text  # the stage in words, not "method: ft"
    assert not at.get("button") or all(b.key != "queue_default" for b in at.button)


def test_computing_progress_names_a_long_stage_and_counts_its_epochs(store):
    """A second original (the training-noise reference) trains for minutes at 90%: its raw name alone
    ("original_seed2") looked stuck; the bar says what it is and which epoch it is on."""
    from dashboard.logic import NOISE
    _, ids = store("computing")
    now = FS.time.time()
    FS._set_job(ids["compare"], "running", now - 600, now - 598, progress=0.9, stage=NOISE, events=[
        {"type": "stage", "stage": NOISE, "name": NOISE, "fraction": 0.0,
         "message": f"training {NOISE} on 1800 samples (12 epochs)"},
        {"type": "epoch", "run": NOISE, "epoch": 2, "epochs": 12, "fraction": 2 / 12, "losses": {"loss": 0.4}},
        {"type": "stage", "stage": NOISE, "name": NOISE, "fraction": 2 / 12,
         "message": f"training {NOISE}: epoch 2/12, loss 0.400"},
        {"type": "step", "run": NOISE, "epoch": 3, "epochs": 12, "step": 4, "steps": 8, "fraction": 2.5 / 12}])
    at = app("overview")
    bar = at.get("progress")[0].proto.text
    assert "90% · second original (another seed): the training-noise reference · epoch 3 of 12" in bar
    assert NOISE not in bar


def test_failed_comparison_shows_error_and_requeue(store):
    store("failed")
    at = app("teach")
    assert any(FS.FAILED_ERROR in e.value for e in at.error)
    assert at.button(key="queue_default")


def test_launch_page_renders_on_empty_store(store):
    store("empty")
    at = app("launch")
    assert [s.label for s in at.slider] == ["block1", "block2", "block3", "block4"]


def test_launch_preset_labels_short_and_jobs_table_without_error_column(store):
    store("full")
    at = app("launch")
    preset = at.selectbox(key="l_preset")
    assert list(preset.options) == launch_spec.PRESET_CHOICES  # details are in the caption, not the option
    assert launch_spec.PRESET_NOTES["digits"] in texts(at)
    df = at.dataframe[0].value
    assert "Error" not in df.columns and list(df["State"]).count("failed") == 1
    assert FS.FAILED_ERROR in texts(at)  # shown in full below the table


# -- launch form ----------------------------------------------------------------------------------

def _n_jobs():
    return len(api().list_jobs())


def test_launch_all_weights_zero_is_refused(store):
    store("full")
    at = app("launch")
    n = _n_jobs()
    for s in at.slider:
        s.set_value(0.0)
    at.button(key="l_submit").click().run()
    errors = [e.value for e in at.error]
    assert any("ec.weights" in e and "Nothing was queued" in e for e in errors), errors
    assert _n_jobs() == n and "job" not in at.query_params


def test_launch_unknown_forget_class_is_refused(store):
    store("full")
    at = app("launch")
    n = _n_jobs()
    at.multiselect(key="l_classes__digits").set_value([12]).run()
    at.button(key="l_submit").click().run()
    errors = [e.value for e in at.error]
    assert any("forget.classes" in e and "[12]" in e for e in errors), errors
    assert _n_jobs() == n and "job" not in at.query_params


def test_launch_valid_submit_queues_one_job_and_sets_query_param(store):
    store("full")
    at = app("launch")
    before = {j["id"] for j in api().list_jobs()}
    at.selectbox(key="l_method").set_value("ft").run()
    at.toggle(key="l_plugin").set_value(True).run()
    at.slider(key="l_w__small_cnn__block1").set_value(2.5).run()
    at.select_slider(key="l_tau").set_value(0.3).run()
    at.multiselect(key="l_classes__digits").set_value([3, 5]).run()
    at.button(key="l_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    new = [j for j in api().list_jobs() if j["id"] not in before]
    assert len(new) == 1
    job = new[0]
    assert at.query_params.get("job") == job["id"]
    cfg = job["spec"]["config"]
    assert (job["kind"], job["state"], cfg["method"], cfg["plugin"]) == ("run", "queued", "ft", "ec")
    assert cfg["ec"]["weights"] == [2.5, 1.0, 1.0, 1.0] and cfg["ec"]["tau"] == 0.3
    assert cfg["forget"]["classes"] == [3, 5]
    assert f"Job `{job['id']}`" in texts(at)


def test_launch_shows_job_from_url(store):
    _, ids = store("full")
    at = app("launch", query={"job": ids["run"]})
    assert f"Job `{ids['run']}` is done" in texts(at)
    assert len(at.get("plotly_chart")) == 2  # training curves and per-epoch CKA of ft+ec
    at = app("launch", query={"job": ids["queued"]})
    assert "No worker is running" in texts(at)
    assert at.button(key=f"cancel_{ids['queued']}")
    at.button(key=f"cancel_{ids['queued']}").click().run()
    assert api().get_job(ids["queued"])["state"] == "cancelled"


def test_launch_prefill_handoff(store):
    store("full")
    pre = {"preset": "digits", "overrides": {"method": "ft", "plugin": "ec", "beta": 2.0,
                                             "ec": {"weights": [0.0, 1.5, 2.0, 3.0], "tau": 0.2},
                                             "forget": {"classes": [1, 7]}, "seed": 4}, "source": "sweep best trial"}
    at = app("launch", state={"prefill": pre})
    assert "sweep best trial" in texts(at)
    assert at.selectbox(key="l_method").value == "ft" and at.toggle(key="l_plugin").value is True
    assert [s.value for s in at.slider] == [0.0, 1.5, 2.0, 3.0]
    assert at.select_slider(key="l_tau").value == 0.2
    assert at.multiselect(key="l_classes__digits").value == [1, 7]
    assert at.number_input(key="l_seed").value == 4
    assert not at.warning


def test_launch_prefill_keeps_options_the_form_does_not_show(store):
    store("full")
    pre = {"preset": "digits", "overrides": {"method": "ec", "train": {"epochs": 3}, "model": {"width": 8},
                                             "ec": {"tau": 0.2}}, "source": "sweep s trial 2"}
    at = app("launch", state={"prefill": pre})
    assert "`train.epochs=3`" in texts(at) and "`model.width=8`" in texts(at)
    before = {j["id"] for j in api().list_jobs()}
    at.button(key="l_submit").click().run()
    assert not at.error, [e.value for e in at.error]
    job = [j for j in api().list_jobs() if j["id"] not in before][0]
    cfg = job["spec"]["config"]
    assert cfg["train"]["epochs"] == 3 and cfg["model"]["width"] == 8 and cfg["ec"]["tau"] == 0.2
    at.button(key="l_drop_extra").click().run()
    assert "train.epochs" not in texts(at)


def test_compare_use_these_settings_goes_to_launch(store):
    store("full")
    at = app("compare")
    at.button(key="cmp_use").click().run()
    assert not at.exception
    assert at.selectbox(key="l_method").value == "ec"
    assert "Settings loaded from" in texts(at)


# -- analysis pages ---------------------------------------------------------------------------------

def test_layers_heatmap_follows_split_and_reference(store):
    store("full")
    at = app("layers")
    at.radio(key="ly_view").set_value("fixed").run()  # the absolute CKA view (the default is centred on retrain)
    heat = at.get("plotly_chart")[0]
    fig = json.loads(heat.proto.spec)
    z = fig["data"][0]["z"]
    assert fig["data"][0]["zmin"] == 0 and fig["data"][0]["zmax"] == 1
    assert fig["data"][0]["y"][0] == "Retrain (ref)"  # reference "original" leaves its own row out
    assert z[0] == [pytest.approx(v) for v in FS.PROFILES["retrain"][4]]
    at.radio(key="ly_ref").set_value("retrain").run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert fig["data"][0]["y"][0] == "Original (ref)"
    at.selectbox(key="ly_split").set_value("retain").run()
    assert not at.exception


def test_embeddings_precomputed_worker_layer_and_button(store):
    _, ids = store("full")
    at = app("embeddings")
    assert len(at.get("plotly_chart")) == 1
    at.selectbox(key="em_layer").set_value("block3").run()  # embedded by the fixture's embed job
    assert len(at.get("plotly_chart")) == 1 and not at.exception
    at.selectbox(key="em_layer").set_value("block1").run()
    assert len(at.get("plotly_chart")) == 0
    at.button(key="em_compute_block1").click().run()
    assert not at.exception
    embeds = [j for j in api().list_jobs(kinds=["embed"]) if j["spec"]["layer"] == "block1"]
    assert len(embeds) == 1 and embeds[0]["spec"]["job"] == ids["compare"] and embeds[0]["state"] == "queued"
    assert "computing the UMAP of block1" in texts(at)


def test_embeddings_epoch_scrubber_on_a_single_run(store):
    _, ids = store("full")
    at = app("embeddings", state={"results_job": ids["run"], "_results_auto": False})
    assert at.select_slider(key="em_epoch_ft+ec").value == 5
    at.select_slider(key="em_epoch_ft+ec").set_value(2).run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_compare_table_filters_and_exports(store):
    store("full")
    at = app("compare")
    df = at.dataframe[0].value
    assert len(df) == len(FS.METHODS) + 1  # the comparison's methods + the single ft+ec run
    assert list(df.columns)[0] == "Method" and "Run" not in df.columns and len(df.columns) <= 14
    assert "Boundary shrink" in set(df["Method"])
    assert {b.label for b in at.get("download_button")} >= {"Table as CSV", "Figure as HTML"}
    at.multiselect(key="cmp_methods").set_value(["ec"]).run()
    assert list(at.dataframe[0].value["Method"]) == ["EC"]
    at.toggle(key="cmp_refs").set_value(True).run()
    assert len(at.dataframe[0].value) == 1 + 2  # EC + original/retrain once: both jobs share the scenario
    assert "On the front" in texts(at)
    assert len(at.get("plotly_chart")) == 4  # scatter, per-class, confusion, MIA


def test_teach_numbers_come_from_results(store):
    store("full")
    at = app("teach")
    t = texts(at)
    res = FS.make_results("compare", FS.METHODS)
    base = logic.teaching_baseline(res)
    b = logic.run_summary(res, base)
    assert base == "scrub" and "SCRUB" in t
    assert logic.pct(b["forget_acc"]) in t and logic.pct(b["retain_acc"]) in t
    assert f"**{text.md(logic.distance_text(b))}**" in t and text.md(logic.gaps_text(b["gaps"])) in t
    retrain_cka = " / ".join(logic.dec(v, 3) for v in FS.PROFILES["retrain"][4][:3])
    retrain_probe = " / ".join(logic.pct(v) for v in FS.PROFILES["retrain"][5][:3])
    assert f"**{retrain_cka}**" in t and f"**{retrain_probe}**" in t


def test_no_worker_started_and_no_torch_in_pages(store):
    home, _ = store("full")
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import dashboard.app
assert "torch" not in sys.modules, "import dashboard.app pulled in torch"
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(APP)!r}, default_timeout=60).run()
for p in {PAGES!r}:
    at.switch_page(f"views/{{p}}.py").run()
    assert not at.exception, (p, [e.value for e in at.exception])
print("TORCH", "torch" in sys.modules, "UMAP", "umap" in sys.modules)
"""
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(ROOT), capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TORCH False UMAP False" in out.stdout
    assert not (home / "worker.spawned").exists()


# -- retrain as the zero point, settings, warnings (issue 13) -------------------------------------------

def test_layers_distance_table_shows_every_row_without_an_inner_scroll(store, monkeypatch):
    """At the default height (ten rows) the table scrolled inside itself and EC's row could sit below
    the fold; its height follows its content. AppTest keeps no element height, so st.dataframe is watched."""
    import streamlit as st
    real, calls = st.dataframe, {}

    def watch(data=None, *args, **kw):
        calls[kw.get("key")] = (data, kw)
        return real(data, *args, **kw)

    monkeypatch.setattr(st, "dataframe", watch)
    store("full")
    app("layers")
    table, kw = calls["ly_distance"]
    assert len(table) > 10 and "EC" in list(table["Run"])  # more rows than the default height shows
    assert kw.get("height") == "content"


def test_layers_default_view_is_centred_on_retrain(store):
    store("full")
    at = app("layers")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    hm = fig["data"][0]
    assert hm["zmid"] == 0 and hm["zmin"] == -hm["zmax"] and hm["zmax"] < 1  # diverging, zoomed
    rows = dict(zip(hm["y"], hm["z"]))
    assert rows["Retrain (ref)"] == [0, 0, 0, 0]
    ec = [a - b for a, b in zip(FS.PROFILES["ec"][4], FS.PROFILES["retrain"][4])]
    assert rows["EC"] == [pytest.approx(v) for v in ec]
    gaps = json.loads(at.get("plotly_chart")[1].proto.spec)  # the gaps per layer, retrain ± its tolerance
    band = [t for t in gaps["data"] if t.get("name") == "Retrain ± tolerance (reference noise)"][0]
    tol = [abs(a - b) for a, b in zip(FS.RETRAIN_BAND[0], FS.PROFILES["retrain"][4])]
    assert band["y"] == [pytest.approx(-v) for v in tol] and band["fill"] == "tonexty"
    assert "another seed (8), lands 0.020 / 0.030 / 0.030 / 0.030 from the first" in texts(at)
    distance = at.dataframe[0].value
    assert distance[distance["Run"] == "EC"].iloc[0][logic.DISTANCE_LABEL] == "0.080 at block2 (−)"
    probe = json.loads(at.get("plotly_chart")[3].proto.spec)
    assert probe["data"][2]["name"] == "Retrain (0)" and probe["data"][2]["y"] == [0, 0, 0, 0]
    # the training-noise row: a reseeded original, read against retrain like every run
    noise = [a - b for a, b in zip(FS.SEED_BAND, FS.PROFILES["retrain"][4])]
    assert hm["y"][-1] == "Original, other seed (ref)" and hm["z"][-1] == [pytest.approx(v) for v in noise]
    assert "Training noise: a second original trained on the same data from another seed has CKA 0.980 / 0.960" in texts(at)


def test_teach_chart_draws_the_training_noise_line(store):
    store("full")
    at = app("teach")
    traces = [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]
    noise = next(t for t in traces if t.get("name") == "Original, other seed (training noise)")
    assert noise["y"] == [pytest.approx(v) for v in FS.SEED_BAND]
    band = next(t for t in traces if t.get("name") == "Retrain ± tolerance (reference noise)")
    assert band["y"][0] == pytest.approx(FS.PROFILES["retrain"][4][0] - 0.02)
    assert "The grey band around Retrain's line: Tolerance (reference noise): a second retrained model" in texts(at)


def test_overview_reads_against_retrain_and_warns_about_damage(store):
    store("full")
    at = app("overview")
    df = at.dataframe[0].value
    row = df[df["Run"] == "EC"].iloc[0]
    assert row[logic.DISTANCE_LABEL] == "0.080 at block2 (−)"  # 0.70 vs retrain's 0.78
    assert row[logic.GAPS_LABEL] == "block1 -0.020, block2 -0.080, block3 -0.070 | block4 -0.030"
    assert "past retrain" in row["Verdict"]
    assert "superficial" in df[df["Run"] == "SCRUB"].iloc[0]["Verdict"]
    assert df[df["Run"] == "Retrain (reference)"].iloc[0][logic.DISTANCE_LABEL] == "0 (reference)"
    assert "CKA − retrain" not in df.columns
    t = texts(at)
    assert "more than 0.10 above" not in t
    assert "(superficial): " in t and "SCRUB" in t.split("(superficial): ")[1].split(";")[0]
    assert "(distorted, not forgotten): " in t and "EC" in t.split("(distorted, not forgotten): ")[1].split(";")[0]
    warnings = [w.value for w in at.warning]
    assert any("**GA" in w and ": damaging run**" in w and "retain accuracy fell to 90.2%" in w for w in warnings), \
        warnings
    assert any("**Boundary shrink" in w and ": off target**" in w and "forget accuracy 8.0%" in w for w in warnings)
    assert not any(w.startswith("**EC") for w in warnings)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(a["text"] == "Retrain = 0" for a in fig["layout"]["annotations"])


def test_compare_names_settings_and_keeps_damaging_runs_off_the_front(store):
    store("full")
    at = app("compare")
    df = at.dataframe[0].value
    ec = df[df["Method"] == "EC"].iloc[0]
    assert ec["Settings"].startswith("w 1/1/1/1 tau 0.7")
    assert df[df["Method"] == "FT + EC"].iloc[0]["Settings"].startswith("w 1/1/1/1 tau 0.7")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    ga = next(t for t in fig["data"] if t["name"].startswith("GA"))
    assert ga["marker"]["symbol"] == ["x"] and ga["marker"]["size"] == [9]
    front = next(t for t in fig["data"] if t["name"] == "Pareto front")
    assert all(x is not None for x in front["x"])
    front_caption = next(c.value for c in at.caption if c.value.startswith("On the front"))
    assert "GA" not in front_caption and "Boundary shrink" not in front_caption
    assert any(s.startswith("EC · w 1/1/1/1") for s in at.selectbox(key="cmp_pick").options)


def test_launch_form_restored_from_job_in_url(store):
    store("full")
    job = api().submit("run", {"preset": "digits", "overrides": {
        "method": "ec", "ec": {"weights": [0.0, 2.5, 2.5, 1.0], "tau": 0.3}, "forget": {"classes": [5]}}})
    at = app("launch", query={"job": job["id"]})
    assert [s.value for s in at.slider] == [0.0, 2.5, 2.5, 1.0]
    assert at.select_slider(key="l_tau").value == 0.3
    assert at.multiselect(key="l_classes__digits").value == [5]
    assert any("w 0/2.5/2.5/1 tau 0.3" in h.value for h in at.subheader)
    assert f"job {job['id']} (from the address bar)" in texts(at)
    df = at.dataframe[0].value
    assert any("w 0/2.5/2.5/1 tau 0.3" in w for w in df["What"])


def test_teach_prefers_the_teach_preset_and_honours_the_sidebar(store):
    from engine import store as engine_store
    home, ids = store("full")
    job = api().submit("compare", {"preset": "digits", "methods": ["ec", "scrub"]})
    res = FS.make_results("compare", ["scrub", "ec"])
    res["scenario"]["preset"] = "teach"
    folder = engine_store.run_dir(job["id"], create=True)
    engine_store.atomic_write_json(folder / "results.json", res)
    FS._set_job(job["id"], "done", FS.time.time() - 2000, FS.time.time() - 1990, FS.time.time() - 1900)
    at = app("teach")
    t = texts(at)
    assert f"job `{job['id']}`" in t and "preset **teach**" in t and "class **3**" in t and "seed **0**" in t
    assert "Gabor-like patch" in t
    # the gap the walk is about: the baseline's worst inner layer above retrain's, from this fixture's numbers
    rows = {r["name"]: r for r in logic.headline_rows(res)}
    base = logic.teaching_baseline(res)
    assert f"Distance to retrain (the largest gap in forget CKA over block1, block2, block3; 0 = like retrain" in t
    assert f"{text.md(logic.distance_text(rows[base]))}, EC {text.md(logic.distance_text(rows['ec']))}." in t
    at = app("teach", state={"results_job": ids["compare"], "_results_auto": False})
    t = texts(at)
    assert f"job `{ids['compare']}`" in t and "picked in the sidebar" in t and "Gabor-like" not in t


def test_computing_comparison_shows_checklist_and_partial_rows(store):
    from engine import store as engine_store
    home, ids = store("computing")
    at = app("overview")
    t = texts(at)
    assert "Train the original model" in t and "**Unlearn and evaluate each method** — 0/10 done" in t
    assert "About **" in t  # an estimate for digits
    part = FS.make_results("compare", ["ft"])
    part.update(partial=True, pending=[m for m in FS.METHODS if m != "ft"])
    engine_store.atomic_write_json(engine_store.run_dir(ids["compare"], create=True) / "partial.json", part)
    at = app("overview")
    t = texts(at)
    assert "Partial results" in t and "1 of 10 methods so far" in t and "1/10 done (ft); next: ga" in t
    df = at.dataframe[0].value
    assert list(df["Run"]) == ["Original (reference)", "Retrain (reference)", "FT"]
    assert df.iloc[2]["Forget acc"] == pytest.approx(100 * FS.PROFILES["ft"][0])


def test_launch_zero_epochs_is_refused_with_a_message(store):
    store("full")
    at = app("launch")
    n = _n_jobs()
    at.number_input(key="l_epochs__digits__ec").set_value(0).run()
    at.button(key="l_submit").click().run()
    errors = [e.value for e in at.error]
    assert any("methods.ec.epochs" in e and "(Set by Unlearning epochs.)" in e and "Nothing was queued" in e
               for e in errors), errors
    assert _n_jobs() == n


def test_sweeps_page_offers_a_small_sweep(store):
    store("empty")
    at = app("sweep")
    assert "No sweep yet. Start one below" in texts(at)
    at.number_input(key="sw_new_trials").set_value(6).run()
    at.button(key="sw_start").click().run()
    assert not at.exception
    assert "`python -m engine sweep --preset digits --trials 6` in a terminal" in texts(at)  # autostart off here
    from dashboard import data as D
    with pytest.raises(ValueError, match="at least 1"):
        D.sweep_command("digits", 0)


def test_first_start_defaults_show_teach_until_the_user_runs_a_comparison(monkeypatch):
    """While the only comparisons are the first start's (teach, then digits), the pages show teach,
    where the effect is visible; the user's own comparison then takes over as the newest."""
    from dashboard import widgets
    teach, digits, mine = ({"id": i, "kind": "compare"} for i in ("j-teach", "j-digits", "j-mine"))
    monkeypatch.setattr(widgets.data, "first_start_jobs", lambda: ["j-teach", "j-digits"])
    assert widgets.default_results_job([digits, teach])["id"] == "j-teach"  # newest first
    assert widgets.default_results_job([mine, digits, teach])["id"] == "j-mine"
    assert widgets.default_results_job([{"id": "j-run", "kind": "run"}])["id"] == "j-run"


# -- per-scenario calibration (issue 9) ----------------------------------------------------------------

NOT_REACHED = "did not reach logit-level forgetting"


def test_overview_marks_the_run_whose_calibration_did_not_reach_forgetting(store):
    store("full")
    at = app("overview")
    df = at.dataframe[0].value
    assert NOT_REACHED in df[df["Run"] == "Boundary shrink"].iloc[0]["Verdict"]
    assert not any(NOT_REACHED in v for v in df[df["Run"] != "Boundary shrink"]["Verdict"])
    warning = next(w.value for w in at.warning if w.value.startswith("**Boundary shrink"))
    assert f"it {NOT_REACHED}: calibration kept the closest setting (lr 0.01, 5 ep)" in warning
    note = next(c.value for c in at.caption if c.value.startswith("**Calibration**"))
    assert "10 of 10 methods ran a setting calibrated on this scenario" in note
    assert f"**{NOT_REACHED.capitalize()}**: Boundary shrink (" in note


def _grid(at):
    """The calibration grid table (AppTest does not expose a dataframe's key)."""
    return next(d.value for d in at.dataframe if list(d.value.columns)[:1] == ["Kept"])


def test_compare_shows_the_setting_the_mark_and_the_grid(store):
    _, ids = store("full")
    at = app("compare")
    df = at.dataframe[0].value
    assert list(df.columns)[:3] == ["Method", "Settings", "Calibration"]
    ec = df[df["Method"] == "EC"].iloc[0]
    assert ec["Calibration"] == "calibrated: lr 0.01, 5 ep (recipe lr 0.03, 10 ep)"
    assert df[df["Method"] == "FT + EC"].iloc[0]["Calibration"] == ""  # the single run predates calibration
    assert NOT_REACHED in df[df["Method"] == "Boundary shrink"].iloc[0]["Verdict"]
    front_caption = next(c.value for c in at.caption if c.value.startswith("On the front"))
    assert "Boundary shrink" not in front_caption
    pick = at.selectbox(key="cmp_pick")
    bs = next(o for o in pick.options if o.startswith("Boundary shrink"))
    assert NOT_REACHED in bs and not any(NOT_REACHED in o for o in pick.options if o != bs)
    grid = _grid(at)  # EC is picked by default
    assert len(grid) == 9 and list(grid["Kept"]).count("✓") == 1
    assert list(grid.columns)[:6] == ["Kept", "lr", "Epochs", "Forget acc", "Retain acc", "Qualifies"]
    pick.set_value(f"{ids['compare']}/boundary_shrink").run()  # options are labels; the value is job/name
    assert any(w.value.startswith(f"**Boundary shrink** {NOT_REACHED}") for w in at.warning)
    grid = _grid(at)
    assert not grid["Qualifies"].any()


def test_teach_names_the_runs_that_did_not_reach_forgetting(store):
    store("full")
    t = texts(app("teach"))
    assert f"**{NOT_REACHED.capitalize()}**: Boundary shrink" in t and "SCRUB" in t


def test_launch_calibration_select_sets_the_config_field(store):
    store("full")
    at = app("launch")
    sel = at.selectbox(key="l_calibrate")
    assert sel.value == "auto" and list(sel.options)[0] == "auto (calibrated if known)"
    before = {j["id"] for j in api().list_jobs()}
    sel.set_value("off").run()
    at.button(key="l_submit").click().run()
    assert not at.error, [e.value for e in at.error]
    job = [j for j in api().list_jobs() if j["id"] not in before][0]
    assert job["spec"]["config"]["calibrate"] == "off"
    at = app("launch", state={"prefill": {"preset": "digits", "overrides": {"method": "ft", "calibrate": "on"}}})
    assert at.selectbox(key="l_calibrate").value == "on"
    assert "`calibrate=" not in texts(at)  # the form's own option, not an extra kept from the hand-off


def test_job_page_says_whether_the_run_used_a_calibrated_setting(store):
    _, ids = store("full")
    at = app("launch", query={"job": ids["compare"]})
    df = at.dataframe[0].value
    assert df[df["Run"] == "EC"].iloc[0]["Calibration"] == "calibrated: lr 0.01, 5 ep (recipe lr 0.03, 10 ep)"
    assert NOT_REACHED in df[df["Run"] == "Boundary shrink"].iloc[0]["Verdict"]
    at = app("launch", query={"job": ids["run"]})
    assert "**FT + EC**: Not calibrated: these results predate calibration" in texts(at)


def _ec_run_job(weights, gaps, finished):
    """A finished single EC run of the fixture's scenario (TEST FIXTURE numbers): its forget CKA is retrain's
    plus `gaps` per point; `weights` None = the default settings."""
    from engine import store as engine_store
    over = {"method": "ec"} if weights is None else {"method": "ec", "ec": {"weights": weights}}
    job = api().submit("run", {"preset": "digits", "overrides": over})
    res = FS.make_results("run", ["ec"])
    run = res["runs"]["ec"]
    run["params"] = {} if weights is None else {"ec": {"weights": weights, "tau": 0.7, "lambda_cu": 1.0,
                                                       "lambda_ce": 1.0}}
    run["cka_vs_original"]["forget"] = {p: r + g for p, r, g in zip(FS.LAYERS, FS.PROFILES["retrain"][4], gaps)}
    engine_store.atomic_write_json(engine_store.run_dir(job["id"], create=True) / "results.json", res)
    FS._set_job(job["id"], "done", finished - 10, finished - 9, finished)
    return job["id"]


def test_launch_strip_reads_a_run_layer_by_layer_against_the_default_ec(store):
    store("full")
    now = FS.time.time()
    default = _ec_run_job(None, [0.04, -0.02, 0.03, 0.01], now - 100)
    tuned = _ec_run_job([0.0, 2.0, 2.0, 1.0], [0.01, -0.05, 0.10, 0.0], now - 50)
    at = app("launch", query={"job": tuned})
    strip = at.dataframe[1].value
    rows = {r[""]: r for r in strip.to_dict("records")}
    assert rows["This run: gap to retrain"]["block2"] == "-0.050"
    assert rows["Default EC: gap to retrain"]["block2"] == "-0.020"
    assert [rows["This run vs Default EC"][c] for c in ("block1", "block2", "block3", "block4 (last)")] == \
        ["closer", "further", "further", "closer"]
    assert [rows["This run: within tolerance"][c] for c in ("block1", "block2", "block3", "block4 (last)")] == \
        ["yes (±0.020)", "no (±0.020)", "no (±0.020)", "yes (±0.020)"]
    t = texts(at)
    assert f"the default EC is job `{default}`" in t and "assumed 0.02 per layer, no second retrain measured" in t
    assert "on average" not in t
    history = at.dataframe[2].value
    assert list(history[logic.DISTANCE_LABEL])[:2] == ["0.100 at block3 (+)", "0.040 at block1 (+)"]


# -- issue 22: a dashboard a class and a tuner can trust ----------------------------------------------

def test_sidebar_picker_opens_each_run_of_a_sweep(store):
    """Runs of one scenario finished in the same minute (a sweep's trials) used to share one label, and
    Streamlit finds a picked option by its label: every pick opened the first of them."""
    store("full")
    now = FS.time.time()
    ids = [_ec_run_job(w, [0.01] * 4, now) for w in ([1.0, 2.0, 2.0, 1.0], [0.0, 3.0, 3.0, 1.0])]
    at = app("overview")
    labels = list(at.sidebar.selectbox(key="results_job").options)
    assert len(set(labels)) == len(labels), labels
    assert any("w 0/3/3/1 tau 0.7" in lab for lab in labels), labels
    for job_id in ids + ids[::-1]:
        at.sidebar.selectbox(key="results_job").set_value(job_id).run()
        assert at.sidebar.selectbox(key="results_job").value == job_id
        assert any(job_id in c.value for c in at.sidebar.caption)


def test_names_carry_the_seed_and_short_numbers():
    from dashboard import runinfo
    from engine.config import make_config
    cfg = make_config("digits", {"method": "ec", "seed": 1, "ec": {"tau": 0.734521}}).model_dump()
    assert runinfo.config_settings(cfg) == "w 1/1/1/1 tau 0.735 seed 1"
    assert logic.distinct_labels(["a", "a", "a", "b"], ["x", "y", "y", ""]) == ["a · x", "a · y #1", "a · y #2", "b"]


def test_queued_run_progress_is_right_below_the_form(store):
    """The job panel used to sit below the Audit form, about 1,800 px under the Queue button."""
    store("full")
    at = app("launch")
    at.button(key="l_submit").click().run()
    assert not at.error, [e.value for e in at.error]
    heads = [h.value for h in at.subheader]
    job = next(i for i, h in enumerate(heads) if h.startswith("Job `"))
    assert heads.index("New run") < job < heads.index("Audit") < heads.index("Recent jobs"), heads


def test_compare_front_holds_one_scenario(store):
    """Digits and teach runs used to share one front, one legend and one Pareto computation."""
    _, ids = store("full")
    from engine import store as engine_store
    job = api().submit("compare", {"preset": "teach", "methods": ["ec", "neggrad_plus"]})
    res = FS.make_results("compare", ["ec", "neggrad_plus"])
    res["scenario"]["dataset"], res["config"]["preset"] = "teach", "teach"
    engine_store.atomic_write_json(engine_store.run_dir(job["id"], create=True) / "results.json", res)
    now = FS.time.time()
    FS._set_job(job["id"], "done", now - 10, now - 9, now)
    at = app("compare")
    pick = at.selectbox(key="cmp_scenario")  # the scenario the pages show (the newest comparison) first
    assert [o.split(" · ")[0] for o in pick.options] == ["teach", "digits"] and '"teach"' in pick.value
    front = next(c.value for c in at.caption if c.value.startswith("On the front"))
    assert f"`{job['id']}`" in front and f"`{ids['compare']}`" not in front
    at.selectbox(key="cmp_scenario").select_index(1).run()
    front = next(c.value for c in at.caption if c.value.startswith("On the front"))
    assert f"`{job['id']}`" not in front and f"`{ids['compare']}`" in front


def test_teach_lesson_reads_one_layer_against_retrain_and_ends_with_what_was_measured(store):
    from engine import store as engine_store
    store("full")
    job = api().submit("compare", {"preset": "teach", "methods": ["ec", "scrub"]})
    res = FS.make_results("compare", FS.METHODS)
    res["scenario"]["preset"] = "teach"
    engine_store.atomic_write_json(engine_store.run_dir(job["id"], create=True) / "results.json", res)
    now = FS.time.time()
    FS._set_job(job["id"], "done", now - 10, now - 9, now)
    at = app("teach")
    t = texts(at)
    # the data: a grid of examples per class, the forget class framed and named
    grid = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"image"' in c.proto.spec)
    assert grid["data"][0]["type"] == "image" and len(grid["layout"]["shapes"]) == 1
    assert "(forget)" in grid["layout"]["yaxis"]["ticktext"][FS.FORGET]
    # step 2: CKA and probe at one layer, the baseline's worst (SCRUB: block3), each against retrain
    assert "At **block3**, its worst inner layer, SCRUB's features" in t
    assert f"A linear probe on the same layer still recovers **{logic.pct(0.92)}**" in t
    assert "(gap **+57.0 pts**, tolerance ±4.0 pts: beyond it)" in t
    # the noise line explained where it is drawn
    assert "a method's line near it has changed no more than a new seed would" in t
    # the ending: what was measured, where EC went past retrain, what the tuning pages are for, a takeaway
    assert "**Where EC went past retrain**: block2 (-0.080, tolerance ±0.030), block3 (-0.070, tolerance ±0.030)" in t
    assert "*Sweeps* searches the layer weights" in t and "**Takeaway**" in t


def test_embeddings_show_retrain_beside_the_original_and_the_unlearned_model(store):
    store("full")
    at = app("embeddings")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [a["text"] for a in spec["layout"]["annotations"]][:3] == ["Original", "EC", "Retrain (the target)"]
    at.selectbox(key="em_run").set_value("retrain").run()  # retrain itself: not twice
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [a["text"] for a in spec["layout"]["annotations"]][:2] == ["Original", "Retrain (reference)"]
    assert "Retrain (the target)" not in [a["text"] for a in spec["layout"]["annotations"]]


def test_job_page_loss_chart_panels_and_a_history_without_accuracy(store):
    """The total loss's right-hand axis ran into the Accuracy panel; a run with losses only (a model kept
    from calibration) drew an empty Accuracy panel."""
    from engine import store as engine_store
    _, ids = store("full")
    at = app("launch", query={"job": ids["run"]})
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"Loss terms"' in c.proto.spec]
    assert [a["text"] for a in curves[0]["layout"]["annotations"]] == ["Loss terms", "Total loss", "Accuracy"]
    assert not any(ax.get("side") == "right" for k, ax in curves[0]["layout"].items() if k.startswith("yaxis"))
    path = engine_store.run_dir(ids["run"]) / "results.json"
    res = json.loads(path.read_text())
    for h in res["runs"]["ft+ec"]["history"]:
        h.pop("forget_acc"), h.pop("retain_acc")
    other = _ec_run_job(None, [0.0] * 4, FS.time.time())
    engine_store.atomic_write_json(engine_store.run_dir(other) / "results.json", res)
    at = app("launch", query={"job": other})
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"Loss terms"' in c.proto.spec]
    assert "Accuracy" not in [a["text"] for a in curves[0]["layout"]["annotations"]]
    assert "Forget and retain accuracy were not measured by epoch in this run" in texts(at)


def test_launch_and_sweeps_default_to_the_scenario_on_screen(store):
    from engine import store as engine_store
    store("full")
    at = app("launch")
    assert at.selectbox(key="l_preset").value == "digits"  # the pages show the digits comparison
    job = api().submit("compare", {"preset": "teach", "methods": ["ec", "scrub"]})
    res = FS.make_results("compare", ["ec", "scrub"])
    res["config"]["preset"] = "teach"
    engine_store.atomic_write_json(engine_store.run_dir(job["id"], create=True) / "results.json", res)
    now = FS.time.time()
    FS._set_job(job["id"], "done", now - 10, now - 9, now)
    from dashboard import data as D
    D.invalidate_jobs()  # the job list is cached for a second
    at = app("launch")
    assert at.selectbox(key="l_preset").value == "teach"
    assert at.selectbox(key="a_preset").value == "teach"  # the Audit form below it too, not the first choice
    assert app("sweep").selectbox(key="sw_new_preset").value == "teach"


def test_audit_form_follows_the_launch_preset_until_picked_itself(store):
    store("full")
    at = app("launch")
    at.selectbox(key="l_preset").set_value("teach").run()
    assert at.selectbox(key="a_preset").value == "teach"
    at.selectbox(key="a_preset").set_value("mnist")
    at.button(key="a_submit").click().run()  # a form sends its values on submit (refused here: no model given)
    at.selectbox(key="l_preset").set_value("digits").run()
    assert at.selectbox(key="l_preset").value == "digits" and at.selectbox(key="a_preset").value == "mnist"


def test_teach_queues_the_same_comparison_forgetting_another_class(store):
    store("full")
    at = app("teach")
    before = {j["id"] for j in api().list_jobs()}
    at.selectbox(key="teach_other").set_value(5).run()
    at.button(key="teach_other_queue").click().run()
    assert not at.error, [e.value for e in at.error]
    new = [j for j in api().list_jobs() if j["id"] not in before]
    assert len(new) == 1 and new[0]["kind"] == "compare" and new[0]["state"] == "queued"
    cfg, shown = new[0]["spec"]["config"], FS.make_results("compare", FS.METHODS)["config"]
    assert cfg["forget"]["classes"] == [5] and cfg["preset"] == "digits" and cfg["seed"] == 0
    assert cfg["model"] == shown["model"] and cfg["train"] == shown["train"]  # the same scenario otherwise
    assert f"Queued job `{new[0]['id']}`" in texts(at)
    assert "3" not in at.selectbox(key="teach_other").options  # the class already forgotten is not offered
