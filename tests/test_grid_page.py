"""The Grid page's pure helpers (dashboard/grid_figures.py) on grid tables shaped as engine/grid.py's
grid_table, and the page itself under AppTest on a fixture store (engine.grid's store side replaced by a
recording stand-in, so these tests run without a worker; the real thing: tests/test_browser_grid.py).

TEST FIXTURE numbers: the results come from tests/fixtures_store.py (synthetic, not EC Lab results).
"""
from __future__ import annotations

import copy
import html
import re
import shutil

import pytest

from dashboard import facts, grid_figures as GF, logic, verdict
from tests import fixtures_store as FS

NAMES = ["original", "retrain"] + FS.METHODS


def _results(seed=0):
    return FS.make_results("compare", NAMES, seed=seed)


def _cell(scenario, job_id, res=None, state="done", progress=1.0, error=None):
    rows = {n: facts.run_summary(res, n) for n in facts.run_names(res)} if res is not None else {}
    return {"scenario": scenario, "job_id": job_id, "state": state, "progress": progress, "error": error,
            "rows": rows, "flags": {}}


def _table(cells, methods=None, state="done"):
    per = {}
    for c in cells:
        if c["state"] != "done":
            continue
        rows = GF.engine_rows(c)
        for n, r in rows.items():
            if r["role"] != "method":
                continue
            p = per.setdefault(n, {"forgets": 0, "keeps_retain": 0, "like_retrain": 0, "of": 0})
            p["of"] += 1
            p["forgets"] += "forget off retrain" not in r["flags"]
            p["keeps_retain"] += "retain damaged" not in r["flags"]
            p["like_retrain"] += bool(r["within"])
    ec = {c["scenario"]: {k: c["rows"]["ec"][k] for k in ("distance", "worst_layer", "worst_gap", "within")}
          for c in cells if c["state"] == "done"}
    done = sum(c["state"] == "done" for c in cells)
    return {"id": "g-test", "created": 1_764_868_800.0, "preset": "digits", "scenarios": [c["scenario"] for c in cells],
            "methods": methods, "overrides": {}, "state": state, "progress": done / max(1, len(cells)),
            "cells": cells, "per_method": per, "ec": ec}


@pytest.fixture(scope="module")
def res():
    return _results()


# -- pure helpers -------------------------------------------------------------------------------------

def test_scenario_text_reads_the_bench_claims_syntax():
    assert GF.scenario_text("3:0") == "forget class 3 · seed 0"
    assert GF.scenario_text("3+5:1") == "forget classes 3, 5 · seed 1"
    assert GF.scenario_text("r0.1:2") == "forget a random 10% · seed 2"


def test_engine_rows_give_the_verdicts_of_every_other_page(res):
    """From the engine's run_summary rows alone (no results.json) the cell reads as rows_vs_retrain does,
    except the calibration flag, which needs the run's calibration block."""
    mine = GF.engine_rows(_cell("3:0", "j-1", res))
    pages = {r["name"]: r for r in verdict.rows_vs_retrain(res)}
    assert set(mine) == set(pages)
    for n, r in pages.items():
        want = [f for f in r["flags"] if f != verdict.calibration.NOT_REACHED]
        assert mine[n]["flags"] == want, n
    assert any(pages[n]["verdict"] != "close to retrain" for n in FS.METHODS)  # the comparison is not trivial


def test_matrix_reads_each_cell_from_its_own_results(res):
    other = _results(seed=1)
    other["runs"]["ec"]["metrics"]["forget_acc"] = 0.25  # tell the scenarios apart
    cells = [_cell("3:0", "j-a", res), _cell("0:1", "j-b", other), _cell("8:2", "j-c", state="running", progress=0.4)]
    t = _table(cells, state="running")
    m = GF.matrix(t, {"j-a": res, "j-b": other})
    assert m["scenarios"] == ["3:0", "0:1", "8:2"]
    assert [r["name"] for r in m["rows"]][:2] == ["original", "retrain"]
    assert [r["name"] for r in m["rows"]][2:] == FS.METHODS  # the grid named none: the cells' order
    ec = next(r for r in m["rows"] if r["name"] == "ec")["readings"]
    want = facts.run_summary(res, "ec")
    assert ec[0]["forget_acc"] == want["forget_acc"] and ec[0]["retain_acc"] == want["retain_acc"]
    assert ec[0]["accuracy"] == f"{logic.pct(want['forget_acc'])} / {logic.pct(want['retain_acc'])}"
    assert ec[0]["layer"] == f"{GF.signed(want['worst_gap'])} at {want['worst_layer']}"
    assert ec[0]["tolerance"] == ("within tolerance" if want["within"] else "beyond tolerance")
    assert ec[1]["forget_acc"] == 0.25
    assert ec[2] is None and GF.active(t)
    ret = next(r for r in m["rows"] if r["name"] == "retrain")["readings"][0]
    assert ret["layer"] == "0 (reference)" and ret["verdict"] == "reference"


