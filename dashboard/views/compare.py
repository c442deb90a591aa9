"""Compare: every run of every finished job in one table, the trade-off front, per-class and
membership-inference views of one run, CSV and HTML export."""
import pandas as pd
import streamlit as st

from dashboard import calibration, compare_figures, data, facts, figures, launch_spec, logic, text, verdict, widgets

st.title("Compare")
all_jobs = data.jobs()
rows, damaged = data.all_run_rows(all_jobs)
for job_id, err in damaged:
    widgets.damaged_card(job_id, err)
if not rows:
    if not damaged:
        widgets.empty_state(all_jobs)
    st.stop()

st.caption("Every run of every finished job. Click a column header to sort; filter below. "
           "Representation columns read the intermediate supervision points (all but the last) one by one: the "
           "distance to retrain is the largest gap over them. "
           "The CSV holds the same rows with fractions (0..1) and machine-readable column names.")
c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
methods = sorted({r["name"] for r in rows if r["role"] == "method"}, key=figures.display_name)
f_methods = c1.multiselect("Method", methods, default=[], format_func=figures.display_name, key="cmp_methods",
                           placeholder="all methods")
datasets = sorted({str(r["dataset"]) for r in rows})
f_data = c2.multiselect("Data set", datasets, default=[], key="cmp_data", placeholder="all")
forgets = sorted({str(r["forget"]) for r in rows})
f_forget = c3.multiselect("Forget request", forgets, default=[], key="cmp_forget", placeholder="all")
with_refs = c4.toggle("Reference rows", value=False, key="cmp_refs", help="Show Original and Retrain of every job")


def keep(r: dict) -> bool:
    if r["role"] == "reference":
        if not with_refs:
            return False
    elif f_methods and r["name"] not in f_methods:
        return False
    if f_data and str(r["dataset"]) not in f_data:
        return False
    return not (f_forget and str(r["forget"]) not in f_forget)


# Original and Retrain once per scenario (not once per job that shares them).
shown = verdict.one_reference_pair([r for r in rows if keep(r)])
P = widgets.as_pct
COLUMNS = ["Method", "Settings", "Calibration", "Data set", "Model", "Forget", "Seed", "Forget acc", "Retain acc", "MIA",
           logic.DISTANCE_LABEL, logic.GAPS_LABEL, widgets.PROBE_LABEL, "Avg gap", "Verdict", "Time (s)", "Job"]
df = pd.DataFrame([{
    "Method": widgets.fmt_run(r["name"]), "Settings": r.get("settings") or "", "Calibration": r.get("setting") or "",
    "Data set": r["dataset"],
    "Model": r["arch"], "Forget": r["forget"], "Seed": r["seed"], "Forget acc": P(r["forget_acc"]),
    "Retain acc": P(r["retain_acc"]), "MIA": P(r["mia"]), **widgets.headline_cells(r),
    widgets.PROBE_LABEL: logic.probe_distance_text(r), "Avg gap": P(r["avg_gap"]), "Verdict": r.get("verdict", ""),
    "Time (s)": r["seconds"], "Job": r["job"],
} for r in shown], columns=COLUMNS)
CSV_COLUMNS = ["id", "job", "kind", "name", "role", "settings", "setting", "dataset", "arch", "forget", "seed", "forget_acc",
               "retain_acc", "test_acc", "forget_test_acc", "mia", "distance", "worst_layer", "worst_gap", "worst_z",
               "within", "last_gap", "gaps", "probe_distance", "probe_worst_gap", "forget_cka_mean", "probe_mean",
               "probe_max", "avg_gap", "verdict", "damaging", "seconds", "finished"]
csv = pd.DataFrame([{k: logic.gaps_text(r["gaps"]) if k == "gaps" else r.get(k) for k in CSV_COLUMNS} for r in shown],
                   columns=CSV_COLUMNS)
# Scenario columns with one value in every row shown say nothing per row: fold them into a caption.
SCENARIO_COLUMNS = ("Data set", "Model", "Forget", "Seed")
same = [c for c in SCENARIO_COLUMNS if len(df) and df[c].astype(str).nunique() == 1]
if same:
    first = df.iloc[0]
    st.caption("Every run shown: " + text.md(" · ".join(
        f"{c.lower()} {first[c]}" if c in ("Seed", "Model") else
        (f"forget {first[c]}" if c == "Forget" else str(first[c])) for c in same)) + ".")
    df = df.drop(columns=same)
pct = widgets.pct_col()
# Short headers (their meaning is in the column help) so the table fits the page without scrolling
# sideways; the method column stays pinned when it does scroll on a narrow window.
st.dataframe(df, hide_index=True, width="stretch", height=min(600, 38 + 35 * max(1, len(df))),
             column_config={
                 "Method": st.column_config.TextColumn(width=125, pinned=True),
                 "Forget": st.column_config.TextColumn(help="The forget request: classes or a random share"),
                 "Settings": st.column_config.TextColumn(
                     width=widgets.fit_width(df["Settings"]), help="What was tuned: EC's layer weights (w) and temperature (tau), and any option "
                                     "that differs from the preset's defaults"),
                 "Calibration": st.column_config.TextColumn(
                     width=widgets.fit_width(df["Calibration"]), help="How the learning rate and epochs were found: calibrated on this scenario (the "
                                     "setting kept, and the method's recipe), the recipe as given, or empty for runs "
                                     "made before calibration. 'One run up close' shows the grid tried."),
                 "Forget acc": pct, "Retain acc": pct,
                 "MIA": widgets.pct_col("MIA efficacy: share of forget samples a confidence attack calls "
                                        "non-members (higher = looks more forgotten)"),
                 **widgets.headline_columns(),
                 "Verdict": st.column_config.TextColumn(width=widgets.fit_width(df["Verdict"]),
                                                        help="Judged against retrain (see the Overview's table help)"),
                 "Time (s)": st.column_config.NumberColumn(
                     format="%.1f", help="Unlearning time in seconds. Original and Retrain: the time their job spent "
                                         "on them (training, or loading them from the cache)"),
                 "Job": st.column_config.TextColumn(width=170, help="The job that produced this run "
                                                                     "(Launch and tune shows it)"),
             })
