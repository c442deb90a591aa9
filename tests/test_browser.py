"""The real dashboard in headless Chromium: a real worker process, a real `streamlit run`, Playwright.

One server and one worker per module, on a private ECLAB_HOME (autostart off, UMAP warm-up off).
To keep it quick, a tiny EC run (width-8 CNN, 2 training epochs, no UMAP) is queued on the command
line first; the browser then hands its settings to the Launch form through Compare's
"Use these settings" (the form keeps the options it does not show, such as train.epochs), so the
run queued from the form reuses the cached base models and takes seconds, not minutes.

Screenshots of every stage go to test-artifacts/browser/ (git-ignored), with the server and worker logs.
Run: pytest -m browser tests/test_browser.py
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest

from tests import browser_helpers as H

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(H.chromium_path() is None,
                                 reason="no system Chromium (`chromium` on PATH or $ECLAB_CHROMIUM); "
                                        "these tests never download a browser"),
              pytest.mark.timeout(600)]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

ROOT = H.ROOT
ARTIFACTS = ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1400, "height": 900}
UI_TIMEOUT = 90_000  # ms; the machine may be busy
JOB_TIMEOUT = 300  # s, for a real training job on a loaded 2-core CPU

# The tiny run queued before the browser opens: it builds (and caches) the base models and gives
# Compare a run whose settings the Launch form can take over.
BASE_SETS = ["model.width=8", "train.epochs=2", "ec.aux_epochs=1", "methods.ec.epochs=1", "eval.umap=false",
             "eval.probe_epochs=5", "eval.max_samples=200", "eval.embed_per_class=5"]


def _api():
    from engine import api
    return api


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running worker + Streamlit server on a private store; yields a dict with url, home, base job id."""
    home = tmp_path_factory.mktemp("eclab-browser")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*"):
        if old.is_file():
            old.unlink()
    mp = pytest.MonkeyPatch()
    mp.setenv("ECLAB_HOME", str(home))  # engine.api in this process reads the same store
    mp.setenv("ECLAB_NO_AUTOSTART", "1")
    worker = server = None
    wlog, slog = home / "worker.log", home / "server.log"
    try:
        worker = H.start_worker(home, wlog, poll=0.5)
        port = H.free_port()
        server = H.start_streamlit(home, port, slog)
        sub = subprocess.run([sys.executable, "-m", "engine", "submit", "--kind", "run", "--method", "ec",
                              "--set", *BASE_SETS], cwd=ROOT, env=H.base_env(home), capture_output=True, text=True,
                             timeout=180)
        assert sub.returncode == 0, sub.stderr[-2000:]
        base_id = sub.stdout.strip().splitlines()[-1].strip()
        assert _api().get_job(base_id) is not None, sub.stdout
        url = f"http://127.0.0.1:{port}"
        H.wait_http(f"{url}/_stcore/health", 120, server, slog)
        yield {"url": url, "home": home, "base": base_id, "worker": worker}
    finally:
        H.stop_group(server)
        H.stop_group(worker)
        for log in (wlog, slog):
            if log.exists():
                shutil.copy(log, ARTIFACTS / log.name)
        mp.undo()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = H.launch_browser(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(UI_TIMEOUT)
    pg = ctx.new_page()
    try:
        yield pg
    finally:
        ctx.close()


def shot(page, name: str) -> None:
    H.snap(page, ARTIFACTS / f"{name}.png")


def open_page(page, url: str, ready: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(ready, state="visible")


def button(page, key: str):
    """The visible button of a keyed st.button (a button with help= is rendered twice, once hidden)."""
    return page.locator(f".st-key-{key} button:visible").first


def slider(page, key: str):
    return page.locator(f".st-key-{key} input[type=range]")


def thumb_text(page, key: str) -> str:
    return page.locator(f'.st-key-{key} [data-testid="stSliderThumbValue"]').inner_text().strip()


def wait_job(job_id: str, states=("done",), timeout: float = JOB_TIMEOUT) -> dict:
    api = _api()

    def check():
        job = api.get_job(job_id)
        if job and job["state"] in ("failed", "cancelled") and job["state"] not in states:
            raise AssertionError(f"job {job_id} {job['state']}: {job.get('error')}")
        return job if job and job["state"] in states else None
    return H.wait_until(check, timeout, interval=1.0, what=f"job {job_id} to be {'/'.join(states)}")


POINTS = ["block1", "block2", "block3", "block4"]

# Collects the text of every progress bar that appears (a fast job may finish between two polls).
WATCH_PROGRESS = """() => {
    window.__eclabProgress = [];
    const grab = () => document.querySelectorAll('[data-testid="stProgress"]').forEach(el => {
        const t = el.innerText.trim();
        if (t && !window.__eclabProgress.includes(t)) window.__eclabProgress.push(t);
    });
    new MutationObserver(grab).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_all_layer_weights_zero_is_refused_and_nothing_is_queued(lab, page):
    open_page(page, f"{lab['url']}/launch", ".st-key-l_submit button:visible")
    H.settle(page, 90, plots=False)
    n_before = len(_api().list_jobs())
    for p in POINTS:
        key = f"l_w__small_cnn__{p}"
        slider(page, key).focus()
        page.keyboard.press("Home")
        page.wait_for_function(
            f"""() => document.querySelector('.st-key-{key} [data-testid="stSliderThumbValue"]')
                     ?.innerText.trim() === '0.00'""")
        H.settle(page, 60, plots=False, quiet=0.8)
    assert [thumb_text(page, f"l_w__small_cnn__{p}") for p in POINTS] == ["0.00"] * 4
    button(page, "l_submit").click()
    err = page.locator('[data-testid="stAlertContentError"]').filter(has_text="ec.weights")
    err.first.wait_for(state="visible")
    shot(page, "zero_weights_error")
    text = err.first.inner_text()
    assert "Nothing was queued" in text, text
    H.settle(page, 60, plots=False)
    assert len(_api().list_jobs()) == n_before
    assert "job" not in parse_qs(urlparse(page.url).query)


def test_launch_run_progress_reload_and_layers(lab, page):
    api = _api()
    wait_job(lab["base"])  # the tiny run queued on the command line (also builds the base models)

    # Compare -> "Use these settings" hands the tiny run's configuration to the Launch form
    open_page(page, f"{lab['url']}/compare", ".st-key-cmp_use button:visible")
    H.settle(page, 90)
    shot(page, "01_compare")
    button(page, "cmp_use").click()
    page.get_by_text("Settings loaded from").wait_for(state="visible")
    assert urlparse(page.url).path.rstrip("/").endswith("/launch")
    H.settle(page, 60, plots=False)
    kept = page.get_by_text("Also kept from the hand-off").inner_text()
    assert "train.epochs=2" in kept and "model.width=8" in kept, kept
    shot(page, "02_launch_prefilled")

    # the form: 2 unlearning epochs, block1's weight one step down with the keyboard
    epochs = page.locator(".st-key-l_epochs__digits__ec input")
    assert epochs.input_value() == "1"
    epochs.fill("2")
    epochs.press("Enter")
    page.wait_for_function("() => document.querySelector('.st-key-l_epochs__digits__ec input').value === '2'")
    H.settle(page, 60, plots=False)
    key = "l_w__small_cnn__block1"
    assert thumb_text(page, key) == "1.00"
    slider(page, key).focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        f"""() => document.querySelector('.st-key-{key} [data-testid="stSliderThumbValue"]')
                 ?.innerText.trim() === '0.90'""")
    H.settle(page, 60, plots=False)
    shot(page, "03_form_set")
    before = {j["id"] for j in api.list_jobs()}
    page.evaluate(WATCH_PROGRESS)  # records every progress text, however briefly it shows
    button(page, "l_submit").click()

    # the URL names the job, and the page follows its progress
    page.wait_for_url(re.compile(r"[?&]job=j-"))
    job_id = parse_qs(urlparse(page.url).query)["job"][0]
    assert job_id not in before
    job = api.get_job(job_id)
    cfg = job["spec"]["config"]
    assert (job["kind"], cfg["method"]) == ("run", "ec")
    assert cfg["ec"]["weights"] == pytest.approx([0.9, 1.0, 1.0, 1.0])
    assert cfg["methods"]["ec"]["epochs"] == 2
    assert cfg["train"]["epochs"] == 2 and cfg["model"]["width"] == 8 and cfg["eval"]["umap"] is False
    page.wait_for_function("() => window.__eclabProgress.length > 0", timeout=60_000)
    seen = page.evaluate("() => window.__eclabProgress")
    assert any(re.search(r"(queued|running) · \d+% · \S", t) for t in seen), seen
    page.get_by_text(f"Job {job_id}").first.wait_for(state="visible")
    shot(page, "04_progress")  # usually still running here (seconds of work left)

    # done: the page re-renders the final state by itself
    wait_job(job_id)
    done = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text=re.compile(rf"{job_id}.*is done"))
    done.first.wait_for(state="visible", timeout=60_000)
    H.settle(page, 60)
    assert page.locator('[data-testid="stProgress"]').count() == 0 or "done" in page.locator(
        '[data-testid="stProgress"]').first.inner_text()
    shot(page, "05_done")

    # a reload with the same address shows the same job again
    page.reload(wait_until="domcontentloaded")
    done.first.wait_for(state="visible")
    assert parse_qs(urlparse(page.url).query)["job"] == [job_id]
    assert page.locator('[data-testid="stHeading"]').filter(has_text=job_id).count() >= 1
    H.settle(page, 60)
    shot(page, "06_reloaded")

    # on to the analysis pages: the CKA heatmap of this run
    button(page, f"open_{job_id}").click()
    page.get_by_role("heading", name="Overview").first.wait_for(state="visible")
    page.locator('[data-testid="stMain"]').get_by_text(job_id).first.wait_for(state="visible")  # its job line
    H.settle(page, 90)
    shot(page, "07_overview")
    page.locator(H.NAV_LINK).filter(has_text="Layers (CKA)").click()
    heat = page.locator(f".st-key-ly_heat {H.PLOT} .js-plotly-plot")
    heat.wait_for(state="visible", timeout=60_000)
    page.wait_for_selector(f".st-key-ly_heat {H.PLOT} .main-svg .heatmaplayer")
    H.settle(page, 90)
    assert page.locator(H.PLOT).count() >= 2  # the heatmap, the layer x layer matrix (and probe lines)
    shot(page, "08_layers")