def test_matrix_keeps_the_grids_method_order_and_reference_rows_first(res):
    t = _table([_cell("3:0", "j-a", res)], methods=["ec", "ft"])
    t["cells"][0]["rows"] = {n: r for n, r in t["cells"][0]["rows"].items() if n in ("original", "retrain", "ft", "ec")}
    m = GF.matrix(t)
    assert [r["name"] for r in m["rows"]] == ["original", "retrain", "ec", "ft"]


def test_signed_uses_a_true_minus_and_overrides_read_as_options():
    assert GF.signed(-0.1664) == "−0.166" and GF.signed(0.0621) == "+0.062" and GF.signed(None) == "n/a"
    assert GF.overrides_text({"model": {"width": 8}, "eval": {"umap": False}, "seed": 1}) == \
        "model.width=8, eval.umap=False, seed=1"


def test_matrix_html_links_every_done_cell_to_its_comparison(res):
    cells = [_cell("3:0", "j-a", res), _cell("0:1", "j-b", state="failed", error="boom <b>"),
             _cell("8:2", "j-c", state="queued", progress=0.0)]
    m = GF.matrix(_table(cells, state="running"), {"j-a": res})
    colours = {"yes": "#00ff00", "no": "#ff0000"}
    out = GF.matrix_html(m, colours=colours)
    links = re.findall(r'<a class="cell" href="([^"]+)"[^>]*data-run="([^"]+)"', out)
    assert {run for _, run in links} == set(NAMES)
    assert {href for href, _ in links} == {"overview?results=j-a"}
    assert 'href="overview?results=j-a">3:0</a>' in out  # the scenario's header links too
    assert "failed: boom &lt;b&gt;" in out and "boom <b>" not in out  # escaped
    assert ">queued<" in out
    rows = verdict.rows_vs_retrain(res)
    for r in rows:
        if r["role"] == "method":
            shade = colours["yes" if r["within"] and not r["damaging"] else "no"]
            cell = re.search(rf'<td style="background-color:(#\w+)"><a class="cell"[^>]*data-run="{r["name"]}"', out)
            assert cell and cell.group(1) == shade, r["name"]
            assert html.escape(r["verdict"]) in out
    assert GF.comparison_href("j-1 2", "layers") == "layers?results=j-1%202"


def test_per_method_counts_and_ec_rows(res):
    cells = [_cell("3:0", "j-a", res), _cell("0:1", "j-b", res), _cell("8:2", "j-c", state="queued")]
    t = _table(cells, state="running")
    m = GF.matrix(t, {"j-a": res})
    per = GF.per_method_rows(t, [r["name"] for r in m["rows"] if r["role"] == "method"])
    assert [p["Method"] for p in per] == [facts.display_name(n) for n in FS.METHODS]
    ec = next(p for p in per if p["Method"] == "EC")
    c = t["per_method"]["ec"]
    assert ec["Forgets in"] == f"{c['forgets']} of 2" and ec["Like retrain in"] == f"{c['like_retrain']} of 2"
    rows = GF.ec_rows(t, m)
    assert [r["Scenario"] for r in rows] == ["3:0", "0:1", "8:2"]
    want = facts.run_summary(res, "ec")
    assert rows[0][logic.DISTANCE_LABEL] == logic.distance_text(want)
    assert rows[0]["Forget acc"] == pytest.approx(100 * want["forget_acc"])
    assert rows[0]["Within tolerance"] == ("yes" if want["within"] else "no")
    assert rows[2]["State"] == "queued" and "Forget acc" not in rows[2]


def test_grid_labels_are_distinct_and_say_state():
    g = {"id": "g-1", "preset": "teach", "scenarios": ["3:0", "0:1"], "state": "running", "progress": 0.5,
         "created": 1_764_868_800.0}
    labels = GF.grid_labels([g, {**g, "id": "g-2"}])
    assert labels["g-1"].startswith("teach · 3:0, 0:1 · running 50% · ")
    assert len(set(labels.values())) == 2


# -- the page under AppTest, with a stand-in for engine.grid -----------------------------------------------

