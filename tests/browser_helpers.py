"""Helpers for driving the real dashboard in headless Chromium: free ports, a Streamlit server and an
engine worker as process groups, waiting for the page to settle, screenshots of the whole page.

Used by tests/test_browser.py and scripts/screenshots.py. Never downloads a browser: it uses the
system Chromium (`chromium` on PATH, or $ECLAB_CHROMIUM).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from jobs_helpers import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu",
                 "--no-first-run", "--disable-sync"]

# Streamlit's DOM hooks (stable data-testid values of Streamlit 1.4x-1.6x)
STATUS = '[data-testid="stStatusWidget"]'  # the "Running..." indicator while a script run is in progress
PLOT = '[data-testid="stPlotlyChart"]'
NAV_LINK = '[data-testid="stSidebarNavLink"]'
SPINNER = '[data-testid="stSpinner"]'
SKELETON = '[data-testid="stSkeleton"]'


def chromium_path() -> str | None:
    """The system Chromium, or None. $ECLAB_CHROMIUM overrides."""
    for cand in (os.environ.get("ECLAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand:
            path = shutil.which(cand)
            if path:
                return path
    return None


def marks(timeout: float = 600) -> list:
    """The pytest marks of a browser test module: browser and slow, skipped without a system Chromium
    (never downloaded), and a timeout in seconds."""
    import pytest
    return [pytest.mark.browser, pytest.mark.slow,
            pytest.mark.skipif(chromium_path() is None, reason="no system Chromium (`chromium` on PATH or "
                                                               "$ECLAB_CHROMIUM); these tests never download a browser"),
            pytest.mark.timeout(timeout)]


def launch_browser(p, path: str | None = None):
    """A headless Chromium from playwright's sync API object `p` (p = sync_playwright().start())."""
    return p.chromium.launch(executable_path=path or chromium_path(), headless=True, args=CHROMIUM_ARGS)


def browser_session(sync_api):
    """A headless Chromium for a module-scoped fixture: `yield from browser_session(sync_api)`."""
    with sync_api.sync_playwright() as p:
        b = launch_browser(p)
        try:
            yield b
        finally:
            b.close()


def page_session(browser, viewport: dict, timeout_ms: float, **context):
    """A page in a fresh browser context (closed after the test): `yield from page_session(...)`."""
    ctx = browser.new_context(viewport=viewport, **context)
    ctx.set_default_timeout(timeout_ms)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path, **extra) -> dict:
    """Environment for the server and the worker: their own run store, no autostart, no UMAP warm-up.
    UMAP's compiled kernels come from the venv's numba cache (engine.embed.numba_cache_dir, filled
    by the install step), so a comparison's embedding stage does not recompile them per test."""
    env = dict(os.environ)
    env.update({"ECLAB_HOME": str(home), "ECLAB_NO_AUTOSTART": "1", "ECLAB_NO_WARM": "1", "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def start_streamlit(home: Path, port: int, log: Path, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
    return _spawn(cmd, base_env(home, **env), log)


def start_worker(home: Path, log: Path, poll: float = 0.5, **env) -> subprocess.Popen:
    return _spawn([sys.executable, "-m", "engine", "worker", "--poll", str(poll)], base_env(home, **env), log)


def stop_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process group this helper started (start_new_session=True), then SIGKILL."""
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid == proc.pid:  # only ever our own session leader's group
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    elif proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


@contextlib.contextmanager
def serving(home: Path, logs_to: Path, prefix: str, queue=None, worker: bool = True):
    """A `streamlit run` and an engine worker on the store `home`; yields (url, what `queue` returned).
    `queue(home)` runs once the server answers and before the worker starts (the pages open on a queued
    job). At the end both process groups are stopped and their logs copied to logs_to/<prefix>_<log>."""
    server = work = None
    wlog, slog = home / "worker.log", home / "server.log"
    try:
        port = free_port()
        server = start_streamlit(home, port, slog)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_stcore/health", 120, server, slog)
        queued = queue(home) if queue is not None else None
        if worker:
            work = start_worker(home, wlog, poll=0.5)
        yield url, queued
    finally:
        stop_group(server)
        stop_group(work)
        logs_to.mkdir(parents=True, exist_ok=True)
        for log in (wlog, slog):
            if log.exists():
                shutil.copy(log, logs_to / f"{prefix}_{log.name}")


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Wait until `url` answers 200 (Streamlit: /_stcore/health)."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError as err:
            last = err
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


wait_until = wait_for  # one polling helper for all process-level tests (tests/jobs_helpers.py)


def settle(page, timeout: float = 60, quiet: float = 1.5, plots: bool = True) -> None:
    """Wait until no script run is in progress for `quiet` seconds (no "Running..." widget, no
    spinner or skeleton) and every plotly chart on the page has drawn its SVG."""
    end = time.monotonic() + timeout
    calm_since = None
    while time.monotonic() < end:
        busy = page.locator(STATUS).count() > 0 or page.locator(SPINNER).count() > 0 \
            or page.locator(SKELETON).count() > 0
        if plots and not busy:
            busy = bool(page.evaluate(
                f"""() => [...document.querySelectorAll('{PLOT}')].some(
                        el => !el.querySelector('.main-svg'))"""))
        if busy:
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return
        page.wait_for_timeout(250)
    raise TimeoutError(f"page did not settle within {timeout} s")


def content_height(page) -> int:
    """Height of the app's content. Streamlit scrolls inside its main container, not the document,
    so Playwright's full_page=True alone captures only the viewport."""
    return int(page.evaluate("""() => {
        const block = document.querySelector('[data-testid="stMainBlockContainer"]');
        if (block) {  // the content itself, without the container's large bottom padding
            const kids = [...block.children].map(el => el.getBoundingClientRect().bottom);
            const scroller = document.querySelector('[data-testid="stMain"]');
            const top = scroller ? scroller.scrollTop : 0;
            if (kids.length) return Math.ceil(Math.max(...kids) + top + 48);
        }
        let h = document.documentElement.scrollHeight;
        for (const s of ['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]']) {
            const el = document.querySelector(s);
            if (el) h = Math.max(h, el.scrollHeight);
        }
        return Math.ceil(h);
    }"""))


def snap(page, path: Path | str, full_page: bool = True, max_height: int = 6000) -> Path:
    """Screenshot; with full_page the viewport is grown to the content height for the shot (then restored)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    if full_page and size:
        h = min(max_height, max(size["height"], content_height(page)))
        if h > size["height"]:
            page.set_viewport_size({"width": size["width"], "height": h})
            page.wait_for_timeout(600)  # let plotly relayout to the new size
        try:
            page.screenshot(path=str(path), full_page=True, type="png")
        finally:
            if h > size["height"]:
                page.set_viewport_size(size)
    else:
        page.screenshot(path=str(path), full_page=False, type="png")
    return path
