"""Issue 11 (items 3, 5, 7, 8): damaged results on every page and in `show`, invalid values refused
before anything is queued, user strings shown as plain text, and the smaller store/worker defects.

Page tests run the real pages under AppTest against a fixture store (tests/fixtures_store.py) whose
results files are then damaged on disk; CLI tests go through engine.cli.main in this process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import api, jobs, results, store
from engine.cli import build_parser
from engine.cli import main as cli_main
from engine.config import ConfigError
from dashboard import app as dashboard_app
from tests import fixtures_store as FS

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
ALL_PAGES = [Path(f).stem for f, _, _ in dashboard_app.PAGES]  # every page the app's navigation lists
DAMAGED = "This run's results are damaged: rerun it"


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("full")
    old = os.environ.get("ECLAB_HOME")
    os.environ["ECLAB_HOME"] = str(home)
    try:
        ids = FS.build_store(home, "full")
    finally:
        os.environ.pop("ECLAB_HOME", None) if old is None else os.environ.__setitem__("ECLAB_HOME", old)
    return home, ids


@pytest.fixture
def full(built, tmp_path, monkeypatch):
    """A private copy of the full fixture store as ECLAB_HOME: (home, ids)."""
    src, ids = built
    home = tmp_path / "home"
    shutil.copytree(src, home)
    monkeypatch.setenv("ECLAB_HOME", str(home))
    monkeypatch.setenv("ECLAB_NO_AUTOSTART", "1")
    return home, ids


def page(name: str, query=None, state=None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if query:
        at.query_params.update(query)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    at.switch_page(f"views/{name}.py")
    at.run()
    assert not at.exception, (name, [e.value for e in at.exception])
    return at


def errors(at) -> str:
    return "\n".join(str(e.value) for e in at.error)


def texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


# -- item 3: damaged results.json -----------------------------------------------------------------

WRONG_TYPES = {
    "bad json": "{not json",
    "metric is text": lambda r: r["runs"]["ec"]["metrics"].__setitem__("forget_acc", "high"),
    "layers is text": lambda r: r.__setitem__("layers", "block1"),
    "runs is a list": lambda r: r.__setitem__("runs", [1, 2]),
    "cka is a number": lambda r: r["runs"]["ft"].__setitem__("cka_vs_original", 0.5),
    "scenario is text": lambda r: r.__setitem__("scenario", "digits"),
    "history rows are text": lambda r: r["runs"]["ec"].__setitem__("history", ["epoch 1"]),
}


def damage(home: Path, job_id: str, how) -> None:
    path = home / "runs" / job_id / "results.json"
    if isinstance(how, str):
        path.write_text(how)
        return
    res = json.loads(path.read_text())
    how(res)
    path.write_text(json.dumps(res))


@pytest.mark.parametrize("how", list(WRONG_TYPES))
def test_damaged_results_give_a_card_on_every_page(full, how):
    home, ids = full
    damage(home, ids["compare"], WRONG_TYPES[how])
    for name in ALL_PAGES:  # page() asserts no exception
        at = page(name, query={"job": ids["compare"]} if name == "launch" else None)
        if name in ("overview", "layers", "embeddings", "compare", "teach", "launch"):
            assert DAMAGED in errors(at) and ids["compare"] in errors(at), (name, errors(at))
    # the other runs still display: the single run in the Compare table and on the Overview
    at = page("compare")
    assert "FT + EC" in set(at.dataframe[0].value["Method"])
    at = page("overview", state={"results_job": ids["run"], "_results_auto": False})
    assert DAMAGED not in errors(at) and len(at.dataframe[0].value) == 3


def test_results_schema_names_the_field_and_keeps_valid_files():
    good = FS.make_results("compare", FS.METHODS)
    assert results.check(good) is good and results.problem(good) is None
    assert results.problem({"kind": "run", "runs": {}}) is None  # minimal files stay readable
    bad = json.loads(json.dumps(good))
    bad["runs"]["ec"]["metrics"]["forget_acc"] = "0.5"  # no silent coercion
    assert results.problem(bad).startswith("runs.ec.metrics.forget_acc")
    with pytest.raises(results.ResultsError, match=r"results.json is damaged \(layers"):
        results.check({**good, "layers": "block1"})
    assert issubclass(results.ResultsError, store.CheckpointError)


def test_show_reports_damaged_results_and_json_is_valid(full, capsys):
    home, ids = full
    damage(home, ids["compare"], WRONG_TYPES["metric is text"])
    assert cli_main(["show", ids["compare"]]) == 0
    out = capsys.readouterr()
    assert "damaged" in out.err and "runs.ec.metrics.forget_acc" in out.err and "Traceback" not in out.err
    assert cli_main(["show", ids["compare"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["headline"] is None


# -- item 8: show --json NaN ------------------------------------------------------------------------

def _strict_json(text: str):
    def no_constants(c):
        raise AssertionError(f"not valid JSON: {c}")
    return json.loads(text, parse_constant=no_constants)


def test_show_json_prints_null_for_nan(full, capsys):
    home, ids = full
    damage(home, ids["run"], lambda r: r["runs"]["ft+ec"]["metrics"].__setitem__("mia_efficacy", float("nan")))
    assert cli_main(["show", ids["run"], "--json"]) == 0
    out = _strict_json(capsys.readouterr().out)
    row = next(r for r in out["headline"] if r["run"] == "ft+ec")
    assert row["mia_efficacy"] is None and row["forget_acc"] == FS.PROFILES["ft+ec"][0]
    assert cli_main(["jobs", "--json"]) == 0
    _strict_json(capsys.readouterr().out)


# -- item 5: invalid values refused before anything is queued ---------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    return store.home()  # an empty run store (created by the store itself)


@pytest.mark.parametrize("args, option", [
    (["--set", "ec.weights=1,NaN,1,1"], "ec.weights"),
    (["--set", "ec.weights=1,Infinity,1,1"], "ec.weights"),
    (["--method", "cu", "--set", "methods.cu.lambda_cu=Infinity"], "methods.cu.lambda_cu"),
    (["--method", "cu", "--set", "methods.cu.lambda_ce=1e9"], "methods.cu.lambda_ce"),
    (["--method", "scrub", "--set", "methods.scrub.gamma=Infinity"], "methods.scrub.gamma"),
    (["--method", "scrub", "--set", "methods.scrub.alpha=NaN"], "methods.scrub.alpha"),
    (["--forget-random", "0.0001"], "forget.random"),  # 0 of digits' 1347 training samples
    (["--forget-random", "0.9999"], "forget.random"),  # all of them
    (["--forget-classes", ""], "forget.classes"),
    (["--forget-classes", "a"], "forget.classes"),
    (["--kind", "compare", "--methods", "retrain"], "methods"),
])
def test_submit_refuses_with_the_option_named(home, capsys, args, option):
    assert cli_main(["submit", *args]) == 2
    err = capsys.readouterr().err
    assert f"error: invalid option {option}" in err and "Traceback" not in err, err
    assert api.list_jobs() == []


@pytest.mark.parametrize("args, option, words", [
    (["--forget-classes", ""], "forget.classes", "is empty"),  # it used to run class 3 in silence
    (["--forget-classes", "a"], "forget.classes", "class ids separated by commas"),
    (["--forget-random", "0.0001"], "forget.random", "the forget set is empty"),
    (["--methods", "retrain"], "methods", "only retrain"),
    (["--set", "ec.weights=NaN,1,1,1"], "ec.weights", "finite"),
])
def test_compare_refuses_before_any_work(home, tmp_path, capsys, args, option, words):
    out = tmp_path / "out"
    assert cli_main(["compare", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: invalid option {option}" in err and words in err, err
    assert not out.exists() and not (home / "cache").exists()


def test_forget_random_check_uses_the_real_split_size():
    from engine.data.splits import known_train_size, make_splits
    from sklearn.datasets import load_digits
    labels = load_digits().target
    for seed, tf in ((0, 0.25), (3, 0.5)):
        n = known_train_size("digits", tf, seed)
        assert n == len(make_splits(labels, None, 10, [3], None, seed, tf).train_idx)
    assert known_train_size("cifar10", 0.25, 0) == 50000 and known_train_size("imagefolder", 0.25, 0) is None
    from engine.runner import prepare
    prepare("run", {"overrides": {"forget": {"random": 1 / 1347}}})  # one sample: allowed
    with pytest.raises(ConfigError, match="at least 0.000742"):
        prepare("run", {"overrides": {"forget": {"random": 0.3 / 1347}}})


# -- item 7: user-controlled strings are plain text ----------------------------------------------------

CRAFTED = "[x](http://evil) <b>x</b>"
_LIVE = [re.compile(p) for p in (r"\]\(", r"<[A-Za-z/!]", r"https?://", r"www\.", r":[A-Za-z]+\[")]


def live_markup(source: str) -> list[str]:
    """Markdown constructs that would render as links or HTML in the crafted value's part of
    `source` (from 12 characters before its "evil"; the page's own markup before it, such as
    ":red[failed]", is the page's). Code spans and backslash-escaped characters show as themselves."""
    s = re.sub(r"(`+).+?\1", "", source)
    s = re.sub(r"\\.", "", s)
    at = s.find("evil")
    s = s[max(0, at - 12):] if at >= 0 else ""
    return [p.pattern for p in _LIVE if p.search(s)]


def markdown_sources(at) -> list[str]:
    out = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title", "toast"):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [str(m.label) for m in at.metric]
    return out


def test_live_markup_detector_sees_the_crafted_value():
    assert live_markup(f"No job {CRAFTED}") and live_markup("see http://evil")
    assert not live_markup("No job `[x](http://evil)`") and not live_markup(r"\[x\]\(y\)")


def test_crafted_strings_render_as_plain_text_everywhere(full):
    home, ids = full
    for job_id in (ids["compare"], ids["run"]):  # a crafted run, layer, class and data set name
        path = home / "runs" / job_id / "results.json"
        raw = path.read_text()
        for name in ('"scrub"', '"ft+ec"', '"block1"', '"5"', '"digits"'):
            raw = raw.replace(name, json.dumps(f"{name.strip(chr(34))} {CRAFTED}"))
        path.write_text(raw)
    with jobs._db() as con, jobs.transaction(con):  # an error message that quotes a user's value
        con.execute("UPDATE jobs SET error = ? WHERE id = ?", (f"DataError: no folder {CRAFTED}", ids["failed"]))
    runs = [(name, None) for name in ALL_PAGES] + [("launch", {"job": CRAFTED}), ("launch", {"job": ids["run"]})]
    seen = 0
    for name, query in runs:
        at = page(name, query=query)
        for src in markdown_sources(at):
            if "evil" in src:
                seen += 1
                assert not live_markup(src), (name, query, src)
        for h in at.get("html"):
            assert "<b>x</b>" not in h.value and "<a" not in h.value, h.value  # HTML never links bare text
    assert seen >= 10  # the crafted names did reach the pages
    at = page("teach")
    assert any("scrub [x](http://evil) &lt;b&gt;x&lt;/b&gt; looks forgotten" in h.value for h in at.get("html"))
    at = page("launch", query={"job": CRAFTED})
    assert "No job `[x](http://evil) <b>x</b>` in this store" in errors(at) + "\n".join(w.value for w in at.warning)


def test_md_keeps_prose_and_neutralises_markup():
    from dashboard.text import WJ, code, md
    assert md(FS.FAILED_ERROR) == FS.FAILED_ERROR  # ordinary messages read unchanged
    assert md("forget.classes [12] do not exist: digits has classes 0..9") == \
        "forget.classes [12] do not exist: digits has classes 0..9"
    assert md("[x](http://evil)") == f"[x]\\(http:{WJ}//evil)"
    assert md("<b>x</b> **y** $z$") == r"\<b>x\</b> \*\*y\*\* \$z\$"
    assert md(":red[x] :material/home: www.a.b c@d.e") == \
        f":{WJ}red[x] :{WJ}material/home: www{WJ}.a.b c@{WJ}d.e"
    assert md("1. one\n# two") == r"1\. one \# two" and md("- a") == r"\- a"
    assert code("a`b") == "`` a`b ``" and code("j-1") == "`j-1`"


# -- item 8: the smaller defects -------------------------------------------------------------------------

def test_ids_reject_a_trailing_newline():
    from engine.sweep import check_study_name
    assert store.check_id("j-1") == "j-1"
    for bad in ("j-1\n", "j-1\n\n", "\nj-1"):
        with pytest.raises(ValueError):
            store.check_id(bad)
        with pytest.raises(ValueError):
            check_study_name(bad)


def test_sweep_space_that_is_a_folder_is_a_clear_error(home, tmp_path, capsys):
    folder = tmp_path / "space"
    folder.mkdir()
    assert cli_main(["sweep", "--trials", "0", "--no-reference", "--space", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "error: invalid option space" in err and "is a folder" in err and "Traceback" not in err


def test_compare_and_submit_share_one_set_parser():
    sets = ["--set", "ec.tau=0.5", "ec.weights=1,0.5,0.5,1", "--set", "seed=3", "--forget-classes", "3,5"]
    c = build_parser().parse_args(["compare", "--out", "x", *sets])
    s = build_parser().parse_args(["submit", *sets])
    from engine.compare import scenario_overrides
    assert scenario_overrides(c) == jobs.build_spec(s)["overrides"] == {
        "ec": {"tau": 0.5, "weights": [1, 0.5, 0.5, 1]}, "seed": 3, "forget": {"classes": [3, 5]}}


def test_split_file_uses_a_unique_temp_name_and_fsync(tmp_path, monkeypatch):
    from engine.data.splits import load_splits, make_splits, save_splits
    sp = make_splits(__import__("numpy").arange(40) % 4, None, 4, [1], None, 0)
    target = tmp_path / "splits.npz"
    (tmp_path / "splits.npz.tmp").mkdir()  # the old fixed temp name, taken (another writer's leftovers)
    synced = []
    real = os.fsync
    monkeypatch.setattr(store.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    save_splits(sp, target)
    assert synced and load_splits(target).forget_idx.tolist() == sp.forget_idx.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["splits.npz", "splits.npz.tmp"]


def test_worker_start_removes_stale_tmp_files_only(home, capsys):
    folder = store.cache_dir("orig-test")
    old, fresh, real = folder / ".model.safetensors.abc.tmp", folder / ".meta.json.def.tmp", folder / "model.bin"
    for p in (old, fresh, real):
        p.write_bytes(b"x")
    for p in (old, real):  # two hours old: the writer of `old` is long gone
        os.utime(p, (os.path.getmtime(p) - 7200,) * 2)
    jobs.Worker(handle_signals=False, warm=False).run(once=True)  # the worker's own start-up, in this process
    assert not old.exists() and fresh.exists() and real.exists()
    assert f"removed a stale temporary file {old}" in capsys.readouterr().out


_BUILD = """
import sys, time
from pathlib import Path
from engine import runner
from engine.config import make_config, original_key
from engine.events import JobContext
cfg = make_config("digits", {"model": {"width": 8}, "train": {"epochs": 4}, "device": "cpu"})
sc = runner.load_scenario(cfg)
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
_, hit = runner.cached_model(sc, original_key(cfg), "original", sc.idx("train"), JobContext())
print("HIT", hit)
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_never_train_the_same_base_model_at_once(home, tmp_path):
    import subprocess
    import sys
    import time
    from jobs_helpers import worker_env
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD, str(tmp_path / f"ready{i}"), str(go)], cwd=str(ROOT),
                              env=worker_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        end = time.monotonic() + 600  # torch imports take minutes on a loaded machine
        while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
            assert time.monotonic() < end and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.05)
        go.touch()  # both start building at the same moment
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), outs
    hits = sorted(o.strip().splitlines()[-1] for o, _ in outs)
    assert hits == ["HIT False", "HIT True"], outs  # one trained, the other waited and loaded its weights
