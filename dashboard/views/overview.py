"""Overview: the scenario and the headline, logit-level next to representation-level forgetting."""
import pandas as pd
import streamlit as st

from dashboard import calibration, data, delta_figures, facts, figures, logic, runinfo, text, verdict, widgets

job, res, layers, s = widgets.results_page("Overview")
inner = logic.inner_layers(layers)

cols = st.columns(5)
cols[0].metric("Data set", str(s.get("dataset", "?")))
cols[1].metric("Model", str(s.get("arch", "?")))
cols[2].metric("Forget request", logic.forget_label(s))
cols[3].metric("Seed", str(s.get("seed", "?")))
THREADS_HELP = ("Torch's CPU threads and the CPU's kernel set (AVX2, AVX512) set the order of floating-point sums; "
                "another thread count or another CPU moves the readings (by up to 0.06 in the distance to retrain "
                "on teach), so compare runs made with the same count on the same kind of CPU.")
cols[4].metric("Device", str(s.get("device", "?")), help=THREADS_HELP)
st.caption(f"Job `{job['id']}` ({job.get('kind')}) · {s.get('n_train', '?')} training samples: "
           f"{s.get('n_forget', '?')} to forget, {s.get('n_retain', '?')} to retain · {s.get('n_test', '?')} test samples "
           + (f"· {text.md(how)} " if (how := facts.computed_text(s)) else "")
           + f"· finished {logic.fmt_time(data.jt(job, 'finished'))}")  # why threads matter: the Device help

if elsewhere := logic.base_models_elsewhere(res):
    st.warning(text.md(elsewhere[0].upper() + elsewhere[1:]), icon=":material/memory:")

st.info("**Superficial forgetting**: a method can bring forget accuracy to retrain's level at the logits while "
        "its intermediate layers still hold the forgotten data: their features stay similar to the original "
        "model's (high CKA) and a linear probe still recovers the class.", icon=":material/visibility:")

rows = verdict.rows_vs_retrain(res)
ref = {r["name"]: r for r in rows}
# The columns a reader needs first come first, so they are in view at 1400 px: forget and retain accuracy
# (the logits) beside the distance to retrain and the gap at every layer (the representations), then
# the verdict; test accuracy, MIA, the probe, the mean, the settings and the row kind after them.
table = pd.DataFrame([{
    "Run": widgets.fmt_run(r["name"]),
    "Forget acc": widgets.as_pct(r["forget_acc"]), "Retain acc": widgets.as_pct(r["retain_acc"]),
    **widgets.headline_cells(r), "Verdict": r["verdict"],
    "Test acc": widgets.as_pct(r["test_acc"]), "MIA efficacy": widgets.as_pct(r["mia"]),
    widgets.PROBE_LABEL: logic.probe_distance_text(r), logic.MEAN_LABEL: r["forget_cka_mean"],
    "Settings": runinfo.run_settings(res, r["name"]),
    "Row": "reference" if r["role"] == "reference" else "method",
} for r in rows])
pct = widgets.pct_col()
st.subheader("Headline")
st.dataframe(
    table, hide_index=True, width="stretch", height=38 + 35 * len(table),
    column_config={
        "Run": st.column_config.TextColumn(pinned=True),
        "Row": st.column_config.TextColumn(help="Original and Retrain are reference rows, not unlearning methods: "
                                                "the starting point and the target."),
        "Settings": st.column_config.TextColumn(width=widgets.fit_width(table["Settings"]), help="What was tuned, in short: EC's layer weights (w) and "
                                                     "temperature (tau), and any option that differs from the "
                                                     "preset's defaults."),
        "Forget acc": widgets.pct_col("Logit level: accuracy on the forget set"),
        "Retain acc": pct, "Test acc": pct,
        "MIA efficacy": widgets.pct_col("Share of forget samples a confidence attack calls non-members "
                                        "(higher = looks more forgotten)"),
        **widgets.headline_columns(),
        "Verdict": st.column_config.TextColumn(
            width=widgets.fit_width(table["Verdict"]), help="Judged against retrain layer by layer, each layer against its tolerance: 'close to retrain' "
                 "(within the tolerance at every inner layer), 'superficial' (an inner layer keeps most of the "
                 "original), 'above retrain' (keeps more of the original than retrain beyond the tolerance at some "
                 "inner layer, less than 'superficial'), 'past retrain' (distorted beyond the tolerance at some inner "
                 "layer), 'probe below retrain', 'retain damaged' (retain accuracy "
                 f"more than {verdict.RETAIN_TOL:.0%} below the original's), 'forget off retrain' (forget "
                 f"accuracy more than {verdict.FORGET_TOL:.0%} from retrain's), '{calibration.NOT_REACHED}' "
                 "(calibration tried a grid of learning rates and epochs and none came close to retrain's forget "
                 "accuracy)."),
    })
st.caption(f"Logit level: forget / retain / test accuracy and MIA. Representation level: the intermediate "
           f"supervision points {text.md(', '.join(inner))}, read one by one: the distance to retrain is the largest gap "
           f"over them, so no layer hides in a mean; the last point ({text.md(layers[-1]) if layers else '?'}) is shown "
           "apart, after the bar. " + text.md(logic.tolerance_text(res)) + " "
           "Reference rows: **Original** (before unlearning) and **Retrain** (trained without the forget set, the "
           "gold standard: closer to retrain is better, in either direction).")
widgets.run_warnings(rows)
widgets.calibration_note(rows)

sentence = verdict.overview_sentence(rows, inner)
if sentence:
    st.markdown(sentence)
flat = verdict.uninformative_layers(res)
if flat:
    st.caption(f"At {text.md(', '.join(flat))} the retrained model itself stays within the tolerance of the "
               "original's CKA: there the layer barely separates a model that saw the forget set from one that "
               "did not, so a lower CKA there is distortion, not forgetting.")

widgets.show(delta_figures.retrain_bars(rows), key="ov_retrain")
widgets.show(figures.forgetting_bars(rows, inner), key="ov_bars")
if job.get("kind") == "run":
    widgets.scenario_history(job, res)

recent_failed = [j for j in data.jobs()[:20] if j.get("state") == "failed"][:3]
for j in recent_failed:
    st.warning(f"Job {text.code(j['id'])} ({text.md(logic.job_label(j))}) failed: {text.md(j.get('error') or 'no message')}",
               icon=":material/error:")
