"""Sweeps: Optuna studies of EC's layer weights and temperature (python -m engine sweep).

Studies come from $ECLAB_HOME/sweeps/*.journal and, when set, the database in ECLAB_SWEEP_STORAGE.
Shows the Pareto front (retain accuracy vs the distance to retrain at the worst inner layer, closer being
better on either side; feasible vs infeasible), each trial's gaps to retrain per layer, the best trial
against the default EC layer by layer, the settings against the objectives, the table of trials, and
hands a trial's settings to Launch and tune. Reads only:
engine.sweep's readers use Optuna and the config, never torch."""
import os

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from dashboard import data as D
from dashboard import facts, logic, text, widgets
from dashboard import sweep_figures as SF

LAUNCH_PAGE, OVERVIEW_PAGE = "views/launch.py", "views/overview.py"
SWEEP_PRESETS = ("digits", "teach")  # built in, minutes on a CPU


@st.cache_data(ttl=10, show_spinner=False)
def studies(home: str, extra: str) -> list[dict]:
    """Keyed by the run store and ECLAB_SWEEP_STORAGE, so a changed store is never served stale."""
    return facts.discover_studies(extra or None)


@st.cache_data(ttl=3, show_spinner=False)
def table(study: str, storage: str) -> dict:
    return facts.study_table(study, storage)


def start_form(expanded: bool) -> None:
    """A small sweep from the browser: the same command as in a terminal, started in the background."""
    with st.expander("Start a small sweep", expanded=expanded, icon=":material/play_arrow:"):
        c1, c2 = st.columns([1, 1])
        if "sw_new_preset" not in st.session_state:  # the scenario on screen
            st.session_state["sw_new_preset"] = widgets.shown_preset(SWEEP_PRESETS)
        preset = c1.selectbox("Preset", SWEEP_PRESETS, key="sw_new_preset",
                              help="The built-in CPU scenarios (forget class 3); other presets from a terminal.")
        trials = c2.number_input("Trials", value=8, step=2, key="sw_new_trials",
                                 help="About 8-60 s per trial on a 2-core CPU")
        try:  # no min / max on the input: a value out of range is refused here, never silently replaced
            cmd = " ".join(D.sweep_command(preset, trials))
        except ValueError as err:
            st.error(f"{text.md(err)}: set Trials to a whole number of 1 or more.", icon=":material/error:")
            return
        st.caption(f"Runs `{cmd}`: the default EC once as the reference, then the trials, each an ordinary run "
                   "in the store. Several machines: see docs/SWEEPS.md.")
        if st.button("Start sweep", key="sw_start", type="primary", icon=":material/tune:"):
            if not D.autostart_enabled():
                st.info(f"Background processes are off here (ECLAB_NO_AUTOSTART=1): run `{cmd}` in a terminal.")
                return
            try:
                log = D.start_sweep(preset, trials)
            except (OSError, ValueError) as err:
                st.error(f"Could not start the sweep: {err}")
                return
            studies.clear()
            st.success(f"Sweep started in the background (log: `{log}`). Press Refresh in a few seconds to see it.",
                       icon=":material/schedule:")


st.title("Sweeps")
found = studies(facts.home(), os.environ.get("ECLAB_SWEEP_STORAGE", ""))
errors = [s for s in found if s.get("error")]
found = [s for s in found if not s.get("error")]
for s in errors:
    st.warning(f"Could not read the sweep storage {text.md(s['label'])}: {text.md(s['error'])}", icon=":material/error:")
if not found:
    st.info("No sweep yet. Start one below, or from a terminal, e.g.\n\n"
            f"`python -m engine sweep --preset {widgets.shown_preset(SWEEP_PRESETS)} --trials 24`\n\n"
            "Studies are read from the `sweeps` folder of the run store and, when set, from the database in "
            "`ECLAB_SWEEP_STORAGE`. More machines join a study with `python -m engine sweep-worker`.",
            icon=":material/tune:")
    start_form(expanded=True)
    st.stop()

