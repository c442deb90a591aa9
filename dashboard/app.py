"""EC Lab dashboard entrypoint: `streamlit run dashboard/app.py` (from the repository root).

The dashboard never trains: it queues jobs for the background worker (started here when none is
alive, unless ECLAB_NO_AUTOSTART=1), sets cancel flags and reads the run store (ECLAB_HOME).
Importing this module has no side effects (the app runs only as a Streamlit script) and never
imports torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import widgets  # noqa: E402
from dashboard.facts import DatabaseUnavailable  # noqa: E402

# Not "pages/": a folder of that name beside the entrypoint switches Streamlit to the old
# pages-directory mode on the first run of a process (and in AppTest on every run).
PAGES_DIR = Path(__file__).resolve().parent / "views"
PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("launch.py", "Launch and tune", ":material/rocket_launch:"),
    ("layers.py", "Layers (CKA)", ":material/layers:"),
    ("embeddings.py", "Embeddings (UMAP)", ":material/scatter_plot:"),
    ("compare.py", "Compare", ":material/compare_arrows:"),
    ("grid.py", "Grid", ":material/grid_view:"),
    ("sweep.py", "Sweeps", ":material/tune:"),
    ("teach.py", "Teach", ":material/school:"),
]


def main() -> None:
    st.set_page_config(page_title="EC Lab", page_icon=":material/layers_clear:", layout="wide")
    widgets.inject_css()
    pages = [st.Page(str(PAGES_DIR / f), title=t, icon=i, default=(n == 0))
             for n, (f, t, i) in enumerate(PAGES) if (PAGES_DIR / f).is_file()]
    nav = st.navigation(pages)
    logo = ROOT / "assets" / "logo.svg"
    if logo.is_file():
        st.logo(str(logo))
    try:
        widgets.autostart_worker()
        widgets.sidebar()
        nav.run()
    except DatabaseUnavailable as err:  # corrupt, full or unwritable job table: the file and the fix
        st.error(str(err), icon=":material/database:")


if __name__ == "__main__":
    main()
