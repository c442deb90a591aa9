"""Scenario grids (engine/grid.py): the scenario syntax, validation before anything is queued, a real
grid of tiny digits comparisons run by two real worker processes through `python -m engine grid`,
the table, the CSV and the results file, and cancelling."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest

from engine import grid, jobs
from engine.config import ConfigError
from engine.results import run_summary

from jobs_helpers import TINY, cli
from test_jobs import _set_args, home  # noqa: F401  (TINY as --set items; the empty-store fixture)

METHODS = ["ec", "ft", "ga"]
# the tiny real digits run, without the noise references (a second original and a second retrain per
# scenario: the tolerances are then the assumed ones), so three scenarios' base models build in seconds
GRID_TINY = {**TINY, "eval": {**TINY["eval"], "seed_band": "off", "retrain_band": "off"}}


# -- scenarios ------------------------------------------------------------------------------------
def test_parse_scenarios_normalises_the_bench_syntax():
    assert grid.parse_scenarios("3:0, 0:1,8:2") == ["3:0", "0:1", "8:2"]
    assert grid.parse_scenarios(["03:1", "3+5:0", "r.1:2"]) == ["3:1", "3+5:0", "r0.1:2"]
    assert grid.scenario_overrides("3+5:0") == {"seed": 0, "forget": {"classes": [3, 5]}}
    assert grid.scenario_overrides("r0.1:2") == {"seed": 2, "forget": {"random": 0.1}}
    assert grid.scenario_text("3:0") == "class 3, seed 0" and grid.scenario_text("r0.1:1") == "random 10%, seed 1"


@pytest.mark.parametrize("text, bad", [("3", "'3' has no :SEED"), ("3:x", "'3:x' is not a scenario"),
                                       ("a:0", "'a:0'"), ("3+3:0", "names a class twice"),
                                       ("r1.5:0", "between 0 and 1"), ("r:0", "no random share"),
                                       ("3:0,0:1,3:0", "'3:0' is listed twice"), (" , ", "is empty")])
def test_parse_scenarios_names_the_bad_item_and_the_syntax(text, bad):
    with pytest.raises(ConfigError) as err:
        grid.parse_scenarios(text)
    assert err.value.option == "scenarios" and bad in str(err.value)
    if "twice" not in bad:
        assert "CLASS[+CLASS...]:SEED" in str(err.value)


def test_grid_commands_parse_and_print_their_help(capsys):
    from engine.cli import build_parser
    parser = build_parser()
    args = parser.parse_args(["grid", "--preset", "teach", "--scenarios", "3:0,0:1", "--workers", "2", "--set", "a=1"])
    assert (args.scenarios, args.workers, args.sets, args.threads) == ("3:0,0:1", 2, ["a=1"], None)
    for cmd in ("grid", "grid-show", "grid-cancel", "grids"):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([cmd, "--help"])
        assert done.value.code == 0
    assert "r0.1:0 (a random 10% of the" in capsys.readouterr().out


# -- submitting -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, option", [
    (dict(scenarios="3:0,12:0"), "forget.classes"),          # the second scenario names no digits class
    (dict(scenarios="3:0,3:x"), "scenarios"),
    (dict(scenarios="3:0", methods=["ec", "nope"]), "methods"),
    (dict(scenarios="3:0", overrides={"ec": {"tau": -1}}), "ec.tau"),
    (dict(scenarios="3:0", overrides={"seed": 2}), "seed"),
    (dict(scenarios="3:0", preset="nope"), "preset"),
])
def test_submit_grid_validates_everything_before_queueing(home, kwargs, option):
    kwargs = {"preset": "digits", "methods": METHODS, "overrides": TINY, **kwargs}
    with pytest.raises(ConfigError) as err:
        grid.submit_grid(kwargs.pop("preset"), **kwargs)
    assert err.value.option == option
    assert jobs.list_jobs() == [] and grid.list_grids() == []


def test_cancel_grid_cancels_its_queued_cells_and_duplicates_share_jobs(home):
    g = grid.submit_grid("digits", "3:0,0:1", METHODS, TINY)  # no worker runs: the cells stay queued
    assert g["id"].startswith("g-") and g["state"] == "queued" and g["progress"] == 0
    assert [c["scenario"] for c in g["cells"]] == ["3:0", "0:1"] and g["methods"] == METHODS
    twin = grid.submit_grid("digits", ["3:0", "0:1"], METHODS, TINY)  # the same cells: duplicates, nothing new
    assert [c["job_id"] for c in twin["cells"]] == [c["job_id"] for c in g["cells"]]
    assert len(jobs.list_jobs()) == 2
    assert [x["id"] for x in grid.list_grids()] == [twin["id"], g["id"]]
    assert grid.cancel_grid(g["id"]) == 2
    after = grid.get_grid(g["id"])
    assert after["state"] == "cancelled" and after["progress"] == 1.0
    assert {c["state"] for c in after["cells"]} == {"cancelled"}
    assert grid.get_grid(twin["id"])["state"] == "cancelled" and grid.cancel_grid(twin["id"]) == 0
    assert grid.get_grid("g-20260101-0000-abcdef") is None
    with pytest.raises(ValueError):
        grid.get_grid("../x")
    with pytest.raises(ValueError, match="no grid"):
        grid.cancel_grid("g-20260101-0000-abcdef")
    table = grid.grid_table(g["id"])
    assert table["per_method"] == {} and len(list(csv.reader(io.StringIO(grid.grid_csv(table))))) == 1 + 2 * 3


# -- a real grid, two workers ---------------------------------------------------------------------
@pytest.mark.slow
def test_grid_command_runs_every_cell_once_with_two_workers(home):
    scenarios = ["3:0", "0:1", "8:2"]
    res = cli(home, "grid", "--preset", "digits", "--scenarios", ",".join(scenarios), "--methods", ",".join(METHODS),
              "--workers", "2", "--set", *_set_args(GRID_TINY), timeout=150)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "started 2 worker(s)" in res.stdout and "3/3" in res.stdout
    [g] = grid.list_grids()
    assert g["state"] == "done" and g["progress"] == 1.0 and [c["scenario"] for c in g["cells"]] == scenarios
    # every cell done exactly once: one compare job per scenario, claimed once, started once
    all_jobs = jobs.list_jobs()
    scenario_of = {c["job_id"]: c["scenario"] for c in g["cells"]}
    assert sorted(j["id"] for j in all_jobs) == sorted(scenario_of)
    for j in all_jobs:
        assert j["state"] == "done" and j["attempts"] == 1 and not j["cached"], j
        assert sum(e.get("type") == "job" and e.get("state") == "started" for e in jobs.events_since(j["id"])) == 1
        cfg = j["spec"]["config"]
        assert f"{cfg['forget']['classes'][0]}:{cfg['seed']}" == scenario_of[j["id"]]
    assert not any(w["alive"] for w in jobs.workers())  # the workers it started are stopped
    # the table's counts agree with the cells' own results
    table = grid.grid_table(g["id"])
    expect = {m: {"forgets": 0, "keeps_retain": 0, "like_retrain": 0, "of": 0} for m in METHODS}
    for cell in table["cells"]:
        results = jobs.load_results(cell["job_id"])
        runs = results["runs"]
        orig, ret = runs["original"]["metrics"], runs["retrain"]["metrics"]
        assert set(cell["rows"]) == {"original", "retrain", *METHODS}
        for m in METHODS:
            met = runs[m]["metrics"]
            expect[m]["of"] += 1
            expect[m]["forgets"] += abs(met["forget_acc"] - ret["forget_acc"]) <= grid.FORGET_TOL
            expect[m]["keeps_retain"] += orig["retain_acc"] - met["retain_acc"] <= grid.RETAIN_TOL
            expect[m]["like_retrain"] += run_summary(results, m)["within"] is True
            assert math.isclose(cell["rows"][m]["forget_acc"], met["forget_acc"])
        assert table["ec"][cell["scenario"]] == {k: run_summary(results, "ec")[k]
                                                 for k in ("distance", "worst_layer", "worst_gap", "within")}
    assert table["per_method"] == expect
    from engine.gridcli import threads_per_worker
    assert {c["threads"] for c in table["cells"]} == {threads_per_worker(2)}  # recorded per cell
    import torch
    assert {c["cpu_kernels"] for c in table["cells"]} == {torch.backends.cpu.get_cpu_capability()}
    assert grid.mixed_settings(table) is None
    # the results file and its CSV: one row per (scenario, method)
    folder = home / "grids" / g["id"]
    saved = json.loads((folder / "results.json").read_text())
    assert saved["per_method"] == expect and saved["state"] == "done"
    rows = list(csv.DictReader(io.StringIO((folder / "results.csv").read_text())))
    assert [(r["scenario"], r["method"]) for r in rows] == [(s, m) for s in scenarios for m in METHODS]
    assert all(r["state"] == "done" and r["forget_acc"] and r["gaps"] for r in rows)
    assert sum(r["forgets"] == "yes" for r in rows if r["method"] == "ft") == expect["ft"]["forgets"]
    # the other commands read the same grid
    show = cli(home, "grid-show", g["id"], "--csv")
    assert show.returncode == 0 and show.stdout == grid.grid_csv(table)
    listed = cli(home, "grids")
    assert listed.returncode == 0 and g["id"] in listed.stdout and "done" in listed.stdout
    assert cli(home, "grid-cancel", g["id"]).stdout.strip().endswith("0 cell(s) cancelled")


def test_markdown_rows_read_the_closest_forgetting_baseline_and_the_tolerances():
    """grid-show --markdown (the README's scenario tables): per scenario the tolerances, EC's distance,
    the closest baseline among those that forget (a closer one that does not forget is passed over)."""
    from tests import fixtures_store as FS
    res = FS.make_results("compare", FS.METHODS)
    rows = {n: run_summary(res, n) for n in ["original", "retrain"] + FS.METHODS}
    flags = {n: grid.run_flags(rows, n) for n in FS.METHODS}
    cell = {"scenario": "3+5:1", "state": "done", "job_id": "j-x", "rows": rows, "flags": flags}
    text = grid.format_markdown({"cells": [cell, {"scenario": "r0.1:0", "state": "failed", "job_id": "j-y"}]})
    head, rule, row, failed = text.splitlines()
    assert head.count("|") == rule.count("|") == row.count("|") == 7
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[0] == "classes 3+5, seed 1"
    assert failed.startswith("| random 10%, seed 0 | failed")
    tol = [g["tol"] for g in rows["retrain"]["gaps"] if g["inner"]]
    assert cols[1] == " / ".join(f"{t:.3f}" for t in tol)
    assert cols[2].startswith(f"{rows['ec']['distance']:.3f} ({rows['ec']['worst_layer']} ")
    base = [n for n in FS.METHODS if n != "ec"]
    forgetting = [n for n in base if flags[n]["forgets"]]
    best = min(forgetting, key=lambda n: rows[n]["distance"])
    assert cols[3].startswith(f"{rows[best]['distance']:.3f} (")
    assert cols[4].startswith(f"{len(forgetting)} of {len(base)}: ")
    assert len(forgetting) < len(base)  # the fixture has a baseline that does not forget, left out
    from engine.catalog import display_name
    assert cols[5] == (", ".join(display_name(n) for n in FS.METHODS if flags[n]["like_retrain"]) or "no run")


def test_mixed_thread_counts_are_named_in_the_table_and_the_csv():
    cells = [{"scenario": "3:0", "job_id": "j-a", "state": "done", "threads": 2, "rows": {}, "flags": {}},
             {"scenario": "0:1", "job_id": "j-b", "state": "done", "threads": 1, "rows": {}, "flags": {}},
             {"scenario": "8:2", "job_id": "j-c", "state": "done", "threads": 2, "rows": {}, "flags": {}}]
    table = {"id": "g-x", "preset": "digits", "state": "done", "methods": ["ft"], "cells": cells}
    warning = grid.mixed_settings(table)
    assert "1 torch thread: 0:1" in warning and "2 torch threads: 3:0, 8:2" in warning
    assert warning in grid.format_table(table)
    assert grid.mixed_settings({**table, "cells": [cells[0], cells[2]]}) is None
    # the same count on another CPU kernel set (a cell from another machine) is named too
    other_cpu = [{**cells[0], "cpu_kernels": "AVX512"}, {**cells[2], "cpu_kernels": "AVX2"}]
    warning = grid.mixed_settings({**table, "cells": other_cpu})
    assert "2 torch threads, AVX2 kernels: 8:2" in warning and "2 torch threads, AVX512 kernels: 3:0" in warning
    rows = list(csv.DictReader(io.StringIO(grid.grid_csv(table))))
    assert [r["threads"] for r in rows] == ["2", "1", "2"]
    assert [r["cpu_kernels"] for r in rows] == ["", "", ""]  # not recorded by these cells
