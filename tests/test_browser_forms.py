"""Issue 22 in headless Chromium, on the fixture store (no worker, no training): a value the browser
shows is the value used, or the submit is refused with its message.

One `streamlit run` on a copy of tests/fixtures_store.py's "full" store (autostart off); jobs the
form queues stay queued. Screenshots go to test-artifacts/browser/ (git-ignored).
Run: pytest -m browser tests/test_browser_forms.py
"""
from __future__ import annotations

import shutil

import pytest

from tests import browser_helpers as H
from tests import fixtures_store as FS
# The same markers (browser, slow, skipped without Chromium or playwright), Chromium and page fixtures.
from tests.test_browser import ARTIFACTS, browser, page, pytestmark  # noqa: F401

SETTLE = 180  # s, a loaded 2-core CPU


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("eclab-forms")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("ECLAB_HOME", str(home))  # engine.api in this process reads the same store
    mp.setenv("ECLAB_NO_AUTOSTART", "1")
    server = None
    log = home / "server-forms.log"
    try:
        FS.build_store(home, "full")
        port = H.free_port()
        server = H.start_streamlit(home, port, log)
        url = f"http://127.0.0.1:{port}"
        H.wait_http(f"{url}/_stcore/health", 120, server, log)
        yield {"url": url, "home": home}
    finally:
        H.stop_group(server)
        if log.exists():
            shutil.copy(log, ARTIFACTS / log.name)
        mp.undo()


def _n_jobs() -> int:
    from engine import api
    return len(api.list_jobs())


@pytest.mark.parametrize("key, typed, option, got", [("l_lcu", "1e9", "ec.lambda_cu", "got 1000000000"),
                                                     ("l_epochs__digits__ec", "99999", "methods.ec.epochs", "got 99999")])
def test_a_refused_value_blocks_the_submit_with_its_message(lab, page, key, typed, option, got):
    """The input's min / max used to keep 1e9 (or 99999) red on screen while the last valid value
    (3.0, or 0) was sent: the run was queued with a value the form did not show, or the error named 0."""
    page.set_default_timeout(SETTLE * 1000)
    page.goto(f"{lab['url']}/launch", wait_until="domcontentloaded")
    page.wait_for_selector(".st-key-l_submit button:visible", state="visible")
    H.settle(page, SETTLE, plots=False)
    n_before = _n_jobs()
    field = page.locator(f".st-key-{key} input")
    field.fill(typed)
    field.press("Enter")
    H.settle(page, SETTLE, plots=False, quiet=0.8)
    page.locator(".st-key-l_submit button:visible").first.click()
    err = page.locator('[data-testid="stAlertContentError"]').filter(has_text=option)
    err.first.wait_for(state="visible")
    H.snap(page, ARTIFACTS / f"refused_{key}.png")
    text = err.first.inner_text()
    assert "Nothing was queued" in text and got in text, text
    H.settle(page, SETTLE, plots=False)
    assert _n_jobs() == n_before