start_form(expanded=False)
labels = {f"{s['label']}": s for s in found}
c1, c2 = st.columns([4, 1])
pick = c1.selectbox("Study", list(labels), key="sw_study")
if c2.button("Refresh", icon=":material/refresh:", key="sw_refresh"):
    studies.clear()
    table.clear()
    st.rerun()
chosen = labels[pick]
try:
    data = table(chosen["study"], chosen["storage"])
except Exception as err:  # storage went away, database down
    st.error(f"Could not read study {text.md(chosen['study'])}: {text.md(err)}")
    st.stop()
attrs, rows = data["attrs"], data["rows"]
ref = attrs.get("reference")
n = SF.counts(rows)

cols = st.columns(5)
cols[0].metric("Trials", f"{len(rows)} / {attrs.get('n_trials', '?')}")
cols[1].metric("Complete", n.get("COMPLETE", 0))
cols[2].metric("Failed", n.get("FAIL", 0))
cols[3].metric("Running", n.get("RUNNING", 0))
cols[4].metric("Feasible", sum(1 for r in rows if r.get("feasible")))
scen = attrs.get("overrides") or {}
st.caption(f"Preset {text.code(attrs.get('preset'))} · sampler {text.md(attrs.get('sampler'))} · scenario overrides "
           f"{text.code(scen or 'none')} · feasible: forget accuracy within {attrs.get('tolerance', 0.05):.0%} of the "
           f"retrained model's. Each trial is a normal EC run in the run store (its run id is in the table).")
PCT = st.column_config.NumberColumn(format="%.1f%%")
if attrs.get("eclab_sweep") != facts.sweep_format_version():
    # an older format ranked trials by a mean over layers (format 2) or EC's raw forget CKA (format 1): list, do not rank
    why = ("the gap of the mean forget CKA over layers to retrain's, where a layer that kept the class can cancel "
           "one distorted past retrain" if attrs.get("eclab_sweep") == 2 else
           "EC's raw forget CKA, which rewards pushing the model past retrain")
    st.warning(f"This study was made by an older sweep (format {text.md(attrs.get('eclab_sweep'))}) that minimised "
               f"{why}. Its trials are listed as recorded ({SF.OLD_FORMAT}), without a front. Start a new sweep (a "
               "new `--study` name) to search for the settings closest to retrain at every layer.",
               icon=":material/history:")
    st.dataframe(SF.old_trials_table(rows), hide_index=True, key="sw_table_old",
                 column_config={"retain %": PCT, "forget acc %": PCT})
    st.stop()
points = list(attrs.get("points") or [])
objective = (attrs.get("objectives") or ["distance"])[0]
best = SF.best_row(rows, ref)
if ref:
    msg = f"Default EC: {text.md(SF.reading_line(ref, points))}, retain **{ref['retain_acc']:.1%}**"
    beats = best is not None and best.get("feasible") and best["retain_acc"] >= ref["retain_acc"] - 1e-9
    if beats:
        msg += (f" · best trial at retain ≥ {ref['retain_acc']:.1%}: trial {best['number']}, "
                f"{text.md(SF.reading_line(best, points))}")
    else:
        msg += " · no feasible trial reaches the default's retain accuracy yet"
    st.info(msg, icon=":material/flag:")
    if beats and best.get("gaps") and ref.get("gaps"):
        strip = logic.layer_strip(logic.reading_gaps(best["gaps"], best.get("tolerances"), points),
                                  logic.reading_gaps(ref["gaps"], ref.get("tolerances"), points))
        st.dataframe(pd.DataFrame(logic.strip_rows(strip, f"Trial {best['number']}", "Default EC")),
                     hide_index=True, width="stretch", key="sw_strip")
        st.caption("The best trial against the default EC, supervision point by supervision point: its gap to "
                   "retrain, the default's, which is closer to retrain there, and whether the trial is within the "
                   "tolerance (reference noise: a second retrained model from another seed"
                   + ("" if best.get("tolerance_measured") else "; assumed, none measured") + ").")

if not SF.complete(rows):
    st.info("No completed trial yet.")
