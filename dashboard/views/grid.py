"""Grid: a scenario grid (one comparison per forget request and seed, engine/grid.py) as runs x
scenarios, each cell read against retrain as every page reads it; per method in how many scenarios it
forgets, keeps retain and stays like retrain; EC's readings per scenario; live while cells run; CSV;
a small form that queues a grid."""
import zlib

import pandas as pd
import streamlit as st

from dashboard import data, facts, grid_figures as GF, launch_spec, logic, text, widgets

ss = st.session_state
PICK = "_gr_pick"

st.title("Grid")
st.caption("A claim about unlearning holds only if it holds across forget requests and seeds: a grid runs one "
           "comparison per scenario (EC and the baselines against retrain, the same comparison the other pages "
           "show) and reads every method in every scenario. " + GF.SCENARIO_HELP)
G = data.grids()
COUNTS = GF.counts()  # the per-method counts, by the engine's rule


# -- the start form --------------------------------------------------------------------------------

def _submit() -> None:
    """The form's submit: parse the scenarios, queue the grid (nothing is queued on bad input), wake a worker."""
    preset, methods = ss["gr_preset"], list(ss.get("gr_methods") or [])
    try:
        scenarios = G.parse_scenarios(ss.get("gr_scenarios") or "")
        grid = G.submit_grid(preset, scenarios, methods=methods or None)
    except (ValueError, facts.ConfigError) as err:  # the engine's words
        ss["_gr_error"] = logic.error_text(err) if isinstance(err, facts.ConfigError) else text.md(err)
        return
    ss.pop("_gr_error", None)
    ss[PICK] = grid["id"]
    st.query_params["grid"] = grid["id"]
    ss["_gr_queued"] = f"Queued grid {grid['id']}: {len(grid.get('scenarios') or scenarios)} comparisons."
    data.invalidate_jobs()
    ss.pop("_worker_check", None)  # the next call looks for a worker now, not in 20 s
    widgets.autostart_worker()


def start_form(expanded: bool) -> None:
    with st.expander("Start a grid", expanded=expanded, icon=":material/add_circle:"):
        with st.form("gr_form", border=False):
            c1, c2, c3 = st.columns([1, 2, 2])
            if "gr_preset" not in ss:
                ss["gr_preset"] = widgets.shown_preset(launch_spec.PRESET_CHOICES)  # the scenario on screen
            c1.selectbox("Preset", launch_spec.PRESET_CHOICES, key="gr_preset")
            ss.setdefault("gr_scenarios", "3:0,0:1,8:2")
            c2.text_input("Scenarios", key="gr_scenarios",
                          help=GF.SCENARIO_HELP + " Comma-separated.")
            c3.multiselect("Methods", [m for m in facts.METHOD_NAMES if m != "retrain"], key="gr_methods", placeholder="every method",
                           format_func=GF.display_name, help="Empty: EC and every baseline.")
            st.form_submit_button("Queue the grid", type="primary", on_click=_submit, icon=":material/grid_view:")
        if ss.get("_gr_error"):
            st.error(ss["_gr_error"].rstrip(".") + ". Nothing was queued.", icon=":material/error:")
        if ss.get("_gr_queued"):
            st.success(text.md(ss.pop("_gr_queued")), icon=":material/schedule:")


grids = G.list_grids(limit=50)
start_form(expanded=not grids or bool(ss.get("_gr_error")))
if not grids:
    st.info("No grid yet: queue one above, or from a terminal: `python -m engine grid --preset teach --scenarios "
            "3:0,0:1,8:2`.", icon=":material/grid_view:")
    st.stop()

# -- the grid shown --------------------------------------------------------------------------------

labels = GF.grid_labels(grids)
ids = list(labels)
asked = st.query_params.get("grid")
if ss.get(PICK) not in labels:
    ss[PICK] = asked if asked in labels else ids[0]  # newest first
c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
# The labels carry each grid's state: a widget key per set of labels, so the box shows a state that changed
# (a selectbox keeps the text of its picked option otherwise); the pick itself lives in ss[PICK].
with c1.container(key="grid_pick"):
    pick = st.selectbox("Grid", ids, index=ids.index(ss[PICK]), format_func=labels.__getitem__,
                        key=f"gr_pick_{zlib.crc32(repr(sorted(labels.items())).encode())}",
                        help="Newest first: preset, scenarios, state, when it was queued.")
ss[PICK] = pick
if asked != pick:
    st.query_params["grid"] = pick


