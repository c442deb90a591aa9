"""The Grid page in headless Chromium on a real, tiny scenario grid: engine.grid.submit_grid queues two
digits comparisons (EC and FT, the TINY configuration of tests/jobs_helpers.py: a width-8 CNN, one
epoch, no UMAP), a real worker process runs them while the page is open, a real `streamlit run` serves
the dashboard.

Checked: the grid fills in on its own (no reload) and each cell shows its comparison's numbers (forget /
retain accuracy, signed gap at the worst layer and that layer, as the engine's grid_table reads them);
the CSV download holds one row per scenario and method with the same numbers; a bad scenario is refused
with the engine's message and nothing is queued; a cell's link opens that comparison on the Overview.
Screenshots: test-artifacts/browser/grid_*.png (git-ignored).
Run: pytest -m browser tests/test_browser_grid.py
"""
from __future__ import annotations

import csv
import io
import re
import shutil
from urllib.parse import parse_qs, urlparse

import pytest

from tests import browser_helpers as H
from tests.jobs_helpers import TINY

pytestmark = H.marks(timeout=300)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

ARTIFACTS = H.ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1400, "height": 900}
UI_TIMEOUT = 90_000  # ms; the machine may be busy
GRID_TIMEOUT = 240  # s: two tiny comparisons on a loaded 2-core machine
SCENARIOS, METHODS = ["3:0", "0:0"], ["ec", "ft"]  # one seed: the two cells share the original model
# no noise references (second original, second retrain): the tolerance is the assumed one, the cells twice as quick
OVERRIDES = {**TINY, "eval": {**TINY["eval"], "seed_band": "off", "retrain_band": "off"}}


