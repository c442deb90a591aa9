"""Screenshots of every dashboard page, for the README.

    python scripts/screenshots.py [--home runs] [--out assets/screenshots] [--full]

Starts `streamlit run dashboard/app.py` on a free localhost port against an existing run store
(ECLAB_HOME=--home; no worker is started and nothing is queued), opens each page of the navigation
in headless Chromium (the system `chromium`; nothing is downloaded), waits until the page has settled
(no "Running..." indicator, every plotly chart drawn) and writes <out>/<page>.png at a 1400x900
viewport (--full: the whole page, up to --max-height pixels). Prints the files written.

Try it on a synthetic store:  python tests/fixtures_store.py /tmp/eclab-fx && \\
    python scripts/screenshots.py --home /tmp/eclab-fx --out /tmp/shots
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):  # tests/browser_helpers imports its sibling jobs_helpers
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tests import browser_helpers as H  # noqa: E402


def page_name(href: str) -> str:
    """URL path of a navigation link -> file stem ('/' is the default page, Overview)."""
    path = urlparse(href).path.strip("/")
    return path.split("/")[-1] if path else "overview"


def settled(page, timeout: float) -> None:
    """H.settle, again until the page's text stops growing: a page's first run in a new server can compute
    for seconds (the Teach page's example images) with no "Running..." indicator on screen."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        H.settle(page, timeout)
        size = len(page.locator('[data-testid="stMain"]').inner_text())
        if size == last:
            return
        last = size
        page.wait_for_timeout(2000)


def palette(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (a page is mostly flat colour: a third of the size or less)."""
    from PIL import Image
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def nav_links(page) -> list[tuple[str, str]]:
    """(label, href) of each page in the sidebar navigation."""
    page.wait_for_selector(H.NAV_LINK, state="visible")
    links = []
    for a in page.locator(H.NAV_LINK).all():
        label = a.locator('[data-testid="stSidebarNavLinkText"], span').last.inner_text().strip()
        links.append((label or a.inner_text().strip().splitlines()[-1], a.get_attribute("href") or "/"))
    return links


def shoot(home: Path, out: Path, width: int = 1400, height: int = 900, full: bool = False, max_height: int = 4000,
          only: list[str] | None = None, timeout: float = 120.0, max_kb: int = 400) -> list[Path]:
    from playwright.sync_api import sync_playwright
    chromium = H.chromium_path()
    if chromium is None:
        raise SystemExit("no system Chromium found (`chromium` on PATH, or set ECLAB_CHROMIUM)")
    if not (home / "jobs.sqlite").is_file():  # the dashboard would create an empty store there
        print(f"warning: {home} holds no jobs.sqlite; the pages show their empty state", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    log = out / ".streamlit-server.log"
    port = H.free_port()
    server = H.start_streamlit(home, port, log)
    written: list[Path] = []
    try:
        url = f"http://127.0.0.1:{port}"
        H.wait_http(f"{url}/_stcore/health", timeout, server, log)
        with sync_playwright() as p:
            browser = H.launch_browser(p, chromium)
            try:
                ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
                ctx.set_default_timeout(timeout * 1000)
                page = ctx.new_page()
                page.goto(url + "/", wait_until="domcontentloaded")
                links = nav_links(page)
                for label, href in links:
                    name = page_name(href)
                    if only and name not in only:
                        continue
                    t0 = time.monotonic()
                    page.goto(href if href.startswith("http") else url + href, wait_until="domcontentloaded")
                    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', state="visible")
                    settled(page, timeout)
                    page.mouse.move(width - 5, height - 5)  # no hover tooltips in the shot
                    path = out / f"{name}.png"
                    H.snap(page, path, full_page=full, max_height=max_height)
                    if path.stat().st_size > max_kb * 1024:  # too big for a README: 256 colours, else the viewport
                        palette(path)
                    if full and path.stat().st_size > max_kb * 1024:
                        H.snap(page, path, full_page=False)
                        palette(path)
                    kb = path.stat().st_size / 1024
                    note = f"  (over {max_kb} KB)" if kb > max_kb else ""
                    print(f"{path}  {label}  {kb:.0f} KB  {time.monotonic() - t0:.1f} s{note}", file=sys.stderr)
                    written.append(path)
            finally:
                browser.close()
    finally:
        H.stop_group(server)
    if written:
        log.unlink(missing_ok=True)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=ROOT / "runs", help="the run store to show (default ./runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshots", help="folder for the PNGs")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--full", action="store_true", help="the whole page (up to --max-height), not just the viewport")
    ap.add_argument("--max-height", type=int, default=4000)
    ap.add_argument("--pages", nargs="+", metavar="NAME",
                    help="only these pages (overview launch layers embeddings compare sweep teach)")
    ap.add_argument("--allow-empty", action="store_true", help="shoot the empty state of a folder with no run store")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server and each page")
    args = ap.parse_args(argv)
    home = args.home.expanduser().resolve()
    if not (home / "jobs.sqlite").is_file() and not args.allow_empty:
        ap.error(f"--home {home} holds no run store (no jobs.sqlite): fill one with `python -m engine serve` "
                 f"(or, for a synthetic store, `python tests/fixtures_store.py DIR`), or pass --allow-empty")
    files = shoot(home, args.out.expanduser().resolve(), args.width, args.height, args.full, args.max_height,
                  args.pages, args.timeout)
    for f in files:
        print(f)
    return 0 if files else 1


if __name__ == "__main__":
    sys.exit(main())
