"""Sweeps: Optuna studies of EC's layer weights and temperature (python -m engine sweep).

Studies come from $ECLAB_HOME/sweeps/*.journal and, when set, the database in ECLAB_SWEEP_STORAGE.
Shows the Pareto front (retain accuracy vs the distance to retrain's inner forget CKA, closer being better
on either side; feasible vs infeasible), the settings against
the objectives, the table of trials, and hands a trial's settings to Launch and tune. Reads only:
engine.sweep's readers use Optuna and the config, never torch."""
import os

import streamlit as st
from streamlit.errors import StreamlitAPIException

from dashboard import facts, text
from dashboard import sweep_figures as SF

LAUNCH_PAGE = "views/launch.py"


@st.cache_data(ttl=10, show_spinner=False)
def studies(home: str, extra: str) -> list[dict]:
    """Keyed by the run store and ECLAB_SWEEP_STORAGE, so a changed store is never served stale."""
    return facts.discover_studies(extra or None)


@st.cache_data(ttl=3, show_spinner=False)
def table(study: str, storage: str) -> dict:
    return facts.study_table(study, storage)


def start_form(expanded: bool) -> None:
    """A small sweep from the browser: the same command as in a terminal, started in the background."""
    from dashboard import data as D
    with st.expander("Start a small sweep", expanded=expanded, icon=":material/play_arrow:"):
        c1, c2 = st.columns([1, 1])
        preset = c1.selectbox("Preset", ["digits"], key="sw_new_preset",
                              help="The built-in digits scenario (forget class 3); other presets from a terminal.")
        trials = c2.number_input("Trials", 2, 48, value=8, step=2, key="sw_new_trials",
                                 help="About 8-60 s per digits trial on a 2-core CPU")
        cmd = " ".join(D.sweep_command(preset, trials))
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
            "`python -m engine sweep --preset digits --trials 24`\n\n"
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
if attrs.get("eclab_sweep") != facts.sweep_format_version():
    # an older format ranked trials by EC's raw forget CKA and recorded no retrain CKA: list, do not rank
    st.warning(f"This study was made by an older sweep (format {text.md(attrs.get('eclab_sweep'))}) that minimised "
               "EC's raw forget CKA, which rewards pushing the model past retrain. Its trials are listed as "
               "recorded, without a front. Start a new sweep (a new `--study` name) to search for the settings "
               "closest to retrain.", icon=":material/history:")
    st.dataframe(SF.trials_table(rows), hide_index=True, key="sw_table_old")
    st.stop()
if ref:
    best = SF.best_row(rows, ref)
    msg = (f"Default EC: distance to retrain **{ref['cka_gap_to_retrain']:.3f}** (forget CKA "
           f"{ref['forget_cka']:.3f} vs retrain {ref['retrain_forget_cka']:.3f}), retain **{ref['retain_acc']:.1%}**")
    if best is not None and best.get("feasible") and best["retain_acc"] >= ref["retain_acc"] - 1e-9:
        msg += (f" · best trial at retain ≥ {ref['retain_acc']:.1%}: trial {best['number']}, distance to retrain "
                f"**{best['cka_gap_to_retrain']:.3f}** (forget CKA {best['forget_cka']:.3f})")
    else:
        msg += " · no feasible trial reaches the default's retain accuracy yet"
    st.info(msg, icon=":material/flag:")

if not SF.complete(rows):
    st.info("No completed trial yet.")
else:
    st.plotly_chart(SF.pareto_scatter(rows, ref), key="sw_pareto")
    st.plotly_chart(SF.parcoords(rows), key="sw_parcoords")

st.subheader("Trials")
df = SF.trials_table(rows)
st.dataframe(df, hide_index=True, key="sw_table",
             column_config={"retain %": st.column_config.NumberColumn(format="%.1f%%"),
                            "forget acc %": st.column_config.NumberColumn(format="%.1f%%"),
                            "retrain forget %": st.column_config.NumberColumn(format="%.1f%%"),
                            "distance to retrain": st.column_config.NumberColumn(
                                format="%.3f", help="|EC's inner forget CKA − retrain's|: lower is closer to "
                                                    "retrain (either side)"),
                            "forget CKA": st.column_config.NumberColumn(format="%.3f"),
                            "retrain forget CKA": st.column_config.NumberColumn(format="%.3f"),
                            "seconds": st.column_config.NumberColumn(format="%.1f")})
fails = [r for r in rows if r.get("state") == "FAIL"]
if fails:
    with st.expander(f"Failed trials ({len(fails)})"):
        for r in fails:
            st.markdown(f"- trial {r['number']}: {text.md(r.get('error') or 'no reason recorded')}")

done = SF.complete(rows)
if done:
    st.subheader("Use these settings")
    best = SF.best_row(rows, ref)
    numbers = [r["number"] for r in sorted(done, key=lambda r: (not r.get("pareto"), r["cka_gap_to_retrain"]))]
    default = numbers.index(best["number"]) if best is not None and best["number"] in numbers else 0
    by_number = {r["number"]: r for r in done}

    def _label(num: int) -> str:
        r = by_number[num]
        tags = (" · Pareto" if r.get("pareto") else "") + ("" if r.get("feasible") else " · infeasible")
        return f"trial {num}: distance to retrain {r['cka_gap_to_retrain']:.3f}, retain {r['retain_acc']:.1%}{tags}"

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