class FakeGrids:
    """engine.grid's API over fixed tables (its own scenario parser); records what would be queued."""

    def __init__(self, tables):
        self.tables = {t["id"]: t for t in tables}
        self.submitted, self.cancelled = [], []

    def parse_scenarios(self, text):
        from engine import grid
        return grid.parse_scenarios(text)

    def submit_grid(self, preset, scenarios, methods=None, overrides=None):
        self.submitted.append((preset, list(scenarios), methods))
        return {"id": f"g-new{len(self.submitted)}", "scenarios": list(scenarios)}

    def list_grids(self, limit=50):
        return [{k: t[k] for k in ("id", "created", "preset", "scenarios", "state", "progress")}
                for t in self.tables.values()][:limit]

    def grid_table(self, grid_id):
        return copy.deepcopy(self.tables.get(grid_id))

    def mixed_settings(self, table):
        from engine import grid
        return grid.mixed_settings(table)

    def cancel_grid(self, grid_id):
        self.cancelled.append(grid_id)
        return 1

    def grid_csv(self, table):
        return "scenario,method\n" + "".join(f"{c['scenario']},ec\n" for c in table["cells"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("grid-store")
    mp = pytest.MonkeyPatch()
    mp.setenv("ECLAB_HOME", str(home))
    try:
        return home, FS.build_store(home, "full")
    finally:
        mp.undo()


@pytest.fixture
def full_store(built, tmp_path, monkeypatch):
    """A private copy of the full fixture store, made the current ECLAB_HOME (no worker autostart)."""
    src, ids = built
    home = tmp_path / "store"
    shutil.copytree(src, home)
    monkeypatch.setenv("ECLAB_HOME", str(home))
    monkeypatch.setenv("ECLAB_NO_AUTOSTART", "1")
    return home, ids


def _grid_app(monkeypatch, fake, query=None):
    from streamlit.testing.v1 import AppTest

    from dashboard import data
    from tests.test_app import APP
    monkeypatch.setattr(data, "grids", lambda: fake)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if query:
        at.query_params.update(query)
    at.switch_page("views/grid.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_grid_page_shows_the_cells_numbers_and_refuses_a_bad_scenario(full_store, monkeypatch):
    from engine import api
    _, ids = full_store
    job = api.get_job(ids["compare"])
    res = api.load_results(ids["compare"])
    t = _table([_cell("3:0", job["id"], res), _cell("0:1", "j-queued", state="queued", progress=0.0)], state="running")
    fake = FakeGrids([t])
    at = _grid_app(monkeypatch, fake)
    body = "\n".join(str(h.proto.body) for h in at.get("html"))
    want = facts.run_summary(res, "ec")
    assert f'data-run="ec" data-scenario="3:0"' in body
    assert f"{logic.pct(want['forget_acc'])} / {logic.pct(want['retain_acc'])}" in body
    assert f"overview?results={job['id']}" in body
    assert at.selectbox(key="gr_preset").value == "digits"  # the scenario on screen
    n_jobs = len(api.list_jobs())
    at.text_input(key="gr_scenarios").set_value("3:0,x:1")
    at.button(key="FormSubmitter:gr_form-Queue the grid").click().run()
    errs = [e.value.replace("\u2060", "") for e in at.error]
    assert any("'x:1'" in e and "Nothing was queued" in e for e in errs), errs
    assert fake.submitted == [] and len(api.list_jobs()) == n_jobs
    at.text_input(key="gr_scenarios").set_value("3:0, 5:1")
    at.multiselect(key="gr_methods").set_value(["ec", "ft"])
    at.button(key="FormSubmitter:gr_form-Queue the grid").click().run()
    assert fake.submitted == [("digits", ["3:0", "5:1"], ["ec", "ft"])]


def test_a_results_link_shows_that_job_on_the_analysis_pages(full_store):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP
    _, ids = full_store
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["results"] = ids["run"]
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="results_job").value == ids["run"]
    # once per address: a later pick in the sidebar wins
    at.sidebar.selectbox(key="results_job").set_value(ids["compare"]).run()
    assert at.sidebar.selectbox(key="results_job").value == ids["compare"]


def test_the_address_picks_a_grid_and_cancel_reaches_the_engine(full_store, monkeypatch):
    """?grid=ID shows that grid (not the newest); a grid with active cells has a cancel button that calls
    cancel_grid for it; a finished one has none."""
    older = _table([_cell("3:0", "j-q1", state="queued", progress=0.0)], state="queued")
    newer = {**_table([_cell("3:0", "j-q2", state="cancelled")], state="cancelled"), "id": "g-newer",
             "created": older["created"] + 60}
    older["id"] = "g-older"
    fake = FakeGrids([newer, older])
    at = _grid_app(monkeypatch, fake)
    assert not [b for b in at.button if b.label == "Cancel grid"]  # the newest, finished, is shown
    at = _grid_app(monkeypatch, fake, query={"grid": "g-older"})
    cancel = [b for b in at.button if b.label == "Cancel grid"]
    assert len(cancel) == 1
    cancel[0].click().run()
    assert fake.cancelled == ["g-older"]


def test_grid_page_warns_when_cells_ran_with_different_thread_counts(full_store, monkeypatch):
    """A cell can be a cache hit from a worker with another torch thread count; its readings then differ
    by more than noise from what this grid's workers would print: the page says which cells."""
    from engine import api
    _, ids = full_store
    res = api.load_results(ids["compare"])
    cells = [_cell("3:0", ids["compare"], res), _cell("0:1", ids["compare"], res)]
    same = _table(copy.deepcopy(cells))
    for c in same["cells"]:
        c["threads"] = 2
    same["id"] = "g-same"
    for c, t in zip(cells, (2, 1)):
        c["threads"] = t
    mixed = _table(cells)
    mixed["id"] = "g-mixed"
    at = _grid_app(monkeypatch, FakeGrids([same]))
    assert not any("thread" in w.value for w in at.warning)
    at = _grid_app(monkeypatch, FakeGrids([mixed]))
    [w] = [w.value.replace("\u2060", "") for w in at.warning if "thread" in w.value]
    assert "1 torch thread: 0:1" in w and "2 torch threads: 3:0" in w and "--no-cache" in w