st.download_button("Table as CSV", data=csv.to_csv(index=False).encode(), file_name="eclab_runs.csv",
                   mime="text/csv", key="cmp_csv", on_click="ignore", icon=":material/download:")
if not shown:
    st.info("No run matches these filters.")
    st.stop()

st.subheader("Trade-off front")
# One scenario per front: runs of other data, forget requests or seeds are measured against another retrain.
scenes = logic.scenarios(shown, (widgets.selected_results_job(all_jobs) or {}).get("id"))
scene = next(iter(scenes))
if len(scenes) > 1:
    scene = st.selectbox("Scenario", list(scenes), format_func=scenes.__getitem__, key="cmp_scenario",
                         help="A front compares the runs of one scenario (data set, model, forget request, seed): "
                              "the distance to retrain is measured against that scenario's retrained model.")
else:
    st.caption(f"Scenario: {text.md(scenes[scene])}.")
on_front = [r for r in shown if r.get("scenario_key") == scene]
widgets.run_warnings([r for r in on_front if r["role"] == "method"])
widgets.show(compare_figures.tradeoff_scatter(on_front), key="cmp_scatter", export="tradeoff_front")
front = [r for r, f in zip(on_front, compare_figures.pareto_front(
    [None if r.get("damaging") else r.get("distance") for r in on_front], [r["retain_acc"] for r in on_front])) if f]
if front:
    st.caption("On the front (no other run keeps more retain accuracy while staying closer to retrain at its worst "
               "inner layer; damaging runs, drawn as ×, are left out): "
               + ", ".join(text.md(figures.display_name(r['name'])
                                   + (f" · {r['settings']}" if r.get("settings") else "")) + f" ({text.code(r['job'])})"
                           for r in front) + ".")

st.subheader("One run up close")
candidates = [r for r in shown if r["role"] == "method"] or shown
ids = [r["id"] for r in candidates]
by_id = {r["id"]: r for r in candidates}
default = next((r["id"] for r in candidates if r["name"] == "ec"), ids[0])
pick = st.selectbox("Run", ids, index=ids.index(default), key="cmp_pick",
                    format_func=lambda i: f"{figures.display_name(by_id[i]['name'])}"
                                          + (f" · {by_id[i]['settings']}" if by_id[i].get("settings") else "")
                                          + (f" · {calibration.NOT_REACHED}"
                                             if calibration.NOT_REACHED in by_id[i].get("flags", []) else "")
                                          + f" · {by_id[i]['dataset']} · {by_id[i]['forget']} · job {by_id[i]['job']}")
row = by_id[pick]
job = next((j for j in all_jobs if j["id"] == row["job"]), None)
try:
    res = data.results(job) if job else None
except Exception as err:  # damaged since the table was read
    widgets.damaged_card(row["job"], err)
    st.stop()
if not res:
    st.warning("The results of this run's job are no longer readable.")
    st.stop()
name = row["name"]
run = res["runs"][name]
orig = res["runs"].get("original") or {}
class_names = (res.get("scenario") or {}).get("class_names")
if calibration.NOT_REACHED in row.get("flags", []):
    st.warning(f"**{text.md(figures.display_name(name))}** {calibration.NOT_REACHED}: "
               f"{text.md(calibration.missed(run))}.", icon=":material/warning:")
widgets.calibration_grid(run, name, key="cmp_cal_grid")

if run.get("per_class_test_acc"):
    widgets.show(compare_figures.per_class_bars(run["per_class_test_acc"], orig.get("per_class_test_acc"), name,
                                        class_names, logic.forget_classes(res)),
                 key="cmp_perclass", export=f"per_class_{name}")
if run.get("confusion_test"):
    widgets.show(compare_figures.confusion_pair(run["confusion_test"], orig.get("confusion_test"), name, class_names),
                 key="cmp_confusion", export=f"confusion_{name}")

arrs = None
try:
    arrs = data.arrays(job)
except Exception as err:
    st.caption(f"Arrays unreadable: {text.md(err)}")
conf = {sp: (arrs or {}).get(facts.conf_key(name, sp)) for sp in ("forget", "retain", "test")}
if any(v is not None for v in conf.values()):
    grid = (run.get("mia") or {}).get("decision_grid")
    widgets.show(compare_figures.mia_view(conf, grid, name, (run.get("metrics") or {}).get("mia_efficacy")),
                 key="cmp_mia", export=f"mia_{name}")
    st.caption("The attack learns to tell training members (retain) from non-members (test) by the confidence on the "
               "true label; the shaded band is where it says 'member'. Forgotten samples should look like test "
               "samples, not like retain samples.")
else:
    st.caption("No confidence arrays stored for this run (membership-inference view unavailable).")

handoff = launch_spec.config_from_results_run(res, name)
if handoff:
    def _use(h=handoff):
        st.session_state["prefill"] = h
    if st.button("Use these settings", key="cmp_use", on_click=_use, icon=":material/tune:",
                 help="Open Launch and tune with this run's configuration filled in."):
        st.switch_page("views/launch.py")