def _results(cells: list[dict]) -> dict:
    """{job id: results.json} of the done cells the page can read (cached per job); the others read the
    engine's rows."""
    jobs = {j["id"]: j for j in data.jobs()}
    out = {}
    for c in cells:
        if c.get("state") != "done" or not c.get("job_id"):
            continue
        job = jobs.get(c["job_id"]) or data.get_job(c["job_id"])
        try:
            res = data.results(job) if job else None
        except Exception:  # a damaged file: the cell keeps the engine's reading
            res = None
        if res:
            out[c["job_id"]] = res
    return out


def body(grid_id: str, was_active: bool) -> None:
    table = G.grid_table(grid_id)
    if table is None:
        st.warning(f"Grid {text.code(grid_id)} is no longer in this store.")
        return
    cells = table.get("cells") or []
    done = sum(c.get("state") == "done" for c in cells)
    widgets.progress_block({"state": table.get("state"), "progress": table.get("progress"),
                            "stage": f"{done} of {len(cells)} comparisons done"})
    for c in cells:
        why = c.get("error") if c.get("state") == "failed" else c.get("results_error")
        if why or c.get("state") == "failed":
            st.warning(f"Scenario {text.code(c.get('scenario'))} (job {text.code(c.get('job_id'))}) "
                       f"{'failed' if c.get('state') == 'failed' else 'has unreadable results'}: "
                       f"{text.md(why or 'no message')}", icon=":material/error:")
    if mixed := G.mixed_settings(table):
        st.warning(text.md(mixed), icon=":material/warning:")
    m = GF.matrix(table, _results(cells))
    st.subheader("Every run in every scenario")
    st.html(GF.matrix_html(m, label=widgets.fmt_run, colours=widgets.STRIP_COLOURS))
    st.caption("Each cell: forget / retain accuracy; the signed gap to retrain at the worst inner layer and that "
               "layer (+ keeps more of the original than retraining, − pushed past it); whether the run is within "
               "the tolerance of retrain (two retrainings' spread) at every inner layer; the verdict, in the words "
               "of the Overview's table. Shaded as Launch and tune's per-layer strip: green within the tolerance "
               "everywhere and not damaging, red otherwise. Click a cell or a scenario to open its comparison on "
               "the analysis pages.")

    st.subheader("Per method: in how many scenarios")
    order = [r["name"] for r in m["rows"] if r["role"] == "method"]
    per = pd.DataFrame(GF.per_method_rows(table, order, label=GF.display_name))
    if len(per):
        st.dataframe(per, hide_index=True, width="stretch", key=f"gr_per_{grid_id}",
                     column_config={head: st.column_config.TextColumn(help=why) for _, head, why in COUNTS})
        st.caption("Counted over the done scenarios. " + "; ".join(f"**{head}**: {why}" for _, head, why in COUNTS)
                   + ".")
    else:
        st.caption("No scenario done yet.")

    st.subheader("EC per scenario")
    ec = pd.DataFrame(GF.ec_rows(table, m))
    if all(c.get("state") == "done" for c in cells):
        ec = ec.drop(columns=["State"])
    st.dataframe(ec.style.map(widgets._strip_colour, subset=[c for c in ("Within tolerance",) if c in ec]),
                 hide_index=True, width="stretch", key=f"gr_ec_{grid_id}",
                 column_config={"Forget acc": widgets.pct_col(), "Retain acc": widgets.pct_col(),
                                **widgets.headline_columns(), **widgets.fitted(ec, "Verdict")})

    st.download_button("Grid as CSV", data=G.grid_csv(table).encode(), file_name=f"grid_{grid_id}.csv",
                       mime="text/csv", key=f"gr_csv_{grid_id}", on_click="ignore", icon=":material/download:")
    if was_active and not GF.active(table):  # the last cell finished: render once more without polling
        data.invalidate_jobs()
        st.rerun(scope="app")


table0 = G.grid_table(pick)
live = GF.active(table0)
if live:
    c2.button("Cancel grid", key=f"gr_cancel_{pick}", icon=":material/stop_circle:",
              on_click=lambda: ss.__setitem__("_gr_cancelled", G.cancel_grid(pick)))
if "_gr_cancelled" in ss:
    st.toast(f"Cancelled {ss.pop('_gr_cancelled')} queued or running comparison(s).", icon=":material/stop_circle:")
if table0 is not None:
    st.caption(f"Grid {text.code(pick)} · preset {text.code(table0.get('preset'))} · "
               + (f"methods {text.md(', '.join(GF.display_name(x) for x in table0['methods']))}"
                  if table0.get("methods") else "every method")
               + (f" · overrides {text.code(GF.overrides_text(table0['overrides']))}" if table0.get("overrides") else "")
               + f" · queued {logic.fmt_time(table0.get('created'))}")
(st.fragment(run_every=2.0)(body) if live else body)(pick, live)