else:
    st.plotly_chart(SF.pareto_scatter(rows, ref, objective), key="sw_pareto")
    if points:
        st.plotly_chart(SF.gaps_heatmap(rows, points, ref), key="sw_gaps")
        st.caption("Each cell: the trial's forget CKA to the original minus retrain's at that point. Orange: keeps "
                   "more of the original than retrain (superficial); purple: pushed past retrain (distorted); white: "
                   "like retrain. The distance to retrain is the largest |gap| over the inner points (all but the last).")
    st.plotly_chart(SF.parcoords(rows, objective), key="sw_parcoords")

st.subheader("Trials")
df = SF.trials_table(rows, points)
st.dataframe(df, hide_index=True, key="sw_table",
             column_config={"retain %": PCT, "forget acc %": PCT, "retrain forget %": PCT,
                            "distance to retrain": st.column_config.NumberColumn(
                                format="%.3f", help=logic.DISTANCE_HELP),
                            "worst layer": st.column_config.TextColumn(
                                help="Where the distance is; (+) keeps more of the original than retrain, (−) "
                                     "pushed past retrain"),
                            "within tolerance": st.column_config.CheckboxColumn(
                                help="Every inner layer within its tolerance of retrain (reference noise)"),
                            "gaps per layer": st.column_config.TextColumn(help=logic.GAPS_HELP),
                            "probe distance": st.column_config.NumberColumn(format="%.3f"),
                            "mean inner forget CKA": st.column_config.NumberColumn(
                                format="%.3f", help="A detail, never the ranking: a mean lets layers cancel"),
                            "seconds": st.column_config.NumberColumn(format="%.1f")})
fails = [r for r in rows if r.get("state") == "FAIL"]
if fails:
    with st.expander(f"Failed trials ({len(fails)})"):
        for r in fails:
            st.markdown(f"- trial {r['number']}: {text.md(r.get('error') or 'no reason recorded')}")

done = SF.complete(rows)
if done:
    st.subheader("Use these settings")
    numbers = [r["number"] for r in sorted(done, key=lambda r: (not r.get("pareto"), r[SF.OBJECTIVE]))]
    default = numbers.index(best["number"]) if best is not None and best["number"] in numbers else 0
    by_number = {r["number"]: r for r in done}

    def _label(num: int) -> str:
        r = by_number[num]
        tags = (" · Pareto" if r.get("pareto") else "") + ("" if r.get("feasible") else " · infeasible")
        return f"trial {num}: distance to retrain {logic.distance_text(r)}, retain {r['retain_acc']:.1%}{tags}"

    num = st.selectbox("Trial", numbers, index=default, format_func=_label, key="sw_pick")
    handoff = SF.prefill(by_number[num], attrs, chosen["study"])
    st.caption("EC settings: " + text.md(", ".join(
        f"{k} [{', '.join(f'{w:.3g}' for w in v)}]" if isinstance(v, list) else f"{k} {v:.4g}"
        for k, v in handoff["ec"].items())))

    def _use(h=handoff):
        st.session_state["prefill"] = h

    if st.button("Use these settings", key="sw_use", on_click=_use, icon=":material/tune:",
                 help="Open Launch and tune with this trial's settings filled in."):
        try:
            st.switch_page(LAUNCH_PAGE)
        except StreamlitAPIException:  # page run on its own (no navigation): the hand-off waits in the session
            st.success("Settings handed over: open Launch and tune to queue the run.", icon=":material/input:")
    # the trial's own run (a done job of the store): Overview, Layers and Embeddings can show it
    run_id = by_number[num].get("run_id")
    run_job = D.get_job(run_id) if run_id else None
    if run_job is not None and run_job.get("state") == "done":
        if st.button("Show this trial's run on the analysis pages", key="sw_show", icon=":material/insights:",
                     on_click=widgets.select_results, args=(run_job["id"],)):
            try:
                st.switch_page(OVERVIEW_PAGE)
            except StreamlitAPIException:
                st.success(f"Run {text.code(run_job['id'])} picked under “Results shown”.", icon=":material/insights:")
