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
from tests import fixtures_store as FS

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
ALL_PAGES = ["overview", "launch", "layers", "embeddings", "compare", "sweep", "teach"]
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