def _grid():
    from engine import grid
    return grid


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A worker and a Streamlit server on a private store holding one tiny grid (queued as they start)."""
    home = tmp_path_factory.mktemp("eclab-grid")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("ECLAB_HOME", str(home))  # engine.grid in this process reads the same store
    mp.setenv("ECLAB_NO_AUTOSTART", "1")
    worker = server = None
    wlog, slog = home / "worker.log", home / "server.log"
    try:
        worker = H.start_worker(home, wlog, poll=0.3, OMP_NUM_THREADS=1, MKL_NUM_THREADS=1)
        port = H.free_port()
        server = H.start_streamlit(home, port, slog)  # both start while the grid is queued here
        g = _grid().submit_grid("digits", ",".join(SCENARIOS), methods=METHODS, overrides=OVERRIDES)
        url = f"http://127.0.0.1:{port}"
        H.wait_http(f"{url}/_stcore/health", 120, server, slog)
        yield {"url": url, "home": home, "grid": g["id"]}
    finally:
        H.stop_group(server)
        H.stop_group(worker)
        for log in (wlog, slog):
            if log.exists():
                shutil.copy(log, ARTIFACTS / f"grid_{log.name}")
        mp.undo()


@pytest.fixture(scope="module")
def browser():
    yield from H.browser_session(sync_api)


@pytest.fixture
def page(browser):
    yield from H.page_session(browser, VIEWPORT, UI_TIMEOUT, accept_downloads=True)


def cell(page, scenario: str, run: str):
    return page.locator(f'table.eclab-grid a.cell[data-scenario="{scenario}"][data-run="{run}"]')


def finished_table(grid_id: str) -> dict:
    def check():
        t = _grid().grid_table(grid_id)
        bad = [c for c in t["cells"] if c["state"] in ("failed", "cancelled")]
        assert not bad, bad
        return t if t["state"] == "done" else None
    return H.wait_until(check, GRID_TIMEOUT, interval=0.5, what=f"grid {grid_id} to finish")


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def gap(v: float) -> str:
    return ("+" if v >= 0 else "\u2212") + f"{abs(v):.3f}"


def test_grid_fills_in_live_and_cells_show_their_comparisons_numbers(lab, page):
    page.goto(f"{lab['url']}/grid", wait_until="domcontentloaded")
    page.wait_for_selector("table.eclab-grid")
    picked = page.locator(".st-key-grid_pick input").input_value()
    assert "digits · 3:0, 0:0 ·" in picked, picked
    # opened while the worker runs: the cells fill in without a reload (the page polls while any is active)
    table = finished_table(lab["grid"])
    cell(page, SCENARIOS[-1], "ec").wait_for(state="visible", timeout=60_000)
    assert parse_qs(urlparse(page.url).query).get("grid") == [lab["grid"]]
    H.settle(page, 60, plots=False)
    H.snap(page, ARTIFACTS / "grid_done.png")
    for c in table["cells"]:
        for run in ["original", "retrain"] + METHODS:
            r = c["rows"][run]
            text = cell(page, c["scenario"], run).inner_text()
            assert f"{pct(r['forget_acc'])} / {pct(r['retain_acc'])}" in text, (c["scenario"], run, text)
            if run == "retrain":
                assert "0 (reference)" in text
                continue
            assert f"{gap(r['worst_gap'])} at {r['worst_layer']}" in text, (c["scenario"], run, text)
            if run in METHODS:
                assert ("within tolerance" if r["within"] else "beyond tolerance") in text
    page.get_by_role("heading", name="Per method: in how many scenarios").wait_for(state="visible")
    assert page.locator('[data-testid="stProgress"]').first.inner_text().startswith("done")


def test_csv_download_has_a_row_per_scenario_and_method(lab, page):
    table = finished_table(lab["grid"])
    page.goto(f"{lab['url']}/grid?grid={lab['grid']}", wait_until="domcontentloaded")
    button = page.locator(f".st-key-gr_csv_{lab['grid']} button").first
    button.wait_for(state="visible")
    H.settle(page, 60, plots=False)
    with page.expect_download() as dl:
        button.click()
    got = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
    assert [(r["scenario"], r["method"]) for r in got] == [(s, m) for s in SCENARIOS for m in METHODS]
    for r in got:
        want = next(c for c in table["cells"] if c["scenario"] == r["scenario"])["rows"][r["method"]]
        assert float(r["forget_acc"]) == pytest.approx(want["forget_acc"], abs=1e-4)
        assert float(r["retain_acc"]) == pytest.approx(want["retain_acc"], abs=1e-4)
        assert float(r["worst_gap"]) == pytest.approx(want["worst_gap"], abs=1e-4)
        assert r["state"] == "done" and r["grid"] == lab["grid"]


def test_a_bad_scenario_is_refused_and_nothing_is_queued(lab, page):
    from engine import api
    page.goto(f"{lab['url']}/grid", wait_until="domcontentloaded")
    page.get_by_text("Start a grid").click()
    box = page.locator(".st-key-gr_scenarios input")
    box.wait_for(state="visible")
    n_jobs, n_grids = len(api.list_jobs()), len(_grid().list_grids())
    box.fill("3:0,x:1")
    page.get_by_role("button", name="Queue the grid").click()
    err = page.locator('[data-testid="stAlertContentError"]').filter(has_text="Nothing was queued")
    err.first.wait_for(state="visible")
    msg = err.first.inner_text().replace("\u2060", "")
    assert "x:1" in msg, msg
    H.snap(page, ARTIFACTS / "grid_refused.png", full_page=False)
    H.settle(page, 60, plots=False)
    assert len(api.list_jobs()) == n_jobs and len(_grid().list_grids()) == n_grids


def test_a_cell_opens_its_comparison_on_the_overview(lab, page):
    table = finished_table(lab["grid"])
    target = next(c for c in table["cells"] if c["scenario"] == SCENARIOS[-1])
    page.goto(f"{lab['url']}/grid?grid={lab['grid']}", wait_until="domcontentloaded")
    link = cell(page, target["scenario"], "ec")
    link.wait_for(state="visible")
    H.settle(page, 60, plots=False)
    link.click()
    page.wait_for_url(re.compile(r"/overview\?results="))
    assert parse_qs(urlparse(page.url).query)["results"] == [target["job_id"]]
    page.get_by_role("heading", name="Overview").first.wait_for(state="visible")
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text(f"Job {target['job_id']} (compare)").first.wait_for(state="visible")
    assert "forget class 0" in page.locator('[data-testid="stSidebar"]').inner_text().replace("\u2060", "")
    # the sidebar's picker follows it, so Layers and Compare show the same comparison
    assert page.locator(".st-key-results_job input").input_value().startswith("digits · forget 0")
